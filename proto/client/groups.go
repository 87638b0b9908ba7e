package client

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/types/event"
)

// This file holds the bodies of the group messaging messages (SPEC.md,
// "Group messaging"), opcodes 0x0201–0x0207 of version 2. The rules are
// those of events.go: every Append function writes exactly what the
// matching Parse function reads back; an Append function that can be given
// a value Parse would refuse checks it first and appends nothing then;
// every Parse function checks each count and length against its limit and
// the bytes present before it allocates, and fails with a *proto.Error.

// Specification constants: the kinds of GROUP_SEND, the event number of
// the message's descriptor (event.GSBroadcast … event.GSReply).
const (
	KindBroadcast = uint8(event.GSBroadcast & event.EventMask) // 3: every group-class subscriber; Group is a label
	KindMulticast = uint8(event.GSMulticast & event.EventMask) // 4: the members of Group
	KindUnicast   = uint8(event.GSUnicast & event.EventMask)   // 5: Target, if a member of Group
	KindReply     = uint8(event.GSReply & event.EventMask)     // 6: Target, answering ReplyTo
)

// MaxGroupList is the most groups a GROUP_LIST reply carries.
const MaxGroupList = 32768

// Sizes of the fixed-size group bodies.
const (
	GroupJoinReplySize   = 8 + 8 + 8 + 4 + 4
	GroupSeqSize         = 8
	GroupSendReplySize   = 8 + 8 + 4 + 4
	GroupWindowSize      = 4*4 + 8
	GroupAttachSize      = 8 + 8
	GroupAttachReplySize = 8

	groupSendMin = 1 + 3 + 3*8 + 2 + 4 // kind, reserved, target, reply to, msg id, group length, payload length
	listItemMin  = 2 + 4               // group length, members
)

// groupName reads a group name: at most MaxNameLen bytes of UTF-8, not
// empty if required.
func groupName(r *proto.Reader, required bool) string {
	s := r.String16(MaxNameLen, "group name")
	// After an earlier failure s is "" and Fail keeps the first error.
	if err := checkGroupName(s, required); err != nil {
		r.Fail(proto.CodeField, "%s", err.Detail)
	}
	return s
}

// checkGroupName is groupName's rule, for the encoders; it says nothing
// of the length, which check.name covers.
func checkGroupName(s string, required bool) *proto.Error {
	switch {
	case s == "" && required:
		return proto.Errorf(proto.CodeField, "empty group name")
	case !utf8.ValidString(s):
		return proto.Errorf(proto.CodeField, "group name %q is not UTF-8", s)
	}
	return nil
}

// checkNames is the encoders' check of a request's names.
func checkNames(msg, group string, required bool, member string) error {
	var c check
	c.name("group name", group)
	c.name("member name", member)
	if c.err != nil {
		return c.err
	}
	if err := checkGroupName(group, required); err != nil {
		return proto.Errorf(err.Code, "%s: %s", msg, err.Detail)
	}
	return nil
}

// GroupJoin is the body of a GROUP_JOIN request.
type GroupJoin struct {
	Group string // the group to join; not empty
	// Name is the member's name (≤ 255 bytes, may be empty). It is used
	// when the request opens the link's member session (its first JOIN or
	// SEND) and ignored after that.
	Name string
}

// AppendGroupJoin appends the body of j. An empty or over-long name is
// refused and nothing appended.
func AppendGroupJoin(dst []byte, j *GroupJoin) ([]byte, error) {
	if err := checkNames("GROUP_JOIN", j.Group, true, j.Name); err != nil {
		return dst, err
	}
	dst = proto.AppendString16(dst, j.Group)
	return proto.AppendString16(dst, j.Name), nil
}

// ParseGroupJoin decodes a GROUP_JOIN request.
func ParseGroupJoin(b []byte) (GroupJoin, error) {
	r := proto.NewReader(b, "GROUP_JOIN")
	j := GroupJoin{Group: groupName(r, true), Name: r.String16(MaxNameLen, "member name")}
	return j, r.Err()
}

// GroupJoinReply is the body of a GROUP_JOIN reply.
type GroupJoinReply struct {
	Seq    uint64 // the JOIN event's Seq: the member's BornOn in the group
	Member uint64 // the link's member id
	// Token, with Member, re-adopts the session on a new link
	// (GROUP_ATTACH). It is known to this agent only.
	Token       uint64
	Window      uint32 // sends the agent admits in flight on this link
	WindowBytes uint32 // payload bytes the agent admits in flight on this link
}

// AppendGroupJoinReply appends the body of j.
func AppendGroupJoinReply(dst []byte, j *GroupJoinReply) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, j.Seq)
	dst = le.AppendUint64(dst, j.Member)
	dst = le.AppendUint64(dst, j.Token)
	dst = le.AppendUint32(dst, j.Window)
	return le.AppendUint32(dst, j.WindowBytes)
}

// ParseGroupJoinReply decodes a GROUP_JOIN reply.
func ParseGroupJoinReply(b []byte) (GroupJoinReply, error) {
	r := proto.NewReader(b, "GROUP_JOIN reply")
	j := GroupJoinReply{Seq: r.U64("seq"), Member: r.U64("member"), Token: r.U64("token"), Window: r.U32("window"), WindowBytes: r.U32("window bytes")}
	if r.Err() == nil && j.Member == 0 {
		r.Fail(proto.CodeField, "member id 0")
	}
	return j, r.Err()
}

// GroupLeave is the body of a GROUP_LEAVE request.
type GroupLeave struct {
	Group string // the group to leave; not empty
}

// AppendGroupLeave appends the body of l; an empty or over-long name is
// refused and nothing appended.
func AppendGroupLeave(dst []byte, l *GroupLeave) ([]byte, error) {
	if err := checkNames("GROUP_LEAVE", l.Group, true, ""); err != nil {
		return dst, err
	}
	return proto.AppendString16(dst, l.Group), nil
}

// ParseGroupLeave decodes a GROUP_LEAVE request.
func ParseGroupLeave(b []byte) (GroupLeave, error) {
	r := proto.NewReader(b, "GROUP_LEAVE")
	l := GroupLeave{Group: groupName(r, true)}
	return l, r.Err()
}

// GroupSeq is the body of a GROUP_LEAVE reply.
type GroupSeq struct {
	Seq uint64 // the LEAVE event's Seq
}

// AppendGroupSeq appends the body of s.
func AppendGroupSeq(dst []byte, s *GroupSeq) []byte {
	return binary.LittleEndian.AppendUint64(dst, s.Seq)
}

// ParseGroupSeq decodes a GROUP_LEAVE reply.
func ParseGroupSeq(b []byte) (GroupSeq, error) {
	r := proto.NewReader(b, "GROUP_LEAVE reply")
	s := GroupSeq{Seq: r.U64("seq")}
	return s, r.Err()
}

// GroupSend is the body of a GROUP_SEND request: one message.
type GroupSend struct {
	Kind    uint8  // KindBroadcast, KindMulticast, KindUnicast or KindReply
	Target  uint64 // UNICAST, REPLY: the member addressed; else 0
	ReplyTo uint64 // REPLY: the Seq of the message answered; else 0
	MsgID   uint64 // the sender's own id, opaque to corral
	// Group: MULTICAST and UNICAST, the group (not empty); BROADCAST, a
	// label (may be empty); REPLY, the group of the message answered or
	// empty.
	Group string
	// Payload, at most MaxPayload bytes. ParseGroupSend returns it
	// aliasing its input: copy it before the frame's body is reused.
	Payload []byte
}

// Desc returns the descriptor of the event the message becomes, or
// event.GSInvalid for an unknown kind.
func (s *GroupSend) Desc() event.Descriptor {
	if s.Kind < KindBroadcast || s.Kind > KindReply {
		return event.GSInvalid
	}
	return event.MakeDescriptor(event.ClassGroup, uint32(s.Kind))
}

// check is the rule of GROUP_SEND (SPEC.md): which kind needs which fields.
func (s *GroupSend) check() *proto.Error {
	bad := func(format string, args ...any) *proto.Error {
		return proto.Errorf(proto.CodeField, "GROUP_SEND: "+format, args...)
	}
	if s.Desc() == event.GSInvalid {
		return bad("unknown kind %d", s.Kind)
	}
	if err := checkGroupName(s.Group, s.Kind == KindMulticast || s.Kind == KindUnicast); err != nil {
		return bad("%v: %s", s.Desc(), err.Detail)
	}
	switch target := s.Kind == KindUnicast || s.Kind == KindReply; {
	case target && s.Target == 0:
		return bad("%v without a target", s.Desc())
	case !target && s.Target != 0:
		return bad("target %d on a %v", s.Target, s.Desc())
	case s.Kind == KindReply && s.ReplyTo == 0:
		return bad("REPLY without the seq it answers")
	case s.Kind != KindReply && s.ReplyTo != 0:
		return bad("reply to %d on a %v", s.ReplyTo, s.Desc())
	}
	return nil
}

// AppendGroupSend appends the body of s. A message the rules refuse
// (CodeField) or beyond the limits (CodeTooLarge) is not appended.
func AppendGroupSend(dst []byte, s *GroupSend) ([]byte, error) {
	var c check
	c.name("group name", s.Group)
	c.payload(s.Payload)
	if c.err != nil {
		return dst, c.err
	}
	if err := s.check(); err != nil {
		return dst, err
	}
	le := binary.LittleEndian
	dst = append(dst, s.Kind, 0, 0, 0)
	dst = le.AppendUint64(dst, s.Target)
	dst = le.AppendUint64(dst, s.ReplyTo)
	dst = le.AppendUint64(dst, s.MsgID)
	dst = proto.AppendString16(dst, s.Group)
	return appendPayload(dst, s.Payload), nil
}

// ParseGroupSend decodes a GROUP_SEND request. The Payload aliases b.
func ParseGroupSend(b []byte) (GroupSend, error) {
	r := proto.NewReader(b, "GROUP_SEND")
	s := GroupSend{Kind: r.U8("kind")}
	r.Zero(3, "reserved")
	s.Target = r.U64("target")
	s.ReplyTo = r.U64("reply to")
	s.MsgID = r.U64("msg id")
	s.Group = r.String16(MaxNameLen, "group name")
	s.Payload = readPayload(r)
	if err := r.Err(); err != nil {
		return GroupSend{}, err
	}
	if err := s.check(); err != nil {
		return GroupSend{}, err
	}
	return s, nil
}

// GroupSendReply is the body of a GROUP_SEND reply: the message is
// committed and was delivered.
type GroupSendReply struct {
	Seq       uint64 // the message event's Seq
	Member    uint64 // the sender's member id
	Delivered uint32 // how many members it was addressed to (BROADCAST: 0)
}

// AppendGroupSendReply appends the body of s.
func AppendGroupSendReply(dst []byte, s *GroupSendReply) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, s.Seq)
	dst = le.AppendUint64(dst, s.Member)
	dst = le.AppendUint32(dst, s.Delivered)
	return le.AppendUint32(dst, 0)
}

// ParseGroupSendReply decodes a GROUP_SEND reply.
func ParseGroupSendReply(b []byte) (GroupSendReply, error) {
	r := proto.NewReader(b, "GROUP_SEND reply")
	s := GroupSendReply{Seq: r.U64("seq"), Member: r.U64("member"), Delivered: r.U32("delivered")}
	r.Zero(4, "reserved")
	if r.Err() == nil && s.Member == 0 {
		r.Fail(proto.CodeField, "member id 0")
	}
	return s, r.Err()
}

// GroupName is the body of a GROUP_MEMBERS request.
type GroupName struct {
	Group string // not empty
}

// AppendGroupName appends the body of g; an empty or over-long name is
// refused and nothing appended.
func AppendGroupName(dst []byte, g *GroupName) ([]byte, error) {
	if err := checkNames("GROUP_MEMBERS", g.Group, true, ""); err != nil {
		return dst, err
	}
	return proto.AppendString16(dst, g.Group), nil
}

// ParseGroupName decodes a GROUP_MEMBERS request.
func ParseGroupName(b []byte) (GroupName, error) {
	r := proto.NewReader(b, "GROUP_MEMBERS")
	g := GroupName{Group: groupName(r, true)}
	return g, r.Err()
}

// GroupMembers is the body of a GROUP_MEMBERS reply.
type GroupMembers struct {
	Seq     uint64              // the log position the answer reflects
	Members []event.GroupMember // oldest first (BornOn, Member); empty: no such group
}

// AppendGroupMembers appends the body of g; more than MaxMembers members
// or a name over MaxNameLen is refused (CodeTooLarge) and nothing
// appended.
func AppendGroupMembers(dst []byte, g *GroupMembers) ([]byte, error) {
	var c check
	c.members("members", g.Members)
	if c.err != nil {
		return dst, c.err
	}
	dst = binary.LittleEndian.AppendUint64(dst, g.Seq)
	return appendMembers(dst, g.Members), nil
}

// ParseGroupMembers decodes a GROUP_MEMBERS reply.
func ParseGroupMembers(b []byte) (GroupMembers, error) {
	r := proto.NewReader(b, "GROUP_MEMBERS reply")
	g := GroupMembers{Seq: r.U64("seq")}
	g.Members = readMembers(r, memberFields0, nil)
	if err := r.Err(); err != nil {
		return GroupMembers{}, err
	}
	return g, nil
}

// GroupListItem is one group of a GROUP_LIST reply.
type GroupListItem struct {
	Group   string // not empty
	Members uint32 // ≤ MaxMembers
}

// GroupList is the body of a GROUP_LIST reply: the groups with members,
// sorted by name.
type GroupList struct {
	Groups []GroupListItem
}

// AppendGroupList appends the body of l. More than MaxGroupList groups or
// a name over MaxNameLen (CodeTooLarge), an empty or non-UTF-8 name or
// more than MaxMembers members (CodeField) are refused and nothing is
// appended.
func AppendGroupList(dst []byte, l *GroupList) ([]byte, error) {
	var c check
	if len(l.Groups) > MaxGroupList {
		c.fail("%d groups, limit %d", len(l.Groups), MaxGroupList)
	}
	for i := range l.Groups {
		c.name("group name", l.Groups[i].Group)
	}
	if c.err != nil {
		return dst, c.err
	}
	for i := range l.Groups {
		if err := checkListItem(&l.Groups[i]); err != nil {
			return dst, proto.Errorf(proto.CodeField, "GROUP_LIST reply: group %d: %s", i, err.Detail)
		}
	}
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, uint32(len(l.Groups)))
	for i := range l.Groups {
		dst = proto.AppendString16(dst, l.Groups[i].Group)
		dst = le.AppendUint32(dst, l.Groups[i].Members)
	}
	return dst, nil
}

func checkListItem(g *GroupListItem) *proto.Error {
	if err := checkGroupName(g.Group, true); err != nil {
		return err
	}
	if g.Members > MaxMembers {
		return proto.Errorf(proto.CodeField, "%d members, limit %d", g.Members, MaxMembers)
	}
	return nil
}

// ParseGroupList decodes a GROUP_LIST reply.
func ParseGroupList(b []byte) (GroupList, error) {
	r := proto.NewReader(b, "GROUP_LIST reply")
	var l GroupList
	if n := count(r, "group", MaxGroupList, listItemMin); n > 0 {
		l.Groups = make([]GroupListItem, n)
		for i := range l.Groups {
			g := &l.Groups[i]
			g.Group = r.String16(MaxNameLen, "group name")
			g.Members = r.U32("members")
			if err := checkListItem(g); err != nil {
				r.Fail(proto.CodeField, "group %d: %s", i, err.Detail)
			}
		}
	}
	if err := r.Err(); err != nil {
		return GroupList{}, err
	}
	return l, nil
}

// GroupWindow is the body of a GROUP_WINDOW reply: the link's send window
// and what is in flight in it.
type GroupWindow struct {
	Window        uint32 // sends admitted in flight
	WindowBytes   uint32 // payload bytes admitted in flight
	InFlight      uint32 // sends in flight now
	InFlightBytes uint32 // their payload bytes
	Refused       uint64 // sends refused with CodeTryAgain on this link so far
}

// AppendGroupWindow appends the body of w.
func AppendGroupWindow(dst []byte, w *GroupWindow) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, w.Window)
	dst = le.AppendUint32(dst, w.WindowBytes)
	dst = le.AppendUint32(dst, w.InFlight)
	dst = le.AppendUint32(dst, w.InFlightBytes)
	return le.AppendUint64(dst, w.Refused)
}

// ParseGroupWindow decodes a GROUP_WINDOW reply.
func ParseGroupWindow(b []byte) (GroupWindow, error) {
	r := proto.NewReader(b, "GROUP_WINDOW reply")
	w := GroupWindow{Window: r.U32("window"), WindowBytes: r.U32("window bytes"), InFlight: r.U32("in flight"), InFlightBytes: r.U32("in-flight bytes"), Refused: r.U64("refused")}
	return w, r.Err()
}

// GroupAttach is the body of a GROUP_ATTACH request: re-adopt a member
// session after a reconnect.
type GroupAttach struct {
	Member uint64 // the session's member id; not 0
	Token  uint64 // the token of its GROUP_JOIN reply
}

// AppendGroupAttach appends the body of a.
func AppendGroupAttach(dst []byte, a *GroupAttach) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, a.Member)
	return le.AppendUint64(dst, a.Token)
}

// ParseGroupAttach decodes a GROUP_ATTACH request.
func ParseGroupAttach(b []byte) (GroupAttach, error) {
	r := proto.NewReader(b, "GROUP_ATTACH")
	a := GroupAttach{Member: r.U64("member"), Token: r.U64("token")}
	if r.Err() == nil && a.Member == 0 {
		r.Fail(proto.CodeField, "member id 0")
	}
	return a, r.Err()
}

// GroupAttachReply is the body of a GROUP_ATTACH reply.
type GroupAttachReply struct {
	Member uint64 // the member id the link now holds
}

// AppendGroupAttachReply appends the body of a.
func AppendGroupAttachReply(dst []byte, a *GroupAttachReply) []byte {
	return binary.LittleEndian.AppendUint64(dst, a.Member)
}

// ParseGroupAttachReply decodes a GROUP_ATTACH reply.
func ParseGroupAttachReply(b []byte) (GroupAttachReply, error) {
	r := proto.NewReader(b, "GROUP_ATTACH reply")
	a := GroupAttachReply{Member: r.U64("member")}
	if r.Err() == nil && a.Member == 0 {
		r.Fail(proto.CodeField, "member id 0")
	}
	return a, r.Err()
}
