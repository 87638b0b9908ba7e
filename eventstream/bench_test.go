package eventstream

import (
	"context"
	"fmt"
	"testing"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
)

// discardSink takes every event at once.
type discardSink struct{ done chan struct{} }

func (k *discardSink) Send(context.Context, []byte) error { return nil }
func (k *discardSink) Close(proto.Code, string)           {}
func (k *discardSink) Done() <-chan struct{}              { return k.done }

// BenchmarkPublishUngated is the group messaging path: Publish to
// subscribers that are not gated (client versions 1 and 2, or 3 without
// CALLBACKS).
func BenchmarkPublishUngated(b *testing.B) {
	lim := DefaultLimits()
	lim.LagEvents, lim.LagBytes = 1<<30, 1<<30
	s := New(lim, 0, nil)
	defer s.Close()
	for range 4 {
		if _, err := s.Subscribe(&discardSink{done: make(chan struct{})}, Subscription{}); err != nil {
			b.Fatal(err)
		}
	}
	ev := groupEvent(1, false, 64)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ev.Seq = uint64(i + 1)
		if err := s.Publish(ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPublishBatch publishes the events of a log entry of 64
// messages to 4 subscribers, one by one (Publish) and at once
// (PublishBatch, as the cluster does), ungated and gated as Go clients
// taking group events through Deliveries are (CALLBACKS of another
// class); an op is the entry, ns/event the time per event.
func BenchmarkPublishBatch(b *testing.B) {
	for _, gated := range []bool{false, true} {
		for _, batch := range []bool{false, true} {
			b.Run(fmt.Sprintf("gated=%v/batch=%v", gated, batch), func(b *testing.B) {
				lim := DefaultLimits()
				lim.LagEvents, lim.LagBytes = 1<<30, 1<<30
				s := New(lim, 0, nil)
				defer s.Close()
				for range 4 {
					sub := Subscription{}
					if gated {
						sub.Callbacks = &client.Callbacks{Classes: client.MaskOf(events.ClassMemb)}
					}
					if _, err := s.Subscribe(&discardSink{done: make(chan struct{})}, sub); err != nil {
						b.Fatal(err)
					}
				}
				const n = 64
				evs := make([]events.Event, n)
				for i := range evs {
					evs[i] = groupEvent(1, false, 64)
				}
				b.ReportAllocs()
				seq := uint64(0)
				for b.Loop() {
					for i := range evs {
						seq++
						evs[i].Seq = seq
					}
					if batch {
						if err := s.PublishBatch(evs); err != nil {
							b.Fatal(err)
						}
						continue
					}
					for _, ev := range evs {
						if err := s.Publish(ev); err != nil {
							b.Fatal(err)
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/event")
			})
		}
	}
}
