package events

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/corralhq/corral/internal/logkey"
	"slices"
	"sync"
)

// Service is one node's event notification service (seed §1.2): it delivers
// the events a producer publishes to the callbacks of local handles, one
// event at a time, in publish order, by priority. It does no network I/O.
//
// A Service has no goroutine of its own: Publish and CallbackDone advance the
// dispatch in the caller's goroutine, and callbacks run in the goroutine that
// calls Handle.HandleEvent.
type Service struct {
	log *slog.Logger

	// mu guards the fields below and the mutable fields of every Handle and
	// delivery of this Service: one lock, so a completion can advance the
	// whole dispatch atomically. It is never held while a callback runs.
	mu      sync.Mutex
	closed  bool
	handles []*Handle // registered, in registration order
	queue   []Event   // published, dispatch not started, in publish order
	cur     *dispatch // the event being dispatched; nil when idle
	lastSeq uint64    // highest non-zero Seq published
	hooks   Hooks
	told    Interest // the Interest last given to hooks.OnInterest
}

// Hooks let the producer follow the dispatch: the client library reports
// completions and callbacks to the agent, which orders the callbacks of
// every process of the node (client protocol version 3). They are called
// with the Service's lock held, so they must be quick, must not block and
// must not call the Service.
type Hooks struct {
	// OnComplete is called for each published event once its dispatch
	// is complete: every callback it was delivered to completed, or it
	// had no recipient. Calls come in publish order, one per event
	// Publish accepted; events dropped by Close are not completed.
	OnComplete func(Event)
	// OnInterest is called with the new Interest each time it changes.
	OnInterest func(Interest)
}

// Interest is, per class, whether an active handle has a callback for it
// and the smallest priority among those callbacks: which events a
// dispatch would deliver, and how early.
type Interest struct {
	Has  [numClasses + 1]bool
	Prio [numClasses + 1]Priority // PriorityMin where Has is false
}

// SetHooks installs h, replacing the hooks set before.
func (s *Service) SetHooks(h Hooks) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = h
	s.told = s.interestLocked()
}

// Interest returns the classes the active handles have callbacks for,
// with the smallest priority of each.
func (s *Service) Interest() Interest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.interestLocked()
}

func (s *Service) interestLocked() Interest {
	var in Interest
	for _, h := range s.handles {
		if h.style == StyleNone || h.closed {
			continue
		}
		for c := ClassComm; c <= ClassGroup; c++ {
			if b := h.cb[c]; b.fn != nil && (!in.Has[c] || b.pri < in.Prio[c]) {
				in.Has[c], in.Prio[c] = true, b.pri
			}
		}
	}
	return in
}

// interestChangedLocked tells OnInterest of a change.
func (s *Service) interestChangedLocked() {
	if s.hooks.OnInterest == nil {
		return
	}
	if in := s.interestLocked(); in != s.told {
		s.told = in
		s.hooks.OnInterest(in)
	}
}

func (s *Service) completedLocked(ev Event) {
	if s.hooks.OnComplete != nil {
		s.hooks.OnComplete(ev)
	}
}

// Options configures a Service.
type Options struct {
	// Logger receives debug traces of the dispatch and warnings (e.g. a
	// signal that could not be raised). Nil discards them.
	Logger *slog.Logger
}

// New returns a running Service.
func New(opts Options) *Service {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{log: logkey.WithSubsystem(log, "events")}
}

// Register returns a new handle (oc_ev_register). It receives nothing until
// it is activated.
func (s *Service) Register() (*Handle, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	h := &Handle{s: s}
	s.handles = append(s.handles, h)
	return h, nil
}

// Publish is the producer side: the agent or client library feeds each event
// here, cluster-wide events in the cluster-wide (Raft log) order. Publish
// queues ev and returns without waiting for callbacks; it never blocks on a
// consumer. It takes ownership of ev.Data: the producer must not modify it
// afterwards. The queue is unbounded: it grows while a callback keeps an
// event outstanding.
//
// Publish refuses an invalid descriptor (ErrBadEvent), data of another class
// (ErrDataClass), and a non-zero Seq not above the last one published
// (ErrStaleSeq): that event was already delivered, and delivering it again
// would break exactly-once, so a producer replaying its log after a restart
// can ignore this error.
func (s *Service) Publish(ev Event) error {
	if !ev.Desc.Valid() {
		return fmt.Errorf("%w: %v", ErrBadEvent, ev.Desc)
	}
	if ev.Data != nil && ev.Data.Class() != ev.Desc.Class() {
		return fmt.Errorf("%w: %T for %v", ErrDataClass, ev.Data, ev.Desc)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if ev.Seq != 0 {
		if ev.Seq <= s.lastSeq {
			return fmt.Errorf("%w: seq %d, last %d", ErrStaleSeq, ev.Seq, s.lastSeq)
		}
		s.lastSeq = ev.Seq
	}
	if s.cur == nil && len(s.queue) == 0 && !s.hasRecipientLocked(ev.Desc.Class()) {
		// Idle and no callback for the class (e.g. group events the
		// client hands to Deliveries): the event is complete at once,
		// as advanceLocked would find, without queueing a dispatch.
		s.completedLocked(ev)
		return nil
	}
	s.queue = append(s.queue, ev)
	s.advanceLocked()
	return nil
}

// hasRecipientLocked reports whether an active handle has a callback for
// class c: whether startLocked would find a recipient.
func (s *Service) hasRecipientLocked(c Class) bool {
	for _, h := range s.handles {
		if h.style != StyleNone && !h.closed && h.cb[c].fn != nil {
			return true
		}
	}
	return false
}

// Close shuts the service down: every handle is unregistered (HandleEvent in
// the no-return style returns ErrClosed), queued events are dropped, and
// Register and Publish fail with ErrClosed. A producer that wants clients to
// know publishes MSShutdown first. Callbacks running at the time finish.
func (s *Service) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.closed = true
	s.queue = nil
	// Close every handle before releasing any delivery, so that the
	// releases cannot make another handle pending (and raise its signal).
	hs := slices.Clone(s.handles)
	for _, h := range hs {
		h.closeLocked(ErrClosed)
	}
	for _, h := range hs {
		h.releaseLocked()
	}
	return nil
}

// dispatch is the state of the event being delivered. Its deliveries are
// grouped in bands of equal priority, closest to zero first; band i+1 is made
// pending only when every delivery of band i is complete.
type dispatch struct {
	ev    Event
	bands [][]*delivery
	band  int // index of the band being delivered; -1 before the first
	open  int // deliveries of bands[band] not yet complete
}

type dstate uint8

const (
	dWaiting  dstate = iota // its band has not been reached
	dReady                  // pending on its handle, waiting for HandleEvent
	dRunning                // callback running
	dReturned               // callback returned without CallbackDone
	dDone                   // complete
)

// delivery is one event for one handle's callback; its Cookie points to it.
type delivery struct {
	h     *Handle
	dp    *dispatch
	class Class
	pri   Priority
	state dstate
	// released: completed by Unregister or Close, not by CallbackDone, so a
	// late CallbackDone is not an error.
	released bool
}

// advanceLocked moves the dispatch forward as far as completions allow:
// starts the next queued event when idle, and the next band when the current
// one is complete.
func (s *Service) advanceLocked() {
	for {
		if s.cur == nil {
			if len(s.queue) == 0 {
				return
			}
			ev := s.queue[0]
			s.queue[0] = Event{} // let the GC have the data once delivered
			if len(s.queue) == 1 {
				s.queue = s.queue[:0] // reuse the array: [1:] would shrink it to nothing
			} else {
				s.queue = s.queue[1:]
			}
			if s.cur = s.startLocked(ev); s.cur == nil {
				s.completedLocked(ev)
			}
			continue
		}
		dp := s.cur
		if dp.open > 0 {
			return
		}
		dp.band++
		if dp.band == len(dp.bands) {
			if s.log.Enabled(context.Background(), slog.LevelDebug) {
				s.log.Debug("event complete", "event", dp.ev)
			}
			s.cur = nil
			s.completedLocked(dp.ev)
			continue
		}
		for _, d := range dp.bands[dp.band] {
			// A handle unregistered, or a callback disabled, since the
			// event started gets nothing.
			if d.h.closed || d.h.cb[d.class].fn == nil {
				d.state = dDone
				continue
			}
			d.state = dReady
			d.h.cur = d
			d.h.setPendingLocked(true)
			dp.open++
		}
	}
}

// startLocked snapshots the recipients of ev: every active handle with a
// callback for its class, stably sorted by priority, so equal priorities keep
// registration order. It returns nil if there is none.
func (s *Service) startLocked(ev Event) *dispatch {
	class := ev.Desc.Class()
	if !s.hasRecipientLocked(class) {
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("event has no recipient", "event", ev)
		}
		return nil
	}
	dp := &dispatch{ev: ev, band: -1}
	var all []*delivery
	for _, h := range s.handles {
		if h.style == StyleNone || h.closed || h.cb[class].fn == nil {
			continue
		}
		all = append(all, &delivery{h: h, dp: dp, class: class, pri: h.cb[class].pri})
	}
	slices.SortStableFunc(all, func(a, b *delivery) int { return int(a.pri - b.pri) })
	for i, j := 0, 0; i < len(all); i = j {
		for j = i; j < len(all) && all[j].pri == all[i].pri; j++ {
		}
		dp.bands = append(dp.bands, all[i:j])
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("event dispatch", "event", ev, "callbacks", len(all), "bands", len(dp.bands))
	}
	return dp
}

// completeLocked marks d complete and advances the dispatch.
func (s *Service) completeLocked(d *delivery) {
	if d.state == dDone {
		return
	}
	if d.dp != s.cur || d.state == dWaiting {
		panic("events: completing a delivery that is not current")
	}
	if d.state == dReady {
		d.h.setPendingLocked(false)
	}
	d.state = dDone
	if d.h.cur == d {
		d.h.cur = nil
	}
	d.dp.open--
	s.advanceLocked()
}
