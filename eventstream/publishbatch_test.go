package eventstream

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
)

// TestPublishBatchAsPublish: batches of any size hand every subscriber
// what Publish one by one does, and leave the same history, with stale
// events refused; then with a history short enough to let go of part of a
// batch.
func TestPublishBatchAsPublish(t *testing.T) {
	even := func(ev *events.Event) bool { g := ev.Group(); return g != nil && g.MsgID%2 == 0 }
	t.Run("deliveries", func(t *testing.T) {
		testPublishBatchAsPublish(t, nil, []Subscription{{}, {Filter: even}, {Resume: true, After: 5}})
	})
	t.Run("short history", func(t *testing.T) {
		// A subscriber that wants none of it moves past what the history
		// lets go of; whether others fall behind depends on their pace.
		none := func(*events.Event) bool { return false }
		tune := func(l *Limits) { l.HistEvents, l.HistKeepBytes, l.HistMaxBytes = 16, 0, 1<<20 }
		one, batched := testPublishBatchAsPublish(t, tune, []Subscription{{Filter: none}})
		for _, s := range []*Stream{one, batched} {
			s.mu.Lock()
			for _, sub := range s.subs {
				if sub.pos < s.base || sub.state != subActive {
					t.Errorf("a subscriber that wants nothing: at %d, history from %d, state %d", sub.pos, s.base, sub.state)
				}
			}
			s.mu.Unlock()
		}
	})
}

func testPublishBatchAsPublish(t *testing.T, tune func(*Limits), subs []Subscription) (one, batched *Stream) {
	one, batched = newStream(t, 0, tune), newStream(t, 0, tune)
	var ones, batcheds []*fakeSink
	for _, sub := range subs {
		k, _ := subscribe(t, one, sub)
		ones = append(ones, k)
		k, _ = subscribe(t, batched, sub)
		batcheds = append(batcheds, k)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var evs []events.Event
	seq := 0
	for i := 1; i <= 400; i++ {
		switch r := rng.IntN(10); {
		case r == 0:
			evs = append(evs, groupEvent(i, true, 5)) // local
		case r == 1 && seq > 0:
			ev := groupEvent(i, false, 5)
			ev.Seq = uint64(seq) // stale: refused by both
			evs = append(evs, ev)
		default:
			seq += 1 + rng.IntN(3)
			ev := groupEvent(i, false, 5)
			ev.Seq = uint64(seq)
			evs = append(evs, ev)
		}
	}
	var errsOne, errsBatch int
	for _, ev := range evs {
		if err := one.Publish(ev); errors.Is(err, ErrStaleSeq) {
			errsOne++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	for rest := evs; len(rest) > 0; {
		n := min(len(rest), 1+rng.IntN(40))
		if err := batched.PublishBatch(rest[:n]); errors.Is(err, ErrStaleSeq) {
			errsBatch++
		} else if err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if errsOne == 0 || errsBatch == 0 {
		t.Fatalf("stale events refused: %d one by one, %d batches with one", errsOne, errsBatch)
	}
	for i := range subs {
		last := lastWanted(evs, subs[i])
		if last == 0 {
			continue // wants none
		}
		ones[i].waitUntil(t, "all", func(k *fakeSink) bool {
			return len(k.got) > 0 && k.got[len(k.got)-1].Group().MsgID == last
		})
		want := ones[i].events(t, 0)
		got := batcheds[i].events(t, len(want))
		if !slices.EqualFunc(got, want, func(a, b events.Event) bool { return a.Seq == b.Seq && a.Group().MsgID == b.Group().MsgID }) {
			t.Fatalf("subscriber %d: batches %v, one by one %v", i, seqs(got), seqs(want))
		}
	}
	one.mu.Lock()
	batched.mu.Lock()
	a := []uint64{uint64(len(one.hist)), one.base, one.next, one.latest, one.floor, uint64(one.histBytes)}
	b := []uint64{uint64(len(batched.hist)), batched.base, batched.next, batched.latest, batched.floor, uint64(batched.histBytes)}
	batched.mu.Unlock()
	one.mu.Unlock()
	if !slices.Equal(a, b) {
		t.Fatalf("history (len base next latest floor bytes): batches %v, one by one %v", b, a)
	}
	return one, batched
}

// lastWanted returns the MsgID of the last event published that sub is to
// be sent (the stale ones are not).
func lastWanted(evs []events.Event, sub Subscription) uint64 {
	var latest, last uint64
	for i := range evs {
		ev := &evs[i]
		if ev.Seq != 0 {
			if ev.Seq <= latest {
				continue
			}
			latest = ev.Seq
		}
		if (sub.Filter == nil || sub.Filter(ev)) && (ev.Seq == 0 || ev.Seq > sub.After) {
			last = ev.Group().MsgID
		}
	}
	return last
}

// TestPublishBatchLag: the lag bound over batches, a batch holding the
// events of several entries: those of the newest are not lag.
func TestPublishBatchLag(t *testing.T) {
	s := newStream(t, 0, func(l *Limits) { l.LagEvents = 4 })
	k, _ := subscribe(t, s, Subscription{})
	k.setStall(true)
	entry := func(index uint64, n int) []events.Event {
		var evs []events.Event
		for i := 1; i <= n; i++ {
			ev := groupEvent(i, false, 10)
			ev.Seq = events.SeqOf(index, uint32(i))
			evs = append(evs, ev)
		}
		return evs
	}
	if err := s.PublishBatch(entry(7, 50)); err != nil {
		t.Fatal(err)
	}
	k.setStall(false)
	k.events(t, 50) // all of them: it was not closed
	k.setStall(true)
	if err := s.PublishBatch(append(entry(8, 50), entry(9, 1)...)); err != nil {
		t.Fatal(err)
	}
	if code, text := k.waitClosed(t); code != proto.CodeBehind || !strings.Contains(text, "51 events") {
		t.Fatalf("closed with %d %q, want CodeBehind with 51 events", code, text)
	}
}

// TestPublishBatchGated: a gated subscriber is handed a batch's events
// one at a time, each awaited, as it is Publish's.
func TestPublishBatchGated(t *testing.T) {
	s := newStream(t, 0, nil)
	g := gatedSink(t, s, callbacks(events.ClassMemb, 1), Subscription{})
	plain, _ := subscribe(t, s, Subscription{})
	if err := s.PublishBatch([]events.Event{memb(1), memb(2), memb(3)}); err != nil {
		t.Fatal(err)
	}
	if got := plain.events(t, 3); !slices.Equal(seqs(got), []int{1, 2, 3}) {
		t.Fatalf("ungated subscriber: %v", seqs(got))
	}
	for seq := uint64(1); seq <= 3; seq++ {
		g.waitUntil(t, "the next event", func(k *fakeSink) bool { return len(k.got) == int(seq) })
		if err := s.Done(g, seq, events.MSNewView); err != nil {
			t.Fatal(err)
		}
	}
	g.waitTrace(t, "1* 2* 3*")
}

// TestPublishBatchPastTheDispatch: a batch of events of a class no gated
// subscriber has callbacks for (group events to clients that take them
// through Deliveries) is handed to the gated subscribers unflagged, at
// once; the dispatch then goes on from after it.
func TestPublishBatchPastTheDispatch(t *testing.T) {
	s := newStream(t, 0, nil)
	g := gatedSink(t, s, callbacks(events.ClassMemb, 1), Subscription{})
	none := gatedSink(t, s, callbacks(0, 0), Subscription{})
	batch := []events.Event{groupEvent(1, false, 3), groupEvent(2, false, 3), groupEvent(3, true, 3)}
	if err := s.PublishBatch(batch); err != nil {
		t.Fatal(err)
	}
	g.waitTrace(t, "1 2 0")
	none.waitTrace(t, "1 2 0")
	s.mu.Lock()
	if s.d.active || s.d.pos != s.next {
		t.Errorf("dispatch active %v at %d, want idle at %d", s.d.active, s.d.pos, s.next)
	}
	s.mu.Unlock()
	if err := s.PublishBatch([]events.Event{memb(4), groupEvent(5, false, 3)}); err != nil {
		t.Fatal(err)
	}
	// Events of classes without callbacks pass the one awaited.
	g.waitTrace(t, "1 2 0 4* 5")
	none.waitTrace(t, "1 2 0 4 5")
	if err := s.Done(g, 4, events.MSNewView); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.d.active || s.d.pos != s.next {
		t.Errorf("after DONE: dispatch active %v at %d, want idle at %d", s.d.active, s.d.pos, s.next)
	}
}

// TestArena: bodies cut from a chunk do not overlap, and one too large
// for what is left has its own allocation.
func TestArena(t *testing.T) {
	var a arena
	var bodies [][]byte
	for i := 1; i <= 2000; i++ {
		ev := groupEvent(i, false, i%300)
		b, err := a.append(&ev)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != cap(b) {
			t.Fatalf("body %d: len %d cap %d: an append would write past it", i, len(b), cap(b))
		}
		bodies = append(bodies, b)
	}
	for i, b := range bodies {
		ev := groupEvent(i+1, false, (i+1)%300)
		want, _ := a.append(&ev)
		if !slices.Equal(b, want) {
			t.Fatalf("body %d changed", i+1)
		}
	}
}
