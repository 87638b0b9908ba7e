// Package peer defines the peer sub-protocol, spoken between agents over
// their TLS links, and its version. The byte layout of every message is in
// SPEC.md beside this file; the frame around it is proto's.
package peer

import "github.com/corralhq/corral/proto"

// Specification constants: peer protocol versions. Two agents use the
// highest version both speak; with none in common the link is refused.
const (
	MinVersion uint8 = 1
	MaxVersion uint8 = 1
)

// Specification constants: opcodes. Ranges marked reserved belong to later
// services; their messages will be defined by the version that adds them.
const (
	OpPing uint16 = 0x0001 // body: proto.Ping; answered by PONG
	OpPong uint16 = 0x0002 // body: the PING's proto.Ping, echoed

	// 0x0100–0x01FF reserved: cluster log (raft messages)
	// 0x0200–0x02FF reserved: mesh routing, spans, transactions, LINKFAIL
	// 0x0300–0x03FF reserved: membership and connectivity
	// 0x0400–0x04FF reserved: group messaging
	// 0x0500–0x05FF reserved: data service
	// 0x0600–0x06FF reserved: shared addresses
)

// Ops is the peer protocol's opcode table.
var Ops = &proto.OpSet{
	Proto: proto.ProtoPeer,
	Min:   MinVersion,
	Max:   MaxVersion,
	Ops: map[uint16]proto.Op{
		OpPing: {Name: "PING", Since: 1},
		OpPong: {Name: "PONG", Since: 1},
	},
}
