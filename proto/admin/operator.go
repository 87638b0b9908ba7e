package admin

import (
	"encoding/binary"

	"github.com/corralhq/corral/proto"
)

// QuorumInfo is the reply to QUORUM: whether the answering agent's
// cluster has quorum as this agent sees it, and why not.
type QuorumInfo struct {
	Member    bool   // the agent is in the view
	Quorate   bool   // it is a member and reaches a majority of the voters
	Voters    uint32 // voters in the view
	Reachable uint32 // voters it reaches: itself and those it has a link to
}

// Need is the number of voters a quorum takes.
func (q QuorumInfo) Need() uint32 { return q.Voters/2 + 1 }

// Quorum flags.
const (
	quorumMember  = 1 << 0
	quorumQuorate = 1 << 1
)

// QuorumInfoSize is the size of a QUORUM reply.
const QuorumInfoSize = 12

// AppendQuorumInfo appends the body of a QUORUM reply.
func AppendQuorumInfo(dst []byte, q QuorumInfo) []byte {
	var flags byte
	if q.Member {
		flags |= quorumMember
	}
	if q.Quorate {
		flags |= quorumQuorate
	}
	dst = append(dst, flags, 0, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, q.Voters)
	return binary.LittleEndian.AppendUint32(dst, q.Reachable)
}

// ParseQuorumInfo decodes a QUORUM reply.
func ParseQuorumInfo(b []byte) (QuorumInfo, error) {
	r := proto.NewReader(b, "QUORUM reply")
	flags := r.U8("flags")
	r.Zero(3, "reserved")
	q := QuorumInfo{Member: flags&quorumMember != 0, Quorate: flags&quorumQuorate != 0}
	q.Voters = r.U32("voters")
	q.Reachable = r.U32("reachable")
	switch {
	case flags&^(quorumMember|quorumQuorate) != 0:
		r.Fail(proto.CodeField, "unknown flags %#02x", flags)
	case q.Quorate && !q.Member:
		r.Fail(proto.CodeField, "quorate but not a member")
	case q.Voters > MaxMembers:
		r.Fail(proto.CodeField, "%d voters, limit %d", q.Voters, MaxMembers)
	case q.Reachable > q.Voters:
		r.Fail(proto.CodeField, "%d of %d voters reachable", q.Reachable, q.Voters)
	}
	return q, r.Err()
}

// RaftPeers is the reply to RAFT-PEERS: the answering agent's raft
// status and raft's configuration, each member named by its node.
type RaftPeers struct {
	Leader  uint64 // node id of the leader, 0 if unknown
	Term    uint64
	Commit  uint64
	Applied uint64
	Peers   []RaftPeer
}

// RaftPeer is one voter or learner of raft's configuration.
type RaftPeer struct {
	Node   uint64 // node id; 0 if the agent cannot tell whose it is
	RaftID uint64 // the raft id: the incarnation of the node's life
	Voter  bool   // else a learner
	Leader bool
	Self   bool // the answering agent
	Name   string
}

// Raft peer flags.
const (
	peerVoter  = 1 << 0
	peerLeader = 1 << 1
	peerSelf   = 1 << 2
)

// raftPeerFixed is the size of a raft peer's fixed fields and name length.
const raftPeerFixed = 8 + 8 + 1 + 2

// AppendRaftPeers appends the body of a RAFT-PEERS reply.
func AppendRaftPeers(dst []byte, p *RaftPeers) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, p.Leader)
	dst = le.AppendUint64(dst, p.Term)
	dst = le.AppendUint64(dst, p.Commit)
	dst = le.AppendUint64(dst, p.Applied)
	dst = le.AppendUint32(dst, uint32(len(p.Peers)))
	for _, m := range p.Peers {
		dst = le.AppendUint64(dst, m.Node)
		dst = le.AppendUint64(dst, m.RaftID)
		var flags byte
		if m.Voter {
			flags |= peerVoter
		}
		if m.Leader {
			flags |= peerLeader
		}
		if m.Self {
			flags |= peerSelf
		}
		dst = append(dst, flags)
		dst = proto.AppendString16(dst, m.Name)
	}
	return dst
}

// ParseRaftPeers decodes a RAFT-PEERS reply.
func ParseRaftPeers(b []byte) (RaftPeers, error) {
	r := proto.NewReader(b, "RAFT-PEERS reply")
	var p RaftPeers
	p.Leader = r.U64("leader")
	p.Term = r.U64("term")
	p.Commit = r.U64("commit")
	p.Applied = r.U64("applied")
	n := uint64(r.U32("count"))
	if n > MaxMembers || n*raftPeerFixed > uint64(r.Len()) {
		r.Fail(proto.CodeField, "peer count %d does not fit a body of %d bytes (limit %d)", n, len(b), MaxMembers)
		return p, r.Err()
	}
	p.Peers = make([]RaftPeer, n)
	for i := range p.Peers {
		m := &p.Peers[i]
		m.Node = r.U64("node id")
		m.RaftID = r.U64("raft id")
		flags := r.U8("flags")
		m.Voter, m.Leader, m.Self = flags&peerVoter != 0, flags&peerLeader != 0, flags&peerSelf != 0
		m.Name = r.String16(MaxStringLen, "name")
		switch {
		case flags&^(peerVoter|peerLeader|peerSelf) != 0:
			r.Fail(proto.CodeField, "peer %d: unknown flags %#02x", i, flags)
		case m.Leader && !m.Voter:
			r.Fail(proto.CodeField, "peer %d: a learner cannot lead", i)
		case m.RaftID == 0:
			r.Fail(proto.CodeField, "peer %d: raft id 0", i)
		}
	}
	return p, r.Err()
}

// RemoveRequest asks the agent to have the leader take node Node out of
// the view (corral members remove).
type RemoveRequest struct {
	Node uint64 // never 0
}

// AppendRemoveRequest appends the body of a REMOVE request.
func AppendRemoveRequest(dst []byte, r RemoveRequest) []byte {
	return binary.LittleEndian.AppendUint64(dst, r.Node)
}

// ParseRemoveRequest decodes a REMOVE request.
func ParseRemoveRequest(b []byte) (RemoveRequest, error) {
	r := proto.NewReader(b, "REMOVE request")
	q := RemoveRequest{Node: r.U64("node id")}
	if q.Node == 0 {
		r.Fail(proto.CodeField, "node id 0")
	}
	return q, r.Err()
}
