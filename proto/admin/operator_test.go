package admin_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
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
	preq := request(admin.OpRaftPeers, nil)
	prep := reply(admin.OpRaftPeers, admin.AppendRaftPeers(nil, &samplePeers))
	rreq := request(admin.OpRemove, admin.AppendRemoveRequest(nil, admin.RemoveRequest{Node: 3}))
	rrep := reply(admin.OpRemove, nil)
	return []wiretest.Vector{
		frameVector("remove_request", []string{"Admin REMOVE request (version 2): take node 3 out of the view."},
			rreq, removeFields, expect(rreq, admin.RemoveRequest{Node: 3}), 0, ""),
		frameVector("remove_reply", []string{"Admin REMOVE reply: empty, sent once the removal is committed."}, rrep, nil, expect(rrep, nil), 0, ""),
		bodyVector("err_remove_zero", "REMOVE request for node 0, which no node is.",
			admin.AppendRemoveRequest(nil, admin.RemoveRequest{}), removeFields, parseRemove, "node id 0"),
		bodyVector("err_remove_short", "REMOVE request of 4 bytes; it is 8.",
			admin.AppendRemoveRequest(nil, admin.RemoveRequest{Node: 3})[:4], removeFields, parseRemove, "truncated at node id"),
		frameVector("raft_peers_request", []string{"Admin RAFT-PEERS request (version 2): empty body."}, preq, nil, expect(preq, nil), 0, ""),
		frameVector("raft_peers_reply", []string{
			"Admin RAFT-PEERS reply: node 1 leads in term 3, commit 14, applied 14; voters",
			"n1 (the answering agent, leader) and n2, learner n7.",
		}, prep, raftPeersFields, expect(prep, samplePeers), 0, ""),
		bodyVector("err_raft_peers_flags", "RAFT-PEERS reply whose first peer has flag bit 3 set, which is not defined.",
			peersWith(func(b []byte) []byte { b[36+16] |= 8; return b }), raftPeersFields, parseRaftPeers, "peer 0: unknown flags"),
		bodyVector("err_raft_peers_learner_leads", "RAFT-PEERS reply whose first peer leads but is not a voter.",
			peersWith(func(b []byte) []byte { b[36+16] = 2; return b }), raftPeersFields, parseRaftPeers, "peer 0: a learner cannot lead"),
		bodyVector("err_raft_peers_raft_id", "RAFT-PEERS reply whose first peer has raft id 0.",
			peersWith(func(b []byte) []byte { clear(b[36+8 : 36+16]); return b }), raftPeersFields, parseRaftPeers, "peer 0: raft id 0"),
		bodyVector("err_raft_peers_count", "RAFT-PEERS reply announcing 1000 peers in a body that holds three: refused before allocating.",
			peersWith(func(b []byte) []byte { binary.LittleEndian.PutUint32(b[32:], 1000); return b }), raftPeersFields, parseRaftPeers, "peer count 1000 does not fit"),
		bodyVector("err_raft_peers_truncated", "RAFT-PEERS reply cut off inside the last peer's name.",
			peersWith(func(b []byte) []byte { return b[:len(b)-1] }), raftPeersFields, parseRaftPeers, "truncated at name"),
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

var samplePeers = admin.RaftPeers{Leader: 1, Term: 3, Commit: 14, Applied: 14, Peers: []admin.RaftPeer{
	{Node: 1, RaftID: 0x1badc0de, Voter: true, Leader: true, Self: true, Name: "n1"},
	{Node: 2, RaftID: 0x2badc0de, Voter: true, Name: "n2"},
	{Node: 7, RaftID: 0x7badc0de, Name: "n7"},
}}

func raftPeersFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("leader node id")
	w.U64("term")
	w.U64("commit index")
	w.U64("applied index")
	n := w.U32("peer count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		w.U64(fmt.Sprintf("peer[%d] node id", i))
		w.U64("  raft id (the node's incarnation)")
		w.U8("  flags: bit 0 voter, bit 1 leader, bit 2 self")
		w.String16("  name")
	}
	return w.Fields
}

func parseRaftPeers(b []byte) error { _, err := admin.ParseRaftPeers(b); return err }

func peersWith(fn func(b []byte) []byte) []byte { return fn(admin.AppendRaftPeers(nil, &samplePeers)) }

func TestRaftPeersRoundTrip(t *testing.T) {
	for _, p := range []admin.RaftPeers{samplePeers, {}} {
		got, err := admin.ParseRaftPeers(admin.AppendRaftPeers(nil, &p))
		if err != nil || !wiretest.Equal(got, p) {
			t.Fatalf("round trip of %+v: %+v, %v", p, got, err)
		}
	}
}

func FuzzParseRaftPeers(f *testing.F) {
	f.Add(admin.AppendRaftPeers(nil, &samplePeers))           // the raft_peers_reply body
	f.Add(admin.AppendRaftPeers(nil, &admin.RaftPeers{}))     // no peers
	f.Add(peersWith(func(b []byte) []byte { return b[:40] })) // cut inside the first peer
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := admin.ParseRaftPeers(b)
		wiretest.Typed(t, err)
		if err == nil && !bytes.Equal(admin.AppendRaftPeers(nil, &p), b) {
			t.Fatal("re-encoded RAFT-PEERS reply differs")
		}
	})
}

func removeFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("node id")
	return w.Fields
}

func parseRemove(b []byte) error { _, err := admin.ParseRemoveRequest(b); return err }

func FuzzParseRemoveRequest(f *testing.F) {
	f.Add(admin.AppendRemoveRequest(nil, admin.RemoveRequest{Node: 3})) // the remove_request body
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})                               // node 0
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := admin.ParseRemoveRequest(b)
		wiretest.Typed(t, err)
		if err == nil && (q.Node == 0 || !bytes.Equal(admin.AppendRemoveRequest(nil, q), b)) {
			t.Fatalf("accepted %x as %+v", b, q)
		}
	})
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
