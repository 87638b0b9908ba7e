// Package client defines the client sub-protocol, spoken between an
// application and the agent on its own node over a unix socket, and its
// version. The byte layout of every message is in SPEC.md beside this file.
//
// The client protocol stays backward compatible: a new agent keeps every
// opcode and layout an older version defined, so old clients keep working.
package client

import "github.com/corralhq/corral/proto"

// Specification constants: client protocol versions.
const (
	MinVersion uint8 = 1
	MaxVersion uint8 = 1
)

// Specification constants: opcodes.
const (
	OpPing uint16 = 0x0001 // body: proto.Ping; answered by PONG
	OpPong uint16 = 0x0002 // body: the PING's proto.Ping, echoed

	// 0x0100–0x01FF reserved: cluster events (OCF event API)
	// 0x0200–0x02FF reserved: group messaging
	// 0x0300–0x03FF reserved: data service
	// 0x0400–0x04FF reserved: shared addresses
)

// Ops is the client protocol's opcode table.
var Ops = &proto.OpSet{
	Proto: proto.ProtoClient,
	Min:   MinVersion,
	Max:   MaxVersion,
	Ops: map[uint16]proto.Op{
		OpPing: {Name: "PING", Since: 1},
		OpPong: {Name: "PONG", Since: 1},
	},
}
