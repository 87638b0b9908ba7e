package stall

import (
	"sync"
	"time"
)

// Stall is an interval in which the process did not run: a timer due at
// From woke only at To.
type Stall struct {
	From, To time.Time
}

// Duration is how long the stall lasted.
func (s Stall) Duration() time.Duration { return s.To.Sub(s.From) }

// keep is how many recent stalls a Detector remembers for Stalled. Only
// the latest matters for Deadline.
const keep = 8

// Detector records the stalls seen by one or more periodic timers. It is
// safe for concurrent use.
type Detector struct {
	threshold time.Duration

	mu     sync.Mutex // guards the fields below
	recent [keep]Stall
	n      int // stalls recorded in all
}

// New returns a detector that counts a wake-up later than threshold past
// its due time as a stall. The threshold sits well above timer and
// scheduling jitter; half a failure timeout is a good choice.
func New(threshold time.Duration) *Detector {
	return &Detector{threshold: threshold}
}

// Woke records that a timer due at due ran at woke, and reports the stall
// when it was late by more than the threshold.
func (d *Detector) Woke(due, woke time.Time) (Stall, bool) {
	if woke.Sub(due) <= d.threshold {
		return Stall{}, false
	}
	s := Stall{From: due, To: woke}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.recent[d.n%keep] = s
	d.n++
	return s, true
}

// Stalled reports whether a recorded stall overlaps [t1, t2]. It answers
// for the recent past: only the last few stalls are remembered.
func (d *Detector) Stalled(t1, t2 time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range min(d.n, keep) {
		s := d.recent[i]
		if s.From.Before(t2) && s.To.After(t1) {
			return true
		}
	}
	return false
}

// Last returns the latest stall, if any was seen.
func (d *Detector) Last() (Stall, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == 0 {
		return Stall{}, false
	}
	return d.recent[(d.n-1)%keep], true
}

// Deadline returns when a silence that began at from has lasted window of
// time in which this process ran: from+window, or, when the process
// stalled after from, the end of the latest stall plus window. The time
// before a stall is not counted, since what arrived then may still be
// waiting unread.
func (d *Detector) Deadline(from time.Time, window time.Duration) time.Time {
	if s, ok := d.Last(); ok && s.To.After(from) {
		from = s.To
	}
	return from.Add(window)
}
