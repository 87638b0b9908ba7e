package client_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/types/event"
)

// Sample bodies of the group vectors; the members are those of the group
// events in events_test.go.
var (
	sampleJoinReq   = client.GroupJoin{Group: "locks", Name: "worker-a"}
	sampleJoinReply = client.GroupJoinReply{Seq: 1207 << 20, Member: 1207 << 20, Token: 0x9e3779b97f4a7c15, Window: 64, WindowBytes: 4 << 20}
	sampleLeaveReq  = client.GroupLeave{Group: "locks"}
	sampleSeq       = client.GroupSeq{Seq: 1211<<20 | 2}
	sampleMulticast = client.GroupSend{Kind: client.KindMulticast, MsgID: 42, Group: "locks", Payload: []byte("hello")}
	sampleUnicast   = client.GroupSend{Kind: client.KindUnicast, Target: 1208<<20 | 1, MsgID: 43, Group: "locks", Payload: []byte("hi")}
	sampleReplySend = client.GroupSend{Kind: client.KindReply, Target: 1207 << 20, ReplyTo: 1210 << 20, MsgID: 7, Payload: []byte("ok")}
	sampleBroadcast = client.GroupSend{Kind: client.KindBroadcast, MsgID: 1} // no label, no payload
	sampleSendReply = client.GroupSendReply{Seq: 1210 << 20, Member: 1207 << 20, Delivered: 2}
	sampleNameReq   = client.GroupName{Group: "locks"}
	sampleMembers   = client.GroupMembers{Seq: 1211<<20 | 2, Members: []event.GroupMember{member1, member2}}
	sampleList      = client.GroupList{Groups: []client.GroupListItem{{Group: "jobs", Members: 3}, {Group: "locks", Members: 2}}}
	sampleWindow    = client.GroupWindow{Window: 64, WindowBytes: 4 << 20, InFlight: 3, InFlightBytes: 15, Refused: 9}
	sampleAttach    = client.GroupAttach{Member: 1207 << 20, Token: 0x9e3779b97f4a7c15}
	sampleAttached  = client.GroupAttachReply{Member: 1207 << 20}
)

// must returns b, panicking on err: the samples are valid.
func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// receiveGroup decodes the body of a group frame the way both ends of a
// link do.
func receiveGroup(f proto.Frame, isReply bool) (proto.Frame, any, error) {
	b := f.Body
	var v any
	var err error
	switch {
	case f.Opcode == client.OpGroupJoin && !isReply:
		v, err = client.ParseGroupJoin(b)
	case f.Opcode == client.OpGroupJoin:
		v, err = client.ParseGroupJoinReply(b)
	case f.Opcode == client.OpGroupLeave && !isReply:
		v, err = client.ParseGroupLeave(b)
	case f.Opcode == client.OpGroupLeave:
		v, err = client.ParseGroupSeq(b)
	case f.Opcode == client.OpGroupSend && !isReply:
		v, err = client.ParseGroupSend(b)
	case f.Opcode == client.OpGroupSend:
		v, err = client.ParseGroupSendReply(b)
	case f.Opcode == client.OpGroupMembers && !isReply:
		v, err = client.ParseGroupName(b)
	case f.Opcode == client.OpGroupMembers:
		v, err = client.ParseGroupMembers(b)
	case f.Opcode == client.OpGroupList && isReply:
		v, err = client.ParseGroupList(b)
	case f.Opcode == client.OpGroupWindow && isReply:
		v, err = client.ParseGroupWindow(b)
	case f.Opcode == client.OpGroupAttach && !isReply:
		v, err = client.ParseGroupAttach(b)
	case f.Opcode == client.OpGroupAttach:
		v, err = client.ParseGroupAttachReply(b)
	default: // GROUP_LIST and GROUP_WINDOW requests are empty
		err = proto.NewReader(b, client.Ops().Name(f.Opcode)+" request").Err()
	}
	if err != nil {
		return f, nil, err
	}
	return f, v, nil
}

// Annotators: they restate the layouts of SPEC.md, "Group messaging".

func walk(fn func(w *golden.Walker)) func([]byte) golden.Fields {
	return func(b []byte) golden.Fields {
		w := golden.NewWalker(b)
		fn(w)
		return w.Fields
	}
}

var (
	joinFields = walk(func(w *golden.Walker) {
		w.String16("group name")
		w.String16("member name")
	})
	joinReplyFields = walk(func(w *golden.Walker) {
		w.U64("seq of the JOIN event")
		w.U64("member id")
		w.U64("token")
		w.U32("window: sends in flight")
		w.U32("window bytes")
	})
	nameFields = walk(func(w *golden.Walker) { w.String16("group name") })
	seqFields  = walk(func(w *golden.Walker) { w.U64("seq of the LEAVE event") })
	sendFields = walk(func(w *golden.Walker) {
		w.U8("kind (3 BROADCAST, 4 MULTICAST, 5 UNICAST, 6 REPLY)")
		w.Fixed(3, "reserved, zero")
		w.U64("target member")
		w.U64("reply to seq")
		w.U64("msg id")
		w.String16("group name")
		payloadFields(w)
	})
	sendReplyFields = walk(func(w *golden.Walker) {
		w.U64("seq of the message event")
		w.U64("sender's member id")
		w.U32("delivered: members addressed")
		w.Fixed(4, "reserved, zero")
	})
	membersFields = walk(func(w *golden.Walker) {
		w.U64("seq the answer reflects")
		n := w.U32("member count")
		for i := uint64(0); i < n && !w.Done(); i++ {
			memberFields(w, fmt.Sprintf("member[%d]", i))
		}
	})
	listFields = walk(func(w *golden.Walker) {
		n := w.U32("group count")
		for i := uint64(0); i < n && !w.Done(); i++ {
			w.String16(fmt.Sprintf("group[%d] name", i))
			w.U32(fmt.Sprintf("group[%d] members", i))
		}
	})
	windowFields = walk(func(w *golden.Walker) {
		w.U32("window: sends")
		w.U32("window bytes")
		w.U32("in flight: sends")
		w.U32("in-flight bytes")
		w.U64("refused with TRY_AGAIN so far")
	})
	attachFields = walk(func(w *golden.Walker) {
		w.U64("member id")
		w.U64("token")
	})
	attachReplyFields = walk(func(w *golden.Walker) { w.U64("member id") })
)

func groupVectors() []wiretest.Vector {
	req := func(op uint16, body []byte) proto.Frame { return v2(request(op, body)) }
	rep := func(op uint16, body []byte) proto.Frame { return v2(reply(op, body)) }
	fail := func(op uint16, code proto.Code, text string) (proto.Frame, proto.Status) {
		st := proto.Status{Code: code, Text: text}
		f := rep(op, proto.AppendStatus(nil, &st))
		f.Flags |= proto.FlagAbort
		return f, st
	}
	ok := func(name string, about []string, f proto.Frame, fields func([]byte) golden.Fields, msg any) wiretest.Vector {
		return frameVector(name, about, f, fields, expect(f, msg), 0, "")
	}
	parse := func(fn func(proto.Frame, bool) (proto.Frame, any, error), op uint16, isReply bool) func([]byte) error {
		return func(b []byte) error {
			_, _, err := fn(proto.Frame{Header: proto.Header{Opcode: op}, Body: b}, isReply)
			return err
		}
	}
	pReq := func(op uint16) func([]byte) error { return parse(receiveGroup, op, false) }
	pRep := func(op uint16) func([]byte) error { return parse(receiveGroup, op, true) }

	tryAgain, tryAgainSt := fail(client.OpGroupSend, proto.CodeTryAgain, "window full: 64 sends (4194304 bytes) in flight, limit 64 sends or 4194304 bytes")
	noMember, noMemberSt := fail(client.OpGroupLeave, proto.CodeNoMember, `not a member of group "locks"`)
	v1Join := request(client.OpGroupJoin, must(client.AppendGroupJoin(nil, &sampleJoinReq)))
	send := must(client.AppendGroupSend(nil, &sampleMulticast))
	members := must(client.AppendGroupMembers(nil, &sampleMembers))
	list := must(client.AppendGroupList(nil, &sampleList))
	le := binary.LittleEndian
	emptyName := proto.AppendString16(le.AppendUint32(nil, 2), "jobs")
	emptyName = le.AppendUint32(proto.AppendString16(le.AppendUint32(emptyName, 3), ""), 0)

	return []wiretest.Vector{
		ok("group_join", []string{
			"GROUP_JOIN (0x0201, version 2): join group \"locks\" as member name \"worker-a\"",
			"(the name is used when this request opens the link's member session).",
		}, req(client.OpGroupJoin, must(client.AppendGroupJoin(nil, &sampleJoinReq))), joinFields, sampleJoinReq),
		ok("group_join_reply", []string{
			"GROUP_JOIN reply: the JOIN event is seq 1207<<20; the link's member id is",
			"1207<<20 (its session opened in the same entry), its token for GROUP_ATTACH,",
			"and the send window: 64 sends or 4 MiB in flight.",
		}, rep(client.OpGroupJoin, client.AppendGroupJoinReply(nil, &sampleJoinReply)), joinReplyFields, sampleJoinReply),
		ok("group_leave", []string{
			"GROUP_LEAVE (0x0202): leave group \"locks\".",
		}, req(client.OpGroupLeave, must(client.AppendGroupLeave(nil, &sampleLeaveReq))), nameFields, sampleLeaveReq),
		ok("group_leave_reply", []string{
			"GROUP_LEAVE reply: the LEAVE event is seq 1211<<20|2.",
		}, rep(client.OpGroupLeave, client.AppendGroupSeq(nil, &sampleSeq)), seqFields, sampleSeq),
		frameVector("group_leave_abort", []string{
			"GROUP_LEAVE refused: CREATE|DELETE|REPLY|ABORT, Status code 43 (no such",
			"member): the link is not a member of \"locks\". The link stays up.",
		}, noMember, wiretest.StatusFields, expect(noMember, noMemberSt), 0, ""),
		ok("group_send_multicast", []string{
			"GROUP_SEND (0x0203) kind 4 MULTICAST to the members of \"locks\": msg id 42,",
			"payload \"hello\"; target and reply-to are 0.",
		}, req(client.OpGroupSend, send), sendFields, sampleMulticast),
		ok("group_send_unicast", []string{
			"GROUP_SEND kind 5 UNICAST to member 1208<<20|1 of \"locks\", msg id 43.",
		}, req(client.OpGroupSend, must(client.AppendGroupSend(nil, &sampleUnicast))), sendFields, sampleUnicast),
		ok("group_send_reply", []string{
			"GROUP_SEND kind 6 REPLY to member 1207<<20, answering the message of seq",
			"1210<<20; no group.",
		}, req(client.OpGroupSend, must(client.AppendGroupSend(nil, &sampleReplySend))), sendFields, sampleReplySend),
		ok("group_send_broadcast", []string{
			"GROUP_SEND kind 3 BROADCAST to every group-class subscriber: no label, no",
			"payload.",
		}, req(client.OpGroupSend, must(client.AppendGroupSend(nil, &sampleBroadcast))), sendFields, sampleBroadcast),
		ok("group_send_done", []string{
			"GROUP_SEND reply: committed as seq 1210<<20 and addressed to 2 members; the",
			"sender is member 1207<<20.",
		}, rep(client.OpGroupSend, client.AppendGroupSendReply(nil, &sampleSendReply)), sendReplyFields, sampleSendReply),
		frameVector("group_send_try_again", []string{
			"GROUP_SEND refused: ABORT with Status code 42 (window full, try again): the",
			"link already has its window of sends in flight. The agent does not queue the",
			"send; the client waits for a reply and sends again. The link stays up.",
		}, tryAgain, wiretest.StatusFields, expect(tryAgain, tryAgainSt), 0, ""),
		ok("group_members", []string{
			"GROUP_MEMBERS (0x0204): the members of \"locks\".",
		}, req(client.OpGroupMembers, must(client.AppendGroupName(nil, &sampleNameReq))), nameFields, sampleNameReq),
		ok("group_members_reply", []string{
			"GROUP_MEMBERS reply at seq 1211<<20|2: worker-a and the member of node",
			"0x0102030405060708, oldest first.",
		}, rep(client.OpGroupMembers, members), membersFields, sampleMembers),
		ok("group_list", []string{
			"GROUP_LIST (0x0205) request: empty body.",
		}, req(client.OpGroupList, nil), nil, nil),
		ok("group_list_reply", []string{
			"GROUP_LIST reply: the groups with members, by name: \"jobs\" (3), \"locks\" (2).",
		}, rep(client.OpGroupList, list), listFields, sampleList),
		ok("group_window", []string{
			"GROUP_WINDOW (0x0206) request: empty body.",
		}, req(client.OpGroupWindow, nil), nil, nil),
		ok("group_window_reply", []string{
			"GROUP_WINDOW reply: window 64 sends or 4 MiB; 3 sends of 15 bytes in",
			"flight; 9 sends refused with TRY_AGAIN on this link so far.",
		}, rep(client.OpGroupWindow, client.AppendGroupWindow(nil, &sampleWindow)), windowFields, sampleWindow),
		ok("group_attach", []string{
			"GROUP_ATTACH (0x0207): re-adopt member 1207<<20's session with its token,",
			"on a new link, before SUBSCRIBE with RESUME.",
		}, req(client.OpGroupAttach, client.AppendGroupAttach(nil, &sampleAttach)), attachFields, sampleAttach),
		ok("group_attach_reply", []string{
			"GROUP_ATTACH reply: the link now holds member 1207<<20.",
		}, rep(client.OpGroupAttach, client.AppendGroupAttachReply(nil, &sampleAttached)), attachReplyFields, sampleAttached),
		frameVector("err_group_v1", []string{
			"GROUP_JOIN sent as version 1: version 1 has no group opcodes (Since 2).",
		}, v1Join, joinFields, receiveErr, proto.CodeOpcode, "version 1 has no opcode 0x0201"),
		frameVector("err_group_list_body", []string{
			"A GROUP_LIST request with a 1-byte body; it is empty.",
		}, req(client.OpGroupList, []byte{0}), nil, receiveErr, proto.CodeField, "GROUP_LIST request: 1 unexpected bytes"),

		bodyVector("err_group_join_empty", "GROUP_JOIN with an empty group name.",
			[]byte{0, 0, 0, 0}, joinFields, pReq(client.OpGroupJoin), "GROUP_JOIN: empty group name"),
		bodyVector("err_group_join_utf8", "GROUP_JOIN whose group name is not UTF-8.",
			[]byte{2, 0, 0xff, 'g', 0, 0}, joinFields, pReq(client.OpGroupJoin), "is not UTF-8"),
		bodyVector("err_group_join_name_long", "GROUP_JOIN whose member name is 256 bytes; the limit is 255.",
			append(proto.AppendString16(nil, "locks"), proto.AppendString16(nil, strings.Repeat("m", 256))...), joinFields, pReq(client.OpGroupJoin), "member name is 256 bytes, limit 255"),
		bodyVector("err_group_join_reply_member", "GROUP_JOIN reply with member id 0, which is never assigned.",
			client.AppendGroupJoinReply(nil, &client.GroupJoinReply{Seq: 5}), joinReplyFields, pRep(client.OpGroupJoin), "member id 0"),
		bodyVector("err_group_send_kind", "GROUP_SEND with kind 2: the JOIN event number, not a message kind.",
			with(send, func(b []byte) []byte { b[0] = 2; return b }), sendFields, pReq(client.OpGroupSend), "unknown kind 2"),
		bodyVector("err_group_send_reserved", "GROUP_SEND with a non-zero reserved byte.",
			with(send, func(b []byte) []byte { b[2] = 1; return b }), sendFields, pReq(client.OpGroupSend), "reserved reserved is not zero"),
		bodyVector("err_group_send_multicast_empty", "GROUP_SEND MULTICAST with an empty group name.",
			with(must(client.AppendGroupSend(nil, &sampleBroadcast)), func(b []byte) []byte { b[0] = client.KindMulticast; return b }), sendFields, pReq(client.OpGroupSend), "MULTICAST: empty group name"),
		bodyVector("err_group_send_no_target", "GROUP_SEND UNICAST with target 0.",
			with(send, func(b []byte) []byte { b[0] = client.KindUnicast; return b }), sendFields, pReq(client.OpGroupSend), "UNICAST without a target"),
		bodyVector("err_group_send_target", "GROUP_SEND MULTICAST with a target: only UNICAST and REPLY address one member.",
			with(send, func(b []byte) []byte { b[4] = 9; return b }), sendFields, pReq(client.OpGroupSend), "target 9 on a MULTICAST"),
		bodyVector("err_group_send_reply_to", "GROUP_SEND REPLY with reply-to 0: a reply names the seq it answers.",
			with(must(client.AppendGroupSend(nil, &sampleReplySend)), func(b []byte) []byte { clear(b[12:20]); return b }), sendFields, pReq(client.OpGroupSend), "REPLY without the seq it answers"),
		bodyVector("err_group_send_payload", "GROUP_SEND announcing a payload of 8 MiB + 1 bytes, over the limit.",
			with(send, func(b []byte) []byte { return put32(b, len(b)-9, client.MaxPayload+1) }), sendFields, pReq(client.OpGroupSend), "payload is 8388609 bytes, limit 8388608"),
		bodyVector("err_group_send_truncated", "GROUP_SEND cut off inside its payload.",
			send[:len(send)-1], sendFields, pReq(client.OpGroupSend), "truncated at payload"),
		bodyVector("err_group_send_reply_reserved", "GROUP_SEND reply with a non-zero reserved byte.",
			with(client.AppendGroupSendReply(nil, &sampleSendReply), func(b []byte) []byte { b[23] = 1; return b }), sendReplyFields, pRep(client.OpGroupSend), "reserved reserved is not zero"),
		bodyVector("err_group_members_count", "GROUP_MEMBERS reply announcing 0xffffffff members in a short body: refused before allocating.",
			with(members[:20], func(b []byte) []byte { return put32(b, 8, 0xffffffff) }), membersFields, pRep(client.OpGroupMembers), "member count 4294967295 does not fit"),
		bodyVector("err_group_members_over_limit", "GROUP_MEMBERS reply of 4097 members (zero bytes): more than MaxMembers = 4096, though the body holds them.",
			put32(make([]byte, 8+4+(client.MaxMembers+1)*30), 8, client.MaxMembers+1), membersFields, pRep(client.OpGroupMembers), "member count 4097"),
		bodyVector("err_group_list_empty_name", "GROUP_LIST reply whose second group has an empty name.",
			emptyName, listFields, pRep(client.OpGroupList), "group 1: empty group name"),

		bodyVector("err_group_list_members", "GROUP_LIST reply whose first group claims 4097 members, more than a group holds.",
			with(list, func(b []byte) []byte { return put32(b, 4+2+4, client.MaxMembers+1) }), listFields, pRep(client.OpGroupList), "group 0: 4097 members, limit 4096"),
		bodyVector("err_group_attach_member", "GROUP_ATTACH with member id 0.",
			client.AppendGroupAttach(nil, &client.GroupAttach{Token: 1}), attachFields, pReq(client.OpGroupAttach), "GROUP_ATTACH: member id 0"),
		bodyVector("err_group_window_short", "GROUP_WINDOW reply cut off inside refused.",
			client.AppendGroupWindow(nil, &sampleWindow)[:20], windowFields, pRep(client.OpGroupWindow), "truncated at refused"),
	}
}

// TestGroupRoundTrip: every body decodes to the value encoded, at the
// limits too, and re-encodes to the same bytes.
func TestGroupRoundTrip(t *testing.T) {
	long := strings.Repeat("g", client.MaxNameLen)
	many := make([]event.GroupMember, client.MaxMembers)
	for i := range many {
		many[i] = event.GroupMember{Node: uint64(i), Member: uint64(i+1) << 20, Pid: ^uint32(0), Name: long, BornOn: ^uint64(0)}
	}
	items := make([]client.GroupListItem, client.MaxGroupList)
	for i := range items {
		items[i] = client.GroupListItem{Group: fmt.Sprintf("g%05d", i), Members: client.MaxMembers}
	}
	for _, c := range groupCodecs {
		for _, v := range c.samples {
			b, err := c.append(v)
			if err != nil {
				t.Fatalf("%s: %+v: %v", c.name, v, err)
			}
			got, err := c.parse(b)
			if err != nil || !wiretest.Equal(got, v) {
				t.Fatalf("%s: round trip of %+v: %+v, %v", c.name, v, got, err)
			}
			if b2, _ := c.append(got); !bytes.Equal(b, b2) {
				t.Fatalf("%s: re-encoding differs", c.name)
			}
		}
	}
	for _, v := range []any{
		client.GroupJoin{Group: long, Name: long},
		client.GroupSend{Kind: client.KindUnicast, Target: ^uint64(0), MsgID: ^uint64(0), Group: "é" + long[2:], Payload: make([]byte, client.MaxPayload)},
		client.GroupMembers{Seq: ^uint64(0), Members: many},
		client.GroupList{Groups: items},
		client.GroupWindow{Window: ^uint32(0), WindowBytes: ^uint32(0), InFlight: 1, InFlightBytes: 2, Refused: ^uint64(0)},
	} {
		c := codecOf(v)
		b, err := c.append(v)
		if err != nil {
			t.Fatalf("%s at its limits: %v", c.name, err)
		}
		if got, err := c.parse(b); err != nil || !wiretest.Equal(got, v) {
			t.Fatalf("%s at its limits: round trip fails: %v", c.name, err)
		}
	}
	if len(must(client.AppendGroupList(nil, &client.GroupList{Groups: items}))) >= proto.DefaultMaxPayload {
		t.Fatal("the largest GROUP_LIST reply does not fit a frame")
	}
	if n := len(client.AppendGroupJoinReply(nil, &sampleJoinReply)); n != client.GroupJoinReplySize {
		t.Fatalf("GroupJoinReplySize %d, encoded %d", client.GroupJoinReplySize, n)
	}
	for _, tc := range []struct {
		size int
		b    []byte
	}{
		{client.GroupSeqSize, client.AppendGroupSeq(nil, &sampleSeq)},
		{client.GroupSendReplySize, client.AppendGroupSendReply(nil, &sampleSendReply)},
		{client.GroupWindowSize, client.AppendGroupWindow(nil, &sampleWindow)},
		{client.GroupAttachSize, client.AppendGroupAttach(nil, &sampleAttach)},
		{client.GroupAttachReplySize, client.AppendGroupAttachReply(nil, &sampleAttached)},
	} {
		if len(tc.b) != tc.size {
			t.Errorf("size constant %d, encoded %d bytes", tc.size, len(tc.b))
		}
	}
}

func TestGroupSendDesc(t *testing.T) {
	for kind, want := range map[uint8]event.Descriptor{
		client.KindBroadcast: event.GSBroadcast, client.KindMulticast: event.GSMulticast,
		client.KindUnicast: event.GSUnicast, client.KindReply: event.GSReply,
		2: event.GSInvalid, 7: event.GSInvalid, 0: event.GSInvalid,
	} {
		if got := (&client.GroupSend{Kind: kind}).Desc(); got != want {
			t.Errorf("kind %d: %v, want %v", kind, got, want)
		}
	}
}

// The encoders refuse what the decoders would refuse, and append nothing.
func TestAppendGroupLimits(t *testing.T) {
	long := strings.Repeat("x", client.MaxNameLen+1)
	for name, tc := range map[string]struct {
		fn   func(dst []byte) ([]byte, error)
		code proto.Code
		text string
	}{
		"join empty": {func(d []byte) ([]byte, error) { return client.AppendGroupJoin(d, &client.GroupJoin{Name: "m"}) }, proto.CodeField, "GROUP_JOIN: empty group name"},
		"join long":  {func(d []byte) ([]byte, error) { return client.AppendGroupJoin(d, &client.GroupJoin{Group: long}) }, proto.CodeTooLarge, "group name is 256 bytes"},
		"join member": {func(d []byte) ([]byte, error) {
			return client.AppendGroupJoin(d, &client.GroupJoin{Group: "g", Name: long})
		}, proto.CodeTooLarge, "member name is 256 bytes"},
		"join utf8":     {func(d []byte) ([]byte, error) { return client.AppendGroupJoin(d, &client.GroupJoin{Group: "\xff"}) }, proto.CodeField, "not UTF-8"},
		"leave empty":   {func(d []byte) ([]byte, error) { return client.AppendGroupLeave(d, &client.GroupLeave{}) }, proto.CodeField, "GROUP_LEAVE: empty group name"},
		"members empty": {func(d []byte) ([]byte, error) { return client.AppendGroupName(d, &client.GroupName{}) }, proto.CodeField, "GROUP_MEMBERS: empty group name"},
		"send kind":     {func(d []byte) ([]byte, error) { return client.AppendGroupSend(d, &client.GroupSend{Kind: 1}) }, proto.CodeField, "unknown kind 1"},
		"send payload": {func(d []byte) ([]byte, error) {
			return client.AppendGroupSend(d, &client.GroupSend{Payload: make([]byte, client.MaxPayload+1)})
		}, proto.CodeTooLarge, "payload is 8388609 bytes"},
		"send group": {func(d []byte) ([]byte, error) {
			return client.AppendGroupSend(d, &client.GroupSend{Kind: client.KindBroadcast, Group: long})
		}, proto.CodeTooLarge, "group name is 256 bytes"},
		"send unicast": {func(d []byte) ([]byte, error) {
			return client.AppendGroupSend(d, &client.GroupSend{Kind: client.KindUnicast, Target: 1})
		}, proto.CodeField, "UNICAST: empty group name"},
		"send reply": {func(d []byte) ([]byte, error) {
			return client.AppendGroupSend(d, &client.GroupSend{Kind: client.KindReply, ReplyTo: 1})
		}, proto.CodeField, "REPLY without a target"},
		"send reply to": {func(d []byte) ([]byte, error) {
			return client.AppendGroupSend(d, &client.GroupSend{Kind: client.KindUnicast, Group: "g", Target: 1, ReplyTo: 1})
		}, proto.CodeField, "reply to 1 on a UNICAST"},
		"members many": {func(d []byte) ([]byte, error) {
			return client.AppendGroupMembers(d, &client.GroupMembers{Members: make([]event.GroupMember, client.MaxMembers+1)})
		}, proto.CodeTooLarge, "4097 members, limit 4096"},
		"members name": {func(d []byte) ([]byte, error) {
			return client.AppendGroupMembers(d, &client.GroupMembers{Members: []event.GroupMember{{Name: long}}})
		}, proto.CodeTooLarge, "member name is 256"},
		"list many": {func(d []byte) ([]byte, error) {
			return client.AppendGroupList(d, &client.GroupList{Groups: make([]client.GroupListItem, client.MaxGroupList+1)})
		}, proto.CodeTooLarge, "32769 groups"},
		"list empty": {func(d []byte) ([]byte, error) {
			return client.AppendGroupList(d, &client.GroupList{Groups: []client.GroupListItem{{Group: "a"}, {}}})
		}, proto.CodeField, "group 1: empty group name"},
		"list members": {func(d []byte) ([]byte, error) {
			return client.AppendGroupList(d, &client.GroupList{Groups: []client.GroupListItem{{Group: "a", Members: 4097}}})
		}, proto.CodeField, "4097 members"},
		"list long name": {func(d []byte) ([]byte, error) {
			return client.AppendGroupList(d, &client.GroupList{Groups: []client.GroupListItem{{Group: long}}})
		}, proto.CodeTooLarge, "group name is 256"},
	} {
		out, err := tc.fn([]byte("x"))
		if string(out) != "x" {
			t.Errorf("%s: appended %d bytes", name, len(out)-1)
		}
		t.Run(name, func(t *testing.T) { wiretest.Expect(t, err, tc.code, tc.text) })
	}
}

// TestGroupCountsCheckedBeforeAllocation: a count the body cannot hold is
// refused without allocating room for what it claims.
func TestGroupCountsCheckedBeforeAllocation(t *testing.T) {
	members := put32(make([]byte, 8+4+8), 8, client.MaxMembers) // 4096 members claimed, 8 bytes follow
	list := put32(make([]byte, 4+8), 0, client.MaxGroupList)
	for name, parse := range map[string]func([]byte) error{
		"members": func(b []byte) error { _, err := client.ParseGroupMembers(b); return err },
		"list":    func(b []byte) error { _, err := client.ParseGroupList(b); return err },
	} {
		b := members
		if name == "list" {
			b = list
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		const runs = 100
		for range runs {
			if parse(b) == nil {
				t.Fatalf("%s: accepted", name)
			}
		}
		runtime.ReadMemStats(&after)
		if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 4<<10 {
			t.Fatalf("%s: %d bytes allocated per refused body", name, per)
		}
	}
}

// A GROUP_SEND's payload aliases the frame body (the agent copies it into
// the log entry); a group EVENT's does not (it outlives the frame).
func TestGroupPayloadAliasing(t *testing.T) {
	b := must(client.AppendGroupSend(nil, &sampleMulticast))
	s, err := client.ParseGroupSend(b)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] = 'X'
	if string(s.Payload) != "hellX" {
		t.Fatalf("GROUP_SEND payload %q does not alias the body", s.Payload)
	}
	eb := mustEvent(evGroup)
	ev, err := client.ParseEvent(eb)
	if err != nil {
		t.Fatal(err)
	}
	eb[len(eb)-1] = 'X'
	if string(ev.Group().Payload) != "hello" {
		t.Fatalf("EVENT payload %q aliases the body", ev.Group().Payload)
	}
}

// groupCodec is one group body's encoder and decoder over values of any
// type, for the table-driven round trips and the fuzz targets.
type groupCodec struct {
	name    string
	parse   func([]byte) (any, error)
	append  func(any) ([]byte, error)
	samples []any
}

func codec[T any](name string, parse func([]byte) (T, error), app func([]byte, *T) ([]byte, error), samples ...T) groupCodec {
	c := groupCodec{name: name,
		parse:  func(b []byte) (any, error) { v, err := parse(b); return v, err },
		append: func(v any) ([]byte, error) { t := v.(T); return app(nil, &t) },
	}
	for _, s := range samples {
		c.samples = append(c.samples, s)
	}
	return c
}

func noErr[T any](app func([]byte, *T) []byte) func([]byte, *T) ([]byte, error) {
	return func(dst []byte, v *T) ([]byte, error) { return app(dst, v), nil }
}

// groupCodecs lists the bodies: requests first (FuzzParseGroupRequest
// picks among them), then replies.
var groupCodecs = []groupCodec{
	codec("GROUP_JOIN", client.ParseGroupJoin, client.AppendGroupJoin, sampleJoinReq, client.GroupJoin{Group: "x"}),
	codec("GROUP_LEAVE", client.ParseGroupLeave, client.AppendGroupLeave, sampleLeaveReq),
	codec("GROUP_SEND", client.ParseGroupSend, client.AppendGroupSend, sampleMulticast, sampleUnicast, sampleReplySend, sampleBroadcast),
	codec("GROUP_MEMBERS", client.ParseGroupName, client.AppendGroupName, sampleNameReq),
	codec("GROUP_ATTACH", client.ParseGroupAttach, noErr(client.AppendGroupAttach), sampleAttach),
	codec("GROUP_JOIN reply", client.ParseGroupJoinReply, noErr(client.AppendGroupJoinReply), sampleJoinReply),
	codec("GROUP_LEAVE reply", client.ParseGroupSeq, noErr(client.AppendGroupSeq), sampleSeq, client.GroupSeq{}),
	codec("GROUP_SEND reply", client.ParseGroupSendReply, noErr(client.AppendGroupSendReply), sampleSendReply),
	codec("GROUP_MEMBERS reply", client.ParseGroupMembers, client.AppendGroupMembers, sampleMembers, client.GroupMembers{Seq: 3}),
	codec("GROUP_LIST reply", client.ParseGroupList, client.AppendGroupList, sampleList, client.GroupList{}),
	codec("GROUP_WINDOW reply", client.ParseGroupWindow, noErr(client.AppendGroupWindow), sampleWindow, client.GroupWindow{}),
	codec("GROUP_ATTACH reply", client.ParseGroupAttachReply, noErr(client.AppendGroupAttachReply), sampleAttached),
}

const groupRequests = 5 // the first five groupCodecs

func codecOf(v any) groupCodec {
	for _, c := range groupCodecs {
		if len(c.samples) > 0 && fmt.Sprintf("%T", c.samples[0]) == fmt.Sprintf("%T", v) {
			return c
		}
	}
	panic(fmt.Sprintf("no codec for %T", v))
}

// fuzzGroup is the body of both group fuzz targets: the first byte picks
// a codec among cs, the rest is its body. What decodes must re-encode to
// the same bytes and decode again to the same value.
func fuzzGroup(f *testing.F, cs []groupCodec, seeds ...[]byte) {
	for _, s := range seeds {
		f.Add(s)
	}
	for i, c := range cs {
		for _, s := range c.samples {
			b, err := c.append(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(append([]byte{byte(i)}, b...)) // the samples of the golden vectors
			if len(b) > 1 {
				f.Add(append([]byte{byte(i)}, b[:len(b)-1]...)) // cut short
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 {
			return
		}
		c := cs[int(b[0])%len(cs)]
		v, err := c.parse(b[1:])
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		out, err := c.append(v)
		if err != nil {
			t.Fatalf("%s: a decoded body does not encode: %v", c.name, err)
		}
		if !bytes.Equal(out, b[1:]) {
			t.Fatalf("%s: re-encoded body differs:\n%x\n%x", c.name, out, b[1:])
		}
		if again, err := c.parse(out); err != nil || !wiretest.Equal(again, v) {
			t.Fatalf("%s: parse(append(x)) != x: %+v, %v", c.name, again, err)
		}
	})
}

// FuzzParseGroupRequest fuzzes the decoders of the group requests
// (GROUP_JOIN, GROUP_LEAVE, GROUP_SEND, GROUP_MEMBERS, GROUP_ATTACH).
func FuzzParseGroupRequest(f *testing.F) {
	fuzzGroup(f, groupCodecs[:groupRequests],
		[]byte{2, client.KindUnicast, 0, 0, 0},  // GROUP_SEND UNICAST cut after the reserved bytes
		[]byte{0, 3, 0, 0xe2, 0x82, 0x00, 0, 0}, // GROUP_JOIN with a broken UTF-8 sequence
	)
}

// FuzzParseGroupReply fuzzes the decoders of the group replies.
func FuzzParseGroupReply(f *testing.F) {
	fuzzGroup(f, groupCodecs[groupRequests:],
		append([]byte{3}, put32(make([]byte, 16), 8, 0xffff)...),    // GROUP_MEMBERS reply claiming 65535 members
		append([]byte{4}, put32(make([]byte, 8), 0, 0xffffffff)...), // GROUP_LIST reply claiming 2^32-1 groups
	)
}
