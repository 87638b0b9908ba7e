package client

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"slices"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/types/event"
)

// This file holds the bodies of the cluster event messages (SPEC.md,
// "Cluster events"): SUBSCRIBE and its reply, EVENT, and the event data
// of package types/event, which QUERY_MEMBERSHIP and QUERY_CONNECTIVITY also
// answer with. Every Append function writes exactly what the matching
// Parse function reads back; every Parse function checks each count and
// length against its limit and against the bytes present before it
// allocates, and fails with a *proto.Error (CodeField or CodeTooLarge).

// Limits on event data (SPEC.md, "Limits"). An agent never sends more; a
// decoder refuses more.
const (
	MaxNodes      = 4096    // nodes in one list: members, joined, left, subjects, peers
	MaxInterfaces = 256     // interfaces in one Connectivity
	MaxNameLen    = 255     // node, interface, group and member names, bytes
	MaxZoneLen    = 255     // IPv6 zone of an address, bytes
	MaxPayload    = 8 << 20 // group message payload, bytes
	MaxMembers    = 4096    // members of one group
)

// ClassMask selects event classes: bit 1<<c for class c.
type ClassMask uint32

// AllClasses selects the three classes of seed 002.
const AllClasses = ClassMask(1<<event.ClassComm | 1<<event.ClassMemb | 1<<event.ClassGroup)

// MaskOf returns the mask selecting cs. Invalid classes are ignored.
func MaskOf(cs ...event.Class) ClassMask {
	var m ClassMask
	for _, c := range cs {
		if c.Valid() {
			m |= 1 << c
		}
	}
	return m
}

// Has reports whether m selects c.
func (m ClassMask) Has(c event.Class) bool { return c.Valid() && m&(1<<c) != 0 }

// Classes returns the classes m selects, in class order.
func (m ClassMask) Classes() []event.Class {
	var cs []event.Class
	for c := event.ClassComm; c <= event.ClassGroup; c++ {
		if m.Has(c) {
			cs = append(cs, c)
		}
	}
	return cs
}

// Specification constants: SUBSCRIBE request flags.
const (
	// SubResume: After is a resume point. The agent first sends every
	// cluster-wide event above After it still holds, then live events.
	// Without it the subscription starts with the next event published
	// and After must be 0.
	SubResume uint32 = 1 << 0

	subFlags = SubResume // every defined request flag
)

// Subscribe is the body of a SUBSCRIBE request.
type Subscribe struct {
	Classes ClassMask // which classes to receive; not empty
	Flags   uint32    // SubResume or 0
	After   uint64    // with SubResume: the last Seq the client has delivered
}

// SubscribeSize is the size of a SUBSCRIBE request body.
const SubscribeSize = 16

// AppendSubscribe appends the body of s.
func AppendSubscribe(dst []byte, s *Subscribe) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, uint32(s.Classes))
	dst = le.AppendUint32(dst, s.Flags)
	return le.AppendUint64(dst, s.After)
}

// ParseSubscribe decodes a SUBSCRIBE request.
func ParseSubscribe(b []byte) (Subscribe, error) {
	r := proto.NewReader(b, "SUBSCRIBE")
	s := Subscribe{Classes: ClassMask(r.U32("class mask")), Flags: r.U32("flags"), After: r.U64("after")}
	if err := r.Err(); err != nil {
		return s, err
	}
	switch {
	case s.Classes == 0:
		r.Fail(proto.CodeField, "class mask selects no class")
	case s.Classes&^AllClasses != 0:
		r.Fail(proto.CodeField, "class mask %#x selects unknown classes %#x", uint32(s.Classes), uint32(s.Classes&^AllClasses))
	case s.Flags&^subFlags != 0:
		r.Fail(proto.CodeField, "unknown flags %#x", s.Flags&^subFlags)
	case s.Flags&SubResume == 0 && s.After != 0:
		r.Fail(proto.CodeField, "after %d without the RESUME flag", s.After)
	}
	return s, r.Err()
}

// Specification constants: SUBSCRIBE reply flags.
const (
	// ReplyGap: the request resumed after a Seq below Floor, so events
	// the client never received may be gone from the agent's history.
	ReplyGap uint32 = 1 << 0

	replyFlags = ReplyGap
)

// SubscribeReply is the body of a SUBSCRIBE reply.
type SubscribeReply struct {
	// Latest is the highest Seq the agent has published, 0 if none. A
	// subscription without SubResume receives the events after it.
	Latest uint64
	// Floor: the agent still holds every cluster-wide event above Floor
	// that it published; events at or below it may be gone. 0 until the
	// agent's history first overflows.
	Floor uint64
	Flags uint32 // ReplyGap or 0
}

// SubscribeReplySize is the size of a SUBSCRIBE reply body.
const SubscribeReplySize = 24

// Gap reports whether the reply has ReplyGap set.
func (s *SubscribeReply) Gap() bool { return s.Flags&ReplyGap != 0 }

// AppendSubscribeReply appends the body of s.
func AppendSubscribeReply(dst []byte, s *SubscribeReply) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, s.Latest)
	dst = le.AppendUint64(dst, s.Floor)
	dst = le.AppendUint32(dst, s.Flags)
	return le.AppendUint32(dst, 0)
}

// ParseSubscribeReply decodes a SUBSCRIBE reply.
func ParseSubscribeReply(b []byte) (SubscribeReply, error) {
	r := proto.NewReader(b, "SUBSCRIBE reply")
	s := SubscribeReply{Latest: r.U64("latest"), Floor: r.U64("floor"), Flags: r.U32("flags")}
	r.Zero(4, "reserved")
	if err := r.Err(); err != nil {
		return s, err
	}
	switch {
	case s.Flags&^replyFlags != 0:
		r.Fail(proto.CodeField, "unknown flags %#x", s.Flags&^replyFlags)
	case s.Floor > s.Latest:
		r.Fail(proto.CodeField, "floor %d above latest %d", s.Floor, s.Latest)
	}
	return s, r.Err()
}

// Sizes of the smallest encoding of each structure, used to check counts
// against the bytes present before allocating.
const (
	addrMin      = 4                                   // family, zone length, port; no address
	nodeMin      = 8 + 8 + addrMin + 2                 // id, born-on, addr, name length
	ifaceMin     = 4 + 2                               // flags, family, bits, reserved; name length
	peerMin      = 1 + nodeMin                         // flags, node
	eventHeader  = 8 + 4 + 1 + 3                       // seq, descriptor, data class, reserved
	membMin      = 8 + 3*4                             // instance, three counts
	connMin      = ifaceMin + 3*4                      // subject interface, three counts
	memberMin    = 8 + 8 + 8 + 4 + 2                   // node, member, born-on, pid, name length
	groupMin     = 2 + memberMin + 1 + 3 + 3*8 + 4 + 4 // name, from, reason, reserved, target, msg id, reply to, counts
	familyNone   = 0
	familyIPv4   = 4
	familyIPv6   = 6
	ifaceUp      = 1 << 0
	peerEligible = 1 << 0
	peerConnect  = 1 << 1
)

// check is the encoder's validation: the first limit a value exceeds.
type check struct{ err error }

func (c *check) fail(format string, args ...any) {
	if c.err == nil {
		c.err = proto.Errorf(proto.CodeTooLarge, format, args...)
	}
}

func (c *check) name(what, s string) {
	if len(s) > MaxNameLen {
		c.fail("%s is %d bytes, limit %d", what, len(s), MaxNameLen)
	}
}

func (c *check) nodes(what string, ns []event.Node) {
	if len(ns) > MaxNodes {
		c.fail("%d %s, limit %d", len(ns), what, MaxNodes)
	}
	for i := range ns {
		c.node(what, &ns[i])
	}
}

func (c *check) node(what string, n *event.Node) {
	c.name(what+" name", n.Name)
	if z := n.Addr.Addr().Zone(); len(z) > MaxZoneLen {
		c.fail("%s address zone is %d bytes, limit %d", what, len(z), MaxZoneLen)
	}
}

func (c *check) data(d event.Data) {
	switch d := d.(type) {
	case *event.Membership:
		c.nodes("members", d.Members)
		c.nodes("joined nodes", d.Joined)
		c.nodes("left nodes", d.Left)
	case *event.Connectivity:
		c.name("interface name", d.Interface.Name)
		c.nodes("subject nodes", d.Nodes)
		if len(d.Interfaces) > MaxInterfaces {
			c.fail("%d interfaces, limit %d", len(d.Interfaces), MaxInterfaces)
		}
		for i := range d.Interfaces {
			c.name("interface name", d.Interfaces[i].Name)
		}
		if len(d.Peers) > MaxNodes {
			c.fail("%d peers, limit %d", len(d.Peers), MaxNodes)
		}
		for i := range d.Peers {
			c.node("peer", &d.Peers[i].Node)
		}
	case *event.Group:
		c.name("group name", d.Name)
		c.name("member name", d.From.Name)
		c.members("group members", d.Members)
		c.payload(d.Payload)
	}
}

func (c *check) members(what string, ms []event.GroupMember) {
	if len(ms) > MaxMembers {
		c.fail("%d %s, limit %d", len(ms), what, MaxMembers)
	}
	for i := range ms {
		c.name("member name", ms[i].Name)
	}
}

func (c *check) payload(p []byte) {
	if len(p) > MaxPayload {
		c.fail("payload is %d bytes, limit %d", len(p), MaxPayload)
	}
}

// isNil reports whether d is nil or a nil pointer of a data type, which
// travel alike: as no data.
func isNil(d event.Data) bool {
	switch d := d.(type) {
	case *event.Membership:
		return d == nil
	case *event.Connectivity:
		return d == nil
	case *event.Group:
		return d == nil
	}
	return d == nil
}

func appendAddrPort(dst []byte, ap netip.AddrPort) []byte {
	a := ap.Addr()
	switch {
	case !a.IsValid():
		return append(dst, familyNone, 0, 0, 0)
	case a.Is4():
		dst = append(dst, familyIPv4, 0)
		dst = binary.LittleEndian.AppendUint16(dst, ap.Port())
		b := a.As4()
		return append(dst, b[:]...)
	}
	z := a.Zone()
	dst = append(dst, familyIPv6, byte(len(z)))
	dst = binary.LittleEndian.AppendUint16(dst, ap.Port())
	b := a.As16()
	dst = append(dst, b[:]...)
	return append(dst, z...)
}

func readAddrPort(r *proto.Reader, what string) netip.AddrPort {
	family := r.U8(what + " family")
	zlen := int(r.U8(what + " zone length"))
	port := r.U16(what + " port")
	switch family {
	case familyNone:
		if zlen != 0 || port != 0 {
			r.Fail(proto.CodeField, "%s: no address but zone length %d, port %d", what, zlen, port)
		}
		return netip.AddrPort{}
	case familyIPv4:
		if zlen != 0 {
			r.Fail(proto.CodeField, "%s: IPv4 address with a zone", what)
		}
		var b [4]byte
		copy(b[:], r.Bytes(4, what+" address"))
		return netip.AddrPortFrom(netip.AddrFrom4(b), port)
	case familyIPv6:
		var b [16]byte
		copy(b[:], r.Bytes(16, what+" address"))
		a := netip.AddrFrom16(b)
		if zlen > 0 {
			a = a.WithZone(string(r.Bytes(zlen, what+" zone")))
		}
		return netip.AddrPortFrom(a, port)
	}
	r.Fail(proto.CodeField, "%s: unknown address family %d", what, family)
	return netip.AddrPort{}
}

func appendNode(dst []byte, n *event.Node) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, n.ID)
	dst = le.AppendUint64(dst, n.BornOn)
	dst = appendAddrPort(dst, n.Addr)
	return proto.AppendString16(dst, n.Name)
}

func readNode(r *proto.Reader, what string) event.Node {
	var n event.Node
	n.ID = r.U64(what + " id")
	n.BornOn = r.U64(what + " born-on")
	n.Addr = readAddrPort(r, what+" addr")
	n.Name = r.String16(MaxNameLen, what+" name")
	return n
}

func appendNodes(dst []byte, ns []event.Node) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ns)))
	for i := range ns {
		dst = appendNode(dst, &ns[i])
	}
	return dst
}

// count reads a u32 count and checks it against limit and against the
// bytes left, each item taking at least min bytes. It returns 0 on
// failure, so the caller allocates nothing.
func count(r *proto.Reader, what string, limit, least int) int {
	field := "count" // named in an error only when short: no concatenation each list
	if r.Len() < 4 {
		field = what + " count"
	}
	n := r.U32(field)
	// Compared as uint64 before becoming an int, which may be 32 bits.
	if uint64(n) > uint64(limit) || uint64(n)*uint64(least) > uint64(r.Len()) {
		r.Fail(proto.CodeField, "%s count %d does not fit %d bytes left (limit %d)", what, n, r.Len(), limit)
		return 0
	}
	return int(n)
}

func readNodes(r *proto.Reader, what string) []event.Node {
	n := count(r, what, MaxNodes, nodeMin)
	if n == 0 {
		return nil
	}
	ns := make([]event.Node, n)
	for i := range ns {
		ns[i] = readNode(r, what)
	}
	return ns
}

func appendInterface(dst []byte, ifc *event.Interface) []byte {
	var flags byte
	if ifc.Up {
		flags |= ifaceUp
	}
	p := ifc.Addr
	switch {
	case !p.IsValid():
		dst = append(dst, flags, familyNone, 0, 0)
	case p.Addr().Is4():
		dst = append(dst, flags, familyIPv4, byte(p.Bits()), 0)
		b := p.Addr().As4()
		dst = append(dst, b[:]...)
	default:
		dst = append(dst, flags, familyIPv6, byte(p.Bits()), 0)
		b := p.Addr().As16()
		dst = append(dst, b[:]...)
	}
	return proto.AppendString16(dst, ifc.Name)
}

func readInterface(r *proto.Reader, what string) event.Interface {
	var ifc event.Interface
	flags := r.U8(what + " flags")
	family := r.U8(what + " family")
	bits := int(r.U8(what + " prefix length"))
	r.Zero(1, what+" reserved")
	if flags&^ifaceUp != 0 {
		r.Fail(proto.CodeField, "%s: unknown flags %#x", what, flags&^ifaceUp)
	}
	ifc.Up = flags&ifaceUp != 0
	switch family {
	case familyNone:
		if bits != 0 {
			r.Fail(proto.CodeField, "%s: no address but prefix length %d", what, bits)
		}
	case familyIPv4:
		var b [4]byte
		copy(b[:], r.Bytes(4, what+" address"))
		if bits > 32 {
			r.Fail(proto.CodeField, "%s: IPv4 prefix length %d", what, bits)
		}
		ifc.Addr = netip.PrefixFrom(netip.AddrFrom4(b), bits)
	case familyIPv6:
		var b [16]byte
		copy(b[:], r.Bytes(16, what+" address"))
		if bits > 128 {
			r.Fail(proto.CodeField, "%s: IPv6 prefix length %d", what, bits)
		}
		ifc.Addr = netip.PrefixFrom(netip.AddrFrom16(b), bits)
	default:
		r.Fail(proto.CodeField, "%s: unknown address family %d", what, family)
	}
	ifc.Name = r.String16(MaxNameLen, what+" name")
	return ifc
}

// appendMembership appends a Membership; m may be nil for an empty one.
func appendMembership(dst []byte, m *event.Membership) []byte {
	if m == nil {
		m = &event.Membership{}
	}
	dst = binary.LittleEndian.AppendUint64(dst, m.Instance)
	dst = appendNodes(dst, m.Members)
	dst = appendNodes(dst, m.Joined)
	return appendNodes(dst, m.Left)
}

func readMembership(r *proto.Reader) *event.Membership {
	m := &event.Membership{Instance: r.U64("instance")}
	m.Members = readNodes(r, "member")
	m.Joined = readNodes(r, "joined")
	m.Left = readNodes(r, "left")
	return m
}

func appendConnectivity(dst []byte, c *event.Connectivity) []byte {
	if c == nil {
		c = &event.Connectivity{}
	}
	le := binary.LittleEndian
	dst = appendInterface(dst, &c.Interface)
	dst = appendNodes(dst, c.Nodes)
	dst = le.AppendUint32(dst, uint32(len(c.Interfaces)))
	for i := range c.Interfaces {
		dst = appendInterface(dst, &c.Interfaces[i])
	}
	dst = le.AppendUint32(dst, uint32(len(c.Peers)))
	for i := range c.Peers {
		p := &c.Peers[i]
		var flags byte
		if p.Eligible {
			flags |= peerEligible
		}
		if p.Connected {
			flags |= peerConnect
		}
		dst = appendNode(append(dst, flags), &p.Node)
	}
	return dst
}

func readConnectivity(r *proto.Reader) *event.Connectivity {
	c := &event.Connectivity{Interface: readInterface(r, "interface")}
	c.Nodes = readNodes(r, "subject")
	if n := count(r, "interface", MaxInterfaces, ifaceMin); n > 0 {
		c.Interfaces = make([]event.Interface, n)
		for i := range c.Interfaces {
			c.Interfaces[i] = readInterface(r, "interface")
		}
	}
	if n := count(r, "peer", MaxNodes, peerMin); n > 0 {
		c.Peers = make([]event.Peer, n)
		for i := range c.Peers {
			p := &c.Peers[i]
			flags := r.U8("peer flags")
			if flags&^(peerEligible|peerConnect) != 0 {
				r.Fail(proto.CodeField, "peer %d: unknown flags %#x", i, flags&^(peerEligible|peerConnect))
			}
			p.Eligible, p.Connected = flags&peerEligible != 0, flags&peerConnect != 0
			p.Node = readNode(r, "peer")
		}
	}
	return c
}

func appendMember(dst []byte, m *event.GroupMember) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, m.Node)
	dst = le.AppendUint64(dst, m.Member)
	dst = le.AppendUint64(dst, m.BornOn)
	dst = le.AppendUint32(dst, m.Pid)
	return proto.AppendString16(dst, m.Name)
}

// memberFields names the fields of a GroupMember in errors, made once
// per place a member is read, so that reading one concatenates nothing.
type memberFields struct {
	what, node, member, bornOn, pid, name, nameLen string
}

func fieldsOf(what string) *memberFields {
	return &memberFields{what, what + " node", what + " member id", what + " born-on", what + " pid", what + " name", what + " name length"}
}

var (
	fromFields        = fieldsOf("from")
	groupMemberFields = fieldsOf("group member")
	memberFields0     = fieldsOf("member") // GROUP_MEMBERS reply
)

func readMember(r *proto.Reader, f *memberFields, in *names) event.GroupMember {
	return event.GroupMember{
		Node:   r.U64(f.node),
		Member: r.U64(f.member),
		BornOn: r.U64(f.bornOn),
		Pid:    r.U32(f.pid),
		Name:   readName(r, in, f.name, f.nameLen),
	}
}

func appendMembers(dst []byte, ms []event.GroupMember) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(ms)))
	for i := range ms {
		dst = appendMember(dst, &ms[i])
	}
	return dst
}

func readMembers(r *proto.Reader, f *memberFields, in *names) []event.GroupMember {
	n := count(r, f.what, MaxMembers, memberMin)
	if n == 0 {
		return nil
	}
	ms := make([]event.GroupMember, n)
	for i := range ms {
		ms[i] = readMember(r, f, in)
	}
	return ms
}

// readName reads a String16 of at most MaxNameLen bytes, as
// proto.Reader.String16(MaxNameLen, field) does (same errors), interned
// in in when not nil.
func readName(r *proto.Reader, in *names, field, lenField string) string {
	if in == nil {
		return r.String16(MaxNameLen, field)
	}
	n := int(r.U16(lenField))
	if n > MaxNameLen {
		r.Fail(proto.CodeField, "%s is %d bytes, limit %d", field, n, MaxNameLen)
		return ""
	}
	return in.get(r.Bytes(n, field))
}

// maxNames bounds a names table: past it the table starts anew, so a
// link that sees ever new names holds at most this many.
const maxNames = 256

// names interns the group and member names of one link's events: the
// events of a busy group then share its name and its senders' names
// instead of allocating them each time. A nil *names interns nothing.
type names struct {
	m map[string]string
}

func (n *names) get(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if s, ok := n.m[string(b)]; ok { // no allocation for the lookup
		return s
	}
	if n.m == nil || len(n.m) >= maxNames {
		n.m = make(map[string]string)
	}
	s := string(b)
	n.m[s] = s
	return s
}

func appendPayload(dst, p []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(p)))
	return append(dst, p...)
}

// readPayload reads a u32 length (≤ MaxPayload) and the bytes; the result
// aliases the input.
func readPayload(r *proto.Reader) []byte {
	n := r.U32("payload length")
	if uint64(n) > MaxPayload {
		r.Fail(proto.CodeField, "payload is %d bytes, limit %d", n, MaxPayload)
		return nil
	}
	return r.Bytes(int(n), "payload")
}

// appendGroup appends Group data, version 2 (v1 defined another layout
// that no agent ever sent). To is not on the wire.
func appendGroup(dst []byte, g *event.Group) []byte {
	le := binary.LittleEndian
	dst = proto.AppendString16(dst, g.Name)
	dst = appendMember(dst, &g.From)
	dst = append(dst, byte(g.Reason), 0, 0, 0)
	dst = le.AppendUint64(dst, g.Target)
	dst = le.AppendUint64(dst, g.MsgID)
	dst = le.AppendUint64(dst, g.ReplyTo)
	dst = appendMembers(dst, g.Members)
	return appendPayload(dst, g.Payload)
}

// groupSize is the length of appendGroup's encoding of g.
func groupSize(g *event.Group) int {
	n := 2 + len(g.Name) + memberSize(&g.From) + 4 + 24 + 4 + 4 + len(g.Payload)
	for i := range g.Members {
		n += memberSize(&g.Members[i])
	}
	return n
}

// memberSize is the length of appendMember's encoding of m.
func memberSize(m *event.GroupMember) int { return 28 + 2 + len(m.Name) }

func readGroup(r *proto.Reader, in *names) *event.Group {
	g := &event.Group{Name: readName(r, in, "group name", "group name length")}
	g.From = readMember(r, fromFields, in)
	g.Reason = event.LeaveReason(r.U8("leave reason"))
	r.Zero(3, "group reserved")
	if !g.Reason.Valid() {
		r.Fail(proto.CodeField, "unknown leave reason %d", g.Reason)
	}
	g.Target = r.U64("target")
	g.MsgID = r.U64("msg id")
	g.ReplyTo = r.U64("reply to")
	g.Members = readMembers(r, groupMemberFields, in)
	// Copied: the frame's body is only valid while its handler runs.
	if p := readPayload(r); len(p) > 0 {
		g.Payload = bytes.Clone(p)
	}
	return g
}

// checkReason refuses a leave reason on an event other than LEAVE, and
// one that is not defined.
func checkReason(desc event.Descriptor, g *event.Group) error {
	switch {
	case !g.Reason.Valid():
		return proto.Errorf(proto.CodeField, "EVENT: unknown leave reason %d", g.Reason)
	case g.Reason != event.LeaveNone && desc != event.GSLeave:
		return proto.Errorf(proto.CodeField, "EVENT: leave reason %q on %v", g.Reason, desc)
	}
	return nil
}

// AppendEvent appends the body of an EVENT. It refuses (CodeTooLarge,
// nothing appended) data beyond the limits, and (CodeField) an invalid
// descriptor or data of another class than the descriptor's.
func AppendEvent(dst []byte, ev *event.Event) ([]byte, error) {
	if !ev.Desc.Valid() {
		return dst, proto.Errorf(proto.CodeField, "EVENT: unknown event descriptor %#08x", uint32(ev.Desc))
	}
	var class byte
	if !isNil(ev.Data) {
		if ev.Data.Class() != ev.Desc.Class() {
			return dst, proto.Errorf(proto.CodeField, "EVENT: %v data for %v", ev.Data.Class(), ev.Desc)
		}
		class = byte(ev.Data.Class())
		if g, ok := ev.Data.(*event.Group); ok {
			if err := checkReason(ev.Desc, g); err != nil {
				return dst, err
			}
		}
		var c check
		c.data(ev.Data)
		if c.err != nil {
			return dst, c.err
		}
	}
	if g, ok := ev.Data.(*event.Group); ok && g != nil {
		// The agent encodes a group event for every delivery: one
		// allocation of the exact size, not a growth per field.
		dst = slices.Grow(dst, 16+groupSize(g))
	}
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, ev.Seq)
	dst = le.AppendUint32(dst, uint32(ev.Desc))
	dst = append(dst, class, 0, 0, 0)
	switch d := ev.Data.(type) {
	case nil:
	case *event.Membership:
		if d == nil {
			break
		}
		dst = appendMembership(dst, d)
	case *event.Connectivity:
		if d != nil {
			dst = appendConnectivity(dst, d)
		}
	case *event.Group:
		if d != nil {
			dst = appendGroup(dst, d)
		}
	}
	return dst, nil
}

// ParseEvent decodes an EVENT body of a link of version 1 or 2, where
// byte 13 is reserved. The result does not alias b. ParseEventAt decodes
// the body at any version.
func ParseEvent(b []byte) (event.Event, error) {
	ev, _, err := parseEvent(b, 1, nil)
	return ev, err
}

// parseEvent decodes an EVENT body on a link of version v: from version
// 3 byte 13 is Flags. Names are interned in in, if not nil.
func parseEvent(b []byte, v uint8, in *names) (event.Event, EventFlags, error) {
	r := proto.NewReader(b, "EVENT")
	ev := event.Event{Seq: r.U64("seq"), Desc: event.Descriptor(r.U32("descriptor"))}
	class := event.Class(r.U8("data class"))
	var flags EventFlags
	if v >= 3 {
		flags = EventFlags(r.U8("flags"))
		if flags&^eventFlags != 0 {
			r.Fail(proto.CodeField, "unknown event flags %#x", uint8(flags&^eventFlags))
		}
		r.Zero(2, "reserved")
	} else {
		r.Zero(3, "reserved")
	}
	if !ev.Desc.Valid() {
		r.Fail(proto.CodeField, "unknown event descriptor %#08x", uint32(ev.Desc))
	}
	if class != 0 && class != ev.Desc.Class() {
		r.Fail(proto.CodeField, "data class %d for %v, an event of class %d", class, ev.Desc, ev.Desc.Class())
		class = 0 // read no data: the error stands
	}
	// After a failure the reader returns zero values, so the data below
	// reads as empty lists and allocates nothing.
	switch class {
	case event.ClassMemb:
		ev.Data = readMembership(r)
	case event.ClassComm:
		ev.Data = readConnectivity(r)
	case event.ClassGroup:
		g := readGroup(r, in)
		ev.Data = g
		if err := r.Err(); err == nil {
			if err := checkReason(ev.Desc, g); err != nil {
				return event.Event{}, 0, err
			}
		}
	}
	if err := r.Err(); err != nil {
		return event.Event{}, 0, err
	}
	return ev, flags, nil
}

// AppendMembership appends the body of a QUERY_MEMBERSHIP reply: the
// current view, with the nodes that joined and left in the change that
// made it. A nil m is an empty view (no view yet). Data beyond the limits
// is refused with CodeTooLarge and nothing is appended.
func AppendMembership(dst []byte, m *event.Membership) ([]byte, error) {
	if m != nil {
		var c check
		c.data(m)
		if c.err != nil {
			return dst, c.err
		}
	}
	return appendMembership(dst, m), nil
}

// ParseMembership decodes a QUERY_MEMBERSHIP reply.
func ParseMembership(b []byte) (*event.Membership, error) {
	r := proto.NewReader(b, "QUERY_MEMBERSHIP reply")
	m := readMembership(r)
	if err := r.Err(); err != nil {
		return nil, err
	}
	return m, nil
}

// AppendConnectivity appends the body of a QUERY_CONNECTIVITY reply: the
// known interfaces with their health and the known nodes with their
// connection state; the subject fields (Interface, Nodes) are empty.
func AppendConnectivity(dst []byte, c *event.Connectivity) ([]byte, error) {
	if c != nil {
		var ck check
		ck.data(c)
		if ck.err != nil {
			return dst, ck.err
		}
	}
	return appendConnectivity(dst, c), nil
}

// ParseConnectivity decodes a QUERY_CONNECTIVITY reply.
func ParseConnectivity(b []byte) (*event.Connectivity, error) {
	r := proto.NewReader(b, "QUERY_CONNECTIVITY reply")
	c := readConnectivity(r)
	if err := r.Err(); err != nil {
		return nil, err
	}
	return c, nil
}
