package admin_test

import (
	"bytes"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

var sampleQuorum = admin.QuorumInfo{Member: true, Quorate: false, Voters: 5, Reachable: 2}

func quorumFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U8("flags: bit 0 member, bit 1 quorate")
	w.Fixed(3, "reserved, zero")
	w.U32("voters in the view")
	w.U32("voters reachable, this node included")
	return w.Fields
}

func parseQuorum(b []byte) error { _, err := admin.ParseQuorumInfo(b); return err }

func quorumWith(fn func(b []byte) []byte) []byte {
	return fn(admin.AppendQuorumInfo(nil, sampleQuorum))
}

// operatorVectors are the messages of admin version 2.
func operatorVectors() []wiretest.Vector {
	qreq := request(admin.OpQuorum, nil)
	qrep := reply(admin.OpQuorum, admin.AppendQuorumInfo(nil, sampleQuorum))
	return []wiretest.Vector{
		frameVector("quorum_request", []string{"Admin QUORUM request (version 2): empty body."}, qreq, nil, expect(qreq, nil), 0, ""),
		frameVector("quorum_reply", []string{
			"Admin QUORUM reply: a member that reaches 2 of the view's 5 voters (itself",
			"included); a quorum needs 3, so it is not quorate.",
		}, qrep, quorumFields, expect(qrep, sampleQuorum), 0, ""),
		frameVector("err_quorum_v1", []string{
			"A QUORUM request sent as admin version 1, which does not define it.",
		}, func() (f proto.Frame) { f = qreq; f.Version = 1; return f }(), nil, receiveErr, proto.CodeOpcode, "admin protocol version 1 has no opcode 0x0103"),
		bodyVector("err_quorum_flags", "QUORUM reply with flag bit 2 set, which is not defined.",
			quorumWith(func(b []byte) []byte { b[0] |= 4; return b }), quorumFields, parseQuorum, "unknown flags"),
		bodyVector("err_quorum_not_member", "QUORUM reply saying quorate but not a member.",
			quorumWith(func(b []byte) []byte { b[0] = 2; return b }), quorumFields, parseQuorum, "quorate but not a member"),
		bodyVector("err_quorum_reachable", "QUORUM reply with 6 of 5 voters reachable.",
			quorumWith(func(b []byte) []byte { b[8] = 6; return b }), quorumFields, parseQuorum, "6 of 5 voters reachable"),
		bodyVector("err_quorum_reserved", "QUORUM reply with a reserved byte not zero.",
			quorumWith(func(b []byte) []byte { b[2] = 1; return b }), quorumFields, parseQuorum, "reserved reserved is not zero"),
		bodyVector("err_quorum_truncated", "QUORUM reply of 11 bytes; it is 12.",
			quorumWith(func(b []byte) []byte { return b[:11] }), quorumFields, parseQuorum, "truncated at reachable"),
	}
}

func TestQuorumRoundTrip(t *testing.T) {
	for _, q := range []admin.QuorumInfo{sampleQuorum, {}, {Member: true, Quorate: true, Voters: admin.MaxMembers, Reachable: admin.MaxMembers}} {
		got, err := admin.ParseQuorumInfo(admin.AppendQuorumInfo(nil, q))
		if err != nil || got != q {
			t.Fatalf("round trip of %+v: %+v, %v", q, got, err)
		}
	}
	if n := len(admin.AppendQuorumInfo(nil, sampleQuorum)); n != admin.QuorumInfoSize {
		t.Fatalf("QUORUM reply is %d bytes, want %d", n, admin.QuorumInfoSize)
	}
}

func FuzzParseQuorumInfo(f *testing.F) {
	f.Add(admin.AppendQuorumInfo(nil, sampleQuorum))                // the quorum_reply body
	f.Add(quorumWith(func(b []byte) []byte { b[8] = 6; return b })) // more reachable than voters
	f.Add(quorumWith(func(b []byte) []byte { return b[:5] }))       // truncated
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := admin.ParseQuorumInfo(b)
		wiretest.Typed(t, err)
		if err == nil && !bytes.Equal(admin.AppendQuorumInfo(nil, q), b) {
			t.Fatal("re-encoded QUORUM reply differs")
		}
	})
}
