// Package peer defines the peer sub-protocol, spoken between agents over
// their TLS links, and its version. The byte layout of every message is in
// SPEC.md beside this file; the frame around it is proto's.
package peer

import (
	"encoding/binary"
	"strconv"

	"github.com/corralhq/corral/proto"
)

// Specification constants: peer protocol versions. Two agents use the
// highest version both speak; with none in common the link is refused.
// Version 1 is retired: it cannot carry a raft message larger than one
// frame, so a v1 agent could never receive a large snapshot. Version 3
// adds mesh routing adverts and retires version 2: a v2 agent cannot relay
// frames for others, and a cluster whose links are not a full mesh needs
// every agent to. Version 4 adds link sessions (SESSION, ACK: a link that
// reconnects within the resume window loses no frame) and retires
// version 3: a v3 link cannot resume, so transactions pinned to it would
// end at every blip while the rest of the cluster rides them out.
const (
	MinVersion uint8 = 4
	MaxVersion uint8 = 4
)

// Specification constants: opcodes. Ranges marked reserved belong to later
// services; their messages will be defined by the version that adds them.
const (
	OpPing = proto.OpPing // body: proto.Ping; answered by PONG
	OpPong = proto.OpPong // body: the PING's proto.Ping, echoed
	// 0x0003, 0x0004: OpAck and OpSession (session.go, v4)

	// 0x0100–0x01FF: cluster log
	OpRaft      uint16 = 0x0100 // body: one raft message (raftpb.Message, protobuf)
	OpRaftChunk uint16 = 0x0101 // body: SnapChunk, one piece of a marshalled raft message (v2)

	// 0x0200–0x02FF: mesh routing and transactions (the rest of the range
	// reserved)
	OpRoutes   uint16 = 0x0200 // body: ROUTES, route adverts on one link (v3)
	OpSeqnoReq uint16 = 0x0201 // body: SeqnoReq, a request for a newer seqno (v3)
	// OpStream is a generic streaming transaction between two services
	// (mesh.Open, mesh.HandleTx): always routed (Source, Target set), its
	// body the service's bytes, opaque to the mesh (v3).
	OpStream uint16 = 0x0202

	// 0x0300–0x03FF: membership
	OpJoin      uint16 = 0x0300 // request: membership JOIN command; reply: MemberReply
	OpLeave     uint16 = 0x0301 // request: membership LEAVE command; reply: MemberReply
	OpNotMember uint16 = 0x0302 // notice: NotMember; the receiver is not in the sender's view

	// 0x0400–0x04FF reserved: group messaging
	// 0x0500–0x05FF reserved: data service
	// 0x0600–0x06FF reserved: shared addresses
)

// ops is the peer protocol's opcode table. It is unexported so no
// other package can change what every link checks frames against.
var ops = proto.NewOpSet(proto.ProtoPeer, MinVersion, MaxVersion, map[uint16]proto.Op{
	OpPing:      {Name: "PING", Since: 1},
	OpPong:      {Name: "PONG", Since: 1},
	OpAck:       {Name: "ACK", Since: 4},
	OpSession:   {Name: "SESSION", Since: 4},
	OpRaft:      {Name: "RAFT", Since: 1},
	OpRaftChunk: {Name: "RAFTCHUNK", Since: 2},
	OpRoutes:    {Name: "ROUTES", Since: 3},
	OpSeqnoReq:  {Name: "SEQNO_REQ", Since: 3},
	OpStream:    {Name: "STREAM", Since: 3},
	OpJoin:      {Name: "JOIN", Since: 1},
	OpLeave:     {Name: "LEAVE", Since: 1},
	OpNotMember: {Name: "NOTMEMBER", Since: 1},
})

// Ops returns the peer protocol's opcode table.
func Ops() *proto.OpSet { return ops }

// Result is the outcome of a JOIN or LEAVE request.
type Result uint8

// Specification constants: results.
const (
	ResultOK        Result = 0 // committed; Instance is the view that holds the change
	ResultNotLeader Result = 1 // ask Leader instead (0: no leader known, retry later)
	ResultRefused   Result = 2 // the change is not allowed; Text says why
	// ResultRemoved answers a JOIN of a life the cluster removed: that
	// incarnation never joins again, so the asking node starts a new life
	// (since version 2).
	ResultRemoved Result = 3
)

func (r Result) String() string {
	switch r {
	case ResultOK:
		return "ok"
	case ResultNotLeader:
		return "not leader"
	case ResultRefused:
		return "refused"
	case ResultRemoved:
		return "removed"
	}
	return "result(" + strconv.Itoa(int(r)) + ")"
}

// MemberReply answers JOIN and LEAVE.
type MemberReply struct {
	Result   Result
	Leader   uint64 // ResultNotLeader: the leader's node id if known
	Instance uint64 // ResultOK: the view instance of the change
	Text     string
}

// AppendMemberReply appends the body of r.
func AppendMemberReply(dst []byte, r *MemberReply) []byte {
	dst = append(dst, byte(r.Result), 0, 0, 0)
	dst = binary.LittleEndian.AppendUint64(dst, r.Leader)
	dst = binary.LittleEndian.AppendUint64(dst, r.Instance)
	return proto.AppendString16(dst, r.Text)
}

// ParseMemberReply decodes a JOIN or LEAVE reply.
func ParseMemberReply(b []byte) (MemberReply, error) {
	r := proto.NewReader(b, "JOIN/LEAVE reply")
	var m MemberReply
	m.Result = Result(r.U8("result"))
	r.Zero(3, "reserved")
	m.Leader = r.U64("leader")
	m.Instance = r.U64("instance")
	m.Text = r.String16(proto.MaxReasonLen, "text")
	if m.Result > ResultRemoved {
		r.Fail(proto.CodeField, "unknown result %d", m.Result)
	}
	return m, r.Err()
}

// NotMember tells a node that it is not in the sender's view, whose
// instance it names. A node whose own view includes itself and is older
// than Instance has been removed while it was away: it is EVICTED.
type NotMember struct {
	Instance uint64
}

// AppendNotMember appends the body of n.
func AppendNotMember(dst []byte, n NotMember) []byte {
	return binary.LittleEndian.AppendUint64(dst, n.Instance)
}

// ParseNotMember decodes a NOTMEMBER body.
func ParseNotMember(b []byte) (NotMember, error) {
	r := proto.NewReader(b, "NOTMEMBER")
	n := NotMember{Instance: r.U64("instance")}
	return n, r.Err()
}

// Specification constants: RAFTCHUNK limits.
const (
	// MaxChunkSize is the most data one RAFTCHUNK carries.
	MaxChunkSize = 1 << 20
	// DefaultMaxMessage is the receiver's default cap on a chunked
	// message's total length; a receiver may configure another.
	DefaultMaxMessage uint64 = 4 << 30
	// SnapChunkHeaderSize is the size of a RAFTCHUNK body without data.
	SnapChunkHeaderSize = 32
)

// SnapChunk is one piece of a marshalled raft message (in practice a
// MsgSnap) too large for one frame. The pieces of one message share
// SnapID, are numbered from 0 and cover [0, Total) in order, without gaps
// or overlaps; reassembly is the receiver's (package cluster).
type SnapChunk struct {
	SnapID uint64 // chosen by the sender, fresh for every message it chunks
	Index  uint32 // 0 for the first chunk, then one more for each
	Total  uint64 // length of the whole marshalled message, > 0
	Offset uint64 // where Data starts in the message
	Data   []byte // 1..MaxChunkSize bytes; Offset+len(Data) <= Total
}

// AppendSnapChunk appends the body of c.
func AppendSnapChunk(dst []byte, c *SnapChunk) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, c.SnapID)
	dst = le.AppendUint32(dst, c.Index)
	dst = le.AppendUint32(dst, uint32(len(c.Data)))
	dst = le.AppendUint64(dst, c.Total)
	dst = le.AppendUint64(dst, c.Offset)
	return append(dst, c.Data...)
}

// ParseSnapChunk decodes a RAFTCHUNK body. Data aliases b. It checks the
// chunk on its own: the data length against MaxChunkSize (CodeTooLarge)
// before the data is read, and that the chunk lies inside Total. Whether
// it fits the message being reassembled, and Total against the
// receiver's cap, is for the reassembler.
func ParseSnapChunk(b []byte) (SnapChunk, error) {
	r := proto.NewReader(b, "RAFTCHUNK")
	var c SnapChunk
	c.SnapID = r.U64("snapshot id")
	c.Index = r.U32("chunk index")
	n := r.U32("data length")
	c.Total = r.U64("total length")
	c.Offset = r.U64("offset")
	// Fail keeps an earlier truncation error; Bytes reads nothing after one.
	switch {
	case n > MaxChunkSize:
		r.Fail(proto.CodeTooLarge, "chunk of %d bytes, limit %d", n, MaxChunkSize)
	case n == 0:
		r.Fail(proto.CodeField, "chunk without data")
	case c.Offset > c.Total || uint64(n) > c.Total-c.Offset:
		r.Fail(proto.CodeField, "%d bytes at offset %d run past the total length %d", n, c.Offset, c.Total)
	}
	c.Data = r.Bytes(int(n), "data")
	return c, r.Err()
}
