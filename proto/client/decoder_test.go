package client_test

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/types/event"
)

func eventBody(t testing.TB, ev event.Event) []byte {
	t.Helper()
	b, err := client.AppendEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestEventDecoderMatchesParse: the decoder a link keeps returns what
// ParseEventAt and ParseEventBatch return, events and errors alike, for
// every event class and every cut of the bodies.
func TestEventDecoderMatchesParse(t *testing.T) {
	evs := []event.Event{
		{Seq: 1, Desc: event.MSNewView, Data: sampleView},
		{Seq: 2, Desc: event.CSP2PEstablished, Data: sampleConn},
		{Seq: 3, Desc: event.GSMulticast, Data: sampleGroup},
		{Seq: 4, Desc: event.GSJoin, Data: sampleJoin},
		{Seq: 5, Desc: event.GSLeave, Data: sampleLeave},
		{Seq: 6, Desc: event.GSReply, Data: sampleReplyMsg},
	}
	var d client.EventDecoder
	var bodies [][]byte
	for _, ev := range evs {
		body := eventBody(t, ev)
		bodies = append(bodies, body)
		for n := 0; n <= len(body); n++ {
			want, wflags, werr := client.ParseEventAt(client.MaxVersion, body[:n])
			got, gflags, gerr := d.Event(client.MaxVersion, body[:n])
			if errText(gerr) != errText(werr) || gflags != wflags || !reflect.DeepEqual(got, want) {
				t.Fatalf("%v cut at %d: decoder %v %v, ParseEventAt %v %v", ev.Desc, n, got, gerr, want, werr)
			}
		}
	}
	batch, err := client.AppendEventBatch(nil, bodies)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n <= len(batch); n++ {
		want, werr := client.ParseEventBatch(client.MaxVersion, batch[:n])
		got, gerr := d.Batch(client.MaxVersion, batch[:n])
		if errText(gerr) != errText(werr) || !reflect.DeepEqual(got, want) {
			t.Fatalf("batch cut at %d: decoder %v %v, ParseEventBatch %v %v", n, got, gerr, want, werr)
		}
	}
}

// TestEventDecodeErrorsNameFields: a cut or an over-long name is
// reported at the field it hit, by its full name.
func TestEventDecodeErrorsNameFields(t *testing.T) {
	body := eventBody(t, event.Event{Seq: 3, Desc: event.GSMulticast, Data: sampleGroup})
	name := 16 + 2 + len(sampleGroup.Name) // EVENT fixed part, group name
	long := &event.Group{Name: "locks", From: event.GroupMember{Name: strings.Repeat("n", client.MaxNameLen)}}
	longBody := eventBody(t, event.Event{Seq: 3, Desc: event.GSMulticast, Data: long})
	fromName := 16 + 2 + len(long.Name) + 28
	longBody[fromName] = 0 // 255 -> 256
	longBody[fromName+1] = 1
	var d client.EventDecoder
	for _, c := range []struct {
		body []byte
		want string
	}{
		{body[:17], "EVENT: truncated at group name length (offset 16, need 2 bytes, have 1)"},
		{body[:name+4], "EVENT: truncated at from node (offset 23, need 8 bytes, have 4)"},
		{body[:name+8+4], "EVENT: truncated at from member id"},
		{body[:name+16+4], "EVENT: truncated at from born-on"},
		{body[:name+24+2], "EVENT: truncated at from pid"},
		{body[:name+28+1], "EVENT: truncated at from name length"},
		{body[:name+28+2+3], "EVENT: truncated at from name (offset"},
		{body[:name+28+2+len(member1.Name)+4+24+2], "EVENT: truncated at group member count"},
		{longBody, "EVENT: from name is 256 bytes, limit 255"},
	} {
		_, _, perr := client.ParseEventAt(client.MaxVersion, c.body)
		_, _, derr := d.Event(client.MaxVersion, c.body)
		wiretest.Expect(t, perr, proto.CodeField, c.want)
		wiretest.Expect(t, derr, proto.CodeField, c.want)
	}
}

// TestEventDecoderInterns: the events of one group share the group's and
// the sender's names, and a decoded group event allocates only its Group
// and its payload.
func TestEventDecoderInterns(t *testing.T) {
	body := eventBody(t, event.Event{Seq: 3, Desc: event.GSMulticast, Data: sampleGroup})
	var d client.EventDecoder
	a, _, err := d.Event(client.MaxVersion, body)
	if err != nil {
		t.Fatal(err)
	}
	b, _, _ := d.Event(client.MaxVersion, body)
	ga, gb := a.Data.(*event.Group), b.Data.(*event.Group)
	if unsafe.StringData(ga.Name) != unsafe.StringData(gb.Name) || unsafe.StringData(ga.From.Name) != unsafe.StringData(gb.From.Name) {
		t.Fatal("names not shared between two events of a link")
	}
	if &ga.Payload[0] == &gb.Payload[0] || &ga.Payload[0] == &body[len(body)-1] {
		t.Fatal("payloads shared: each event owns its own")
	}
	if n := testing.AllocsPerRun(100, func() { d.Event(client.MaxVersion, body) }); n > 2 {
		t.Fatalf("%v allocations per group event, want 2 (Group, payload)", n)
	}
}

// FuzzEventDecoder: a link's decoder, fed one body after another,
// decodes each as ParseEventAt (an EVENT) and ParseEventBatch (an
// EVENT_BATCH) do, whatever it decoded before.
func FuzzEventDecoder(f *testing.F) {
	f.Add(uint8(client.MaxVersion), eventBody(f, event.Event{Seq: 3, Desc: event.GSMulticast, Data: sampleGroup}), eventBody(f, event.Event{Seq: 4, Desc: event.GSJoin, Data: sampleJoin}))
	f.Add(uint8(client.MaxVersion), must(client.AppendEventBatch(nil, eventBodies(sampleEventBatch))), must(client.AppendEventBatch(nil, eventBodies(sampleEventBatch[:1]))))
	f.Fuzz(func(t *testing.T, v uint8, a, b []byte) {
		var d client.EventDecoder
		for _, body := range [][]byte{a, b, a} {
			want, wflags, werr := client.ParseEventAt(v, body)
			got, gflags, gerr := d.Event(v, body)
			if errText(gerr) != errText(werr) || gflags != wflags || !reflect.DeepEqual(got, want) {
				t.Fatalf("EVENT: decoder %v %v, ParseEventAt %v %v", got, gerr, want, werr)
			}
			wantB, werr := client.ParseEventBatch(v, body)
			gotB, gerr := d.Batch(v, body)
			if errText(gerr) != errText(werr) || !reflect.DeepEqual(gotB, wantB) {
				t.Fatalf("EVENT_BATCH: decoder %v %v, ParseEventBatch %v %v", gotB, gerr, wantB, werr)
			}
		}
	})
}
