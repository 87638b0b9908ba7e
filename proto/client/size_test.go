package client

import (
	"testing"

	"github.com/corralhq/corral/types/event"
)

// TestGroupSize: groupSize is the exact length of a group event's
// encoding, so AppendEvent allocates it once (TestAppendGroupEventAllocs).
func TestGroupSize(t *testing.T) {
	for i, g := range []*event.Group{
		{Name: "g"},
		{Name: "orders", From: event.GroupMember{Node: 1, Member: 2, BornOn: 3, Pid: 4, Name: "worker-1"}, MsgID: 9, Payload: make([]byte, 100)},
		{Name: "x", Members: []event.GroupMember{{Node: 1, Name: "a"}, {Node: 2, Name: "bcd"}, {Node: 3}}, Payload: []byte("p")},
	} {
		desc := event.GSMulticast
		if len(g.Members) > 0 {
			desc = event.GSJoin
		}
		ev := &event.Event{Seq: 7, Desc: desc, Data: g}
		b, err := AppendEvent(nil, ev)
		if err != nil {
			t.Fatal(err)
		}
		if want := 16 + groupSize(g); len(b) != want {
			t.Errorf("event %d: %d bytes; groupSize says %d", i, len(b), want)
		}
	}
}

// BenchmarkAppendGroupEvent: the agent encodes one of these per delivery.
func BenchmarkAppendGroupEvent(b *testing.B) {
	ev := event.Event{Seq: 7, Desc: event.GSMulticast, Data: &event.Group{Name: "bench-1", From: event.GroupMember{Node: 1, Member: 2, Name: "m"}, MsgID: 9, Payload: make([]byte, 100)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := AppendEvent(nil, &ev); err != nil {
			b.Fatal(err)
		}
	}
}
