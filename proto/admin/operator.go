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
