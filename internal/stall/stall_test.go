package stall

import (
	"testing"
	"time"
)

// clock is an injected clock: a periodic timer of period every whose
// wake-ups are fed to a detector, with pauses inserted where a test wants
// the process stopped.
type clock struct {
	d     *Detector
	now   time.Time
	every time.Duration
}

func newClock(threshold, every time.Duration) *clock {
	return &clock{d: New(threshold), now: time.Unix(1000, 0), every: every}
}

// tick advances one period, woken late by late, and reports whether the
// detector saw a stall.
func (c *clock) tick(late time.Duration) bool {
	due := c.now.Add(c.every)
	c.now = due.Add(late)
	_, stalled := c.d.Woke(due, c.now)
	return stalled
}

// at is ms milliseconds into the test's time.
func at(ms int64) time.Time { return time.Unix(1000, 0).Add(time.Duration(ms) * time.Millisecond) }

func TestWokeThreshold(t *testing.T) {
	c := newClock(250*time.Millisecond, 100*time.Millisecond)
	for i, late := range []time.Duration{0, 5 * time.Millisecond, 250 * time.Millisecond} {
		if c.tick(late) {
			t.Fatalf("tick %d late by %v counted as a stall at threshold 250ms", i, late)
		}
	}
	if _, ok := c.d.Last(); ok {
		t.Fatal("Last reports a stall before any")
	}
	if !c.tick(251 * time.Millisecond) {
		t.Fatal("a wake-up 251ms late is not a stall")
	}
	s, ok := c.d.Last()
	if !ok || s.Duration() != 251*time.Millisecond || !s.To.Equal(c.now) {
		t.Fatalf("Last = %+v %v, want 251ms ending now", s, ok)
	}
}

func TestStalled(t *testing.T) {
	d := New(100 * time.Millisecond)
	d.Woke(at(1000), at(3000)) // stopped from 1s to 3s
	d.Woke(at(5000), at(5050)) // jitter, not a stall
	for _, tc := range []struct {
		t1, t2 int64
		want   bool
	}{
		{0, 999, false},
		{0, 1000, false}, // touching the start: the process ran up to then
		{0, 1001, true},
		{1500, 2000, true}, // inside
		{0, 9000, true},    // around
		{2999, 4000, true},
		{3000, 4000, false}, // from the end on it ran again
		{4000, 6000, false},
	} {
		if got := d.Stalled(at(tc.t1), at(tc.t2)); got != tc.want {
			t.Errorf("Stalled(%d, %d) = %v, want %v", tc.t1, tc.t2, got, tc.want)
		}
	}
}

func TestStalledForgetsOnlyOldStalls(t *testing.T) {
	d := New(10 * time.Millisecond)
	for i := range int64(keep + 3) {
		d.Woke(at(i*1000), at(i*1000+500))
	}
	if d.Stalled(at(0), at(400)) {
		t.Error("the oldest stall is still remembered beyond keep")
	}
	if !d.Stalled(at((keep+2)*1000+100), at((keep+2)*1000+200)) {
		t.Error("the latest stall is forgotten")
	}
	if !d.Stalled(at(3*1000+100), at(3*1000+200)) {
		t.Error("a stall within the last keep is forgotten")
	}
}

// The scenario the detector exists for: heard from a peer at 0, the
// process stopped for 2s, then ran again. The peer must not be blamed at
// resume; it gets a fresh timeout of running time.
func TestDeadlineExcusesStall(t *testing.T) {
	const timeout = 500 * time.Millisecond
	c := newClock(timeout/2, 100*time.Millisecond)
	heard := c.now
	c.tick(0)
	c.tick(0) // 200ms of silence, on time
	if got, want := c.d.Deadline(heard, timeout), heard.Add(timeout); !got.Equal(want) {
		t.Fatalf("without stall: deadline %v, want %v", got, want)
	}
	if !c.tick(2 * time.Second) {
		t.Fatal("2s pause not seen")
	}
	resumed := c.now
	dl := c.d.Deadline(heard, timeout)
	if !dl.Equal(resumed.Add(timeout)) {
		t.Fatalf("deadline %v, want a full timeout after resuming (%v)", dl.Sub(heard), resumed.Add(timeout).Sub(heard))
	}
	if !c.now.Before(dl) {
		t.Fatal("the peer is blamed the moment the process resumed")
	}
	// Still silent: the peer is dead once a timeout of running time has
	// passed, and no later.
	for c.now.Before(dl) {
		c.tick(0)
	}
	if c.now.Sub(resumed) < timeout || c.now.Sub(resumed) > timeout+c.every {
		t.Fatalf("declared dead %v after resuming, want one timeout (%v) within a tick", c.now.Sub(resumed), timeout)
	}
	// Heard again after the stall: the stall no longer matters.
	heard = c.now
	if got := c.d.Deadline(heard, timeout); !got.Equal(heard.Add(timeout)) {
		t.Fatalf("after fresh news: deadline %v past it, want %v", got.Sub(heard), timeout)
	}
}

// A peer that stops while this process runs normally is blamed after one
// timeout, however many stalls came before.
func TestDeadlineRealSilence(t *testing.T) {
	const timeout = 500 * time.Millisecond
	c := newClock(timeout/2, 100*time.Millisecond)
	c.tick(time.Second) // an old stall
	for range 10 {
		c.tick(0)
	}
	heard := c.now
	for !c.now.After(c.d.Deadline(heard, timeout)) {
		c.tick(time.Millisecond)
	}
	if d := c.now.Sub(heard); d < timeout || d > timeout+c.every+10*time.Millisecond {
		t.Fatalf("silent peer blamed after %v, want about %v", d, timeout)
	}
}
