package client

import (
	"encoding/binary"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/types/event"
)

// This file holds the bodies of the node-wide dispatch (SPEC.md,
// "Node-wide dispatch (version 3)"): CALLBACKS, DONE and the Flags byte
// of the EVENT body. The rules are those of events.go.

// EventFlags is byte 13 of an EVENT body on a link of version 3 or later.
type EventFlags uint8

// Specification constants: EVENT flags (version 3).
const (
	// EventAwaitDone: the agent handed the event to the link as part of
	// the node-wide dispatch and waits for its DONE.
	EventAwaitDone EventFlags = 1 << 0

	eventFlags = EventAwaitDone // every defined flag
)

// EventFlagsOffset is the offset of the Flags byte in an EVENT body.
const EventFlagsOffset = 13

// ParseEventAt decodes an EVENT body received on a link of version v.
// Before version 3 it is ParseEvent: byte 13 is reserved and the flags
// are 0. The result does not alias b.
func ParseEventAt(v uint8, b []byte) (event.Event, EventFlags, error) {
	return parseEvent(b, v, nil)
}

// SetEventFlags sets the Flags byte of the EVENT body b, which must be an
// encoded event (AppendEvent) that nothing else shares: the agent's
// encoded events are shared by every subscriber, so it flags a copy.
func SetEventFlags(b []byte, f EventFlags) {
	b[EventFlagsOffset] = byte(f)
}

// Callbacks is the body of a CALLBACKS request (version 3): the classes a
// link has a callback for and, for each, the smallest priority of its
// callbacks. A link that has sent CALLBACKS takes part in the node-wide
// dispatch.
type Callbacks struct {
	Classes ClassMask // COMM, MEMB, GROUP bits; may be 0
	// Prio is indexed by class (1..3); closer to zero first. The entry of
	// a class not in Classes, and Prio[0], are 0.
	Prio [4]uint8
}

// CallbacksSize is the size of a CALLBACKS request body.
const CallbacksSize = 8

// check returns the first rule c breaks, as a CodeField *proto.Error
// with the given prefix.
func (c *Callbacks) check(what string) *proto.Error {
	if c.Classes&^AllClasses != 0 {
		return proto.Errorf(proto.CodeField, "%s: class mask %#x selects unknown classes %#x", what, uint32(c.Classes), uint32(c.Classes&^AllClasses))
	}
	if c.Prio[0] != 0 {
		return proto.Errorf(proto.CodeField, "%s: priority %d for class 0", what, c.Prio[0])
	}
	for cl := event.ClassComm; cl <= event.ClassGroup; cl++ {
		if !c.Classes.Has(cl) && c.Prio[cl] != 0 {
			return proto.Errorf(proto.CodeField, "%s: priority %d for %v, which the class mask does not select", what, c.Prio[cl], cl)
		}
	}
	return nil
}

// AppendCallbacks appends the body of c. It refuses (CodeField, nothing
// appended) what ParseCallbacks would refuse.
func AppendCallbacks(dst []byte, c *Callbacks) ([]byte, error) {
	if err := c.check("CALLBACKS"); err != nil {
		return dst, err
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(c.Classes))
	return append(dst, c.Prio[1], c.Prio[2], c.Prio[3], 0), nil
}

// ParseCallbacks decodes a CALLBACKS request.
func ParseCallbacks(b []byte) (Callbacks, error) {
	r := proto.NewReader(b, "CALLBACKS")
	c := Callbacks{Classes: ClassMask(r.U32("class mask"))}
	c.Prio[1], c.Prio[2], c.Prio[3] = r.U8("COMM priority"), r.U8("MEMB priority"), r.U8("GROUP priority")
	r.Zero(1, "reserved")
	if err := r.Err(); err != nil {
		return Callbacks{}, err
	}
	if err := c.check("CALLBACKS"); err != nil {
		return Callbacks{}, err
	}
	return c, nil
}

// Done is the body of a DONE message (version 3): the client completed
// the oldest event flagged EventAwaitDone that it had not reported yet,
// the one with this Seq and descriptor.
type Done struct {
	Seq  uint64
	Desc event.Descriptor
}

// DoneSize is the size of a DONE body.
const DoneSize = 16

// AppendDone appends the body of d. It refuses (CodeField, nothing
// appended) a descriptor that is not defined.
func AppendDone(dst []byte, d *Done) ([]byte, error) {
	if !d.Desc.Valid() {
		return dst, proto.Errorf(proto.CodeField, "DONE: unknown event descriptor %#08x", uint32(d.Desc))
	}
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, d.Seq)
	dst = le.AppendUint32(dst, uint32(d.Desc))
	return le.AppendUint32(dst, 0), nil
}

// ParseDone decodes a DONE body.
func ParseDone(b []byte) (Done, error) {
	r := proto.NewReader(b, "DONE")
	d := Done{Seq: r.U64("seq"), Desc: event.Descriptor(r.U32("descriptor"))}
	r.Zero(4, "reserved")
	if err := r.Err(); err != nil {
		return Done{}, err
	}
	if !d.Desc.Valid() {
		return Done{}, proto.Errorf(proto.CodeField, "DONE: unknown event descriptor %#08x", uint32(d.Desc))
	}
	return d, nil
}
