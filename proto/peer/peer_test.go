package peer_test

import (
	"bytes"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/proto/peer"
)

// Regenerate the golden files with: go test ./proto/... -rewrite
func TestGolden(t *testing.T) {
	wiretest.Run(t, "testdata", wiretest.PingVectors(peer.Ops, peer.OpPing, peer.OpPong, 0x0100))
}

func TestOps(t *testing.T) {
	if err := wiretest.CheckOps(peer.Ops); err != nil {
		t.Fatal(err)
	}
	if peer.Ops.Proto != proto.ProtoPeer || peer.Ops.Min != peer.MinVersion || peer.Ops.Max != peer.MaxVersion {
		t.Fatalf("Ops declares %s %d..%d", peer.Ops.Proto, peer.Ops.Min, peer.Ops.Max)
	}
	for op := range peer.Ops.Ops {
		if op >= 0x0100 && op <= 0x06FF {
			t.Errorf("opcode %#04x lies in a range SPEC.md reserves for a later service", op)
		}
	}
	wiretest.CheckOpTable(t, peer.Ops, "Opcode table of the peer protocol (proto/peer/SPEC.md).")
}

// TestJoinVersionMismatch plays a join between agents without a common
// peer version: the accepting side answers REJECT naming both ranges,
// and the joining side's error says both versions too.
func TestJoinVersionMismatch(t *testing.T) {
	local := proto.Ranges{peer.Ops.Range()}
	newer := proto.Ranges{{Proto: proto.ProtoPeer, Min: peer.MaxVersion + 1, Max: peer.MaxVersion + 2}}
	_, err := proto.Negotiate(proto.ProtoPeer, local, newer)
	wiretest.Expect(t, err, proto.CodeVersion, "we speak 1..1, peer speaks 2..3")

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
	wiretest.Expect(t, back.Err(), proto.CodeVersion, "(peer speaks peer 1..1; we offered peer 2..3)")
}

// FuzzReceivePeer runs a peer link's receive path over one frame: frame
// checks, the opcode table at the highest version and the PING/PONG body.
func FuzzReceivePeer(f *testing.F) {
	ping, pong := wiretest.PingFrames(peer.Ops, peer.MaxVersion, peer.OpPing, peer.OpPong)
	f.Add(wiretest.Frame(ping)) // a PING
	f.Add(wiretest.Frame(pong)) // its PONG
	ping.Opcode = 0x0101
	f.Add(wiretest.Frame(ping)) // an opcode of the reserved raft range
	ping.Body = nil
	f.Add(wiretest.Frame(ping)) // no body
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := wiretest.Receive(peer.Ops, peer.MaxVersion, b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if _, ok := peer.Ops.Ops[fr.Opcode]; !ok {
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
