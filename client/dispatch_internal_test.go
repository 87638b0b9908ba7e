package client

import (
	"log/slog"
	"testing"

	"github.com/corralhq/corral/events"
)

// fifoClient is a Client with just what the dispatch hooks use; no
// reporter runs, so what it would report stays in fifo.
func fifoClient() *Client {
	return &Client{log: slog.New(slog.DiscardHandler), kick: make(chan struct{}, 1)}
}

func groupEvent(seq uint64) events.Event {
	return events.Event{Seq: seq, Desc: events.GSMulticast}
}

// TestCompletedPairsInOrder: each completion marks the oldest event not
// done, past those refused or dropped, and the fifo empties by itself
// once everything is done and nothing awaits a DONE.
func TestCompletedPairsInOrder(t *testing.T) {
	c := fifoClient()
	c.pushPublished(published{seq: 1, desc: events.GSMulticast})
	c.pushPublished(published{seq: 2, desc: events.GSMulticast})
	c.refused()
	c.pushPublished(published{seq: 3, desc: events.GSMulticast})
	c.completed(groupEvent(1))
	if len(c.fifo) != 3 || !c.fifo[0].done || !c.fifo[1].outside || c.fifo[2].done {
		t.Fatalf("after completing 1: fifo %+v", c.fifo)
	}
	if len(c.kick) != 0 {
		t.Fatal("the reporter was woken with nothing to report")
	}
	c.completed(groupEvent(3))
	if len(c.fifo) != 0 || c.fnext != 0 {
		t.Fatalf("all done, none awaited: fifo %+v, fnext %d", c.fifo, c.fnext)
	}

	// An awaited event keeps the fifo for the reporter.
	c.pushPublished(published{seq: 4, desc: events.GSMulticast, awaited: true})
	c.pushPublished(published{seq: 5, desc: events.GSMulticast})
	c.completed(groupEvent(4))
	c.completed(groupEvent(5))
	if len(c.fifo) != 2 || !c.fifo[0].done || !c.fifo[1].done || len(c.kick) != 1 {
		t.Fatalf("awaited: fifo %+v, kicked %d", c.fifo, len(c.kick))
	}
}

// BenchmarkCompletedAwaited completes events the agent awaits while the
// reporter lags: the done entries pile up before it trims them.
func BenchmarkCompletedAwaited(b *testing.B) {
	c := fifoClient()
	b.ReportAllocs()
	for i := range b.N {
		seq := uint64(i + 1)
		c.pushPublished(published{seq: seq, desc: events.GSMulticast, awaited: true})
		c.completed(groupEvent(seq))
		if len(c.fifo) == 4096 { // the reporter's trim, now and then
			c.fifo, c.fnext, c.fwait = c.fifo[:0], 0, 0
		}
	}
}

// BenchmarkCompletedDeliveries is the group path with Deliveries: no
// DONE awaited, each event complete as it is published.
func BenchmarkCompletedDeliveries(b *testing.B) {
	c := fifoClient()
	b.ReportAllocs()
	for i := range b.N {
		seq := uint64(i + 1)
		c.pushPublished(published{seq: seq, desc: events.GSMulticast})
		c.completed(groupEvent(seq))
	}
}
