// Package admin defines the admin sub-protocol, spoken between the corral
// command-line tool and the agent over the admin unix socket, and its
// version. The byte layout of every message is in SPEC.md beside this file.
//
// Requests are frames with FlagCreate|FlagDelete and a fresh MsgID; the
// answer carries the same opcode and MsgID with FlagReply added, or
// FlagReply|FlagAbort and a proto.Status body when the request failed.
package admin

import (
	"encoding/binary"

	"github.com/corralhq/corral/proto"
)

// Specification constants: admin protocol versions.
const (
	MinVersion uint8 = 1
	MaxVersion uint8 = 6
)

// Specification constants: opcodes.
const (
	OpPing           = proto.OpPing // body: proto.Ping; answered by PONG
	OpPong           = proto.OpPong // body: the PING's proto.Ping, echoed
	OpVersion uint16 = 0x0010       // request: empty; reply: VersionInfo
	OpMembers uint16 = 0x0011       // request: empty; reply: Members
	// Since version 3 (routes.go).
	OpRoutes uint16 = 0x0012 // request: empty; reply: Routes
	// Since version 4: shared addresses (addr.go).
	OpAddrAdd  uint16 = 0x0013 // request: AddrAdd; reply: empty, once applied
	OpAddrDel  uint16 = 0x0014 // request: AddrDel; reply: empty, once applied
	OpAddrList uint16 = 0x0015 // request: empty; reply: AddrList
	// Since version 5: a stream echo through the mesh (meshecho.go).
	OpMeshEcho uint16 = 0x0016 // request: MeshEcho; reply: MeshEchoResult, once the stream ended

	// 0x0100–0x01FF: membership
	OpView  uint16 = 0x0100 // request: empty; reply: ViewInfo
	OpJoin  uint16 = 0x0101 // request: JoinRequest; reply: empty
	OpLeave uint16 = 0x0102 // request: empty; reply: empty, once this node has left the view
	// Since version 2: operators' views and repairs (operator.go).
	OpQuorum    uint16 = 0x0103 // request: empty; reply: QuorumInfo
	OpRaftPeers uint16 = 0x0104 // request: empty; reply: RaftPeers
	OpRemove    uint16 = 0x0105 // request: RemoveRequest; reply: empty, once committed

	// 0x0200–0x0FFF reserved: data service administration (dhcptab,
	// pntadm), shared addresses
)

// ops is the admin protocol's opcode table. It is unexported so no
// other package can change what every link checks frames against.
var ops = proto.NewOpSet(proto.ProtoAdmin, MinVersion, MaxVersion, map[uint16]proto.Op{
	OpPing:      {Name: "PING", Since: 1},
	OpPong:      {Name: "PONG", Since: 1},
	OpVersion:   {Name: "VERSION", Since: 1},
	OpMembers:   {Name: "MEMBERS", Since: 1},
	OpRoutes:    {Name: "ROUTES", Since: 3},
	OpAddrAdd:   {Name: "ADDR_ADD", Since: 4},
	OpAddrDel:   {Name: "ADDR_DEL", Since: 4},
	OpAddrList:  {Name: "ADDR_LIST", Since: 4},
	OpMeshEcho:  {Name: "MESH_ECHO", Since: 5},
	OpView:      {Name: "VIEW", Since: 1},
	OpJoin:      {Name: "JOIN", Since: 1},
	OpLeave:     {Name: "LEAVE", Since: 1},
	OpQuorum:    {Name: "QUORUM", Since: 2},
	OpRaftPeers: {Name: "RAFT-PEERS", Since: 2},
	OpRemove:    {Name: "REMOVE", Since: 2},
})

// Ops returns the admin protocol's opcode table.
func Ops() *proto.OpSet { return ops }

// Limits on admin message contents.
const (
	MaxMembers   = 4096
	MaxStringLen = 255
)

// VersionInfo is the reply to VERSION.
type VersionInfo struct {
	Binary string       // the agent's build version
	Ranges proto.Ranges // every sub-protocol's spoken versions
}

// AppendVersionInfo appends the body of v.
func AppendVersionInfo(dst []byte, v *VersionInfo) []byte {
	dst = proto.AppendString16(dst, v.Binary)
	dst = append(dst, byte(len(v.Ranges)))
	for _, r := range v.Ranges {
		dst = append(dst, byte(r.Proto), r.Min, r.Max)
	}
	return dst
}

// ParseVersionInfo decodes a VERSION reply.
func ParseVersionInfo(b []byte) (v VersionInfo, err error) {
	r := proto.NewReader(b, "VERSION reply")
	v.Binary = r.String16(MaxStringLen, "binary version")
	n := int(r.U8("range count"))
	if n > proto.MaxRanges {
		r.Fail(proto.CodeField, "%d ranges, limit %d", n, proto.MaxRanges)
		n = 0
	}
	for i := 0; i < n; i++ {
		v.Ranges = append(v.Ranges, proto.Range{Proto: proto.ProtoID(r.U8("proto")), Min: r.U8("min"), Max: r.U8("max")})
	}
	return v, r.Err()
}

// LinkState is a member's link state as seen by the answering agent.
type LinkState uint8

// Specification constants: link states.
const (
	StateDown LinkState = 0 // no link
	StateUp   LinkState = 1 // an authenticated link with heartbeats
	StateSelf LinkState = 2 // the answering agent itself
)

func (s LinkState) String() string {
	switch s {
	case StateDown:
		return "down"
	case StateUp:
		return "up"
	case StateSelf:
		return "self"
	}
	return "unknown"
}

// Member is one known node.
type Member struct {
	ID          uint64 // 0 while a configured peer has never answered
	State       LinkState
	PeerVersion uint8  // negotiated peer protocol version, 0 if never linked
	RTT         uint32 // last round trip in microseconds, 0 if unknown
	Since       int64  // unix nanoseconds of the last state change, 0 if never
	Name        string
	Addr        string
}

// memberFixed is the size of a member's fixed fields.
const memberFixed = 8 + 1 + 1 + 2 + 4 + 8

// AppendMembers appends the body of a MEMBERS reply.
func AppendMembers(dst []byte, ms []Member) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, uint32(len(ms)))
	for i := range ms {
		m := &ms[i]
		dst = le.AppendUint64(dst, m.ID)
		dst = append(dst, byte(m.State), m.PeerVersion, 0, 0)
		dst = le.AppendUint32(dst, m.RTT)
		dst = le.AppendUint64(dst, uint64(m.Since))
		dst = proto.AppendString16(dst, m.Name)
		dst = proto.AppendString16(dst, m.Addr)
	}
	return dst
}

// ParseMembers decodes a MEMBERS reply.
func ParseMembers(b []byte) ([]Member, error) {
	r := proto.NewReader(b, "MEMBERS reply")
	count := r.U32("count")
	// Each member takes at least memberFixed+4 bytes, so the count is
	// checked against the body before anything is allocated. The count is
	// compared before it becomes an int, which may be 32 bits wide.
	if count > MaxMembers || int(count)*(memberFixed+4) > r.Len() {
		r.Fail(proto.CodeField, "member count %d does not fit a body of %d bytes (limit %d)", count, len(b), MaxMembers)
		return nil, r.Err()
	}
	ms := make([]Member, count)
	for i := range ms {
		m := &ms[i]
		m.ID = r.U64("id")
		m.State = LinkState(r.U8("state"))
		m.PeerVersion = r.U8("peer version")
		r.Zero(2, "reserved")
		m.RTT = r.U32("rtt")
		m.Since = int64(r.U64("since"))
		m.Name = r.String16(MaxStringLen, "name")
		m.Addr = r.String16(MaxStringLen, "addr")
		if m.State > StateSelf {
			r.Fail(proto.CodeField, "member %d: unknown state %d", i, m.State)
		}
	}
	return ms, r.Err()
}

// ViewInfo is the reply to VIEW: the membership view as this agent has
// applied it, and what it knows of the cluster log.
type ViewInfo struct {
	Instance uint64 // the view's instance: the log index that made it
	Leader   uint64 // the cluster log's leader, 0 if unknown
	Term     uint64
	Applied  uint64 // highest log index applied here
	Members  []ViewMember
}

// ViewMember is a member of the view.
type ViewMember struct {
	ID     uint64
	BornOn uint64
	Voter  bool
	Name   string
	Addr   string
}

// viewMemberFixed is the size of a view member's fixed fields plus its two
// string lengths.
const viewMemberFixed = 8 + 8 + 1 + 2 + 2

// AppendViewInfo appends the body of a VIEW reply.
func AppendViewInfo(dst []byte, v *ViewInfo) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, v.Instance)
	dst = le.AppendUint64(dst, v.Leader)
	dst = le.AppendUint64(dst, v.Term)
	dst = le.AppendUint64(dst, v.Applied)
	dst = le.AppendUint32(dst, uint32(len(v.Members)))
	for _, m := range v.Members {
		dst = le.AppendUint64(dst, m.ID)
		dst = le.AppendUint64(dst, m.BornOn)
		var flags byte
		if m.Voter {
			flags = 1
		}
		dst = append(dst, flags)
		dst = proto.AppendString16(dst, m.Name)
		dst = proto.AppendString16(dst, m.Addr)
	}
	return dst
}

// ParseViewInfo decodes a VIEW reply.
func ParseViewInfo(b []byte) (ViewInfo, error) {
	r := proto.NewReader(b, "VIEW reply")
	var v ViewInfo
	v.Instance = r.U64("instance")
	v.Leader = r.U64("leader")
	v.Term = r.U64("term")
	v.Applied = r.U64("applied")
	n := uint64(r.U32("count"))
	if n > MaxMembers || n*viewMemberFixed > uint64(r.Len()) {
		r.Fail(proto.CodeField, "member count %d does not fit a body of %d bytes (limit %d)", n, len(b), MaxMembers)
		return v, r.Err()
	}
	v.Members = make([]ViewMember, n)
	for i := range v.Members {
		m := &v.Members[i]
		m.ID = r.U64("id")
		m.BornOn = r.U64("born-on")
		flags := r.U8("flags")
		m.Voter = flags&1 != 0
		m.Name = r.String16(MaxStringLen, "name")
		m.Addr = r.String16(MaxStringLen, "addr")
		if flags&^1 != 0 {
			r.Fail(proto.CodeField, "member %d: unknown flags %#02x", i, flags)
		}
	}
	return v, r.Err()
}

// JoinRequest asks the agent to reach the cluster through Addr: it adds
// Addr to its peers, and an agent that is not yet a member joins through it.
type JoinRequest struct {
	Addr string // HOST:PORT of a member
}

// AppendJoinRequest appends the body of a JOIN request.
func AppendJoinRequest(dst []byte, j JoinRequest) []byte { return proto.AppendString16(dst, j.Addr) }

// ParseJoinRequest decodes a JOIN request.
func ParseJoinRequest(b []byte) (JoinRequest, error) {
	r := proto.NewReader(b, "JOIN request")
	j := JoinRequest{Addr: r.String16(MaxStringLen, "addr")}
	if r.Len() == 0 && j.Addr == "" {
		r.Fail(proto.CodeField, "empty address")
	}
	return j, r.Err()
}
