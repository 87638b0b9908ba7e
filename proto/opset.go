package proto

import (
	"encoding/binary"
	"fmt"
	"time"
)

// OpSet describes one sub-protocol: its id, the versions this build speaks
// and the opcodes each version defines. The peer, client and admin
// packages each declare one; links use it to refuse frames of the wrong
// version or with an unknown opcode.
type OpSet struct {
	Proto    ProtoID
	Min, Max uint8
	// Ops maps each opcode to its name and the first version defining it.
	Ops map[uint16]Op
}

// Op is an entry of an OpSet.
type Op struct {
	Name  string
	Since uint8
}

// Range returns the versions spoken.
func (s *OpSet) Range() Range { return Range{Proto: s.Proto, Min: s.Min, Max: s.Max} }

// Name returns the opcode's spec name.
func (s *OpSet) Name(op uint16) string {
	if o, ok := s.Ops[op]; ok {
		return o.Name
	}
	return fmt.Sprintf("%#04x", op)
}

// Check refuses a frame that is not of this sub-protocol at version v or
// whose opcode version v does not define.
func (s *OpSet) Check(h *Header, v uint8) error {
	if h.Proto != s.Proto {
		return Errorf(CodeField, "frame of the %s protocol on a %s link", h.Proto, s.Proto)
	}
	if h.Version != v {
		return Errorf(CodeVersion, "%s frame of version %d on a link that agreed on %d", s.Proto, h.Version, v)
	}
	if o, ok := s.Ops[h.Opcode]; !ok || o.Since > v {
		return Errorf(CodeOpcode, "%s protocol version %d has no opcode %#04x", s.Proto, v, h.Opcode)
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
