package eventstream

import (
	"fmt"
	"slices"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
)

// This file is the node-wide dispatch of client protocol version 3
// (proto/client/SPEC.md, "Node-wide dispatch"): the stream's events are
// handed to the gated subscribers one position at a time, band by
// priority band, each band waiting for every Done of the one before.
// Ungated subscribers never wait for it, and a stream without gated
// subscribers does no dispatch work at all.
//
// Everything here runs with Stream.mu held, except the dispatcher
// goroutine's wait for the deadline.

// dispatch is the state of the node-wide dispatch, guarded by Stream.mu.
type dispatch struct {
	pos     uint64 // position in progress (active), or the next to start
	active  bool
	e       *entry
	flagged []byte        // e's body with EventAwaitDone, shared by its participants
	parts   []*subscriber // participants, sorted by priority; reused
	lo, hi  int           // parts[lo:hi] is the band released
	open    int           // released participants whose Done is awaited
	expires time.Time     // deadline of the band released
}

// SetCallbacks gates k's subscription: from the next event whose
// dispatch starts, the events of cb's classes reach k only through the
// node-wide dispatch, at cb's priorities, and each must be completed with
// Done. The first call makes k join the dispatch after the position in
// progress; later calls replace the classes and priorities.
func (s *Stream) SetCallbacks(k Sink, cb client.Callbacks) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.subs[k]
	if u == nil || u.state != subActive {
		return ErrNotSubscribed
	}
	s.gateLocked(u, cb)
	signal(u.wake) // a held event may now be sendable
	s.advanceLocked()
	return nil
}

// gateLocked sets u's callbacks, making it gated if it was not.
func (s *Stream) gateLocked(u *subscriber, cb client.Callbacks) {
	u.cb = cb
	if u.gated {
		return
	}
	d := &s.d
	if len(s.gated) == 0 && !d.active {
		d.pos = s.next // the dispatch was idle: it resumes at the next event
	}
	u.gated = true
	u.djoin = d.pos
	if d.active {
		u.djoin = d.pos + 1
	}
	s.gated[u] = struct{}{}
	if !s.ticking && !s.closed {
		s.ticking = true
		s.wg.Add(1)
		go s.dispatcher()
	}
}

// Done records that k completed the event released to it, which must be
// the one with this seq and descriptor; the dispatch then goes on. A
// mismatch, or nothing awaited, is ErrDone with what was expected: the
// caller ends the link.
func (s *Stream) Done(k Sink, seq uint64, desc events.Descriptor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.subs[k]
	switch {
	case u == nil:
		return ErrNotSubscribed
	case !u.gated:
		return fmt.Errorf("%w: DONE for seq %d (%v) on a subscription that sent no CALLBACKS", ErrDone, seq, desc)
	case u.dpos == 0 || !u.released || u.pos <= u.dpos:
		return fmt.Errorf("%w: DONE for seq %d (%v), but no event awaits one", ErrDone, seq, desc)
	}
	e := s.d.e
	if e.ev.Seq != seq || e.ev.Desc != desc {
		return fmt.Errorf("%w: DONE for seq %d (%v), but the event awaited is seq %d (%v)", ErrDone, seq, desc, e.ev.Seq, e.ev.Desc)
	}
	u.dpos, u.released = 0, false
	s.d.open--
	s.advanceLocked()
	return nil
}

// leaveLocked takes u out of the dispatch (it ended or was evicted). The
// caller advances the dispatch.
func (s *Stream) leaveLocked(u *subscriber) {
	if !u.gated {
		return
	}
	delete(s.gated, u)
	if u.dpos != 0 && u.released && s.d.active && s.d.pos == u.dpos {
		s.d.open--
	}
	u.dpos, u.released = 0, false
}

// sendableLocked decides whether gated u may be sent e, at position q,
// now: it returns the body to send (flagged if released to u, and then
// flagged is true), or held = true while the dispatch holds e back from u.
func (s *Stream) sendableLocked(u *subscriber, e *entry, q uint64) (body []byte, flagged, held bool) {
	d := &s.d
	switch {
	case s.closed || q < u.djoin:
		return e.body, false, false // the stream closes, or catch-up
	case u.dpos == q:
		if u.released {
			return d.flagged, true, false
		}
		return nil, false, true // its band comes later
	case q < d.pos || (d.active && q == d.pos):
		return e.body, false, false // dispatched (or in progress) without u
	case u.cb.Classes.Has(e.ev.Desc.Class()):
		return nil, false, true // the dispatch has not reached e
	}
	return e.body, false, false // a class u has no callback for
}

// advanceLocked moves the dispatch as far as it can: the next band once
// the released one is complete, the next position once the last band is.
func (s *Stream) advanceLocked() {
	d := &s.d
	for {
		if d.active {
			if d.open > 0 {
				return
			}
			if d.hi < len(d.parts) {
				s.releaseLocked()
				continue
			}
			clear(d.parts)
			d.parts = d.parts[:0]
			d.active, d.e, d.flagged = false, nil, nil
			d.pos++
		}
		if len(s.gated) == 0 {
			d.pos = s.next
			return
		}
		d.pos = max(d.pos, s.base) // positions the history let go of before the dispatch reached them
		if d.pos >= s.next || s.closed {
			return
		}
		s.startLocked(d.pos, s.hist[d.pos-s.base])
	}
}

// startLocked starts the dispatch of e at position p: its participants,
// in bands by priority.
func (s *Stream) startLocked(p uint64, e *entry) {
	d := &s.d
	d.active, d.e, d.lo, d.hi, d.open = true, e, 0, 0, 0
	class := e.ev.Desc.Class()
	for u := range s.gated {
		if u.state != subActive || p < u.djoin || u.pos > p || !u.cb.Classes.Has(class) || !u.wants(e, p) {
			if u.pos == p {
				signal(u.wake) // it may have waited for the dispatch to reach p
			}
			continue
		}
		u.dpos, u.released, u.prio = p, false, u.cb.Prio[class]
		d.parts = append(d.parts, u)
	}
	if len(d.parts) == 0 {
		return
	}
	slices.SortFunc(d.parts, func(a, b *subscriber) int { return int(a.prio) - int(b.prio) })
	d.flagged = append([]byte(nil), e.body...)
	client.SetEventFlags(d.flagged, client.EventAwaitDone)
}

// releaseLocked releases the dispatch's event to its next band.
func (s *Stream) releaseLocked() {
	d := &s.d
	d.lo = d.hi
	for d.hi < len(d.parts) && d.parts[d.hi].prio == d.parts[d.lo].prio {
		d.hi++
	}
	for _, u := range d.parts[d.lo:d.hi] {
		if u.state != subActive || u.dpos != d.pos {
			continue // ended, or evicted, since the dispatch started
		}
		u.released = true
		d.open++
		signal(u.wake)
	}
	if d.open > 0 {
		d.expires = time.Now().Add(s.callbackTimeout())
		signal(s.tick)
	}
}

func (s *Stream) callbackTimeout() time.Duration {
	if s.lim.CallbackTimeout > 0 {
		return s.lim.CallbackTimeout
	}
	return DefaultCallbackTimeout
}

// dispatcher closes the gated subscribers that miss the deadline of the
// band released to them. It is the stream's goroutine, started with the
// first gated subscriber, and returns when the stream closes.
func (s *Stream) dispatcher() {
	defer s.wg.Done()
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var wait <-chan time.Time
		s.mu.Lock()
		if s.d.active && s.d.open > 0 {
			left := time.Until(s.d.expires)
			if left <= 0 {
				s.expireLocked()
				s.mu.Unlock()
				continue
			}
			t.Reset(left)
			wait = t.C
		}
		s.mu.Unlock()
		select {
		case <-wait:
		case <-s.tick:
		case <-s.quit:
			return
		}
		t.Stop()
	}
}

// expireLocked closes the participants of the released band that have not
// sent their Done, and lets the dispatch go on without them.
func (s *Stream) expireLocked() {
	d := &s.d
	timeout := s.callbackTimeout()
	ev := d.e.ev
	for _, u := range d.parts[d.lo:d.hi] {
		if u.dpos != d.pos || !u.released || u.state != subActive {
			continue
		}
		why := fmt.Sprintf("callback not completed within %v: event seq %d (%v %v); reconnect and resume after the last seq you delivered",
			timeout, ev.Seq, ev.Desc.Class(), ev.Desc)
		s.evictLocked(u, proto.CodeTimeout, why)
		s.timeouts++
		s.log.Warn("disconnecting a client whose callback did not complete in time", "why", why)
	}
	s.advanceLocked()
}
