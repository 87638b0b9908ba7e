package attempt

import (
	"context"
	"time"
)

// Deadlines gives one loop's attempts (a worker's handler calls, a
// writer's proposals) their deadline, d after each start, without a
// context and a timer per attempt: context.WithTimeout registers a child
// with the parent, under its lock, and arms a new timer every time. The
// context and its timer are replaced only after a deadline passed. Not
// safe for concurrent use: its loop's alone.
type Deadlines struct {
	parent context.Context
	d      time.Duration
	ctx    context.Context // nil: make one at the next start
	cancel context.CancelFunc
	timer  *time.Timer // cancels ctx at the deadline; stopped between attempts
}

// New returns the deadlines of one loop: d after each Start, or the
// parent's end.
func New(parent context.Context, d time.Duration) *Deadlines {
	return &Deadlines{parent: parent, d: d}
}

// Start returns a context that ends d from now, or with the parent.
func (a *Deadlines) Start() context.Context {
	if a.ctx == nil {
		a.ctx, a.cancel = context.WithCancel(a.parent)
		a.timer = time.AfterFunc(a.d, a.cancel)
		return a.ctx
	}
	a.timer.Reset(a.d)
	return a.ctx
}

// Stop ends the attempt Start began. A timer that fired, or is firing,
// cancels its context at any moment, so the next Start makes new ones.
func (a *Deadlines) Stop() {
	if !a.timer.Stop() {
		a.cancel()
		a.ctx = nil
	}
}

// Close releases the context and the timer.
func (a *Deadlines) Close() {
	if a.ctx != nil {
		a.timer.Stop()
		a.cancel()
		a.ctx = nil
	}
}
