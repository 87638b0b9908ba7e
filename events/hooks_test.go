package events_test

import (
	"slices"
	"testing"

	"github.com/corralhq/corral/events"
)

// TestHooks: OnComplete hears of every event in publish order once its
// callbacks completed (or at once without recipient); OnInterest of each
// change of classes and smallest priorities.
func TestHooks(t *testing.T) {
	svc := events.New(events.Options{})
	defer svc.Close()
	var done []uint64
	var told []events.Interest
	svc.SetHooks(events.Hooks{
		OnComplete: func(ev events.Event) { done = append(done, ev.Seq) },
		OnInterest: func(in events.Interest) { told = append(told, in) },
	})
	if err := svc.Publish(events.Event{Seq: 1, Desc: events.MSNewView}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(done, []uint64{1}) {
		t.Fatalf("completed %v: an event without recipient completes at once", done)
	}
	h, _ := svc.Register()
	var cookies []events.Cookie
	h.SetCallback(events.PriorityLow, events.ClassMemb, func(_ events.Event, c events.Cookie) { cookies = append(cookies, c) })
	h.SetCallback(events.PriorityHigh, events.ClassComm, func(_ events.Event, c events.Cookie) { cookies = append(cookies, c) })
	if len(told) != 0 {
		t.Fatalf("interest %v before activation", told)
	}
	ch, err := h.ActivateChan()
	if err != nil {
		t.Fatal(err)
	}
	want := events.Interest{}
	want.Has[events.ClassMemb], want.Prio[events.ClassMemb] = true, events.PriorityLow
	want.Has[events.ClassComm], want.Prio[events.ClassComm] = true, events.PriorityHigh
	if len(told) != 1 || told[0] != want || svc.Interest() != want {
		t.Fatalf("interest %v, want %v", told, want)
	}
	h2, _ := svc.Register()
	h2.SetCallback(events.PriorityMin, events.ClassMemb, func(_ events.Event, c events.Cookie) { events.CallbackDone(c) })
	h2.ActivateChan()
	want.Prio[events.ClassMemb] = events.PriorityMin
	if len(told) != 2 || told[1] != want {
		t.Fatalf("interest %v, want %v", told, want)
	}
	svc.Publish(events.Event{Seq: 2, Desc: events.MSNewView})
	svc.Publish(events.Event{Seq: 3, Desc: events.GSBroadcast}) // no recipient, but after 2
	h2.HandleEvent()
	<-ch
	h.HandleEvent()
	if !slices.Equal(done, []uint64{1}) || len(cookies) != 1 {
		t.Fatalf("completed %v with the callback outstanding", done)
	}
	events.CallbackDone(cookies[0])
	if !slices.Equal(done, []uint64{1, 2, 3}) {
		t.Fatalf("completed %v", done)
	}
	h2.Unregister()
	want.Prio[events.ClassMemb] = events.PriorityLow
	if told[len(told)-1] != want {
		t.Fatalf("interest %v after Unregister, want %v", told[len(told)-1], want)
	}
}
