package client

import (
	"encoding/binary"
	"errors"
	"slices"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/types/event"
)

// This file holds the batch bodies of version 5 (SPEC.md, "Batches"):
// GROUP_SEND_BATCH, many GROUP_SENDs of one link in one request, and
// EVENT_BATCH, many EVENTs of one subscription in one frame. They exist
// because at small payloads the agent's cost per message is mostly per
// frame (header, CRCs, dispatch, locking, the reply). The rules are those
// of groups.go.

// Specification constants: the limits of the batches.
const (
	// MaxBatchMsgs is the most messages of one GROUP_SEND_BATCH.
	MaxBatchMsgs = 1024
	// MaxBatchBytes is the most payload bytes of one GROUP_SEND_BATCH, its
	// messages together: a larger message goes alone, as GROUP_SEND.
	MaxBatchBytes = 1 << 20
	// MaxEventBatch is the most events of one EVENT_BATCH.
	MaxEventBatch = 1024
	// MaxEventBatchBytes bounds the body of an EVENT_BATCH the agent
	// builds; a receiver takes any body within the frame limit.
	MaxEventBatchBytes = 256 << 10

	// GroupSendResultSize is the size of one result of a
	// GROUP_SEND_BATCH reply.
	GroupSendResultSize = 8 + 8 + 4 + 2 + 2

	eventFixed = 16 // the fixed part of an Event body
)

// codeOf returns the code of a *proto.Error, CodeField for another error.
func codeOf(err error) (proto.Code, string) {
	var pe *proto.Error
	if errors.As(err, &pe) {
		return pe.Code, pe.Detail
	}
	return proto.CodeField, err.Error()
}

func wrapItem(msg string, i int, err error) *proto.Error {
	code, detail := codeOf(err)
	return proto.Errorf(code, "%s: item %d: %s", msg, i, detail)
}

// GroupSendBatch is the body of a GROUP_SEND_BATCH request: messages of
// the link's member session, in the order they are to be applied.
type GroupSendBatch struct {
	// Msgs: 1..MaxBatchMsgs messages, their payloads together at most
	// MaxBatchBytes. ParseGroupSendBatch returns the payloads aliasing
	// its input.
	Msgs []GroupSend
}

// BatchFits reports whether a message of payload bytes may join a batch
// of n messages holding bytes of payload.
func BatchFits(n, bytes, payload int) bool {
	return n < MaxBatchMsgs && bytes+payload <= MaxBatchBytes
}

// AppendGroupSendBatch appends the body of b. An empty batch or a message
// GROUP_SEND refuses (CodeField), more than MaxBatchMsgs messages or more
// than MaxBatchBytes of payload (CodeTooLarge) are refused and nothing is
// appended.
func AppendGroupSendBatch(dst []byte, b *GroupSendBatch) ([]byte, error) {
	total := 0
	for i := range b.Msgs {
		total += len(b.Msgs[i].Payload)
	}
	if err := checkBatch(len(b.Msgs), total); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b.Msgs)))
	for i := range b.Msgs {
		var err error
		if dst, err = AppendGroupSend(dst, &b.Msgs[i]); err != nil {
			return dst[:start], wrapItem("GROUP_SEND_BATCH", i, err)
		}
	}
	return dst, nil
}

// checkBatch is the batch's own rule, for both ends.
func checkBatch(n, bytes int) *proto.Error {
	switch {
	case n == 0:
		return proto.Errorf(proto.CodeField, "GROUP_SEND_BATCH: no messages")
	case n > MaxBatchMsgs:
		return proto.Errorf(proto.CodeTooLarge, "GROUP_SEND_BATCH: %d messages, limit %d", n, MaxBatchMsgs)
	case bytes > MaxBatchBytes:
		return proto.Errorf(proto.CodeTooLarge, "GROUP_SEND_BATCH: %d payload bytes, limit %d", bytes, MaxBatchBytes)
	}
	return nil
}

// ParseGroupSendBatch decodes a GROUP_SEND_BATCH request. The payloads
// alias b.
func ParseGroupSendBatch(b []byte) (GroupSendBatch, error) {
	if len(b) < 4 {
		return GroupSendBatch{}, proto.Errorf(proto.CodeField, "GROUP_SEND_BATCH: truncated at message count")
	}
	n := binary.LittleEndian.Uint32(b)
	if err := checkBatch(int(min(n, MaxBatchMsgs+1)), 0); err != nil {
		return GroupSendBatch{}, err
	}
	// Checked before allocating: each message takes at least groupSendMin
	// bytes.
	if uint64(n)*groupSendMin > uint64(len(b)-4) {
		return GroupSendBatch{}, proto.Errorf(proto.CodeField, "GROUP_SEND_BATCH: message count %d does not fit %d bytes left", n, len(b)-4)
	}
	msgs := make([]GroupSend, n)
	off, total := 4, 0
	for i := range msgs {
		size, err := groupSendSize(b[off:])
		if err == nil {
			msgs[i], err = ParseGroupSend(b[off : off+size])
		}
		if err != nil {
			return GroupSendBatch{}, wrapItem("GROUP_SEND_BATCH", i, err)
		}
		off += size
		if total += len(msgs[i].Payload); total > MaxBatchBytes {
			return GroupSendBatch{}, checkBatch(int(n), total)
		}
	}
	if off != len(b) {
		return GroupSendBatch{}, proto.Errorf(proto.CodeField, "GROUP_SEND_BATCH: %d unexpected bytes after the last message", len(b)-off)
	}
	return GroupSendBatch{Msgs: msgs}, nil
}

// groupSendSize returns the size of the GROUP_SEND body at the start of b
// from its two lengths, without decoding the rest.
func groupSendSize(b []byte) (int, error) {
	le := binary.LittleEndian
	if len(b) < 30 {
		return 0, proto.Errorf(proto.CodeField, "GROUP_SEND: truncated before group name length")
	}
	g := int(le.Uint16(b[28:]))
	if len(b) < 30+g+4 {
		return 0, proto.Errorf(proto.CodeField, "GROUP_SEND: truncated before payload length")
	}
	p := uint64(le.Uint32(b[30+g:]))
	if p > MaxPayload {
		return 0, proto.Errorf(proto.CodeField, "GROUP_SEND: payload is %d bytes, limit %d", p, MaxPayload)
	}
	size := 34 + g + int(p)
	if size > len(b) {
		return 0, proto.Errorf(proto.CodeField, "GROUP_SEND: truncated at payload")
	}
	return size, nil
}

// GroupSendResult is one message's answer in a GROUP_SEND_BATCH reply.
type GroupSendResult struct {
	// Code is CodeNone for a message committed, else why it was not
	// sent (CodeTryAgain: the window was full; CodeNoMember: the session
	// was closed; CodeShutdown: the agent stopped first). A failed
	// message has Seq and Delivered 0.
	Code      proto.Code
	Seq       uint64 // the message event's Seq
	Member    uint64 // the sender's member id; 0 only on a failure
	Delivered uint32 // how many members it was addressed to (BROADCAST: 0)
}

// GroupSendBatchReply is the body of a GROUP_SEND_BATCH reply: one result
// per message of the request, in its order.
type GroupSendBatchReply struct {
	Results []GroupSendResult
}

// AppendGroupSendBatchReply appends the body of r. A reply the rules
// refuse (CodeField) or more than MaxBatchMsgs results (CodeTooLarge)
// are not appended.
func AppendGroupSendBatchReply(dst []byte, r *GroupSendBatchReply) ([]byte, error) {
	if err := checkBatch(len(r.Results), 0); err != nil {
		return dst, proto.Errorf(err.Code, "GROUP_SEND_BATCH reply: %d results", len(r.Results))
	}
	for i := range r.Results {
		if err := r.Results[i].check(); err != nil {
			return dst, wrapItem("GROUP_SEND_BATCH reply", i, err)
		}
	}
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, uint32(len(r.Results)))
	for i := range r.Results {
		x := &r.Results[i]
		dst = le.AppendUint64(dst, x.Seq)
		dst = le.AppendUint64(dst, x.Member)
		dst = le.AppendUint32(dst, x.Delivered)
		dst = le.AppendUint16(dst, uint16(x.Code))
		dst = le.AppendUint16(dst, 0)
	}
	return dst, nil
}

func (x *GroupSendResult) check() *proto.Error {
	switch {
	case x.Code == proto.CodeNone && x.Member == 0:
		return proto.Errorf(proto.CodeField, "member id 0")
	case x.Code != proto.CodeNone && (x.Seq != 0 || x.Delivered != 0):
		return proto.Errorf(proto.CodeField, "failed with code %d yet seq %d, delivered %d", x.Code, x.Seq, x.Delivered)
	}
	return nil
}

// ParseGroupSendBatchReply decodes a GROUP_SEND_BATCH reply.
func ParseGroupSendBatchReply(b []byte) (GroupSendBatchReply, error) {
	r := proto.NewReader(b, "GROUP_SEND_BATCH reply")
	n := count(r, "result", MaxBatchMsgs, GroupSendResultSize)
	if n == 0 && len(b) >= 4 {
		r.Fail(proto.CodeField, "no results") // kept only if count did not fail first
	}
	var rep GroupSendBatchReply
	if n > 0 {
		rep.Results = make([]GroupSendResult, n)
		for i := range rep.Results {
			x := &rep.Results[i]
			x.Seq, x.Member, x.Delivered = r.U64("seq"), r.U64("member"), r.U32("delivered")
			x.Code = proto.Code(r.U16("code"))
			r.Zero(2, "reserved")
			// After an earlier failure the fields read 0; Fail keeps
			// the first error.
			if err := x.check(); err != nil {
				r.Fail(proto.CodeField, "result %d: %s", i, err.Detail)
			}
		}
	}
	if err := r.Err(); err != nil {
		return GroupSendBatchReply{}, err
	}
	return rep, nil
}

// AppendEventBatch appends the body of an EVENT_BATCH holding the given
// EVENT bodies (each as AppendEvent wrote it for the link's version), in
// order. No events, more than MaxEventBatch, a body shorter than an
// Event's fixed part or one flagged EventAwaitDone are refused
// (CodeField) and nothing is appended.
func AppendEventBatch(dst []byte, bodies [][]byte) ([]byte, error) {
	if len(bodies) == 0 || len(bodies) > MaxEventBatch {
		return dst, proto.Errorf(proto.CodeField, "EVENT_BATCH: %d events, want 1..%d", len(bodies), MaxEventBatch)
	}
	for i, b := range bodies {
		if len(b) < eventFixed {
			return dst, proto.Errorf(proto.CodeField, "EVENT_BATCH: event %d is %d bytes", i, len(b))
		}
		if EventFlags(b[13])&EventAwaitDone != 0 {
			return dst, proto.Errorf(proto.CodeField, "EVENT_BATCH: event %d is flagged AWAIT_DONE", i)
		}
	}
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, uint32(len(bodies)))
	for _, b := range bodies {
		dst = le.AppendUint32(dst, uint32(len(b)))
		dst = append(dst, b...)
	}
	return dst, nil
}

// EventBatchSize is the size of an EVENT_BATCH body holding events of
// bodyBytes bytes together.
func EventBatchSize(events, bodyBytes int) int { return 4 + 4*events + bodyBytes }

// SplitEventBatch returns the EVENT bodies of an EVENT_BATCH, aliasing b,
// checking only the framing: each is then parsed as an EVENT of the link's
// version (ParseEventAt).
func SplitEventBatch(b []byte) ([][]byte, error) {
	return splitEventBatch(nil, b)
}

// splitEventBatch is SplitEventBatch into dst[:0], reused when it has
// room.
func splitEventBatch(dst [][]byte, b []byte) ([][]byte, error) {
	r := proto.NewReader(b, "EVENT_BATCH")
	n := count(r, "event", MaxEventBatch, 4+eventFixed)
	if n == 0 && len(b) >= 4 {
		r.Fail(proto.CodeField, "no events") // kept only if count did not fail first
	}
	var out [][]byte
	if n > 0 {
		out = slices.Grow(dst[:0], n)[:n]
		for i := range out {
			l := r.U32("event length")
			if l < eventFixed || uint64(l) > uint64(r.Len()) {
				r.Fail(proto.CodeField, "event %d: length %d, %d bytes left", i, l, r.Len())
			}
			out[i] = r.Bytes(int(l), "event")
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ParseEventBatch decodes an EVENT_BATCH on a link of version v: its
// events in order. An event flagged EventAwaitDone is refused.
func ParseEventBatch(v uint8, b []byte) ([]event.Event, error) {
	bodies, err := SplitEventBatch(b)
	if err != nil {
		return nil, err
	}
	return parseEventBatch(make([]event.Event, 0, len(bodies)), v, bodies, nil)
}

// parseEventBatch appends the events of bodies to evs, or fails.
func parseEventBatch(evs []event.Event, v uint8, bodies [][]byte, in *names) ([]event.Event, error) {
	for i, body := range bodies {
		ev, flags, err := parseEvent(body, v, in)
		if err != nil {
			return nil, wrapItem("EVENT_BATCH", i, err)
		}
		if flags&EventAwaitDone != 0 {
			return nil, proto.Errorf(proto.CodeField, "EVENT_BATCH: item %d: flagged AWAIT_DONE, which only a lone EVENT may be", i)
		}
		evs = append(evs, ev)
	}
	return evs, nil
}

// EventDecoder decodes the EVENT and EVENT_BATCH bodies of one link as
// ParseEventAt and ParseEventBatch do (the same events, the same
// errors), reusing what it can from one body to the next: the group and
// member names it decoded (interned, up to 256 of them), and a batch's
// slices. It is not safe for concurrent use: the link's reader owns
// one. The zero value is ready.
type EventDecoder struct {
	names  names
	bodies [][]byte
	evs    []event.Event
}

// Event decodes an EVENT body on a link of version v, as ParseEventAt.
func (d *EventDecoder) Event(v uint8, b []byte) (event.Event, EventFlags, error) {
	return parseEvent(b, v, &d.names)
}

// Batch decodes an EVENT_BATCH body on a link of version v, as
// ParseEventBatch. The slice it returns is valid until the next call of
// Batch (the events in it stay valid).
func (d *EventDecoder) Batch(v uint8, b []byte) ([]event.Event, error) {
	bodies, err := splitEventBatch(d.bodies, b)
	if err != nil {
		return nil, err
	}
	d.bodies = bodies
	clear(d.evs) // the last batch's data is the caller's now, not ours to keep alive
	evs, err := parseEventBatch(d.evs[:0], v, bodies, &d.names)
	clear(bodies)
	if err != nil {
		return nil, err
	}
	d.evs = evs
	return evs, nil
}
