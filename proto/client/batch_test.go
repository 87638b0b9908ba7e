package client_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/types/event"
)

// v5 returns f as a frame of version 5.
func v5(f proto.Frame) proto.Frame { f.Version = 5; return f }

var (
	sampleBatch = client.GroupSendBatch{Msgs: []client.GroupSend{sampleMulticast, sampleUnicast,
		{Kind: client.KindMulticast, MsgID: 44, Group: "locks", Payload: []byte("again")}}}
	sampleBatchReply = client.GroupSendBatchReply{Results: []client.GroupSendResult{
		{Seq: 1210 << 20, Member: 1207 << 20, Delivered: 2},
		{Seq: 1210<<20 | 1, Member: 1207 << 20, Delivered: 1},
		{Code: proto.CodeTryAgain, Member: 1207 << 20},
	}}
	// The events of the EVENT_BATCH vector: a JOIN and the BROADCAST
	// after it, as a version-5 link gets them.
	sampleEventBatch = []event.Event{evJoin, withoutTo(evGroup)}
)

func batchSendFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	n := w.U32("message count (1..1024)")
	for i := uint64(0); i < n && !w.Done(); i++ {
		w.U8(fmt.Sprintf("msg[%d] kind (3 BROADCAST, 4 MULTICAST, 5 UNICAST, 6 REPLY)", i))
		w.Fixed(3, "msg[%d] reserved, zero", i)
		w.U64(fmt.Sprintf("msg[%d] target member", i))
		w.U64(fmt.Sprintf("msg[%d] reply to seq", i))
		w.U64(fmt.Sprintf("msg[%d] msg id", i))
		w.String16(fmt.Sprintf("msg[%d] group name", i))
		p := w.U32(fmt.Sprintf("msg[%d] payload length", i))
		if p > 0 && p < 1<<20 {
			w.Fixed(int(p), "msg[%d] payload", i)
		}
	}
	return w.Fields
}

func batchReplyFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	n := w.U32("result count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		w.U64(fmt.Sprintf("result[%d] seq of the message event", i))
		w.U64(fmt.Sprintf("result[%d] sender's member id", i))
		w.U32(fmt.Sprintf("result[%d] delivered: members addressed", i))
		w.U16(fmt.Sprintf("result[%d] code (0 committed, 42 TRY_AGAIN, 43 NO_MEMBER, ...)", i))
		w.Fixed(2, "result[%d] reserved, zero", i)
	}
	return w.Fields
}

func eventBatchFields(b []byte) golden.Fields {
	var fs golden.Fields
	fs.Add(4, "event count (u32 LE)")
	off := 4
	for i := 0; off+4 <= len(b) && i < client.MaxEventBatch; i++ {
		n := int(binary.LittleEndian.Uint32(b[off:]))
		fs.Add(4, "event[%d] length (u32 LE)", i)
		off += 4
		if n > len(b)-off {
			break
		}
		for _, f := range eventFieldsV3(b[off : off+n]) {
			fs.Add(f.Size, "event[%d] %s", i, f.Name)
		}
		off += n
	}
	return fs
}

func eventBodies(evs []event.Event) [][]byte {
	var out [][]byte
	for _, ev := range evs {
		out = append(out, mustEvent(ev))
	}
	return out
}

// receiveBatch decodes the body of a batch frame as both ends of a link
// do.
func receiveBatch(v uint8, f proto.Frame, isReply bool) (proto.Frame, any, error) {
	switch {
	case f.Opcode == client.OpEventBatch:
		evs, err := client.ParseEventBatch(v, f.Body)
		return f, evs, err
	case isReply:
		r, err := client.ParseGroupSendBatchReply(f.Body)
		return f, r, err
	}
	b, err := client.ParseGroupSendBatch(f.Body)
	return f, b, err
}

func batchVectors() []wiretest.Vector {
	req := func(op uint16, body []byte) proto.Frame { return v5(request(op, body)) }
	ok := func(name string, about []string, f proto.Frame, fields func([]byte) golden.Fields, msg any) wiretest.Vector {
		return frameVector(name, about, f, fields, expect(f, msg), 0, "")
	}
	bad := func(name, about string, f proto.Frame, fields func([]byte) golden.Fields, code proto.Code, detail string) wiretest.Vector {
		return frameVector(name, []string{about}, f, fields, receiveErr, code, detail)
	}
	le := binary.LittleEndian
	send := must(client.AppendGroupSendBatch(nil, &sampleBatch))
	rep := must(client.AppendGroupSendBatchReply(nil, &sampleBatchReply))
	evb := must(client.AppendEventBatch(nil, eventBodies(sampleEventBatch)))
	repFrame := v5(reply(client.OpGroupSendBatch, rep))
	first := 4 + len(must(client.AppendGroupSend(nil, &sampleMulticast)))
	flaggedEv := eventBodies(sampleEventBatch)
	flaggedEv[1][13] = byte(client.EventAwaitDone)
	flagged := le.AppendUint32(nil, 2)
	for _, b := range flaggedEv {
		flagged = append(le.AppendUint32(flagged, uint32(len(b))), b...)
	}
	return []wiretest.Vector{
		ok("batch_send", []string{
			"GROUP_SEND_BATCH (0x0208, version 5): three messages of the link's session",
			"in one request, applied in this order as three GROUP_SENDs would be:",
			"MULTICAST to \"locks\" (msg id 42, \"hello\"), UNICAST to member 1208<<20|1",
			"(msg id 43, \"hi\"), MULTICAST (msg id 44, \"again\"). Each message is a",
			"GROUP_SEND body, byte for byte.",
		}, req(client.OpGroupSendBatch, send), batchSendFields, sampleBatch),
		ok("batch_send_reply", []string{
			"GROUP_SEND_BATCH reply: one 24-byte result per message, in order. The first",
			"two are committed (seq 1210<<20 and 1210<<20|1); the third was refused",
			"with code 42 TRY_AGAIN (the window was full): its seq and delivered are 0.",
		}, repFrame, batchReplyFields, sampleBatchReply),
		ok("batch_event", []string{
			"EVENT_BATCH (0x0107, version 5): two consecutive events of the",
			"subscription (msg id the SUBSCRIBE's) in one frame, each an EVENT body of",
			"version 5 behind its u32 length: the JOIN of seq 1209<<20 and the",
			"BROADCAST of seq 1210<<20. A version-4 link gets them as two EVENT frames.",
		}, req(client.OpEventBatch, evb), eventBatchFields, sampleEventBatch),
		bad("err_batch_send_v4", "GROUP_SEND_BATCH on a version 4 link: the opcode is of version 5.",
			v4(request(client.OpGroupSendBatch, send)), batchSendFields, proto.CodeOpcode, "version 4 has no opcode 0x0208"),
		bad("err_batch_event_v4", "EVENT_BATCH on a version 4 link: the opcode is of version 5.",
			v4(request(client.OpEventBatch, evb)), eventBatchFields, proto.CodeOpcode, "version 4 has no opcode 0x0107"),
		bad("err_batch_send_empty", "GROUP_SEND_BATCH of no messages.",
			req(client.OpGroupSendBatch, le.AppendUint32(nil, 0)), batchSendFields, proto.CodeField, "GROUP_SEND_BATCH: no messages"),
		bad("err_batch_send_count", "GROUP_SEND_BATCH announcing 1025 messages, over MaxBatchMsgs = 1024: refused before anything is read or allocated.",
			req(client.OpGroupSendBatch, le.AppendUint32(nil, client.MaxBatchMsgs+1)), batchSendFields, proto.CodeTooLarge, "1025 messages, limit 1024"),
		bad("err_batch_send_short", "GROUP_SEND_BATCH announcing 4 messages but holding 3.",
			req(client.OpGroupSendBatch, with(send, func(b []byte) []byte { return put32(b, 0, 4) })), batchSendFields, proto.CodeField, "does not fit"),
		bad("err_batch_send_item", "GROUP_SEND_BATCH whose second message has kind 2, which GROUP_SEND refuses: the whole request is refused.",
			req(client.OpGroupSendBatch, with(send, func(b []byte) []byte { b[first] = 2; return b })), batchSendFields, proto.CodeField, "item 1: GROUP_SEND: unknown kind 2"),
		bad("err_batch_send_trailing", "GROUP_SEND_BATCH with a byte after its last message.",
			req(client.OpGroupSendBatch, append(send, 0)), batchSendFields, proto.CodeField, "1 unexpected bytes after the last message"),
		bad("err_batch_reply_failed_seq", "GROUP_SEND_BATCH reply whose refused message carries a seq.",
			v5(reply(client.OpGroupSendBatch, with(rep, func(b []byte) []byte { b[4+2*24] = 1; return b }))), batchReplyFields, proto.CodeField, "result 2: failed with code 42 yet seq 1"),
		bad("err_batch_reply_reserved", "GROUP_SEND_BATCH reply with a non-zero reserved byte.",
			v5(reply(client.OpGroupSendBatch, with(rep, func(b []byte) []byte { b[len(b)-1] = 1; return b }))), batchReplyFields, proto.CodeField, "reserved reserved is not zero"),
		bad("err_batch_event_empty", "EVENT_BATCH of no events.",
			req(client.OpEventBatch, le.AppendUint32(nil, 0)), eventBatchFields, proto.CodeField, "EVENT_BATCH: no events"),
		bad("err_batch_event_count", "EVENT_BATCH announcing 0xffffffff events in a short body: refused before allocating.",
			req(client.OpEventBatch, with(evb, func(b []byte) []byte { return put32(b, 0, 0xffffffff) })), eventBatchFields, proto.CodeField, "event count 4294967295 does not fit"),
		bad("err_batch_event_length", "EVENT_BATCH whose second event's length runs past the body.",
			req(client.OpEventBatch, with(evb, func(b []byte) []byte { return put32(b, len(evb)-len(mustEvent(sampleEventBatch[1]))-4, 1<<16) })), eventBatchFields, proto.CodeField, "event 1: length 65536"),
		bad("err_batch_event_flagged", "EVENT_BATCH whose second event is flagged AWAIT_DONE: a dispatched event travels alone, as EVENT.",
			req(client.OpEventBatch, flagged), eventBatchFields, proto.CodeField, "item 1: flagged AWAIT_DONE"),
	}
}

// TestBatchRoundTrip: the batch bodies decode to what was encoded, at the
// limits too, and re-encode to the same bytes.
func TestBatchRoundTrip(t *testing.T) {
	full := client.GroupSendBatch{Msgs: make([]client.GroupSend, client.MaxBatchMsgs)}
	per := client.MaxBatchBytes / client.MaxBatchMsgs
	for i := range full.Msgs {
		full.Msgs[i] = client.GroupSend{Kind: client.KindMulticast, MsgID: uint64(i), Group: "g", Payload: bytes.Repeat([]byte{byte(i)}, per)}
	}
	for _, b := range []client.GroupSendBatch{sampleBatch, full, {Msgs: []client.GroupSend{sampleBroadcast}}} {
		body := must(client.AppendGroupSendBatch(nil, &b))
		got, err := client.ParseGroupSendBatch(body)
		if err != nil || !wiretest.Equal(got, b) {
			t.Fatalf("batch of %d: %v", len(b.Msgs), err)
		}
		if again := must(client.AppendGroupSendBatch(nil, &got)); !bytes.Equal(again, body) {
			t.Fatalf("batch of %d re-encodes differently", len(b.Msgs))
		}
	}
	got, err := client.ParseGroupSendBatchReply(must(client.AppendGroupSendBatchReply(nil, &sampleBatchReply)))
	if err != nil || !wiretest.Equal(got, sampleBatchReply) {
		t.Fatalf("reply: %+v, %v", got, err)
	}
	evs, err := client.ParseEventBatch(client.MaxVersion, must(client.AppendEventBatch(nil, eventBodies(sampleEventBatch))))
	if err != nil || !wiretest.Equal(evs, sampleEventBatch) {
		t.Fatalf("event batch: %+v, %v", evs, err)
	}
}

// TestBatchLimits: the encoders refuse what the decoders would, with the
// codes SPEC.md gives, and append nothing.
func TestBatchLimits(t *testing.T) {
	big := make([]byte, client.MaxBatchBytes/2+1)
	cases := []struct {
		name string
		b    client.GroupSendBatch
		code proto.Code
	}{
		{"empty", client.GroupSendBatch{}, proto.CodeField},
		{"too many", client.GroupSendBatch{Msgs: make([]client.GroupSend, client.MaxBatchMsgs+1)}, proto.CodeTooLarge},
		{"too many bytes", client.GroupSendBatch{Msgs: []client.GroupSend{
			{Kind: client.KindBroadcast, Payload: big}, {Kind: client.KindBroadcast, Payload: big}}}, proto.CodeTooLarge},
		{"bad message", client.GroupSendBatch{Msgs: []client.GroupSend{sampleMulticast, {Kind: client.KindUnicast, Group: "g"}}}, proto.CodeField},
	}
	for _, c := range cases {
		out, err := client.AppendGroupSendBatch([]byte{9}, &c.b)
		wiretest.Expect(t, err, c.code, "GROUP_SEND_BATCH")
		if !bytes.Equal(out, []byte{9}) {
			t.Errorf("%s: appended %d bytes", c.name, len(out)-1)
		}
	}
	// The decoder refuses the byte limit too, though each message is
	// within MaxPayload.
	body := binary.LittleEndian.AppendUint32(nil, 2)
	for range 2 {
		body = must(client.AppendGroupSend(body, &client.GroupSend{Kind: client.KindBroadcast, Payload: big}))
	}
	_, err := client.ParseGroupSendBatch(body)
	wiretest.Expect(t, err, proto.CodeTooLarge, "payload bytes, limit 1048576")
	if !client.BatchFits(0, 0, client.MaxBatchBytes) || client.BatchFits(1, 1, client.MaxBatchBytes) || client.BatchFits(client.MaxBatchMsgs, 0, 0) {
		t.Error("BatchFits disagrees with the limits")
	}
	if _, err := client.AppendEventBatch(nil, nil); err == nil {
		t.Error("an empty EVENT_BATCH was encoded")
	}
	fl := mustEvent(evJoin)
	fl[13] = byte(client.EventAwaitDone)
	if _, err := client.AppendEventBatch(nil, [][]byte{fl}); err == nil {
		t.Error("an EVENT_BATCH with an AWAIT_DONE event was encoded")
	}
}

// FuzzParseGroupSendBatch fuzzes the GROUP_SEND_BATCH request and reply
// decoders: typed errors only, and what decodes re-encodes to the input.
func FuzzParseGroupSendBatch(f *testing.F) {
	f.Add(must(client.AppendGroupSendBatch(nil, &sampleBatch)))
	f.Add(must(client.AppendGroupSendBatchReply(nil, &sampleBatchReply)))
	f.Add([]byte{0xff, 0xff, 0, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, err := client.ParseGroupSendBatch(b); err != nil {
			wiretest.Typed(t, err)
		} else if again, err := client.AppendGroupSendBatch(nil, &v); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("request re-encodes differently: %v", err)
		}
		if v, err := client.ParseGroupSendBatchReply(b); err != nil {
			wiretest.Typed(t, err)
		} else if again, err := client.AppendGroupSendBatchReply(nil, &v); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("reply re-encodes differently: %v", err)
		}
	})
}

// FuzzParseEventBatch fuzzes the EVENT_BATCH decoder.
func FuzzParseEventBatch(f *testing.F) {
	f.Add(must(client.AppendEventBatch(nil, eventBodies(sampleEventBatch))))
	f.Add([]byte{1, 0, 0, 0, 16, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := client.ParseEventBatch(client.MaxVersion, b)
		if err != nil {
			wiretest.Typed(t, err)
			return
		}
		var bodies [][]byte
		for i := range evs {
			bodies = append(bodies, must(client.AppendEvent(nil, &evs[i])))
		}
		if again, err := client.AppendEventBatch(nil, bodies); err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encodes differently: %v", err)
		}
	})
}
