// Package eventstest helps test code that consumes or produces events: a
// Recorder of callback invocations that tests wait on with a deadline instead
// of sleeping, and builders of typical events.
package eventstest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
)

// Call is one recorded callback invocation.
type Call struct {
	Name   string // the name given to Recorder.Callback
	Event  events.Event
	Cookie events.Cookie
}

func (c Call) String() string { return fmt.Sprintf("%s:%v", c.Name, c.Event) }

// Recorder records callback invocations, in invocation order.
type Recorder struct {
	mu      sync.Mutex    // guards the fields below
	calls   []Call        // in invocation order
	changed chan struct{} // closed and replaced on each new call
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{changed: make(chan struct{})} }

// Callback returns a callback that records its invocations under name. With
// done it calls CallbackDone before returning; without, the test completes
// the call later with the recorded Cookie. A failing CallbackDone panics:
// it means the package under test broke its own cookie.
func (r *Recorder) Callback(name string, done bool) events.Callback {
	return func(ev events.Event, c events.Cookie) {
		r.Record(Call{Name: name, Event: ev, Cookie: c})
		if done {
			if err := events.CallbackDone(c); err != nil {
				panic(fmt.Sprintf("eventstest: CallbackDone: %v", err))
			}
		}
	}
}

// Record adds a call, for callbacks written by the test itself.
func (r *Recorder) Record(c Call) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
	close(r.changed)
	r.changed = make(chan struct{})
}

// Calls returns a copy of the calls so far.
func (r *Recorder) Calls() []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Call(nil), r.calls...)
}

// Wait waits until at least n calls are recorded and returns them; it fails
// the test if that takes longer than timeout.
func (r *Recorder) Wait(t testing.TB, n int, timeout time.Duration) []Call {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		calls, changed := append([]Call(nil), r.calls...), r.changed
		r.mu.Unlock()
		if len(calls) >= n {
			return calls
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("eventstest: %d calls after %v, want %d: %v", len(calls), timeout, n, calls)
		}
	}
}

// Node returns a node with the given ID, named "nID", born in view bornOn.
func Node(id, bornOn uint64) events.Node {
	return events.Node{ID: id, Name: fmt.Sprintf("n%d", id), BornOn: bornOn}
}

// NewView returns a NEWVIEW event with the given members and no joined or
// left nodes.
func NewView(seq, instance uint64, members ...events.Node) events.Event {
	return events.Event{Seq: seq, Desc: events.MSNewView, Data: &events.Membership{
		Instance: instance, Members: members,
	}}
}

// Message returns a BROADCAST event of group with the payload, sent by a
// member on node from.
func Message(seq uint64, group string, from events.Node, payload []byte) events.Event {
	return events.Event{Seq: seq, Desc: events.GSBroadcast, Data: &events.Group{
		Name: group, From: events.GroupMember{Node: from.ID}, Payload: payload,
	}}
}
