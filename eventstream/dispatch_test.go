package eventstream

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
)

func memb(seq uint64) events.Event {
	return events.Event{Seq: seq, Desc: events.MSNewView, Data: &events.Membership{Instance: seq}}
}

func comm(seq uint64) events.Event {
	return events.Event{Seq: seq, Desc: events.CSP2PLost, Data: &events.Connectivity{}}
}

// callbacks returns the Callbacks of one class at one priority, or none.
func callbacks(class events.Class, prio uint8) *client.Callbacks {
	cb := &client.Callbacks{}
	if class != 0 {
		cb.Classes = client.MaskOf(class)
		cb.Prio[class] = prio
	}
	return cb
}

// gatedSink subscribes a new sink gated by cb.
func gatedSink(t *testing.T, s *Stream, cb *client.Callbacks, sub Subscription) *fakeSink {
	t.Helper()
	sub.Callbacks = cb
	k, _ := subscribe(t, s, sub)
	return k
}

// trace lists what k got: "seq" for an unflagged event, "seq*" for one
// flagged EventAwaitDone (local events: seq 0).
func (k *fakeSink) trace() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for i, ev := range k.got {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, ev.Seq)
		if k.flags[i]&client.EventAwaitDone != 0 {
			b.WriteByte('*')
		}
	}
	return b.String()
}

func (k *fakeSink) waitTrace(t *testing.T, want string) {
	t.Helper()
	pollUntil(t, func() (bool, string) {
		got := k.trace()
		return got == want, fmt.Sprintf("trace %q, want %q", got, want)
	})
}

// pollUntil polls cond, which reads state no channel announces, until it
// holds; it fails t with cond's text after waitFor.
func pollUntil(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ok, what := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(time.Millisecond) // polling the condition, not synchronising
	}
}

// waitWaiting waits until the dispatch awaits n Dones at the event of seq.
func waitWaiting(t *testing.T, s *Stream, seq uint64, n int) {
	t.Helper()
	pollUntil(t, func() (bool, string) {
		st := s.Stats()
		return st.DispatchSeq == seq && st.DispatchWaiting == n,
			fmt.Sprintf("dispatch at seq %d waiting for %d, want seq %d waiting for %d", st.DispatchSeq, st.DispatchWaiting, seq, n)
	})
}

func mustDone(t *testing.T, s *Stream, k Sink, ev events.Event) {
	t.Helper()
	if err := s.Done(k, ev.Seq, ev.Desc); err != nil {
		t.Fatal(err)
	}
}

// TestDispatchBands: an event goes to the gated sinks band by band,
// lowest priority value first, the next band only after every Done of the
// one before, and the next event only after the last band; ungated sinks
// and classes without a callback do not wait.
func TestDispatchBands(t *testing.T) {
	s := newStream(t, 0, nil)
	a := gatedSink(t, s, callbacks(events.ClassMemb, 10), Subscription{})
	b := gatedSink(t, s, callbacks(events.ClassMemb, 10), Subscription{})
	c := gatedSink(t, s, callbacks(events.ClassMemb, 20), Subscription{})
	none := gatedSink(t, s, callbacks(0, 0), Subscription{}) // gated, no callback
	free, _ := subscribe(t, s, Subscription{})               // a v1/v2 link
	mustPublish(t, s, memb(1))
	mustPublish(t, s, memb(2))
	free.waitTrace(t, "1 2")
	none.waitTrace(t, "1 2")
	a.waitTrace(t, "1*")
	b.waitTrace(t, "1*")
	waitWaiting(t, s, 1, 2)
	if got := c.trace(); got != "" {
		t.Fatalf("the second band got %q before the first completed", got)
	}
	mustDone(t, s, a, memb(1))
	waitWaiting(t, s, 1, 1)
	if got := c.trace(); got != "" {
		t.Fatalf("the second band got %q with one Done of the first outstanding", got)
	}
	mustDone(t, s, b, memb(1))
	c.waitTrace(t, "1*")
	waitWaiting(t, s, 1, 1)
	if a.trace() != "1*" || b.trace() != "1*" {
		t.Fatalf("event 2 reached the first band (%q, %q) before event 1 completed", a.trace(), b.trace())
	}
	mustDone(t, s, c, memb(1))
	a.waitTrace(t, "1* 2*")
	b.waitTrace(t, "1* 2*")
	mustDone(t, s, b, memb(2))
	mustDone(t, s, a, memb(2))
	c.waitTrace(t, "1* 2*")
	mustDone(t, s, c, memb(2))
	waitWaiting(t, s, 0, 0)
	if st := s.Stats(); st.Gated != 4 || st.Timeouts != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDispatchTimeout: a sink that does not send its Done in time is
// closed with CodeTimeout; the others go on.
func TestDispatchTimeout(t *testing.T) {
	s := newStream(t, 0, func(l *Limits) { l.CallbackTimeout = 200 * time.Millisecond })
	a := gatedSink(t, s, callbacks(events.ClassMemb, 10), Subscription{})
	slow := gatedSink(t, s, callbacks(events.ClassMemb, 10), Subscription{})
	c := gatedSink(t, s, callbacks(events.ClassMemb, 20), Subscription{})
	mustPublish(t, s, memb(1))
	a.waitTrace(t, "1*")
	slow.waitTrace(t, "1*")
	mustDone(t, s, a, memb(1))
	code, text := slow.waitClosed(t)
	if code != proto.CodeTimeout || !strings.Contains(text, "callback not completed within 200ms: event seq 1 (MEMB NEWVIEW)") {
		t.Fatalf("slow sink closed with %d %q", code, text)
	}
	c.waitTrace(t, "1*")
	mustDone(t, s, c, memb(1))
	mustPublish(t, s, memb(2))
	a.waitTrace(t, "1* 2*")
	mustDone(t, s, a, memb(2))
	c.waitTrace(t, "1* 2*")
	mustDone(t, s, c, memb(2))
	if st := s.Stats(); st.Timeouts != 1 || st.Gated != 2 || st.Subscribers != 2 {
		t.Fatalf("stats %+v", st)
	}
	if err := s.Done(slow, 1, events.MSNewView); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("Done of the closed sink: %v", err)
	}
}

// TestDispatchOtherClasses: a gated sink gets the events of classes it
// has no callback for unflagged, without waiting for the dispatch, but
// never ahead of an event it still waits to be released.
func TestDispatchOtherClasses(t *testing.T) {
	s := newStream(t, 0, nil)
	first := gatedSink(t, s, callbacks(events.ClassMemb, 1), Subscription{})
	later := gatedSink(t, s, callbacks(events.ClassMemb, 2), Subscription{})
	commOnly := gatedSink(t, s, callbacks(events.ClassComm, 1), Subscription{})
	mustPublish(t, s, memb(1))
	mustPublish(t, s, comm(2))
	// first has no COMM callback: event 2 follows event 1 unflagged, while
	// the dispatch of event 1 goes on.
	first.waitTrace(t, "1* 2")
	commOnly.waitTrace(t, "1") // MEMB is not its callback's: unflagged, at once
	waitWaiting(t, s, 1, 1)
	if later.trace() != "" {
		t.Fatalf("the later band got %q", later.trace())
	}
	mustDone(t, s, first, memb(1))
	later.waitTrace(t, "1* 2")
	waitWaiting(t, s, 1, 1)
	if commOnly.trace() != "1" {
		t.Fatalf("event 2 reached the COMM sink (%q) before event 1 completed", commOnly.trace())
	}
	mustDone(t, s, later, memb(1))
	commOnly.waitTrace(t, "1 2*")
	mustDone(t, s, commOnly, comm(2))
	waitWaiting(t, s, 0, 0)
}

// TestDispatchCatchUp: a gated sink that resumes gets the held events it
// is owed, unflagged, at once, and joins the dispatch after the event in
// progress.
func TestDispatchCatchUp(t *testing.T) {
	s := newStream(t, 0, nil)
	mustPublish(t, s, memb(1))
	mustPublish(t, s, memb(2))
	a := gatedSink(t, s, callbacks(events.ClassMemb, 10), Subscription{})
	mustPublish(t, s, memb(3))
	a.waitTrace(t, "3*")
	waitWaiting(t, s, 3, 1)
	late := gatedSink(t, s, callbacks(events.ClassMemb, 5), Subscription{Resume: true, After: 1})
	late.waitTrace(t, "2 3") // catch-up, and the event in progress, not waiting for a's Done
	mustPublish(t, s, memb(4))
	waitWaiting(t, s, 3, 1)
	mustDone(t, s, a, memb(3))
	late.waitTrace(t, "2 3 4*") // priority 5 first
	if a.trace() != "3*" {
		t.Fatalf("a got %q before the band of priority 5 completed", a.trace())
	}
	mustDone(t, s, late, memb(4))
	a.waitTrace(t, "3* 4*")
	mustDone(t, s, a, memb(4))
}

// TestDispatchChangeAtNextEvent: CALLBACKS after SUBSCRIBE gates a sink,
// and a new mask or priority applies from the next event whose dispatch
// starts, not to the one in progress.
func TestDispatchChangeAtNextEvent(t *testing.T) {
	s := newStream(t, 0, nil)
	a, _ := subscribe(t, s, Subscription{})
	b := gatedSink(t, s, callbacks(events.ClassMemb, 10), Subscription{})
	mustPublish(t, s, memb(1))
	a.waitTrace(t, "1")
	b.waitTrace(t, "1*")
	if err := s.SetCallbacks(a, *callbacks(events.ClassMemb, 20)); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, s, memb(2)) // a joined after event 1, in progress
	mustDone(t, s, b, memb(1))
	b.waitTrace(t, "1* 2*")
	mustDone(t, s, b, memb(2))
	a.waitTrace(t, "1 2*")
	// Now a goes first; the change reaches the next event, not the one
	// in progress (event 2, priority 20, still awaited from a).
	if err := s.SetCallbacks(a, *callbacks(events.ClassMemb, 1)); err != nil {
		t.Fatal(err)
	}
	mustPublish(t, s, memb(3))
	waitWaiting(t, s, 2, 1)
	mustDone(t, s, a, memb(2))
	a.waitTrace(t, "1 2* 3*")
	if b.trace() != "1* 2*" {
		t.Fatalf("b got %q before a's band", b.trace())
	}
	// a drops its callback: event 4 reaches it unflagged once b is done.
	if err := s.SetCallbacks(a, client.Callbacks{}); err != nil {
		t.Fatal(err)
	}
	mustDone(t, s, a, memb(3))
	b.waitTrace(t, "1* 2* 3*")
	mustPublish(t, s, memb(4))
	mustDone(t, s, b, memb(3))
	a.waitTrace(t, "1 2* 3* 4")
	b.waitTrace(t, "1* 2* 3* 4*")
}

// TestDispatchDoneMismatch: a Done that is not the awaited event's, or
// with nothing awaited, is refused and changes nothing.
func TestDispatchDoneMismatch(t *testing.T) {
	s := newStream(t, 0, nil)
	free, _ := subscribe(t, s, Subscription{})
	a := gatedSink(t, s, callbacks(events.ClassMemb, 10), Subscription{})
	if err := s.Done(a, 1, events.MSNewView); !errors.Is(err, ErrDone) || !strings.Contains(err.Error(), "no event awaits one") {
		t.Fatalf("Done with nothing awaited: %v", err)
	}
	mustPublish(t, s, memb(1))
	a.waitTrace(t, "1*")
	if err := s.Done(a, 2, events.MSNewView); !errors.Is(err, ErrDone) || !strings.Contains(err.Error(), "the event awaited is seq 1 (NEWVIEW)") {
		t.Fatalf("Done of the wrong seq: %v", err)
	}
	if err := s.Done(a, 1, events.MSSuspect); !errors.Is(err, ErrDone) {
		t.Fatalf("Done of the wrong descriptor: %v", err)
	}
	waitWaiting(t, s, 1, 1)
	if err := s.Done(free, 1, events.MSNewView); !errors.Is(err, ErrDone) || !strings.Contains(err.Error(), "no CALLBACKS") {
		t.Fatalf("Done on an ungated sink: %v", err)
	}
	mustDone(t, s, a, memb(1))
	if err := s.Done(a, 1, events.MSNewView); !errors.Is(err, ErrDone) {
		t.Fatalf("a second Done: %v", err)
	}
	// A local event is awaited too, with seq 0.
	mustPublish(t, s, events.Event{Desc: events.MSSuspect})
	a.waitTrace(t, "1* 0*")
	mustDone(t, s, a, events.Event{Desc: events.MSSuspect})
	waitWaiting(t, s, 0, 0)
}

// TestDispatchHeldIsNotLag: a gated sink the dispatch holds back is not
// behind for the events published meanwhile.
func TestDispatchHeldIsNotLag(t *testing.T) {
	s := newStream(t, 0, func(l *Limits) { l.LagEvents = 4 })
	a := gatedSink(t, s, callbacks(events.ClassMemb, 1), Subscription{})
	b := gatedSink(t, s, callbacks(events.ClassMemb, 2), Subscription{})
	mustPublish(t, s, memb(1))
	a.waitTrace(t, "1*")
	waitWaiting(t, s, 1, 1)
	// Event 2 finds both idle, so it counts; then they wait for the
	// dispatch, and what follows does not.
	mustPublish(t, s, memb(2))
	for _, k := range []*fakeSink{a, b} {
		pollUntil(t, func() (bool, string) {
			s.mu.Lock()
			defer s.mu.Unlock()
			u := s.subs[k]
			return u != nil && u.held, "sink not held"
		})
	}
	for i := uint64(3); i <= 10; i++ {
		mustPublish(t, s, memb(i))
	}
	if st := s.Stats(); st.Subscribers != 2 {
		t.Fatalf("a held sink was disconnected: %+v", st)
	}
	for i := uint64(1); i <= 10; i++ {
		mustDone(t, s, a, memb(i))
		b.waitUntil(t, "released", func(k *fakeSink) bool { return len(k.got) == int(i) })
		mustDone(t, s, b, memb(i))
		if i < 10 {
			a.waitUntil(t, "released", func(k *fakeSink) bool { return len(k.got) == int(i+1) })
		}
	}
	if st := s.Stats(); st.Subscribers != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDispatchClose: when the stream closes, gated sinks are handed the
// rest unflagged, without waiting for the dispatch.
func TestDispatchClose(t *testing.T) {
	s := New(DefaultLimits(), 0, nil)
	a := gatedSink(t, s, callbacks(events.ClassMemb, 1), Subscription{})
	b := gatedSink(t, s, callbacks(events.ClassMemb, 2), Subscription{})
	mustPublish(t, s, memb(1))
	mustPublish(t, s, memb(2))
	a.waitTrace(t, "1*")
	s.Close()
	b.waitTrace(t, "1 2")
	a.waitTrace(t, "1* 2")
	if code, _ := b.waitClosed(t); code != proto.CodeShutdown {
		t.Fatalf("closed with %d", code)
	}
}
