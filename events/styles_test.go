//go:build linux

package events_test

import (
	"errors"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"testing"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/events/eventstest"
)

func seqs(calls []eventstest.Call) []uint64 {
	var out []uint64
	for _, c := range calls {
		out = append(out, c.Event.Seq)
	}
	return out
}

// unregisterAt returns a callback that records, completes, and unregisters
// *h after the event with sequence number last.
func unregisterAt(t *testing.T, rec *eventstest.Recorder, h **events.Handle, last uint64) events.Callback {
	return func(ev events.Event, c events.Cookie) {
		rec.Record(eventstest.Call{Event: ev, Cookie: c})
		if err := events.CallbackDone(c); err != nil {
			t.Error(err)
		}
		if ev.Seq == last {
			if err := (*h).Unregister(); err != nil {
				t.Error(err)
			}
		}
	}
}

func TestFDStyle(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	h := register(t, s)
	held := true
	must(t, h.SetCallback(0, events.ClassMemb, func(ev events.Event, c events.Cookie) {
		rec.Record(eventstest.Call{Event: ev, Cookie: c})
		if !held {
			must(t, events.CallbackDone(c))
		}
	}))
	f, err := h.ActivateFD()
	must(t, err)
	defer f.Close()
	wantReady := func(want bool) {
		t.Helper()
		if got, err := pollReady(f, 0); err != nil || got != want {
			t.Fatalf("fd readable = %v (%v), want %v", got, err, want)
		}
	}

	// Readable exactly while a callback is pending.
	wantReady(false)
	publish(t, s, view(1), view(2))
	wantReady(true)
	must(t, h.HandleEvent())
	wantReady(false) // event 1 outstanding: nothing pending
	held = false
	must(t, events.CallbackDone(rec.Calls()[0].Cookie))
	wantReady(true)

	// Now a real poll loop, ended by Unregister inside the callback.
	var hp = h
	must(t, h.SetCallback(0, events.ClassMemb, unregisterAt(t, rec, &hp, 5)))
	done := make(chan error, 1)
	go func() { done <- pollLoop(f, h) }()
	publish(t, s, view(3), view(4), view(5), view(6))
	if err := waitErr(t, done); !errors.Is(err, events.ErrUnregistered) {
		t.Fatalf("poll loop ended with %v, want ErrUnregistered", err)
	}
	wantReady(true) // end of file after Unregister
	if got, want := seqs(rec.Calls()), []uint64{1, 2, 3, 4, 5}; !slices.Equal(got, want) {
		t.Errorf("delivered seqs %v, want %v", got, want)
	}
}

func TestChanStyle(t *testing.T) {
	s := newService(t)
	rec := eventstest.NewRecorder()
	var h *events.Handle
	h, ch := chanHandle(t, s, events.PriorityMed, unregisterAt(t, rec, &h, 4))
	done := make(chan error, 1)
	go func() {
		for range ch { // closed by Unregister
			if err := h.HandleEvent(); err != nil && !errors.Is(err, events.ErrUnregistered) {
				done <- err
				return
			}
		}
		done <- nil
	}()
	publish(t, s, view(1), view(2), view(3), view(4), view(5))
	must(t, waitErr(t, done))
	if got, want := seqs(rec.Calls()), []uint64{1, 2, 3, 4}; !slices.Equal(got, want) {
		t.Errorf("delivered seqs %v, want %v", got, want)
	}
}

// TestSignalStyle drives HandleEvent from a real signal handler. It must not
// run in parallel with another user of SIGUSR1.
func TestSignalStyle(t *testing.T) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGUSR1)
	defer signal.Stop(sigc)

	s := newService(t)
	rec := eventstest.NewRecorder()
	h := register(t, s)
	must(t, h.SetCallback(events.PriorityLow, events.ClassComm, rec.Callback("h", true)))
	must(t, h.ActivateSignal(syscall.SIGUSR1))
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		for {
			select {
			case <-sigc: // the only way this loop learns of an event
				if err := h.HandleEvent(); err != nil {
					done <- err
					return
				}
			case <-stop:
				done <- nil
				return
			}
		}
	}()
	// One at a time, so that each delivery needs its own signal.
	for i := uint64(1); i <= 3; i++ {
		publish(t, s, events.Event{Seq: i, Desc: events.CSP2PLost, Data: &events.Connectivity{
			Nodes: []events.Node{eventstest.Node(i, 0)},
		}})
		rec.Wait(t, int(i), timeout)
	}
	must(t, h.Unregister())
	close(stop)
	must(t, waitErr(t, done))
	if got, want := seqs(rec.Calls()), []uint64{1, 2, 3}; !slices.Equal(got, want) {
		t.Errorf("delivered seqs %v, want %v", got, want)
	}
	if c := rec.Calls()[2].Event.Connectivity(); c == nil || c.Nodes[0].ID != 3 {
		t.Errorf("event data = %+v", rec.Calls()[2].Event.Data)
	}
}
