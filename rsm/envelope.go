package rsm

import (
	"encoding/binary"
	"fmt"
)

// Specification constants: the command envelope (SPEC.md).
const (
	EnvelopeVersion   byte = 1
	EnvelopeHeaderLen      = 1 + 1 + 1 + 8 + 8
	// MaxCommand is the largest machine command an envelope may carry.
	MaxCommand = 8 << 20
)

// Envelope is the header the Proposer puts in front of every machine
// command in a data entry of the log.
type Envelope struct {
	Machine  ID
	Flags    uint8 // reserved; 0 in version 1
	Proposer uint64
	Request  uint64 // 0: no deduplication
	Cmd      []byte
}

// AppendEnvelope appends the encoding of e to b.
func AppendEnvelope(b []byte, e Envelope) []byte {
	b = append(b, EnvelopeVersion, byte(e.Machine), e.Flags)
	b = binary.LittleEndian.AppendUint64(b, e.Proposer)
	b = binary.LittleEndian.AppendUint64(b, e.Request)
	return append(b, e.Cmd...)
}

// ParseEnvelope decodes an envelope. Cmd aliases b. Errors are
// *EnvelopeError.
func ParseEnvelope(b []byte) (Envelope, error) {
	if len(b) < EnvelopeHeaderLen {
		return Envelope{}, &EnvelopeError{fmt.Sprintf("%d bytes, shorter than the %d-byte header", len(b), EnvelopeHeaderLen)}
	}
	if b[0] != EnvelopeVersion {
		return Envelope{}, &EnvelopeError{fmt.Sprintf("version %d, want %d", b[0], EnvelopeVersion)}
	}
	e := Envelope{
		Machine:  ID(b[1]),
		Flags:    b[2],
		Proposer: binary.LittleEndian.Uint64(b[3:]),
		Request:  binary.LittleEndian.Uint64(b[11:]),
		Cmd:      b[EnvelopeHeaderLen:],
	}
	switch {
	case e.Machine == idEnd || e.Machine == idDedupe:
		return Envelope{}, &EnvelopeError{fmt.Sprintf("machine id %d is reserved", e.Machine)}
	case e.Flags != 0:
		return Envelope{}, &EnvelopeError{fmt.Sprintf("flags %#02x, none defined", e.Flags)}
	case len(e.Cmd) > MaxCommand:
		return Envelope{}, &EnvelopeError{fmt.Sprintf("command of %d bytes exceeds %d", len(e.Cmd), MaxCommand)}
	}
	return e, nil
}
