package client_test

import (
	"bytes"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/types/event"
)

// flagged is what receiveAt decodes an EVENT of a version 3 link into.
type flagged struct {
	Ev    event.Event
	Flags client.EventFlags
}

// v3 returns f as a frame of version 3.
func v3(f proto.Frame) proto.Frame { f.Version = 3; return f }

var (
	sampleCallbacks = client.Callbacks{Classes: client.MaskOf(event.ClassMemb, event.ClassGroup), Prio: [4]uint8{0, 0, 10, 128}}
	sampleDone      = client.Done{Seq: 1207, Desc: event.MSNewView}
)

func mustCallbacks(c client.Callbacks) []byte {
	b, err := client.AppendCallbacks(nil, &c)
	if err != nil {
		panic(err)
	}
	return b
}

func mustDone(d client.Done) []byte {
	b, err := client.AppendDone(nil, &d)
	if err != nil {
		panic(err)
	}
	return b
}

// flagEvent returns a copy of an EVENT body with Flags f.
func flagEvent(b []byte, f client.EventFlags) []byte {
	b = bytes.Clone(b)
	client.SetEventFlags(b, f)
	return b
}

func callbacksFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U32("class mask (2 COMM, 4 MEMB, 8 GROUP)")
	w.U8("COMM priority")
	w.U8("MEMB priority")
	w.U8("GROUP priority")
	w.Fixed(1, "reserved, zero")
	return w.Fields
}

func doneFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("seq")
	w.U32("descriptor: class << 22 | event")
	w.Fixed(4, "reserved, zero")
	return w.Fields
}

// eventFieldsV3 annotates an EVENT body of version 3: byte 13 is Flags.
func eventFieldsV3(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("seq")
	w.U32("descriptor: class << 22 | event")
	class := w.U8("data class (0 none, 1 COMM, 2 MEMB, 3 GROUP)")
	w.U8("flags (1 AWAIT_DONE), version 3")
	w.Fixed(2, "reserved, zero")
	switch event.Class(class) {
	case event.ClassMemb:
		membFields(w)
	case event.ClassComm:
		connFields(w)
	case event.ClassGroup:
		groupFields(w)
	}
	return w.Fields
}

func parseCallbacks(b []byte) error { _, err := client.ParseCallbacks(b); return err }
func parseDone(b []byte) error      { _, err := client.ParseDone(b); return err }

// dispatchVectors are the vectors of version 3, the node-wide dispatch.
func dispatchVectors() []wiretest.Vector {
	cbReq := v3(request(client.OpCallbacks, mustCallbacks(sampleCallbacks)))
	cbReq.MsgID = 0x0f
	cbReply := v3(reply(client.OpCallbacks, nil))
	cbReply.MsgID = 0x0f
	cbNone := v3(request(client.OpCallbacks, mustCallbacks(client.Callbacks{})))
	cbNone.MsgID = 0x11
	done := v3(request(client.OpDone, mustDone(sampleDone)))
	view := mustEvent(evView)
	awaited := v3(request(client.OpEvent, flagEvent(view, client.EventAwaitDone)))
	plain := v3(request(client.OpEvent, view))
	onV2 := v2(request(client.OpEvent, flagEvent(view, client.EventAwaitDone)))
	undefined := v3(request(client.OpEvent, flagEvent(view, client.EventAwaitDone|0x2)))
	cbV2 := v2(request(client.OpCallbacks, mustCallbacks(sampleCallbacks)))
	doneV2 := v2(request(client.OpDone, mustDone(sampleDone)))
	cb := mustCallbacks(sampleCallbacks)
	dn := mustDone(sampleDone)

	return []wiretest.Vector{
		frameVector("callbacks_request", []string{
			"CALLBACKS, version 3: the link has callbacks for membership (priority 10) and",
			"group events (priority 128), not for connectivity (mask 0x0c). A request,",
			"CREATE|DELETE, msg id 0x0f; sent before or after SUBSCRIBE, any number of times.",
		}, cbReq, callbacksFields, expect(cbReq, sampleCallbacks), 0, ""),
		frameVector("callbacks_reply", []string{
			"CALLBACKS reply: CREATE|DELETE|REPLY, the request's msg id, empty body.",
		}, cbReply, nil, expect(cbReply, nil), 0, ""),
		frameVector("callbacks_none", []string{
			"CALLBACKS with mask 0: the link has no callback left; it stays gated and gets",
			"every event unflagged.",
		}, cbNone, callbacksFields, expect(cbNone, client.Callbacks{}), 0, ""),
		frameVector("event_await_done", []string{
			"EVENT NEWVIEW of event_newview on a version 3 link with Flags (byte 13)",
			"0x01 AWAIT_DONE: part of the node-wide dispatch; the agent waits for its DONE.",
		}, awaited, eventFieldsV3, expect(awaited, flagged{evView, client.EventAwaitDone}), 0, ""),
		frameVector("event_v3", []string{
			"EVENT NEWVIEW on a version 3 link without flags: not awaited (a class the",
			"link has no callback for, or a link that never sent CALLBACKS).",
		}, plain, eventFieldsV3, expect(plain, flagged{evView, 0}), 0, ""),
		frameVector("done", []string{
			"DONE, version 3: the client completed event seq 1207 NEWVIEW (0x00800001), the",
			"oldest flagged event it had not reported. One-shot, CREATE|DELETE, never",
			"answered; msg id 0x10, the SUBSCRIBE's.",
		}, done, doneFields, expect(done, sampleDone), 0, ""),
		frameVector("err_event_flags_v2", []string{
			"EVENT with AWAIT_DONE on a version 2 link: before version 3 byte 13 is reserved.",
		}, onV2, eventFields, receiveErr, proto.CodeField, "reserved reserved is not zero"),
		frameVector("err_event_flags_unknown", []string{
			"EVENT on a version 3 link with Flags 0x03: bit 0x02 is not defined.",
		}, undefined, eventFieldsV3, receiveErr, proto.CodeField, "unknown event flags 0x2"),
		frameVector("err_callbacks_v2", []string{
			"CALLBACKS on a link that agreed on version 2, which does not define it.",
		}, cbV2, callbacksFields, receiveErr, proto.CodeOpcode, "0x0105"),
		frameVector("err_done_v2", []string{
			"DONE on a link that agreed on version 2, which does not define it.",
		}, doneV2, doneFields, receiveErr, proto.CodeOpcode, "0x0106"),

		bodyVector("err_callbacks_class", "CALLBACKS selecting class bit 0x10 (class 4), which is not defined.",
			with(cb, func(b []byte) []byte { return put32(b, 0, 0x1c) }), callbacksFields, parseCallbacks, "selects unknown classes 0x10"),
		bodyVector("err_callbacks_prio", "CALLBACKS with a COMM priority (5) though the mask (0x0c) does not select COMM.",
			with(cb, func(b []byte) []byte { b[4] = 5; return b }), callbacksFields, parseCallbacks, "priority 5 for COMM"),
		bodyVector("err_callbacks_reserved", "CALLBACKS with a non-zero reserved byte.",
			with(cb, func(b []byte) []byte { b[7] = 1; return b }), callbacksFields, parseCallbacks, "reserved reserved is not zero"),
		bodyVector("err_callbacks_truncated", "CALLBACKS cut off after the MEMB priority.",
			cb[:6], callbacksFields, parseCallbacks, "truncated at GROUP priority"),
		bodyVector("err_done_descriptor", "DONE naming descriptor 0x00800009, which is not defined.",
			with(dn, func(b []byte) []byte { return put32(b, 8, 0x00800009) }), doneFields, parseDone, "unknown event descriptor 0x00800009"),
		bodyVector("err_done_reserved", "DONE with a non-zero reserved byte.",
			with(dn, func(b []byte) []byte { b[15] = 1; return b }), doneFields, parseDone, "reserved reserved is not zero"),
		bodyVector("err_done_truncated", "DONE cut off inside its descriptor.",
			dn[:10], doneFields, parseDone, "truncated at descriptor"),
	}
}

func TestDispatchRoundTrip(t *testing.T) {
	for _, c := range []client.Callbacks{sampleCallbacks, {}, {Classes: client.AllClasses, Prio: [4]uint8{0, 255, 0, 7}}} {
		b, err := client.AppendCallbacks(nil, &c)
		got, perr := client.ParseCallbacks(b)
		if err != nil || perr != nil || len(b) != client.CallbacksSize || got != c {
			t.Fatalf("round trip of %+v: %+v, %v, %v", c, got, err, perr)
		}
	}
	for _, d := range []client.Done{sampleDone, {Desc: event.CSP2PLost}, {Seq: ^uint64(0), Desc: event.GSReply}} {
		b, err := client.AppendDone(nil, &d)
		got, perr := client.ParseDone(b)
		if err != nil || perr != nil || len(b) != client.DoneSize || got != d {
			t.Fatalf("round trip of %+v: %+v, %v, %v", d, got, err, perr)
		}
	}
	// The encoders refuse what the decoders refuse, and append nothing.
	for _, c := range []client.Callbacks{{Classes: 0x10}, {Prio: [4]uint8{1}}, {Classes: client.MaskOf(event.ClassComm), Prio: [4]uint8{0, 1, 2, 0}}} {
		if out, err := client.AppendCallbacks([]byte("x"), &c); string(out) != "x" || err == nil {
			t.Errorf("AppendCallbacks(%+v) = %x, %v", c, out, err)
		}
	}
	if out, err := client.AppendDone([]byte("x"), &client.Done{Desc: event.MSInvalid}); string(out) != "x" || err == nil {
		t.Errorf("AppendDone(invalid) = %x, %v", out, err)
	}
	// Version 1 and 2 parse byte 13 as reserved, version 3 as Flags; the
	// rest of the body is the same.
	view := mustEvent(evView)
	for v := client.MinVersion; v <= client.MaxVersion; v++ {
		ev, f, err := client.ParseEventAt(v, view)
		if err != nil || f != 0 || !wiretest.Equal(ev, evView) {
			t.Fatalf("version %d: %v %v %v", v, ev, f, err)
		}
		ev, f, err = client.ParseEventAt(v, flagEvent(view, client.EventAwaitDone))
		if v < 3 && err == nil || v >= 3 && (err != nil || f != client.EventAwaitDone || !wiretest.Equal(ev, evView)) {
			t.Fatalf("flagged at version %d: %v %v %v", v, ev, f, err)
		}
	}
}

func FuzzParseCallbacks(f *testing.F) {
	f.Add(mustCallbacks(sampleCallbacks))       // callbacks_request
	f.Add(mustCallbacks(client.Callbacks{}))    // callbacks_none
	f.Add([]byte{0x0c, 0, 0, 0, 5, 10, 128, 0}) // a priority for an unselected class
	f.Add(mustCallbacks(sampleCallbacks)[:6])   // cut short
	f.Add([]byte{0x1e, 0, 0, 0, 1, 2, 3, 0})    // an unknown class bit
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := client.ParseCallbacks(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if c.Classes&^client.AllClasses != 0 {
			t.Fatalf("accepted class mask %#x", c.Classes)
		}
		out, err := client.AppendCallbacks(nil, &c)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoded CALLBACKS differs (%v):\n%x\n%x", err, out, b)
		}
	})
}

func FuzzParseDone(f *testing.F) {
	f.Add(mustDone(sampleDone))                                                      // done
	f.Add(with(mustDone(sampleDone), func(b []byte) []byte { b[15] = 1; return b })) // reserved byte set
	f.Add(mustDone(sampleDone)[:10])                                                 // cut short
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := client.ParseDone(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		out, err := client.AppendDone(nil, &d)
		if err != nil || !bytes.Equal(out, b) {
			t.Fatalf("re-encoded DONE differs (%v):\n%x\n%x", err, out, b)
		}
	})
}

// FuzzParseEventAt: at version 3 an EVENT body with its Flags byte
// cleared decodes as ParseEvent does, and the flags are defined ones.
func FuzzParseEventAt(f *testing.F) {
	f.Add(uint8(3), flagEvent(mustEvent(evView), client.EventAwaitDone)) // event_await_done
	f.Add(uint8(3), mustEvent(evGroup))                                  // unflagged group event
	f.Add(uint8(2), flagEvent(mustEvent(evView), client.EventAwaitDone)) // a flag on version 2
	f.Add(uint8(3), flagEvent(mustEvent(evLocal), 0x80))                 // an undefined flag
	f.Fuzz(func(t *testing.T, v uint8, b []byte) {
		ev, fl, err := client.ParseEventAt(v, b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if v < 3 && fl != 0 || fl&^client.EventAwaitDone != 0 {
			t.Fatalf("version %d: flags %#x", v, fl)
		}
		out, err := client.AppendEvent(nil, &ev)
		if err != nil {
			t.Fatalf("a decoded event does not encode: %v", err)
		}
		client.SetEventFlags(out, fl)
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encoded EVENT differs:\n%x\n%x", out, b)
		}
	})
}
