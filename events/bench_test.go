package events_test

import (
	"testing"

	"github.com/corralhq/corral/events"
)

// BenchmarkPublishNoRecipient is the group path of a client whose group
// events go to Deliveries: the service has no callback for the class,
// and OnComplete hears of each event at once.
func BenchmarkPublishNoRecipient(b *testing.B) {
	svc := events.New(events.Options{})
	defer svc.Close()
	var completed int
	svc.SetHooks(events.Hooks{OnComplete: func(events.Event) { completed++ }})
	h, _ := svc.Register()
	h.SetCallback(events.PriorityLow, events.ClassMemb, func(_ events.Event, c events.Cookie) { events.CallbackDone(c) })
	h.ActivateChan()
	b.ReportAllocs()
	for i := range b.N {
		if err := svc.Publish(events.Event{Seq: uint64(i + 1), Desc: events.GSMulticast}); err != nil {
			b.Fatal(err)
		}
	}
	if completed != b.N {
		b.Fatalf("completed %d of %d", completed, b.N)
	}
}

// BenchmarkPublishCallback delivers each event to one callback that
// completes it (CallbackDone) before returning.
func BenchmarkPublishCallback(b *testing.B) {
	svc := events.New(events.Options{})
	defer svc.Close()
	h, _ := svc.Register()
	var got int
	h.SetCallback(events.PriorityLow, events.ClassGroup, func(_ events.Event, c events.Cookie) { got++; events.CallbackDone(c) })
	h.ActivateChan()
	b.ReportAllocs()
	for i := range b.N {
		if err := svc.Publish(events.Event{Seq: uint64(i + 1), Desc: events.GSMulticast}); err != nil {
			b.Fatal(err)
		}
		h.HandleEvent()
	}
	if got != b.N {
		b.Fatalf("delivered %d of %d", got, b.N)
	}
}
