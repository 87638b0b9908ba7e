package client_test

import (
	"testing"

	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/types/event"
)

// TestAppendGroupEventAllocs: the agent encodes a group event for every
// delivery, in one allocation.
func TestAppendGroupEventAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	ev := &event.Event{Seq: 7, Desc: event.GSJoin, Data: &event.Group{Name: "orders",
		From:    event.GroupMember{Node: 1, Member: 2, Name: "w"},
		Members: []event.GroupMember{{Node: 1, Name: "a"}, {Node: 2}}, Payload: make([]byte, 100)}}
	if n := testing.AllocsPerRun(10, func() { client.AppendEvent(nil, ev) }); n != 1 {
		t.Errorf("%v allocations, want 1", n)
	}
}
