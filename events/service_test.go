package events_test

import (
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/events/eventstest"
)

// timeout bounds every wait; tests wait on conditions, never sleep.
const timeout = 10 * time.Second

func newService(t *testing.T) *events.Service {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := events.New(events.Options{Logger: log})
	t.Cleanup(func() { s.Close() })
	return s
}

func register(t *testing.T, s *events.Service) *events.Handle {
	t.Helper()
	h, err := s.Register()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func publish(t *testing.T, s *events.Service, evs ...events.Event) {
	t.Helper()
	for _, ev := range evs {
		must(t, s.Publish(ev))
	}
}

// ready reports whether a notification is waiting on ch, without
// consuming it. Dispatch is synchronous, so after Publish, CallbackDone or
// HandleEvent returns the channel already says whether a callback is
// pending.
func ready(ch <-chan struct{}) bool { return len(ch) > 0 }

// chanHandle registers a handle with one membership callback, activated in
// the channel style.
func chanHandle(t *testing.T, s *events.Service, pri events.Priority, fn events.Callback) (*events.Handle, <-chan struct{}) {
	t.Helper()
	h := register(t, s)
	must(t, h.SetCallback(pri, events.ClassMemb, fn))
	ch, err := h.ActivateChan()
	must(t, err)
	return h, ch
}

// noReturn runs h's HandleEvent in a goroutine; the returned channel
// yields its result.
func noReturn(t *testing.T, h *events.Handle) <-chan error {
	t.Helper()
	must(t, h.ActivateNoReturn())
	res := make(chan error, 1)
	go func() { res <- h.HandleEvent() }()
	return res
}

func waitErr(t *testing.T, res <-chan error) error {
	t.Helper()
	select {
	case err := <-res:
		return err
	case <-time.After(timeout):
		t.Fatal("HandleEvent did not return")
		return nil
	}
}

func names(calls []eventstest.Call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.String())
	}
	return out
}

func view(seq uint64) events.Event { return eventstest.NewView(seq, seq, eventstest.Node(1, 1)) }

func TestActivateWithoutCallback(t *testing.T) {
	s := newService(t)
	h := register(t, s)
	if _, err := h.ActivateChan(); !errors.Is(err, events.ErrNoCallback) {
		t.Fatalf("ActivateChan without callback: %v, want ErrNoCallback", err)
	}
	if err := h.ActivateNoReturn(); !errors.Is(err, events.ErrNoCallback) {
		t.Fatalf("ActivateNoReturn without callback: %v", err)
	}
	if _, err := h.ActivateFD(); !errors.Is(err, events.ErrNoCallback) {
		t.Fatalf("ActivateFD without callback: %v", err)
	}
	// A callback set and then disabled is no callback.
	must(t, h.SetCallback(events.PriorityMed, events.ClassComm, func(events.Event, events.Cookie) {}))
	must(t, h.SetCallback(events.PriorityMed, events.ClassComm, nil))
	if _, err := h.ActivateChan(); !errors.Is(err, events.ErrNoCallback) {
		t.Fatalf("ActivateChan with disabled callback: %v", err)
	}
	if err := h.HandleEvent(); !errors.Is(err, events.ErrNotActive) {
		t.Fatalf("HandleEvent before activation: %v, want ErrNotActive", err)
	}
	must(t, h.SetCallback(events.PriorityMed, events.ClassGroup, func(events.Event, events.Cookie) {}))
	if _, err := h.ActivateChan(); err != nil {
		t.Fatal(err)
	}
	if h.Style() != events.StyleChan {
		t.Errorf("Style() = %v", h.Style())
	}
	if _, err := h.ActivateChan(); !errors.Is(err, events.ErrActive) {
		t.Fatalf("second activation: %v, want ErrActive", err)
	}
}

func TestArgumentErrors(t *testing.T) {
	s := newService(t)
	h := register(t, s)
	fn := func(events.Event, events.Cookie) {}
	for _, c := range []struct {
		pri   events.Priority
		class events.Class
		want  error
	}{
		{-1, events.ClassMemb, events.ErrBadPriority},
		{events.PriorityMax + 1, events.ClassMemb, events.ErrBadPriority},
		{0, 0, events.ErrBadClass},
		{0, 4, events.ErrBadClass},
	} {
		if err := h.SetCallback(c.pri, c.class, fn); !errors.Is(err, c.want) {
			t.Errorf("SetCallback(%d, %d): %v, want %v", c.pri, c.class, err, c.want)
		}
	}
	for _, sig := range []int{0, 9, 19, 65} { // 9 SIGKILL, 19 SIGSTOP
		must(t, h.SetCallback(0, events.ClassMemb, fn))
		if err := h.ActivateSignal(syscall.Signal(sig)); !errors.Is(err, events.ErrBadSignal) {
			t.Errorf("ActivateSignal(%d): %v, want ErrBadSignal", sig, err)
		}
	}
	if err := events.CallbackDone(events.Cookie{}); !errors.Is(err, events.ErrBadCookie) {
		t.Errorf("CallbackDone(zero): %v", err)
	}
}

func TestPublishValidation(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	h, ch := chanHandle(t, s, 0, rec.Callback("h", true))
	for _, c := range []struct {
		ev   events.Event
		want error
	}{
		{events.Event{Seq: 1, Desc: events.MSInvalid}, events.ErrBadEvent},
		{events.Event{Seq: 1, Desc: events.Descriptor(0x00800009)}, events.ErrBadEvent},
		{events.Event{Seq: 1, Desc: events.MSNewView, Data: &events.Group{}}, events.ErrDataClass},
	} {
		if err := s.Publish(c.ev); !errors.Is(err, c.want) {
			t.Errorf("Publish(%v): %v, want %v", c.ev, err, c.want)
		}
	}
	publish(t, s, view(5), events.Event{Desc: events.MSSuspect}, view(7))
	for _, seq := range []uint64{7, 6, 1} {
		if err := s.Publish(view(seq)); !errors.Is(err, events.ErrStaleSeq) {
			t.Errorf("Publish(seq %d) after 7: %v, want ErrStaleSeq", seq, err)
		}
	}
	for ready(ch) {
		must(t, h.HandleEvent())
	}
	want := []string{"h:NEWVIEW seq=5", "h:SUSPECT seq=0", "h:NEWVIEW seq=7"}
	if got := names(rec.Calls()); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

// TestPriorityOrder runs each handle in its own goroutine; only the
// priority bands can put the callbacks in order.
func TestPriorityOrder(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	var results []<-chan error
	var handles []*events.Handle
	for _, p := range []struct {
		name string
		pri  events.Priority
	}{{"low", events.PriorityLow}, {"first", 0}, {"med", events.PriorityMed}, {"high", events.PriorityHigh}, {"last", events.PriorityMax}} {
		h := register(t, s)
		must(t, h.SetCallback(p.pri, events.ClassMemb, rec.Callback(p.name, true)))
		handles = append(handles, h)
		results = append(results, noReturn(t, h))
	}
	publish(t, s, view(1), view(2))
	want := []string{
		"first:NEWVIEW seq=1", "high:NEWVIEW seq=1", "med:NEWVIEW seq=1", "low:NEWVIEW seq=1", "last:NEWVIEW seq=1",
		"first:NEWVIEW seq=2", "high:NEWVIEW seq=2", "med:NEWVIEW seq=2", "low:NEWVIEW seq=2", "last:NEWVIEW seq=2",
	}
	if got := names(rec.Wait(t, len(want), timeout)); !slices.Equal(got, want) {
		t.Errorf("order\n got %v\nwant %v", got, want)
	}
	for i, h := range handles {
		must(t, h.Unregister())
		if err := waitErr(t, results[i]); err != nil {
			t.Errorf("HandleEvent after Unregister: %v, want nil", err)
		}
	}
}

func TestReplaceAndDisable(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	h, ch := chanHandle(t, s, 0, rec.Callback("a", true))
	must(t, h.SetCallback(0, events.ClassMemb, rec.Callback("b", true)))
	publish(t, s, view(1))
	must(t, h.HandleEvent())

	// Disabling cancels the pending delivery: nothing runs, and the next
	// event of another class is not held back by it.
	must(t, h.SetCallback(0, events.ClassGroup, rec.Callback("g", true)))
	publish(t, s, view(2))
	if !ready(ch) {
		t.Fatal("NEWVIEW 2 not pending")
	}
	must(t, h.SetCallback(0, events.ClassMemb, nil))
	publish(t, s, view(3), eventstest.Message(4, "grp", eventstest.Node(1, 1), nil))
	must(t, h.HandleEvent())

	// Replacing the function of a pending delivery runs the new one.
	must(t, h.SetCallback(0, events.ClassMemb, rec.Callback("c", true)))
	publish(t, s, view(5))
	must(t, h.SetCallback(0, events.ClassMemb, rec.Callback("d", true)))
	must(t, h.HandleEvent())

	want := []string{"b:NEWVIEW seq=1", "g:BROADCAST seq=4", "d:NEWVIEW seq=5"}
	if got := names(rec.Calls()); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

func TestCallbackDoneGating(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	h1, ch1 := chanHandle(t, s, 1, rec.Callback("h1", false)) // holds its cookies
	h2, ch2 := chanHandle(t, s, 2, rec.Callback("h2", true))
	publish(t, s, view(1), view(2))

	if !ready(ch1) || ready(ch2) {
		t.Fatal("want only h1 pending")
	}
	must(t, h1.HandleEvent())
	// h1 returned without CallbackDone: the event is outstanding, so
	// neither the lower priority h2 nor the next event may be delivered.
	must(t, h1.HandleEvent())
	must(t, h2.HandleEvent())
	if ready(ch1) || ready(ch2) {
		t.Fatal("a callback is pending before CallbackDone")
	}
	if got := names(rec.Calls()); !slices.Equal(got, []string{"h1:NEWVIEW seq=1"}) {
		t.Fatalf("before CallbackDone: %v", got)
	}

	must(t, events.CallbackDone(rec.Calls()[0].Cookie))
	if ready(ch1) || !ready(ch2) {
		t.Fatal("after h1's CallbackDone want exactly h2 pending")
	}
	must(t, h2.HandleEvent())
	if !ready(ch1) {
		t.Fatal("event 2 not delivered after event 1 completed")
	}
	must(t, h1.HandleEvent())
	must(t, events.CallbackDone(rec.Calls()[2].Cookie))
	must(t, h2.HandleEvent())

	want := []string{"h1:NEWVIEW seq=1", "h2:NEWVIEW seq=1", "h1:NEWVIEW seq=2", "h2:NEWVIEW seq=2"}
	if got := names(rec.Calls()); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	if err := events.CallbackDone(rec.Calls()[0].Cookie); !errors.Is(err, events.ErrCookieDone) {
		t.Errorf("second CallbackDone: %v, want ErrCookieDone", err)
	}
}

// TestCallbackDoneAsync completes callbacks from another goroutine after
// they returned, as the seed allows.
func TestCallbackDoneAsync(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	var wg sync.WaitGroup
	h := register(t, s)
	must(t, h.SetCallback(0, events.ClassMemb, func(ev events.Event, c events.Cookie) {
		rec.Record(eventstest.Call{Name: "h", Event: ev})
		wg.Go(func() {
			if err := events.CallbackDone(c); err != nil {
				t.Error(err) // not Fatal: this is not the test goroutine
			}
		})
	}))
	res := noReturn(t, h)
	for i := uint64(1); i <= 20; i++ {
		publish(t, s, view(i))
	}
	calls := rec.Wait(t, 20, timeout)
	for i, c := range calls {
		if c.Event.Seq != uint64(i+1) {
			t.Fatalf("call %d has seq %d", i, c.Event.Seq)
		}
	}
	must(t, h.Unregister())
	must(t, waitErr(t, res))
	wg.Wait()
}

func TestUnregisterInCallback(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	var h1 *events.Handle
	var ch2 <-chan struct{}
	var inside []string
	h1, ch1 := chanHandle(t, s, 1, func(ev events.Event, c events.Cookie) {
		rec.Record(eventstest.Call{Name: "h1", Event: ev})
		if err := h1.Unregister(); err != nil {
			inside = append(inside, "Unregister: "+err.Error())
		}
		// Cleanup waits for this callback to return (seed §3.1).
		if ready(ch2) {
			inside = append(inside, "h2 pending while h1's callback runs")
		}
		// Returns without CallbackDone: Unregister completes it.
	})
	h2, ch2 := chanHandle(t, s, 2, rec.Callback("h2", true))
	publish(t, s, view(1), view(2))
	must(t, h1.HandleEvent())
	if inside != nil {
		t.Fatal(inside)
	}
	if !ready(ch2) {
		t.Fatal("h2 not pending after h1 unregistered in its callback")
	}
	must(t, h2.HandleEvent())
	if err := h1.HandleEvent(); !errors.Is(err, events.ErrUnregistered) {
		t.Errorf("HandleEvent after Unregister: %v", err)
	}
	if err := h1.Unregister(); !errors.Is(err, events.ErrUnregistered) {
		t.Errorf("second Unregister: %v", err)
	}
	if _, ok := <-ch1; ok {
		t.Error("h1's channel not closed")
	}
	want := []string{"h1:NEWVIEW seq=1", "h2:NEWVIEW seq=1", "h2:NEWVIEW seq=2"}
	if got := names(rec.Calls()); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

// TestUnregisterReleasesOutstanding: a callback that returned without
// CallbackDone no longer holds the node's events once its handle goes.
func TestUnregisterReleasesOutstanding(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	h1, _ := chanHandle(t, s, 1, rec.Callback("h1", false))
	h2, ch2 := chanHandle(t, s, 2, rec.Callback("h2", true))
	publish(t, s, view(1))
	must(t, h1.HandleEvent())
	if ready(ch2) {
		t.Fatal("h2 pending while h1 holds the event")
	}
	must(t, h1.Unregister())
	if !ready(ch2) {
		t.Fatal("h2 not pending after h1 unregistered")
	}
	must(t, h2.HandleEvent())
	if err := events.CallbackDone(rec.Calls()[0].Cookie); err != nil {
		t.Errorf("CallbackDone of a released cookie: %v, want nil", err)
	}
}

func TestNoReturnClose(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	h := register(t, s)
	must(t, h.SetCallback(0, events.ClassMemb, rec.Callback("h", true)))
	res := noReturn(t, h)
	publish(t, s, view(1), events.Event{Seq: 2, Desc: events.MSShutdown})
	rec.Wait(t, 2, timeout)
	must(t, s.Close())
	if err := waitErr(t, res); !errors.Is(err, events.ErrClosed) {
		t.Errorf("HandleEvent after Close: %v, want ErrClosed", err)
	}
	if err := s.Publish(view(3)); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Publish after Close: %v", err)
	}
	if _, err := s.Register(); !errors.Is(err, events.ErrClosed) {
		t.Errorf("Register after Close: %v", err)
	}
	if err := s.Close(); !errors.Is(err, events.ErrClosed) {
		t.Errorf("second Close: %v", err)
	}
}

// TestActivationStartsWithNextEvent: a handle activated while an event is
// outstanding does not get that event, but gets the next.
func TestActivationStartsWithNextEvent(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	h1, _ := chanHandle(t, s, 1, rec.Callback("h1", false))
	publish(t, s, view(1), view(2))
	must(t, h1.HandleEvent())
	h2, ch2 := chanHandle(t, s, 0, rec.Callback("h2", true))
	must(t, events.CallbackDone(rec.Calls()[0].Cookie))
	if !ready(ch2) {
		t.Fatal("h2 not pending for event 2")
	}
	must(t, h2.HandleEvent())
	want := []string{"h1:NEWVIEW seq=1", "h2:NEWVIEW seq=2"}
	if got := names(rec.Calls()); !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
}

// TestManyHandlesExactlyOnce publishes from one goroutine while handles of
// every style but signal consume in their own, some completing callbacks
// asynchronously: each must see every event once, in publish order.
func TestManyHandlesExactlyOnce(t *testing.T) {
	const n = 200
	s := newService(t)
	type consumer struct {
		h    *events.Handle
		rec  *eventstest.Recorder
		done <-chan error
	}
	var cs []consumer
	var async sync.WaitGroup
	for i := range 9 {
		c := consumer{h: register(t, s), rec: eventstest.NewRecorder()}
		done := make(chan error, 1)
		fn := c.rec.Callback("c", true)
		if i%2 == 1 {
			rec := c.rec
			fn = func(ev events.Event, ck events.Cookie) {
				rec.Record(eventstest.Call{Event: ev})
				async.Go(func() {
					if err := events.CallbackDone(ck); err != nil {
						t.Error(err)
					}
				})
			}
		}
		must(t, c.h.SetCallback(events.Priority(i%3*10), events.ClassGroup, fn))
		style := i % 3
		if style == 2 && runtime.GOOS != "linux" {
			style = 1 // the fd style is Linux only
		}
		switch style {
		case 0:
			c.done = noReturn(t, c.h)
		case 1:
			ch, err := c.h.ActivateChan()
			must(t, err)
			go func() {
				for range ch {
					if err := c.h.HandleEvent(); err != nil {
						done <- err
						return
					}
				}
				done <- nil
			}()
			c.done = done
		case 2:
			f, err := c.h.ActivateFD()
			must(t, err)
			go func() { done <- pollLoop(f, c.h); f.Close() }()
			c.done = done
		}
		cs = append(cs, c)
	}
	go func() {
		for i := uint64(1); i <= n; i++ {
			if err := s.Publish(eventstest.Message(i, "g", eventstest.Node(1, 1), nil)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i, c := range cs {
		calls := c.rec.Wait(t, n, timeout)
		for j, call := range calls {
			if call.Event.Seq != uint64(j+1) {
				t.Fatalf("consumer %d: call %d has seq %d", i, j, call.Event.Seq)
			}
		}
	}
	for _, c := range cs {
		must(t, c.h.Unregister())
	}
	for i, c := range cs {
		if err := waitErr(t, c.done); err != nil && !errors.Is(err, events.ErrUnregistered) {
			t.Errorf("consumer %d: %v", i, err)
		}
		if got := len(c.rec.Calls()); got != n {
			t.Errorf("consumer %d: %d calls, want %d", i, got, n)
		}
	}
	async.Wait()
}
