package peer_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	gproto "google.golang.org/protobuf/proto"

	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/proto/internal/golden"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/proto/peer"
)

// Regenerate the golden files with: go test ./proto/... -rewrite
func TestGolden(t *testing.T) {
	// The vectors written before version 3 stay at version 2 byte for
	// byte: their messages did not change.
	vs := append(wiretest.PingVectorsAt(peer.Ops(), v2, peer.OpPing, peer.OpPong, 0x0102), vectors()...)
	wiretest.Run(t, "testdata", append(append(append(vs, routeVectors()...), streamVectors()...), sessionVectors()...))
}

func TestOps(t *testing.T) {
	if err := wiretest.CheckOps(peer.Ops()); err != nil {
		t.Fatal(err)
	}
	if peer.Ops().Proto() != proto.ProtoPeer || peer.Ops().Range().Min != peer.MinVersion || peer.Ops().Range().Max != peer.MaxVersion {
		t.Fatalf("Ops declares %s %d..%d", peer.Ops().Proto(), peer.Ops().Range().Min, peer.Ops().Range().Max)
	}
	for _, op := range peer.Ops().Opcodes() {
		defined := op == peer.OpRaft || op == peer.OpRaftChunk || op == peer.OpRoutes || op == peer.OpSeqnoReq || op == peer.OpStream ||
			op >= peer.OpJoin && op <= peer.OpNotMember
		if op >= 0x0100 && op <= 0x06FF && !defined {
			t.Errorf("opcode %#04x lies in a range SPEC.md reserves for a later service", op)
		}
	}
	wiretest.CheckOpTable(t, peer.Ops(), "Opcode table of the peer protocol (proto/peer/SPEC.md).")
}

// TestJoinVersionMismatch plays a join between agents without a common
// peer version: the accepting side answers REJECT naming both ranges,
// and the joining side's error says both versions too.
func TestJoinVersionMismatch(t *testing.T) {
	local := proto.Ranges{peer.Ops().Range()}
	newer := proto.Ranges{{Proto: proto.ProtoPeer, Min: peer.MaxVersion + 1, Max: peer.MaxVersion + 2}}
	_, err := proto.Negotiate(proto.ProtoPeer, local, newer)
	wiretest.Expect(t, err, proto.CodeVersion, "we speak 4..4, peer speaks 5..6")

	rj := proto.Reject{Code: proto.CodeVersion, Local: local, Remote: newer, Text: err.(*proto.Error).Detail}
	f := proto.SessionFrame(proto.OpReject, proto.AppendReject(nil, &rj))
	got, err := proto.DecodeFrame(proto.AppendFrame(nil, &f), 0)
	if err != nil {
		t.Fatal(err)
	}
	back, err := proto.ParseReject(got.Body)
	if err != nil {
		t.Fatal(err)
	}
	wiretest.Expect(t, back.Err(), proto.CodeVersion, "(peer speaks peer 4..4; we offered peer 5..6)")
}

// TestRetiredVersionsRefused: an agent that speaks only peer version 1
// (no RAFTCHUNK), 2 (no routing: it cannot relay frames for others) or 3
// (no sessions: its links cannot resume) is refused with both ranges
// named.
func TestRetiredVersionsRefused(t *testing.T) {
	for _, v := range []uint8{1, 2, 3} {
		old := proto.Ranges{{Proto: proto.ProtoPeer, Min: v, Max: v}}
		_, err := proto.Negotiate(proto.ProtoPeer, proto.Ranges{peer.Ops().Range()}, old)
		wiretest.Expect(t, err, proto.CodeVersion, fmt.Sprintf("peer protocol: we speak 4..4, peer speaks %d..%d", v, v))
		_, err = proto.Negotiate(proto.ProtoPeer, old, proto.Ranges{peer.Ops().Range()})
		wiretest.Expect(t, err, proto.CodeVersion, fmt.Sprintf("peer protocol: we speak %d..%d, peer speaks 4..4", v, v))
	}
}

// FuzzReceivePeer runs a peer link's receive path over one frame: frame
// checks, the opcode table at the highest version and the PING/PONG body.
func FuzzReceivePeer(f *testing.F) {
	ping, pong := wiretest.PingFrames(peer.Ops(), peer.MaxVersion, peer.OpPing, peer.OpPong)
	f.Add(wiretest.Frame(ping)) // a PING
	f.Add(wiretest.Frame(pong)) // its PONG
	ping.Opcode = 0x0102
	f.Add(wiretest.Frame(ping)) // an opcode of the reserved raft range
	ping.Opcode = peer.OpRaftChunk
	f.Add(wiretest.Frame(ping)) // a RAFTCHUNK whose body is a PING's
	ping.Body = nil
	f.Add(wiretest.Frame(ping)) // no body
	ping.Opcode, ping.Body = peer.OpRoutes, peer.AppendRoutes(nil, []peer.RouteEntry{{Origin: 3, Seqno: 5}})
	f.Add(wiretest.Frame(ping)) // a ROUTES frame (v3)
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := wiretest.Receive(peer.Ops(), peer.MaxVersion, b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if _, ok := peer.Ops().Lookup(fr.Opcode); !ok {
			t.Fatalf("opcode %#04x passed the table", fr.Opcode)
		}
		if p, err := proto.ParsePing(fr.Body); err == nil && !bytes.Equal(proto.AppendPing(nil, p), fr.Body) {
			t.Fatal("re-encoded PING differs")
		}
		if !bytes.Equal(proto.AppendFrame(nil, &fr), b) {
			t.Fatal("re-encoded frame differs")
		}
	})
}

// v2 is the version of the vectors written before version 3.
const v2 = 2

func frame(op uint16, flags proto.Flags, body []byte) proto.Frame {
	return frameAt(v2, op, flags, body)
}

func frameAt(v uint8, op uint16, flags proto.Flags, body []byte) proto.Frame {
	return proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: v, Opcode: op,
		Flags: flags, Hops: proto.HopLimit, MsgID: 0x21}, Body: body}
}

const request = proto.FlagCreate | proto.FlagDelete

// receive is an agent's receive path, on a link that agreed on version
// v, for the membership, log and routing messages.
func receive(v uint8, b []byte) (proto.Frame, any, error) {
	f, err := wiretest.Receive(peer.Ops(), v, b)
	if err != nil {
		return f, nil, err
	}
	reply := f.Flags&proto.FlagReply != 0
	switch {
	case f.Opcode == peer.OpRaftChunk:
		c, err := peer.ParseSnapChunk(f.Body)
		return f, c, err
	case f.Opcode == peer.OpRaft:
		var m raftpb.Message
		if err := gproto.Unmarshal(f.Body, &m); err != nil {
			return f, nil, &proto.Error{Code: proto.CodeField, Detail: "RAFT: bad raft message", Err: err}
		}
		return f, &m, nil
	case (f.Opcode == peer.OpJoin || f.Opcode == peer.OpLeave) && reply:
		r, err := peer.ParseMemberReply(f.Body)
		return f, r, err
	case f.Opcode == peer.OpJoin || f.Opcode == peer.OpLeave:
		c, err := membership.ParseCommand(f.Body)
		return f, c, err
	case f.Opcode == peer.OpNotMember:
		n, err := peer.ParseNotMember(f.Body)
		return f, n, err
	case f.Opcode == peer.OpRoutes:
		es, err := peer.ParseRoutes(f.Body)
		return f, es, err
	case f.Opcode == peer.OpSeqnoReq:
		q, err := peer.ParseSeqnoReq(f.Body)
		return f, q, err
	case f.Opcode == peer.OpSession:
		s, err := peer.ParseSession(f.Body)
		return f, s, err
	case f.Opcode == peer.OpAck:
		n, err := peer.ParseAck(f.Body)
		return f, n, err
	}
	p, err := proto.ParsePing(f.Body)
	return f, p, err
}

func expect(want proto.Frame, msg any) func([]byte) error {
	want.Seal()
	return func(b []byte) error {
		f, got, err := receive(want.Version, b)
		if err != nil {
			return err
		}
		if m, ok := got.(*raftpb.Message); ok {
			if !gproto.Equal(m, msg.(*raftpb.Message)) {
				return fmt.Errorf("decoded %v, want %v", m, msg)
			}
			got, msg = nil, nil
		}
		if !wiretest.Equal(f, want) || !wiretest.Equal(got, msg) {
			return fmt.Errorf("decoded %+v / %+v, want %+v / %+v", f, got, want, msg)
		}
		return nil
	}
}

func receiveErr(b []byte) error { _, _, err := receive(v2, b); return err }

// FuzzParseSnapChunk: never panics, returns *proto.Error, keeps its
// limits, and what it accepts re-encodes to the same bytes.
func FuzzParseSnapChunk(f *testing.F) {
	c := peer.SnapChunk{SnapID: 0x5eed0001, Index: 2, Total: 40, Offset: 32, Data: []byte("8 bytes!")}
	f.Add(peer.AppendSnapChunk(nil, &c)) // raft_chunk_last
	c.Offset = 33
	f.Add(peer.AppendSnapChunk(nil, &c)) // runs past the total
	c.Offset, c.Total = ^uint64(0)-3, ^uint64(0)
	f.Add(peer.AppendSnapChunk(nil, &c)) // offset near 2^64: overflow bait
	b := peer.AppendSnapChunk(nil, &c)[:peer.SnapChunkHeaderSize]
	binary.LittleEndian.PutUint32(b[12:], peer.MaxChunkSize+1)
	f.Add(b)                // announces more than a chunk may carry
	f.Add(make([]byte, 31)) // short of the fixed part
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := peer.ParseSnapChunk(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		n := uint64(len(c.Data))
		if n == 0 || n > peer.MaxChunkSize || c.Offset > c.Total || n > c.Total-c.Offset {
			t.Fatalf("accepted a chunk beyond its limits: id %#x index %d total %d offset %d, %d bytes", c.SnapID, c.Index, c.Total, c.Offset, n)
		}
		if !bytes.Equal(peer.AppendSnapChunk(nil, &c), b) {
			t.Fatal("re-encoded chunk differs")
		}
	})
}

func replyFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U8("result: 0 ok, 1 not leader, 2 refused")
	w.Fixed(3, "reserved, zero")
	w.U64("leader node id")
	w.U64("view instance")
	w.String16("text")
	return w.Fields
}

func chunkFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("snapshot id")
	w.U32("chunk index")
	n := w.U32("data length")
	w.U64("total length")
	w.U64("offset")
	if n > 0 && n <= peer.MaxChunkSize {
		w.Fixed(int(n), "data")
	}
	return w.Fields
}

func commandFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U8("command version")
	w.U8("op: 1 JOIN, 2 LEAVE")
	w.U8("cause")
	w.U8("flags: bit 0 voter")
	w.U64("node id")
	w.U64("incarnation")
	w.String16("name")
	w.String16("addr")
	return w.Fields
}

func vec(name string, about []string, f proto.Frame, fields func([]byte) golden.Fields, decode func([]byte) error, want proto.Code, detail string) wiretest.Vector {
	b := wiretest.Frame(f)
	return wiretest.Vector{Name: name, About: about, Data: b, Fields: wiretest.Annotated(b, fields), Decode: decode, Want: want, Detail: detail}
}

func vectors() []wiretest.Vector {
	rm := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), To: new(uint64(2)), From: new(uint64(1)), Term: new(uint64(7)), Commit: new(uint64(42))}
	rb, err := gproto.Marshal(rm)
	if err != nil {
		panic(err)
	}
	raftF := frame(peer.OpRaft, request, rb)
	join := membership.Command{Op: membership.OpJoin, ID: 3, Incarnation: 0x5eed, Name: "n3", Addr: "127.0.0.3:7946", Voter: true}
	joinF := frame(peer.OpJoin, request, join.Marshal())
	okR := peer.MemberReply{Result: peer.ResultOK, Instance: 57}
	okF := frame(peer.OpJoin, request|proto.FlagReply, peer.AppendMemberReply(nil, &okR))
	nlR := peer.MemberReply{Result: peer.ResultNotLeader, Leader: 1, Text: "node 1 leads"}
	nlF := frame(peer.OpJoin, request|proto.FlagReply, peer.AppendMemberReply(nil, &nlR))
	leave := membership.Command{Op: membership.OpLeave, Cause: membership.CauseGraceful, ID: 3}
	leaveF := frame(peer.OpLeave, request, leave.Marshal())
	nm := peer.NotMember{Instance: 99}
	nmF := frame(peer.OpNotMember, request, peer.AppendNotMember(nil, nm))
	rmR := peer.MemberReply{Result: peer.ResultRemoved, Text: "incarnation 0x5eed of node 3 was removed; join with a new one"}
	rmF := frame(peer.OpJoin, request|proto.FlagReply, peer.AppendMemberReply(nil, &rmR))
	badResult := peer.AppendMemberReply(nil, &okR)
	badResult[0] = 4
	badResultF := frame(peer.OpJoin, request|proto.FlagReply, badResult)
	badRaftF := frame(peer.OpRaft, request, []byte{0xff, 0xff, 0xff})
	badJoinF := frame(peer.OpJoin, request, []byte{1, 1, 0})

	// A 40-byte raft message in three chunks of 16, 16 and 8 bytes.
	msg := []byte("a marshalled raft MsgSnap, 40 bytes long")
	chunk := func(i uint32, off, n int) peer.SnapChunk {
		return peer.SnapChunk{SnapID: 0x5eed0001, Index: i, Total: uint64(len(msg)), Offset: uint64(off), Data: msg[off : off+n]}
	}
	chunkF := func(c peer.SnapChunk) proto.Frame {
		return frame(peer.OpRaftChunk, request, peer.AppendSnapChunk(nil, &c))
	}
	first, last := chunk(0, 0, 16), chunk(2, 32, 8)
	firstF, lastF := chunkF(first), chunkF(last)
	withBody := func(c peer.SnapChunk, fn func([]byte) []byte) proto.Frame {
		return frame(peer.OpRaftChunk, request, fn(peer.AppendSnapChunk(nil, &c)))
	}
	setLen := func(n uint32) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint32(b[12:], n); return b }
	}
	oversizeF := withBody(first, func(b []byte) []byte { return setLen(peer.MaxChunkSize + 1)(b[:peer.SnapChunkHeaderSize]) })
	emptyF := withBody(first, func(b []byte) []byte { return setLen(0)(b[:peer.SnapChunkHeaderSize]) })
	overrun := last
	overrun.Offset = 33
	overrunF := chunkF(overrun)
	truncF := withBody(first, func(b []byte) []byte { return b[:len(b)-1] })
	trailF := withBody(first, func(b []byte) []byte { return append(b, 0) })
	v1F := firstF
	v1F.Version = 1
	return []wiretest.Vector{
		vec("raft_chunk_first", []string{
			"RAFTCHUNK (peer v2): chunk 0 of a 40-byte marshalled raft message, snapshot",
			"id 0x5eed0001, bytes 0..15.",
		}, firstF, chunkFields, expect(firstF, first), 0, ""),
		vec("raft_chunk_last", []string{
			"RAFTCHUNK: chunk 2, the last, of the same message: bytes 32..39; offset plus",
			"data length equals the total length.",
		}, lastF, chunkFields, expect(lastF, last), 0, ""),
		vec("err_chunk_oversize", []string{
			"RAFTCHUNK announcing 1048577 bytes of data, one more than a chunk may carry;",
			"refused from the length field, before the data is read.",
		}, oversizeF, chunkFields, receiveErr, proto.CodeTooLarge, "chunk of 1048577 bytes, limit 1048576"),
		vec("err_chunk_empty", []string{"RAFTCHUNK without data."},
			emptyF, chunkFields, receiveErr, proto.CodeField, "chunk without data"),
		vec("err_chunk_overrun", []string{
			"RAFTCHUNK of 8 bytes at offset 33 of a 40-byte message: it runs past the total.",
		}, overrunF, chunkFields, receiveErr, proto.CodeField, "8 bytes at offset 33 run past the total length 40"),
		vec("err_chunk_truncated", []string{"raft_chunk_first without the last data byte."},
			truncF, chunkFields, receiveErr, proto.CodeField, "truncated at data"),
		vec("err_chunk_trailing", []string{"raft_chunk_first followed by one byte."},
			trailF, chunkFields, receiveErr, proto.CodeField, "1 unexpected bytes"),
		vec("err_chunk_v1", []string{
			"raft_chunk_first sent as peer version 1, on a link that agreed on version 1:",
			"RAFTCHUNK exists since version 2.",
		}, v1F, chunkFields, func(b []byte) error { _, err := wiretest.Receive(peer.Ops(), 1, b); return err },
			proto.CodeOpcode, "peer protocol version 1 has no opcode 0x0101"),
		vec("raft", []string{"RAFT: a raft heartbeat from node 1 to node 2, term 7, commit 42, as raftpb protobuf."},
			raftF, nil, expect(raftF, rm), 0, ""),
		vec("join_request", []string{"JOIN request: node 3 \"n3\", incarnation 0x5eed, at 127.0.0.3:7946 asks to join as a voter."},
			joinF, commandFields, expect(joinF, join), 0, ""),
		vec("join_reply_ok", []string{"JOIN reply: committed in view 57."},
			okF, replyFields, expect(okF, okR), 0, ""),
		vec("join_reply_not_leader", []string{"JOIN reply: not the leader; node 1 is."},
			nlF, replyFields, expect(nlF, nlR), 0, ""),
		vec("join_reply_removed", []string{"JOIN reply: this life of node 3 was removed; it joins with a new one."},
			rmF, replyFields, expect(rmF, rmR), 0, ""),
		vec("leave_request", []string{"LEAVE request: node 3 leaves gracefully."},
			leaveF, commandFields, expect(leaveF, leave), 0, ""),
		vec("not_member", []string{"NOTMEMBER: the sender's view 99 does not include the receiver."},
			nmF, nil, expect(nmF, nm), 0, ""),
		vec("err_reply_result", []string{"JOIN reply with result 4, which is not defined."},
			badResultF, replyFields, receiveErr, proto.CodeField, "unknown result 4"),
		vec("err_raft_body", []string{"RAFT frame whose body is not a protobuf raft message."},
			badRaftF, nil, receiveErr, proto.CodeField, "bad raft message"),
		vec("err_join_truncated", []string{"JOIN request cut off after three bytes of the command."},
			badJoinF, nil, receiveErr, proto.CodeField, "truncated"),
	}
}
