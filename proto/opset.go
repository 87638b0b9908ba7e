package proto

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Specification constants: the opcodes every sub-protocol (peer, client,
// admin) defines alike, answered by the link itself.
const (
	OpPing uint16 = 0x0001 // body: Ping; answered by PONG
	OpPong uint16 = 0x0002 // body: the PING's Ping, echoed
)

// OpSet describes one sub-protocol: its id, the versions this build speaks
// and the opcodes each version defines. The peer, client and admin
// packages each declare one; links use it to refuse frames of the wrong
// version or with an unknown opcode. An OpSet cannot be changed after
// NewOpSet, so one value is safely shared by every link and package.
type OpSet struct {
	proto    ProtoID
	min, max uint8
	ops      map[uint16]Op // by opcode; never written after NewOpSet
}

// Op is an entry of an OpSet.
type Op struct {
	Name  string
	Since uint8 // the first version defining the opcode
}

// NewOpSet returns the OpSet of sub-protocol p at versions min..max with
// the opcodes of tables, which it copies. An opcode in two tables is a
// programming error: it panics.
func NewOpSet(p ProtoID, min, max uint8, tables ...map[uint16]Op) *OpSet {
	s := &OpSet{proto: p, min: min, max: max, ops: map[uint16]Op{}}
	for _, t := range tables {
		for code, o := range t {
			if _, dup := s.ops[code]; dup {
				panic(fmt.Sprintf("proto: %s opcode %#04x defined twice", p, code))
			}
			s.ops[code] = o
		}
	}
	return s
}

// Proto returns the sub-protocol's id.
func (s *OpSet) Proto() ProtoID { return s.proto }

// Range returns the versions spoken.
func (s *OpSet) Range() Range { return Range{Proto: s.proto, Min: s.min, Max: s.max} }

// Lookup returns the entry of opcode op.
func (s *OpSet) Lookup(op uint16) (Op, bool) {
	o, ok := s.ops[op]
	return o, ok
}

// Opcodes returns every defined opcode in increasing order.
func (s *OpSet) Opcodes() []uint16 { return slices.Sorted(maps.Keys(s.ops)) }

// Name returns the opcode's spec name.
func (s *OpSet) Name(op uint16) string {
	if o, ok := s.ops[op]; ok {
		return o.Name
	}
	return fmt.Sprintf("%#04x", op)
}

// Check refuses a frame that is not of this sub-protocol at version v or
// whose opcode version v does not define.
func (s *OpSet) Check(h *Header, v uint8) error {
	if h.Proto != s.proto {
		return Errorf(CodeField, "frame of the %s protocol on a %s link", h.Proto, s.proto)
	}
	if h.Version != v {
		return Errorf(CodeVersion, "%s frame of version %d on a link that agreed on %d", s.proto, h.Version, v)
	}
	if o, ok := s.ops[h.Opcode]; !ok || o.Since > v {
		return Errorf(CodeOpcode, "%s protocol version %d has no opcode %#04x", s.proto, v, h.Opcode)
	}
	return nil
}

// Ping is the body of PING and PONG in every sub-protocol: the sender's
// clock, echoed back unchanged so the sender can measure the round trip
// without trusting the peer's clock.
type Ping struct {
	Sent int64 // unix nanoseconds at the sender of the PING
}

// PingSize is the size of a Ping body.
const PingSize = 8

// AppendPing appends the body of p.
func AppendPing(dst []byte, p Ping) []byte {
	return binary.LittleEndian.AppendUint64(dst, uint64(p.Sent))
}

// ParsePing decodes a PING or PONG body.
func ParsePing(b []byte) (Ping, error) {
	r := NewReader(b, "PING")
	p := Ping{Sent: int64(r.U64("sent"))}
	return p, r.Err()
}

// RTT returns the round trip for a PONG echoing p, received at now.
func (p Ping) RTT(now time.Time) time.Duration { return now.Sub(time.Unix(0, p.Sent)) }
