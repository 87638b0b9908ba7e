package eventstream

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
)

const waitFor = 10 * time.Second

// fakeSink records what the stream hands it. Its Send can be stalled, and
// end simulates the link dropping.
type fakeSink struct {
	mu      sync.Mutex // guards the fields below
	got     []events.Event
	flags   []client.EventFlags // of got, index by index
	closed  bool
	code    proto.Code
	text    string
	changed chan struct{} // closed and replaced when something above changes
	stall   chan struct{} // when not nil, Send waits for it to close

	done chan struct{}
	once sync.Once
}

func newSink() *fakeSink {
	return &fakeSink{changed: make(chan struct{}), done: make(chan struct{})}
}

func (k *fakeSink) Send(ctx context.Context, body []byte) error {
	k.mu.Lock()
	stall := k.stall
	k.mu.Unlock()
	if stall != nil {
		select {
		case <-stall:
		case <-ctx.Done():
			return ctx.Err()
		case <-k.done:
			return errors.New("sink ended")
		}
	}
	select {
	case <-k.done:
		return errors.New("sink ended")
	default:
	}
	ev, fl, err := client.ParseEventAt(client.MaxVersion, body)
	if err != nil {
		panic(err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.got = append(k.got, ev)
	k.flags = append(k.flags, fl)
	k.changedLocked()
	return nil
}

func (k *fakeSink) Close(code proto.Code, text string) {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		panic("sink closed twice")
	}
	k.closed, k.code, k.text = true, code, text
	k.changedLocked()
	k.mu.Unlock()
	k.end()
}

func (k *fakeSink) Done() <-chan struct{} { return k.done }

func (k *fakeSink) end() { k.once.Do(func() { close(k.done) }) }

func (k *fakeSink) changedLocked() {
	close(k.changed)
	k.changed = make(chan struct{})
}

func (k *fakeSink) setStall(on bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if on {
		k.stall = make(chan struct{})
	} else if k.stall != nil {
		close(k.stall)
		k.stall = nil
	}
}

// waitUntil waits until cond holds for the sink's state.
func (k *fakeSink) waitUntil(t *testing.T, what string, cond func(k *fakeSink) bool) {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		k.mu.Lock()
		ok, changed := cond(k), k.changed
		k.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline.C:
			k.mu.Lock()
			defer k.mu.Unlock()
			t.Fatalf("waiting for %s: sink has %d events %v, closed %v (%d %q)", what, len(k.got), seqs(k.got), k.closed, k.code, k.text)
		}
	}
}

// events waits for n events and returns them.
func (k *fakeSink) events(t *testing.T, n int) []events.Event {
	t.Helper()
	k.waitUntil(t, "events", func(k *fakeSink) bool { return len(k.got) >= n })
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.got)
}

func (k *fakeSink) waitClosed(t *testing.T) (proto.Code, string) {
	t.Helper()
	k.waitUntil(t, "Close", func(k *fakeSink) bool { return k.closed })
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.code, k.text
}

// groupEvent returns a BROADCAST with seq i (0 for a local event) and a
// payload of n bytes.
func groupEvent(i int, local bool, n int) events.Event {
	seq := uint64(i)
	if local {
		seq = 0
	}
	return events.Event{Seq: seq, Desc: events.GSBroadcast, Data: &events.Group{
		Name: "test", From: events.GroupMember{Node: 7, Member: 7, Name: "n7"}, MsgID: uint64(i), Payload: bytes.Repeat([]byte{byte(i)}, n),
	}}
}

// seqs returns the events' seqs (local events: -1).
func seqs(evs []events.Event) []int {
	out := make([]int, len(evs))
	for i, ev := range evs {
		out[i] = -1
		if ev.Seq != 0 {
			out[i] = int(ev.Seq)
		}
	}
	return out
}

func span(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func newStream(t *testing.T, floor uint64, tune func(*Limits)) *Stream {
	lim := DefaultLimits()
	if tune != nil {
		tune(&lim)
	}
	s := New(lim, floor, slog.New(slog.DiscardHandler))
	t.Cleanup(s.Close)
	return s
}

func subscribe(t *testing.T, s *Stream, sub Subscription) (*fakeSink, Reply) {
	t.Helper()
	k := newSink()
	rep, err := s.Subscribe(k, sub)
	if err != nil {
		t.Fatal(err)
	}
	return k, rep
}

func mustPublish(t *testing.T, s *Stream, ev events.Event) {
	t.Helper()
	if err := s.Publish(ev); err != nil {
		t.Fatal(err)
	}
}

func TestInOrder(t *testing.T) {
	s := newStream(t, 0, nil)
	k, rep := subscribe(t, s, Subscription{})
	if rep != (Reply{}) {
		t.Fatalf("reply of a fresh stream: %+v", rep)
	}
	const n = 200
	var want []events.Event
	for i := 1; i <= n; i++ {
		ev := groupEvent(i, i%50 == 0, i)
		want = append(want, ev)
		mustPublish(t, s, ev)
	}
	got := k.events(t, n)
	for i := range want {
		w, g := want[i], got[i]
		if g.Seq != w.Seq || g.Desc != w.Desc || !bytes.Equal(g.Group().Payload, w.Group().Payload) || g.Group().MsgID != w.Group().MsgID {
			t.Fatalf("event %d: got %v, want %v", i, g, w)
		}
	}
}

// TestRestartFloor is the regression test for the resume gap hidden after
// an agent restart: a stream that starts at the applied index 3 holds
// none of the events up to 3, so a subscriber resuming after 0 is told of
// a gap, and never "no gap" with no events.
func TestRestartFloor(t *testing.T) {
	s := newStream(t, 3, nil)
	k, rep := subscribe(t, s, Subscription{Resume: true, After: 0})
	if rep != (Reply{Latest: 3, Floor: 3, Gap: true}) {
		t.Fatalf("resume after 0 on a stream started at 3: %+v, want a gap", rep)
	}
	// A subscriber that saw everything up to 3 has lost nothing.
	k3, rep := subscribe(t, s, Subscription{Resume: true, After: 3})
	if rep != (Reply{Latest: 3, Floor: 3}) {
		t.Fatalf("resume after 3: %+v, want no gap", rep)
	}
	// The events up to the floor were published by the earlier run.
	if err := s.Publish(groupEvent(3, false, 1)); !errors.Is(err, ErrStaleSeq) {
		t.Fatalf("publishing seq 3 on a stream started at 3: %v, want ErrStaleSeq", err)
	}
	mustPublish(t, s, groupEvent(4, false, 1))
	for _, k := range []*fakeSink{k, k3} {
		if got := k.events(t, 1); !slices.Equal(seqs(got), []int{4}) {
			t.Fatalf("after the restart: %v", seqs(got))
		}
	}
}

// TestSkip: a snapshot that replaced entries raises the floor; a
// subscriber resuming below it hears of a gap.
func TestSkip(t *testing.T) {
	s := newStream(t, 0, nil)
	mustPublish(t, s, groupEvent(1, false, 1))
	s.Skip(10)
	s.Skip(5) // never lowers it
	if _, rep := subscribe(t, s, Subscription{Resume: true, After: 1}); rep != (Reply{Latest: 10, Floor: 10, Gap: true}) {
		t.Fatalf("resume after 1 past a snapshot at 10: %+v", rep)
	}
	if err := s.Publish(groupEvent(9, false, 1)); !errors.Is(err, ErrStaleSeq) {
		t.Fatalf("publish below a skipped seq: %v", err)
	}
}

// TestExactlyOnceAcrossReconnect: a subscriber whose sink ends comes back
// resuming after the last seq it got, and gets every cluster-wide event
// once, in order, from the history.
func TestExactlyOnceAcrossReconnect(t *testing.T) {
	s := newStream(t, 0, nil)
	k, _ := subscribe(t, s, Subscription{})
	for i := 1; i <= 50; i++ {
		mustPublish(t, s, groupEvent(i, false, 100))
	}
	got := k.events(t, 20)
	k.end() // the link drops
	for i := 51; i <= 100; i++ {
		mustPublish(t, s, groupEvent(i, false, 100))
	}
	k.mu.Lock()
	got = slices.Clone(k.got)
	k.mu.Unlock()
	last := got[len(got)-1].Seq
	k2, rep := subscribe(t, s, Subscription{Resume: true, After: last})
	if rep.Gap || rep.Latest != 100 {
		t.Fatalf("resume after %d: %+v", last, rep)
	}
	mustPublish(t, s, groupEvent(101, false, 100))
	all := append(got, k2.events(t, 101-int(last))...)
	if !slices.Equal(seqs(all), span(1, 101)) {
		t.Fatalf("events across a reconnect: %v", seqs(all))
	}
	// The ended sink's subscriber goes when its goroutine sees Done.
	for deadline := time.Now().Add(waitFor); s.Subscribers() != 1; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers after one sink ended, want 1", s.Subscribers())
		}
	}
}

// TestGap: a subscriber away while its events leave the history is told
// so on its return, and gets what the history still holds.
func TestGap(t *testing.T) {
	s := newStream(t, 0, func(l *Limits) { l.HistEvents, l.HistKeepBytes = 8, 0 })
	for i := 1; i <= 30; i++ {
		mustPublish(t, s, groupEvent(i, false, 10))
	}
	if f := s.Floor(); f != 22 {
		t.Fatalf("floor %d after 30 events through a history of 8, want 22", f)
	}
	k, rep := subscribe(t, s, Subscription{Resume: true, After: 3})
	if rep != (Reply{Latest: 30, Floor: 22, Gap: true}) {
		t.Fatalf("reply %+v", rep)
	}
	if got := k.events(t, 8); !slices.Equal(seqs(got), span(23, 30)) {
		t.Fatalf("events after the gap: %v", seqs(got))
	}
	if _, rep := subscribe(t, s, Subscription{Resume: true, After: 22}); rep.Gap {
		t.Fatalf("resume at the floor: %+v, want no gap", rep)
	}
}

// TestSlowSubscriber: a subscriber that stops taking events is closed
// with CodeBehind while a fast one keeps receiving; it then resumes and
// gets every event once.
func TestSlowSubscriber(t *testing.T) {
	s := newStream(t, 0, func(l *Limits) { l.LagEvents = 4 })
	fast, _ := subscribe(t, s, Subscription{})
	slow, _ := subscribe(t, s, Subscription{})
	slow.setStall(true)
	for i := 1; i <= 20; i++ {
		mustPublish(t, s, groupEvent(i, false, 10))
		fast.events(t, i)
	}
	code, text := slow.waitClosed(t)
	if code != proto.CodeBehind || !strings.Contains(text, "fell behind") {
		t.Fatalf("slow subscriber closed with %d %q, want CodeBehind", code, text)
	}
	slow.mu.Lock()
	last := uint64(0)
	if n := len(slow.got); n > 0 {
		last = slow.got[n-1].Seq
	}
	slow.mu.Unlock()
	again, rep := subscribe(t, s, Subscription{Resume: true, After: last})
	if rep.Gap {
		t.Fatalf("resume after falling behind: %+v", rep)
	}
	if got := again.events(t, 20-int(last)); !slices.Equal(seqs(got), span(int(last)+1, 20)) {
		t.Fatalf("slow subscriber after resuming after %d: %v", last, seqs(got))
	}
	fast.mu.Lock()
	defer fast.mu.Unlock()
	if fast.closed {
		t.Fatalf("fast subscriber closed: %d %q", fast.code, fast.text)
	}
}

// TestLagOneEntry: the events of one log entry, published at once, are
// not lag however many they are; the next entry's counts them.
func TestLagOneEntry(t *testing.T) {
	s := newStream(t, 0, func(l *Limits) { l.LagEvents = 4 })
	k, _ := subscribe(t, s, Subscription{})
	k.setStall(true)
	entryEvent := func(index uint64, i int) events.Event {
		ev := groupEvent(i, false, 10)
		ev.Seq = events.SeqOf(index, uint32(i))
		return ev
	}
	for i := 1; i <= 50; i++ {
		mustPublish(t, s, entryEvent(7, i))
	}
	k.setStall(false)
	k.events(t, 50) // all of them: it was not closed
	k.setStall(true)
	for i := 1; i <= 50; i++ {
		mustPublish(t, s, entryEvent(8, i))
	}
	mustPublish(t, s, entryEvent(9, 1))
	if code, text := k.waitClosed(t); code != proto.CodeBehind || !strings.Contains(text, "51 events") {
		t.Fatalf("closed with %d %q, want CodeBehind with 51 events", code, text)
	}
}

// TestLagBytes: the byte bound closes a subscriber too.
func TestLagBytes(t *testing.T) {
	s := newStream(t, 0, func(l *Limits) { l.LagBytes = 1000 })
	k, _ := subscribe(t, s, Subscription{})
	k.setStall(true)
	for i := 1; i <= 10; i++ {
		mustPublish(t, s, groupEvent(i, false, 300))
	}
	if code, text := k.waitClosed(t); code != proto.CodeBehind || !strings.Contains(text, "bytes") {
		t.Fatalf("closed with %d %q", code, text)
	}
}

// TestFilter: each subscriber gets what its filter selects, and only
// that: a class mask, or any function of the event.
func TestFilter(t *testing.T) {
	s := newStream(t, 0, nil)
	groups, _ := subscribe(t, s, Subscription{Filter: Classes(client.MaskOf(events.ClassGroup))})
	others, _ := subscribe(t, s, Subscription{Filter: Classes(client.MaskOf(events.ClassMemb, events.ClassComm))})
	named, _ := subscribe(t, s, Subscription{Filter: func(ev *events.Event) bool {
		g, ok := ev.Data.(*events.Group)
		return ok && g.Name == "mine"
	}})
	view := &events.Membership{Instance: 777, Members: []events.Node{{ID: 1, Name: "n1", BornOn: 1}}}
	conn := &events.Connectivity{Interface: events.Interface{Name: "test0"}}
	var wantOthers []int
	for i := 1; i <= 30; i++ {
		switch i % 3 {
		case 0:
			ev := groupEvent(i, false, 1)
			if i%2 == 0 {
				ev.Data.(*events.Group).Name = "mine"
			}
			mustPublish(t, s, ev)
		case 1:
			mustPublish(t, s, events.Event{Seq: uint64(i), Desc: events.MSNewView, Data: view})
			wantOthers = append(wantOthers, i)
		case 2:
			mustPublish(t, s, events.Event{Desc: events.CSInterfaceAdded, Data: conn}) // local
			wantOthers = append(wantOthers, -1)
		}
	}
	mustPublish(t, s, events.Event{Seq: 31, Desc: events.MSRecovered, Data: view})
	wantOthers = append(wantOthers, 31)
	if got := groups.events(t, 10); !slices.Equal(seqs(got), []int{3, 6, 9, 12, 15, 18, 21, 24, 27, 30}) {
		t.Fatalf("group subscriber: %v", seqs(got))
	}
	if got := others.events(t, len(wantOthers)); !slices.Equal(seqs(got), wantOthers) {
		t.Fatalf("membership and connectivity subscriber: %v, want %v", seqs(got), wantOthers)
	}
	if got := named.events(t, 5); !slices.Equal(seqs(got), []int{6, 12, 18, 24, 30}) {
		t.Fatalf("subscriber of group mine: %v", seqs(got))
	}
	// Nothing more arrives: the last event published was for others only.
	mustPublish(t, s, groupEvent(32, false, 1))
	if got := groups.events(t, 11); len(got) != 11 || got[10].Seq != 32 {
		t.Fatalf("group subscriber at the end: %v", seqs(got))
	}
	if got := others.events(t, 0); len(got) != len(wantOthers) {
		t.Fatalf("others got more: %v", seqs(got))
	}
}

// TestLocalEventsOnlyToSubscribers: a local event reaches the subscribers
// present when it is published; one resuming later gets the cluster-wide
// history but not it.
func TestLocalEventsOnlyToSubscribers(t *testing.T) {
	s := newStream(t, 0, nil)
	early, _ := subscribe(t, s, Subscription{})
	mustPublish(t, s, groupEvent(1, false, 1))
	mustPublish(t, s, groupEvent(2, true, 1))
	mustPublish(t, s, groupEvent(3, false, 1))
	if got := early.events(t, 3); !slices.Equal(seqs(got), []int{1, -1, 3}) {
		t.Fatalf("early subscriber: %v", seqs(got))
	}
	late, _ := subscribe(t, s, Subscription{Resume: true})
	mustPublish(t, s, groupEvent(4, true, 1))
	mustPublish(t, s, groupEvent(5, false, 1))
	if got := late.events(t, 4); !slices.Equal(seqs(got), []int{1, 3, -1, 5}) {
		t.Fatalf("late subscriber resuming after 0: %v", seqs(got))
	}
	fresh, _ := subscribe(t, s, Subscription{})
	mustPublish(t, s, groupEvent(6, false, 1))
	if got := fresh.events(t, 1); !slices.Equal(seqs(got), []int{6}) {
		t.Fatalf("new subscriber: %v", seqs(got))
	}
}

// TestClose: Close hands every subscriber what was published, then closes
// it with CodeShutdown; later calls are refused.
func TestClose(t *testing.T) {
	s := New(DefaultLimits(), 0, nil)
	k, _ := subscribe(t, s, Subscription{})
	if _, err := s.Subscribe(k, Subscription{}); !errors.Is(err, ErrSubscribed) {
		t.Fatalf("second Subscribe of a sink: %v", err)
	}
	for i := 1; i <= 50; i++ {
		mustPublish(t, s, groupEvent(i, false, 10))
	}
	s.Close()
	k.mu.Lock()
	n, closed, code := len(k.got), k.closed, k.code
	k.mu.Unlock()
	if n != 50 || !closed || code != proto.CodeShutdown {
		t.Fatalf("after Close: %d events, closed %v with %d; want 50, CodeShutdown", n, closed, code)
	}
	if err := s.Publish(groupEvent(51, false, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if _, err := s.Subscribe(newSink(), Subscription{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	s.Close()
}

// TestCloseStalled: a subscriber that takes nothing does not hold Close
// beyond the flush limit.
func TestCloseStalled(t *testing.T) {
	s := New(DefaultLimits(), 0, nil)
	s.SetLimits(Limits{HistEvents: 10, HistMaxBytes: 1 << 20, LagEvents: 100, LagBytes: 1 << 20, Flush: 10 * time.Millisecond})
	k, _ := subscribe(t, s, Subscription{})
	k.setStall(true)
	mustPublish(t, s, groupEvent(1, false, 1))
	s.Close()
	if code, _ := k.waitClosed(t); code != proto.CodeShutdown {
		t.Fatalf("stalled subscriber closed with %d", code)
	}
}

// TestHistory checks the history bounds and the floor.
func TestHistory(t *testing.T) {
	s := newStream(t, 0, func(l *Limits) { l.HistEvents, l.HistKeepBytes, l.HistMaxBytes = 4, 0, 1<<20 })
	for i := 1; i <= 10; i++ {
		mustPublish(t, s, groupEvent(i, i == 9, 10))
	}
	if err := s.Publish(groupEvent(10, false, 10)); !errors.Is(err, ErrStaleSeq) {
		t.Fatalf("publishing seq 10 twice: %v", err)
	}
	if len(s.hist) != 4 || s.base != 7 || s.next != 11 || s.latest != 10 || s.floor != 6 {
		t.Fatalf("history of %d from %d to %d, latest %d, floor %d", len(s.hist), s.base, s.next, s.latest, s.floor)
	}
	// The byte bounds: keep more than HistEvents while under
	// HistKeepBytes, never more than HistMaxBytes.
	ev := groupEvent(1, false, 1000)
	b, _ := client.AppendEvent(nil, &ev)
	size := len(b)
	lim := DefaultLimits()
	lim.HistEvents, lim.HistKeepBytes, lim.HistMaxBytes = 2, 5*size, 8*size
	s.SetLimits(lim)
	for i := 11; i <= 30; i++ {
		mustPublish(t, s, groupEvent(i, false, 1000))
	}
	if len(s.hist) != 5 {
		t.Fatalf("history of %d events of %d bytes, want 5 (keep %d bytes)", len(s.hist), size, lim.HistKeepBytes)
	}
	lim.HistEvents, lim.HistKeepBytes = 100, 100*size
	s.SetLimits(lim)
	for i := 31; i <= 50; i++ {
		mustPublish(t, s, groupEvent(i, false, 1000))
	}
	if len(s.hist) != 8 {
		t.Fatalf("history of %d events of %d bytes, want 8 (at most %d bytes)", len(s.hist), size, lim.HistMaxBytes)
	}
	// An event that cannot be encoded is dropped.
	if err := s.Publish(events.Event{Seq: 51, Desc: events.GSJoin, Data: &events.Group{Name: strings.Repeat("x", 300)}}); err == nil || s.Latest() != 50 {
		t.Fatalf("an event too large to send: %v, latest %d", err, s.Latest())
	}
}
