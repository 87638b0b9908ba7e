package client_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/types/event"
)

// Sample data of the golden vectors.
var (
	node1 = event.Node{ID: 1, Name: "n1", Addr: netip.MustParseAddrPort("127.0.0.1:7946"), BornOn: 1}
	node2 = event.Node{ID: 0x0102030405060708, Name: "node-two", Addr: netip.MustParseAddrPort("[fe80::2%eth0]:7946"), BornOn: 3}
	node3 = event.Node{ID: 3, Name: "n3"} // address unknown

	sampleView = &event.Membership{Instance: 3, Members: []event.Node{node1, node2}, Joined: []event.Node{node2}, Left: []event.Node{node3}}
	sampleConn = &event.Connectivity{
		Interface: event.Interface{Name: "eth0", Addr: netip.MustParsePrefix("192.168.1.10/24")},
		Nodes:     []event.Node{node2},
		Interfaces: []event.Interface{
			{Name: "eth0", Addr: netip.MustParsePrefix("192.168.1.10/24")},
			{Name: "lo", Addr: netip.MustParsePrefix("::1/128"), Up: true},
		},
		Peers: []event.Peer{{Node: node1, Eligible: true, Connected: true}, {Node: node2, Eligible: true}, {Node: node3}},
	}
	member1        = event.GroupMember{Node: 1, Member: 1207 << 20, Pid: 4242, Name: "worker-a", BornOn: 1207 << 20}
	member2        = event.GroupMember{Node: 0x0102030405060708, Member: 1208<<20 | 1, Pid: 77, BornOn: 1209 << 20} // no name
	sampleGroup    = &event.Group{Name: "locks", From: member1, MsgID: 42, Payload: []byte("hello"), To: []uint64{member1.Member, member2.Member}}
	sampleJoin     = &event.Group{Name: "locks", From: member2, Members: []event.GroupMember{member1, member2}}
	sampleLeave    = &event.Group{Name: "locks", From: member2, Reason: event.LeaveProcDown, Members: []event.GroupMember{member1}}
	sampleReplyMsg = &event.Group{Name: "locks", From: member2, Target: member1.Member, MsgID: 7, ReplyTo: 1210 << 20, Payload: []byte("ok")}
	// The connectivity lists an agent answers QUERY_CONNECTIVITY with:
	// no subject.
	sampleLists = &event.Connectivity{Interfaces: sampleConn.Interfaces, Peers: sampleConn.Peers}

	sampleSub    = client.Subscribe{Classes: client.AllClasses}
	sampleResume = client.Subscribe{Classes: client.MaskOf(event.ClassMemb, event.ClassGroup), Flags: client.SubResume, After: 1000}
	sampleReply  = client.SubscribeReply{Latest: 1207, Floor: 0}
	sampleGap    = client.SubscribeReply{Latest: 9000, Floor: 4904, Flags: client.ReplyGap}
)

const subMsgID = 0x10 // the SUBSCRIBE's msg id, carried by its EVENTs

func mustEvent(ev event.Event) []byte {
	b, err := client.AppendEvent(nil, &ev)
	if err != nil {
		panic(err)
	}
	return b
}

func mustMembership(m *event.Membership) []byte {
	b, err := client.AppendMembership(nil, m)
	if err != nil {
		panic(err)
	}
	return b
}

func mustConnectivity(c *event.Connectivity) []byte {
	b, err := client.AppendConnectivity(nil, c)
	if err != nil {
		panic(err)
	}
	return b
}

var (
	evView  = event.Event{Seq: 1207, Desc: event.MSNewView, Data: sampleView}
	evConn  = event.Event{Seq: 1208, Desc: event.CSP2PLost, Data: sampleConn}
	evGroup = event.Event{Seq: 1210 << 20, Desc: event.GSBroadcast, Data: sampleGroup}
	evJoin  = event.Event{Seq: 1209 << 20, Desc: event.GSJoin, Data: sampleJoin}
	evLeave = event.Event{Seq: 1211<<20 | 2, Desc: event.GSLeave, Data: sampleLeave}
	evReply = event.Event{Seq: 1212 << 20, Desc: event.GSReply, Data: sampleReplyMsg}
	evLocal = event.Event{Desc: event.MSShutdown}
)

// Annotators: they restate the layouts of SPEC.md independently of the
// encoders.

func nodeFields(w *golden.Walker, who string) {
	w.U64(who + " node id")
	w.U64(who + "   born-on view instance")
	addrFields(w, who+"  ")
	w.String16(who + "   name")
}

func addrFields(w *golden.Walker, who string) {
	family := w.U8(who + " addr family (0 none, 4, 6)")
	zone := w.U8(who + " addr zone length")
	w.U16(who + " addr port")
	switch family {
	case 4:
		w.Fixed(4, "%s addr IPv4 address", who)
	case 6:
		w.Fixed(16, "%s addr IPv6 address", who)
		if zone > 0 {
			w.Fixed(zone, "%s addr zone", who)
		}
	}
}

func nodesFields(w *golden.Walker, list string) {
	n := w.U32(list + " count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		nodeFields(w, fmt.Sprintf("%s[%d]", list, i))
	}
}

func ifaceFields(w *golden.Walker, who string) {
	w.U8(who + " flags (1 up)")
	family := w.U8(who + " family (0 none, 4, 6)")
	w.U8(who + " prefix length")
	w.Fixed(1, "%s reserved, zero", who)
	switch family {
	case 4:
		w.Fixed(4, "%s IPv4 address", who)
	case 6:
		w.Fixed(16, "%s IPv6 address", who)
	}
	w.String16(who + " name")
}

func membFields(w *golden.Walker) {
	w.U64("view instance")
	nodesFields(w, "member")
	nodesFields(w, "joined")
	nodesFields(w, "left")
}

func connFields(w *golden.Walker) {
	ifaceFields(w, "subject interface")
	nodesFields(w, "subject node")
	n := w.U32("interface count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		ifaceFields(w, fmt.Sprintf("interface[%d]", i))
	}
	n = w.U32("peer count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		w.U8(fmt.Sprintf("peer[%d] flags (1 eligible, 2 connected)", i))
		nodeFields(w, fmt.Sprintf("peer[%d]", i))
	}
}

func memberFields(w *golden.Walker, who string) {
	w.U64(who + " node id")
	w.U64(who + "   member id")
	w.U64(who + "   born-on seq")
	w.U32(who + "   pid")
	w.String16(who + "   name")
}

func payloadFields(w *golden.Walker) {
	n := w.U32("payload length")
	if n > 0 {
		w.Fixed(int(n), "payload")
	}
}

func groupFields(w *golden.Walker) {
	w.String16("group name")
	memberFields(w, "from")
	w.U8("leave reason (0 none, 1 left, 2 process down, 3 node down, 4 behind)")
	w.Fixed(3, "reserved, zero")
	w.U64("target member")
	w.U64("msg id")
	w.U64("reply to seq")
	n := w.U32("member count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		memberFields(w, fmt.Sprintf("member[%d]", i))
	}
	payloadFields(w)
}

func subscribeFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U32("class mask (2 COMM, 4 MEMB, 8 GROUP)")
	w.U32("flags (1 RESUME)")
	w.U64("after")
	return w.Fields
}

func subscribeReplyFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("latest")
	w.U64("floor")
	w.U32("flags (1 GAP)")
	w.Fixed(4, "reserved, zero")
	return w.Fields
}

func eventFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("seq")
	w.U32("descriptor: class << 22 | event")
	class := w.U8("data class (0 none, 1 COMM, 2 MEMB, 3 GROUP)")
	w.Fixed(3, "reserved, zero")
	switch event.Class(class) {
	case event.ClassMemb:
		membFields(w)
	case event.ClassComm:
		connFields(w)
	case event.ClassGroup:
		groupFields(w)
	}
	return w.Fields
}

func membershipFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	membFields(w)
	return w.Fields
}

func connectivityFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	connFields(w)
	return w.Fields
}

// request returns a request of version 1, the version the events
// opcodes came with (their vectors stay as version 1 wrote them).
func request(op uint16, body []byte) proto.Frame {
	return proto.Frame{Header: proto.Header{Proto: proto.ProtoClient, Version: 1, Opcode: op,
		Flags: proto.FlagCreate | proto.FlagDelete, Hops: proto.HopLimit, MsgID: subMsgID}, Body: body}
}

// v2 returns f as a frame of version 2.
func v2(f proto.Frame) proto.Frame { f.Version = 2; return f }

func reply(op uint16, body []byte) proto.Frame {
	f := request(op, body)
	f.Flags |= proto.FlagReply
	return f
}

// receive is the receive path of both ends of a client link that agreed
// on the version the frame says (MaxVersion if this build does not speak
// it): frame and opcode checks, then the body the opcode and flags call
// for.
func receive(b []byte) (proto.Frame, any, error) {
	v := client.MaxVersion
	if len(b) > 9 && b[9] >= client.MinVersion && b[9] <= client.MaxVersion {
		v = b[9]
	}
	return receiveAt(v, b)
}

// receiveAt is receive on a link of version v.
func receiveAt(v uint8, b []byte) (proto.Frame, any, error) {
	f, err := wiretest.Receive(client.Ops(), v, b)
	if err != nil {
		return f, nil, err
	}
	if f.Flags&proto.FlagAbort != 0 {
		st, err := proto.ParseStatus(f.Body, "ABORT")
		return f, st, err
	}
	isReply := f.Flags&proto.FlagReply != 0
	switch {
	case f.Opcode == client.OpPing || f.Opcode == client.OpPong:
		p, err := proto.ParsePing(f.Body)
		return f, p, err
	case f.Opcode == client.OpSubscribe && !isReply:
		s, err := client.ParseSubscribe(f.Body)
		return f, s, err
	case f.Opcode == client.OpSubscribe:
		s, err := client.ParseSubscribeReply(f.Body)
		return f, s, err
	case f.Opcode == client.OpEvent && v >= 3:
		ev, flags, err := client.ParseEventAt(v, f.Body)
		return f, flagged{ev, flags}, err
	case f.Opcode == client.OpEvent:
		ev, err := client.ParseEvent(f.Body)
		return f, ev, err
	case f.Opcode == client.OpCallbacks && !isReply:
		c, err := client.ParseCallbacks(f.Body)
		return f, c, err
	case f.Opcode == client.OpDone:
		d, err := client.ParseDone(f.Body)
		return f, d, err
	case f.Opcode == client.OpQueryMembership && isReply:
		m, err := client.ParseMembership(f.Body)
		return f, m, err
	case f.Opcode == client.OpQueryConnectivity && isReply:
		c, err := client.ParseConnectivity(f.Body)
		return f, c, err
	case f.Opcode == client.OpEventBatch || f.Opcode == client.OpGroupSendBatch:
		return receiveBatch(v, f, isReply)
	case f.Opcode >= client.OpGroupJoin && f.Opcode <= client.OpGroupAttach:
		return receiveGroup(f, isReply)
	case f.Opcode >= client.OpDSStatus && f.Opcode <= client.OpDSImport:
		return receiveDS(f, isReply)
	}
	// The QUERY requests have an empty body.
	return f, nil, proto.NewReader(f.Body, client.Ops().Name(f.Opcode)+" request").Err()
}

func expect(want proto.Frame, msg any) func([]byte) error {
	want.Seal()
	return func(b []byte) error {
		f, got, err := receive(b)
		if err != nil {
			return err
		}
		if !wiretest.Equal(f, want) || !wiretest.Equal(got, msg) {
			return fmt.Errorf("decoded %+v / %+v, want %+v / %+v", f, got, want, msg)
		}
		return nil
	}
}

func receiveErr(b []byte) error { _, _, err := receive(b); return err }

func frameVector(name string, about []string, f proto.Frame, body func([]byte) golden.Fields, decode func([]byte) error, want proto.Code, detail string) wiretest.Vector {
	b := wiretest.Frame(f)
	return wiretest.Vector{Name: name, About: about, Data: b, Fields: wiretest.Annotated(b, body), Decode: decode, Want: want, Detail: detail}
}

func bodyVector(name, about string, b []byte, fields func([]byte) golden.Fields, decode func([]byte) error, detail string) wiretest.Vector {
	return wiretest.Vector{Name: name, About: []string{about}, Data: b, Fields: fields(b), Decode: decode, Want: proto.CodeField, Detail: detail}
}

func parseSubscribe(b []byte) error      { _, err := client.ParseSubscribe(b); return err }
func parseSubscribeReply(b []byte) error { _, err := client.ParseSubscribeReply(b); return err }
func parseEvent(b []byte) error          { _, err := client.ParseEvent(b); return err }
func parseMembership(b []byte) error     { _, err := client.ParseMembership(b); return err }
func parseConnectivity(b []byte) error   { _, err := client.ParseConnectivity(b); return err }

// with returns a copy of b changed by fn.
func with(b []byte, fn func(b []byte) []byte) []byte { return fn(bytes.Clone(b)) }

func put32(b []byte, off int, v uint32) []byte { binary.LittleEndian.PutUint32(b[off:], v); return b }

// Offsets into the sample EVENT bodies, for the damaged vectors.
const (
	evData      = 16             // first byte of the data
	firstMember = evData + 8 + 4 // the first member of evView
)

func eventVectors() []wiretest.Vector {
	abort := reply(client.OpSubscribe, proto.AppendStatus(nil, &proto.Status{Code: proto.CodeState, Text: "already subscribed on this link"}))
	abort.Flags |= proto.FlagAbort
	memberReply := reply(client.OpQueryMembership, mustMembership(sampleView))
	noView := reply(client.OpQueryMembership, mustMembership(nil))
	connReply := reply(client.OpQueryConnectivity, mustConnectivity(sampleLists))
	queryBody := request(client.OpQueryMembership, []byte{0})

	view := mustEvent(evView)
	conn := mustEvent(evConn)
	group := mustEvent(evGroup)
	join := mustEvent(evJoin)
	leave := mustEvent(evLeave)
	replyEv := mustEvent(evReply)
	longName := *sampleGroup
	longName.Name = strings.Repeat("g", client.MaxNameLen+1)
	longGroup := event.Event{Seq: 1, Desc: event.GSJoin, Data: &longName}
	overLimit := make([]byte, 8+4+(client.MaxNodes+1)*22+8)
	binary.LittleEndian.PutUint32(overLimit[8:], client.MaxNodes+1)

	return []wiretest.Vector{
		frameVector("subscribe_request", []string{
			"SUBSCRIBE to all three classes, only new events: class mask 0x0e, no flags,",
			"after 0. Flags CREATE|DELETE, msg id 0x10; the EVENTs carry this msg id.",
		}, request(client.OpSubscribe, client.AppendSubscribe(nil, &sampleSub)), subscribeFields,
			expect(request(client.OpSubscribe, client.AppendSubscribe(nil, &sampleSub)), sampleSub), 0, ""),
		frameVector("subscribe_resume", []string{
			"SUBSCRIBE to membership and group events (mask 0x0c), resuming after seq 1000:",
			"the agent first sends the events above 1000 it still holds.",
		}, request(client.OpSubscribe, client.AppendSubscribe(nil, &sampleResume)), subscribeFields,
			expect(request(client.OpSubscribe, client.AppendSubscribe(nil, &sampleResume)), sampleResume), 0, ""),
		frameVector("subscribe_reply", []string{
			"SUBSCRIBE reply: CREATE|DELETE|REPLY, the request's msg id; the agent's latest",
			"seq is 1207, its history is complete (floor 0), no gap.",
		}, reply(client.OpSubscribe, client.AppendSubscribeReply(nil, &sampleReply)), subscribeReplyFields,
			expect(reply(client.OpSubscribe, client.AppendSubscribeReply(nil, &sampleReply)), sampleReply), 0, ""),
		frameVector("subscribe_reply_gap", []string{
			"SUBSCRIBE reply to a resume after 1000: the agent holds only the events above",
			"4904 (floor), so events 1001..4904 may be lost: flag GAP. Latest is 9000.",
		}, reply(client.OpSubscribe, client.AppendSubscribeReply(nil, &sampleGap)), subscribeReplyFields,
			expect(reply(client.OpSubscribe, client.AppendSubscribeReply(nil, &sampleGap)), sampleGap), 0, ""),
		frameVector("subscribe_abort", []string{
			"A second SUBSCRIBE on one link, refused: CREATE|DELETE|REPLY|ABORT, Status",
			"code 8 (bad state). The link stays up and keeps its first subscription.",
		}, abort, wiretest.StatusFields, expect(abort, proto.Status{Code: proto.CodeState, Text: "already subscribed on this link"}), 0, ""),
		frameVector("event_newview", []string{
			"EVENT NEWVIEW (descriptor 0x00800001), seq 1207: view 3 of n1 (127.0.0.1:7946,",
			"born in view 1) and node-two ([fe80::2%eth0]:7946, born in view 3), which",
			"joined; n3 (no known address) left. Flags CREATE|DELETE, the SUBSCRIBE's msg id.",
		}, request(client.OpEvent, view), eventFields, expect(request(client.OpEvent, view), evView), 0, ""),
		frameVector("event_p2p_lost", []string{
			"EVENT P2P_LOST (descriptor 0x00400006), seq 1208: the link to node-two is lost.",
			"Subject interface eth0 192.168.1.10/24 (down); interfaces eth0 (down) and lo",
			"::1/128 (up); peers n1 eligible and connected, node-two eligible, n3 neither.",
		}, request(client.OpEvent, conn), eventFields, expect(request(client.OpEvent, conn), evConn), 0, ""),
		frameVector("event_broadcast", []string{
			"EVENT BROADCAST (descriptor 0x00c00003), version 2, seq 1210<<20 (the first",
			"event of log entry 1210): member 1207<<20 \"worker-a\" (pid 4242 on node 1)",
			"sent message 42, payload \"hello\", labelled \"locks\". Group data v2; the",
			"recipients (To) are not on the wire.",
		}, v2(request(client.OpEvent, group)), eventFields, expect(v2(request(client.OpEvent, group)), withoutTo(evGroup)), 0, ""),
		frameVector("event_join", []string{
			"EVENT JOIN (descriptor 0x00c00001), version 2, seq 1209<<20: member",
			"1208<<20|1 (pid 77 on node 0x0102030405060708, no name) joined \"locks\";",
			"the group after it, oldest first: worker-a, then the joiner, whose born-on",
			"is this JOIN's seq.",
		}, v2(request(client.OpEvent, join)), eventFields, expect(v2(request(client.OpEvent, join)), evJoin), 0, ""),
		frameVector("event_leave", []string{
			"EVENT LEAVE (descriptor 0x00c00002), version 2, seq 1211<<20|2 (the third",
			"event of entry 1211): the joiner left \"locks\", reason 2 (process down);",
			"worker-a remains.",
		}, v2(request(client.OpEvent, leave)), eventFields, expect(v2(request(client.OpEvent, leave)), evLeave), 0, ""),
		frameVector("event_reply", []string{
			"EVENT REPLY (descriptor 0x00c00006), version 2, seq 1212<<20: member",
			"1208<<20|1 answers the message of seq 1210<<20 to its target worker-a",
			"(member 1207<<20), msg id 7, payload \"ok\".",
		}, v2(request(client.OpEvent, replyEv)), eventFields, expect(v2(request(client.OpEvent, replyEv)), evReply), 0, ""),
		frameVector("event_local", []string{
			"EVENT SHUTDOWN (descriptor 0x00800004), seq 0: a local-only event, without",
			"data (data class 0).",
		}, request(client.OpEvent, mustEvent(evLocal)), eventFields, expect(request(client.OpEvent, mustEvent(evLocal)), evLocal), 0, ""),
		frameVector("query_membership", []string{
			"QUERY_MEMBERSHIP request: CREATE|DELETE, empty body.",
		}, request(client.OpQueryMembership, nil), nil, expect(request(client.OpQueryMembership, nil), nil), 0, ""),
		frameVector("query_membership_reply", []string{
			"QUERY_MEMBERSHIP reply: the current view (instance 3), with the nodes that",
			"joined and left in the change that made it. Same layout as NEWVIEW's data.",
		}, memberReply, membershipFields, expect(memberReply, sampleView), 0, ""),
		frameVector("query_membership_none", []string{
			"QUERY_MEMBERSHIP reply of an agent that has no view yet: instance 0, no members.",
		}, noView, membershipFields, expect(noView, &event.Membership{}), 0, ""),
		frameVector("query_connectivity", []string{
			"QUERY_CONNECTIVITY request: CREATE|DELETE, empty body.",
		}, request(client.OpQueryConnectivity, nil), nil, expect(request(client.OpQueryConnectivity, nil), nil), 0, ""),
		frameVector("query_connectivity_reply", []string{
			"QUERY_CONNECTIVITY reply: known interfaces with health, known nodes with their",
			"connection state; the subject interface and subject nodes are empty.",
		}, connReply, connectivityFields, expect(connReply, sampleLists), 0, ""),
		frameVector("err_query_body", []string{
			"A QUERY_MEMBERSHIP request with a 1-byte body; the QUERY requests are empty.",
		}, queryBody, nil, receiveErr, proto.CodeField, "QUERY_MEMBERSHIP request: 1 unexpected bytes"),

		bodyVector("err_subscribe_no_class", "SUBSCRIBE with an empty class mask.",
			client.AppendSubscribe(nil, &client.Subscribe{}), subscribeFields, parseSubscribe, "class mask selects no class"),
		bodyVector("err_subscribe_class", "SUBSCRIBE selecting class bit 0x10 (class 4), which seed 002 does not define.",
			client.AppendSubscribe(nil, &client.Subscribe{Classes: 0x12}), subscribeFields, parseSubscribe, "selects unknown classes 0x10"),
		bodyVector("err_subscribe_flags", "SUBSCRIBE with undefined flag 0x2.",
			client.AppendSubscribe(nil, &client.Subscribe{Classes: 2, Flags: 3}), subscribeFields, parseSubscribe, "unknown flags 0x2"),
		bodyVector("err_subscribe_after", "SUBSCRIBE with after 5 but without the RESUME flag.",
			client.AppendSubscribe(nil, &client.Subscribe{Classes: 2, After: 5}), subscribeFields, parseSubscribe, "after 5 without the RESUME flag"),
		bodyVector("err_subscribe_truncated", "SUBSCRIBE cut off inside after.",
			client.AppendSubscribe(nil, &sampleSub)[:12], subscribeFields, parseSubscribe, "truncated at after"),
		bodyVector("err_subscribe_reply_floor", "SUBSCRIBE reply with floor 9001 above latest 9000.",
			client.AppendSubscribeReply(nil, &client.SubscribeReply{Latest: 9000, Floor: 9001}), subscribeReplyFields, parseSubscribeReply, "floor 9001 above latest 9000"),
		bodyVector("err_subscribe_reply_reserved", "SUBSCRIBE reply with a non-zero reserved byte.",
			with(client.AppendSubscribeReply(nil, &sampleReply), func(b []byte) []byte { b[21] = 1; return b }), subscribeReplyFields, parseSubscribeReply, "reserved reserved is not zero"),
		bodyVector("err_event_descriptor", "EVENT with descriptor 0x00800009: membership class, event 9, which is not defined.",
			with(view, func(b []byte) []byte { return put32(b, 8, 0x00800009) }), eventFields, parseEvent, "unknown event descriptor 0x00800009"),
		bodyVector("err_event_class", "EVENT NEWVIEW whose data class says group (3): data must match the descriptor's class.",
			with(view, func(b []byte) []byte { b[12] = 3; return b }), eventFields, parseEvent, "data class 3 for NEWVIEW"),
		bodyVector("err_event_reserved", "EVENT NEWVIEW with a non-zero reserved byte.",
			with(view, func(b []byte) []byte { b[13] = 1; return b }), eventFields, parseEvent, "reserved reserved is not zero"),
		bodyVector("err_event_count_huge", "EVENT NEWVIEW announcing 0xffffffff members in a short body: refused before allocating.",
			with(view[:firstMember+8], func(b []byte) []byte { return put32(b, firstMember-4, 0xffffffff) }), eventFields, parseEvent, "member count 4294967295 does not fit"),
		bodyVector("err_event_count_short", "EVENT NEWVIEW announcing 9 members, more than the rest of the body can hold (22 bytes each at least).",
			with(view, func(b []byte) []byte { return put32(b, firstMember-4, 9) }), eventFields, parseEvent, "member count 9 does not fit"),
		bodyVector("err_event_family", "EVENT NEWVIEW whose first member has address family 5.",
			with(view, func(b []byte) []byte { b[firstMember+16] = 5; return b }), eventFields, parseEvent, "member addr: unknown address family 5"),
		bodyVector("err_event_zone_ipv4", "EVENT NEWVIEW whose first member, an IPv4 address, has a zone length.",
			with(view, func(b []byte) []byte { b[firstMember+17] = 1; return b }), eventFields, parseEvent, "IPv4 address with a zone"),
		bodyVector("err_event_name_long", "EVENT JOIN whose group name is 256 bytes; the limit is 255.",
			mustLong(longGroup), eventFields, parseEvent, "group name is 256 bytes, limit 255"),
		bodyVector("err_event_prefix", "EVENT P2P_LOST whose subject interface has an IPv4 prefix length of 33.",
			with(conn, func(b []byte) []byte { b[evData+2] = 33; return b }), eventFields, parseEvent, "IPv4 prefix length 33"),
		bodyVector("err_event_iface_flags", "EVENT P2P_LOST whose subject interface has undefined flag 0x80.",
			with(conn, func(b []byte) []byte { b[evData] = 0x80; return b }), eventFields, parseEvent, "unknown flags 0x80"),
		bodyVector("err_event_peer_flags", "EVENT P2P_LOST whose first peer has undefined flag 0x4 besides eligible and connected.",
			with(conn, func(b []byte) []byte { b[peerOffset(conn)] |= 4; return b }), eventFields, parseEvent, "peer 0: unknown flags 0x4"),
		bodyVector("err_event_leave_reason", "EVENT LEAVE with leave reason 5, which is not defined.",
			with(leave, func(b []byte) []byte { b[groupReason(leave)] = 5; return b }), eventFields, parseEvent, "unknown leave reason 5"),
		bodyVector("err_event_reason_not_leave", "EVENT JOIN with leave reason 1: a reason belongs to LEAVE only.",
			with(join, func(b []byte) []byte { b[groupReason(join)] = 1; return b }), eventFields, parseEvent, `leave reason "left" on JOIN`),
		bodyVector("err_event_group_reserved", "EVENT LEAVE with a non-zero reserved byte after the reason.",
			with(leave, func(b []byte) []byte { b[groupReason(leave)+2] = 1; return b }), eventFields, parseEvent, "reserved group reserved is not zero"),
		bodyVector("err_event_payload", "EVENT BROADCAST announcing a payload of 8 MiB + 1 bytes, over the limit.",
			with(group, func(b []byte) []byte { return put32(b, len(b)-9, client.MaxPayload+1) }), eventFields, parseEvent, "payload is 8388609 bytes, limit 8388608"),
		bodyVector("err_event_truncated", "EVENT BROADCAST cut off inside its payload.",
			group[:len(group)-2], eventFields, parseEvent, "truncated at payload"),
		bodyVector("err_event_trailing", "EVENT BROADCAST followed by one extra byte.",
			append(bytes.Clone(group), 0), eventFields, parseEvent, "EVENT: 1 unexpected bytes"),
		bodyVector("err_membership_over_limit", "QUERY_MEMBERSHIP reply of 4097 members (zero bytes): more than MaxNodes = 4096, though the body holds them.",
			overLimit, func([]byte) golden.Fields {
				return golden.Fields{{Size: 8, Name: "view instance (u64 LE)"}, {Size: 4, Name: "member count (u32 LE)"}, {Size: len(overLimit) - 12, Name: "4097 members of 22 zero bytes, then 8 bytes"}}
			}, parseMembership, "member count 4097"),
		bodyVector("err_connectivity_truncated", "QUERY_CONNECTIVITY reply cut off inside the last peer's name.",
			mustConnectivity(sampleLists)[:len(mustConnectivity(sampleLists))-1], connectivityFields, parseConnectivity, "truncated at peer name"),
	}
}

func mustLong(ev event.Event) []byte {
	// The encoder refuses the name, so build the body by hand: a valid
	// JOIN, then the name's length patched and the bytes inserted.
	short := *ev.Data.(*event.Group)
	short.Name = "g"
	b := mustEvent(event.Event{Seq: ev.Seq, Desc: ev.Desc, Data: &short})
	name := ev.Data.(*event.Group).Name
	out := append([]byte(nil), b[:evData]...)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(name)))
	out = append(out, name...)
	return append(out, b[evData+3:]...)
}

// groupReason is the offset of the leave reason in a group EVENT body:
// after the group name and the from member.
func groupReason(b []byte) int {
	name := int(binary.LittleEndian.Uint16(b[evData:]))
	from := evData + 2 + name
	return from + 8 + 8 + 8 + 4 + 2 + int(binary.LittleEndian.Uint16(b[from+28:]))
}

// withoutTo returns ev with its Group data's To cleared: To is not on the
// wire.
func withoutTo(ev event.Event) event.Event {
	g := *ev.Group()
	g.To = nil
	ev.Data = &g
	return ev
}

// peerOffset finds the first peer's flags in the sample P2P_LOST body.
func peerOffset(conn []byte) int {
	lists := mustConnectivity(sampleLists)
	peers := mustConnectivity(&event.Connectivity{Interfaces: sampleLists.Interfaces})
	// The peers are the tail of the body: the bytes the peer list adds.
	return len(conn) - (len(lists) - len(peers))
}

func TestMaskOf(t *testing.T) {
	if m := client.MaskOf(event.ClassComm, event.ClassMemb, event.ClassGroup, 0, 9); m != client.AllClasses || client.AllClasses != 0x0e {
		t.Fatalf("MaskOf(all) = %#x", m)
	}
	m := client.MaskOf(event.ClassGroup)
	if !m.Has(event.ClassGroup) || m.Has(event.ClassMemb) || m.Has(0) || len(m.Classes()) != 1 {
		t.Fatalf("group mask %#x: %v", m, m.Classes())
	}
}

func TestEventRoundTrip(t *testing.T) {
	many := make([]event.Node, client.MaxNodes)
	for i := range many {
		many[i] = event.Node{ID: uint64(i), BornOn: uint64(i) * 3, Name: fmt.Sprint(i)}
	}
	many[7].Name = strings.Repeat("n", client.MaxNameLen)
	many[8].Addr = netip.AddrPortFrom(netip.MustParseAddr("::ffff:10.0.0.1").WithZone(strings.Repeat("z", client.MaxZoneLen)), 1)
	many[9].Addr = netip.MustParseAddrPort("[::]:0")
	ifaces := make([]event.Interface, client.MaxInterfaces)
	for i := range ifaces {
		ifaces[i] = event.Interface{Name: fmt.Sprint("if", i), Up: i%2 == 0, Addr: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), i%33)}
	}
	ifaces[3].Addr = netip.MustParsePrefix("::ffff:10.0.0.1/100")
	ifaces[4].Addr = netip.Prefix{}
	members := make([]event.GroupMember, client.MaxMembers)
	for i := range members {
		members[i] = event.GroupMember{Node: uint64(i % 7), Member: uint64(i) << 20, Pid: uint32(i), BornOn: uint64(i) << 20, Name: fmt.Sprint("m", i)}
	}
	members[5].Name = strings.Repeat("m", client.MaxNameLen)
	for _, ev := range []event.Event{
		evView, evConn, withoutTo(evGroup), evJoin, evLeave, evReply, evLocal,
		{Seq: 1, Desc: event.MSSuspect, Data: &event.Membership{}},
		{Seq: 2, Desc: event.MSEvicted, Data: &event.Membership{Instance: 1 << 60, Members: many, Joined: many, Left: many}},
		{Seq: 3, Desc: event.CSInterfaceAdded, Data: &event.Connectivity{Interface: ifaces[3], Interfaces: ifaces, Nodes: many, Peers: []event.Peer{{Node: many[8], Connected: true}}}},
		{Seq: 4, Desc: event.GSReply, Data: &event.Group{Name: strings.Repeat("g", client.MaxNameLen), From: members[5], Target: 1, ReplyTo: 9, Members: members, Payload: make([]byte, client.MaxPayload)}},
		{Seq: ^uint64(0), Desc: event.GSLeave, Data: &event.Group{Reason: event.LeaveBehind}},
		{Seq: 5, Desc: event.GSLeave, Data: &event.Group{}},
	} {
		b, err := client.AppendEvent(nil, &ev)
		if err != nil {
			t.Fatalf("%v: %v", ev, err)
		}
		got, err := client.ParseEvent(b)
		if err != nil || !wiretest.Equal(got, ev) {
			t.Fatalf("round trip of %v: %v, %v", ev, got, err)
		}
		if b2, _ := client.AppendEvent(nil, &got); !bytes.Equal(b, b2) {
			t.Fatalf("%v: re-encoding differs", ev)
		}
	}
}

// A nil pointer of a data type travels as no data.
func TestEventNilData(t *testing.T) {
	for _, d := range []event.Data{(*event.Membership)(nil), (*event.Connectivity)(nil), (*event.Group)(nil)} {
		desc := event.MakeDescriptor(d.Class(), 1)
		b, err := client.AppendEvent(nil, &event.Event{Seq: 5, Desc: desc, Data: d})
		if err != nil {
			t.Fatal(err)
		}
		got, err := client.ParseEvent(b)
		if err != nil || got.Data != nil || got.Desc != desc || got.Seq != 5 {
			t.Fatalf("%T(nil): %+v, %v", d, got, err)
		}
	}
}

// The encoder refuses what a decoder would refuse, and appends nothing.
func TestAppendEventLimits(t *testing.T) {
	big := make([]event.Node, client.MaxNodes+1)
	long := strings.Repeat("x", client.MaxNameLen+1)
	for name, tc := range map[string]struct {
		ev   event.Event
		code proto.Code
		text string
	}{
		"invalid desc":  {event.Event{Desc: event.MSInvalid}, proto.CodeField, "unknown event descriptor"},
		"data class":    {event.Event{Desc: event.MSNewView, Data: &event.Group{}}, proto.CodeField, "GROUP data for NEWVIEW"},
		"members":       {event.Event{Desc: event.MSNewView, Data: &event.Membership{Left: big}}, proto.CodeTooLarge, "4097 left nodes"},
		"node name":     {event.Event{Desc: event.MSNewView, Data: &event.Membership{Members: []event.Node{{Name: long}}}}, proto.CodeTooLarge, "members name is 256 bytes"},
		"zone":          {event.Event{Desc: event.MSNewView, Data: &event.Membership{Members: []event.Node{{Addr: netip.AddrPortFrom(netip.IPv6Loopback().WithZone(long), 1)}}}}, proto.CodeTooLarge, "zone is 256 bytes"},
		"member name":   {event.Event{Desc: event.GSJoin, Data: &event.Group{From: event.GroupMember{Name: long}}}, proto.CodeTooLarge, "member name is 256 bytes"},
		"members name":  {event.Event{Desc: event.GSJoin, Data: &event.Group{Members: []event.GroupMember{{Name: long}}}}, proto.CodeTooLarge, "member name is 256 bytes"},
		"reason":        {event.Event{Desc: event.GSLeave, Data: &event.Group{Reason: 9}}, proto.CodeField, "unknown leave reason 9"},
		"reason on msg": {event.Event{Desc: event.GSMulticast, Data: &event.Group{Reason: event.LeaveLeft}}, proto.CodeField, `leave reason "left" on MULTICAST`},
		"interfaces":    {event.Event{Desc: event.CSInterfaceAdded, Data: &event.Connectivity{Interfaces: make([]event.Interface, client.MaxInterfaces+1)}}, proto.CodeTooLarge, "257 interfaces"},
		"iface name":    {event.Event{Desc: event.CSInterfaceAdded, Data: &event.Connectivity{Interface: event.Interface{Name: long}}}, proto.CodeTooLarge, "interface name is 256"},
		"peers":         {event.Event{Desc: event.CSP2PLost, Data: &event.Connectivity{Peers: make([]event.Peer, client.MaxNodes+1)}}, proto.CodeTooLarge, "4097 peers"},
		"payload":       {event.Event{Desc: event.GSUnicast, Data: &event.Group{Payload: make([]byte, client.MaxPayload+1)}}, proto.CodeTooLarge, "payload is 8388609 bytes"},
		"group members": {event.Event{Desc: event.GSJoin, Data: &event.Group{Members: make([]event.GroupMember, client.MaxMembers+1)}}, proto.CodeTooLarge, "4097 group members"},
	} {
		out, err := client.AppendEvent([]byte("x"), &tc.ev)
		if string(out) != "x" {
			t.Errorf("%s: appended %d bytes", name, len(out)-1)
		}
		wiretest.Expect(t, err, tc.code, tc.text)
	}
	if _, err := client.AppendMembership(nil, &event.Membership{Joined: big}); err == nil {
		t.Error("AppendMembership took 4097 joined nodes")
	}
	if _, err := client.AppendConnectivity(nil, &event.Connectivity{Peers: make([]event.Peer, client.MaxNodes+1)}); err == nil {
		t.Error("AppendConnectivity took 4097 peers")
	}
}

// TestCountCheckedBeforeAllocation: a count the body cannot hold is
// refused without allocating room for what it claims.
func TestCountCheckedBeforeAllocation(t *testing.T) {
	b := mustEvent(event.Event{Seq: 1, Desc: event.MSNewView, Data: &event.Membership{}})
	put32(b, evData+8, client.MaxNodes) // 4096 members claimed, 8 bytes follow
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 100
	for range runs {
		if _, err := client.ParseEvent(b); err == nil {
			t.Fatal("accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 4<<10 {
		t.Fatalf("%d bytes allocated per refused body; room for 4096 nodes would be ~%d", per, 4096*64)
	}
}

func TestSubscribeRoundTrip(t *testing.T) {
	for _, s := range []client.Subscribe{sampleSub, sampleResume, {Classes: client.MaskOf(event.ClassComm), Flags: client.SubResume}} {
		b := client.AppendSubscribe(nil, &s)
		got, err := client.ParseSubscribe(b)
		if len(b) != client.SubscribeSize || err != nil || got != s {
			t.Fatalf("round trip of %+v: %+v, %v", s, got, err)
		}
	}
	for _, s := range []client.SubscribeReply{sampleReply, sampleGap, {}} {
		b := client.AppendSubscribeReply(nil, &s)
		got, err := client.ParseSubscribeReply(b)
		if len(b) != client.SubscribeReplySize || err != nil || got != s {
			t.Fatalf("round trip of %+v: %+v, %v", s, got, err)
		}
	}
	if !sampleGap.Gap() || sampleReply.Gap() {
		t.Fatal("Gap()")
	}
}

func FuzzParseSubscribe(f *testing.F) {
	f.Add(client.AppendSubscribe(nil, &sampleSub))                       // subscribe_request: all classes, only new
	f.Add(client.AppendSubscribe(nil, &sampleResume))                    // subscribe_resume: two classes after 1000
	f.Add(client.AppendSubscribe(nil, &client.Subscribe{Classes: 0x12})) // an unknown class bit
	f.Add(client.AppendSubscribe(nil, &sampleSub)[:12])                  // cut inside after
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := client.ParseSubscribe(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if s.Classes == 0 || s.Classes&^client.AllClasses != 0 {
			t.Fatalf("accepted class mask %#x", s.Classes)
		}
		if out := client.AppendSubscribe(nil, &s); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded SUBSCRIBE differs:\n%x\n%x", out, b)
		}
	})
}

func FuzzParseSubscribeReply(f *testing.F) {
	f.Add(client.AppendSubscribeReply(nil, &sampleReply))                                   // subscribe_reply
	f.Add(client.AppendSubscribeReply(nil, &sampleGap))                                     // subscribe_reply_gap
	f.Add(client.AppendSubscribeReply(nil, &client.SubscribeReply{Latest: 1, Floor: 2}))    // floor above latest
	f.Add(client.AppendSubscribeReply(nil, &client.SubscribeReply{Flags: 0x80000000})[:20]) // undefined flag, cut short
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := client.ParseSubscribeReply(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if s.Floor > s.Latest {
			t.Fatalf("accepted floor %d above latest %d", s.Floor, s.Latest)
		}
		if out := client.AppendSubscribeReply(nil, &s); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded SUBSCRIBE reply differs:\n%x\n%x", out, b)
		}
	})
}

func FuzzParseEvent(f *testing.F) {
	f.Add(mustEvent(evView))                                                                 // event_newview: IPv4, IPv6 with zone, no address
	f.Add(mustEvent(evConn))                                                                 // event_p2p_lost: interfaces and peers
	f.Add(mustEvent(evGroup))                                                                // event_broadcast: payload
	f.Add(mustEvent(evJoin))                                                                 // event_join: group members
	f.Add(mustEvent(evLeave))                                                                // event_leave: a leave reason
	f.Add(mustEvent(evLocal))                                                                // event_local: seq 0, no data
	f.Add(with(mustEvent(evView), func(b []byte) []byte { return put32(b, 8, 0x00800009) })) // an undefined descriptor
	f.Add(with(mustEvent(evView)[:firstMember+8], func(b []byte) []byte {                    // a huge member count
		return put32(b, firstMember-4, 0xffffffff)
	}))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := client.ParseEvent(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if !ev.Desc.Valid() || (ev.Data != nil && ev.Data.Class() != ev.Desc.Class()) {
			t.Fatalf("accepted %v with %T", ev.Desc, ev.Data)
		}
		out, err := client.AppendEvent(nil, &ev)
		if err != nil {
			t.Fatalf("a decoded event does not encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded EVENT differs:\n%x\n%x", out, b)
		}
	})
}

func FuzzParseMembership(f *testing.F) {
	f.Add(mustMembership(sampleView))                                                        // query_membership_reply
	f.Add(mustMembership(nil))                                                               // no view yet
	f.Add(with(mustMembership(sampleView), func(b []byte) []byte { return put32(b, 8, 5) })) // too many members for the body
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := client.ParseMembership(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		out, err := client.AppendMembership(nil, m)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoded membership differs (%v):\n%x\n%x", err, out, b)
		}
	})
}

func FuzzParseConnectivity(f *testing.F) {
	f.Add(mustConnectivity(sampleLists))                                        // query_connectivity_reply
	f.Add(mustConnectivity(sampleConn))                                         // with a subject interface and node
	f.Add(mustConnectivity(nil))                                                // nothing known
	f.Add(mustConnectivity(sampleLists)[:len(mustConnectivity(sampleLists))-1]) // cut inside the last name
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := client.ParseConnectivity(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		out, err := client.AppendConnectivity(nil, c)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoded connectivity differs (%v):\n%x\n%x", err, out, b)
		}
	})
}
