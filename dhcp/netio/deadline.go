package netio

import (
	"context"
	"time"
)

// attempts gives one worker's handler calls their deadline, Timeout after
// each start, without a context and a timer per packet (context.WithTimeout
// registers a child with the server's context, under its lock, shared by
// every worker, and arms a new timer). The context and its timer are
// replaced only after a deadline passed. Not safe for concurrent use: its
// worker's alone.
type attempts struct {
	parent context.Context
	d      time.Duration
	ctx    context.Context // nil: make one at the next start
	cancel context.CancelFunc
	timer  *time.Timer // cancels ctx at the deadline; stopped between attempts
}

func newAttempts(parent context.Context, d time.Duration) *attempts {
	return &attempts{parent: parent, d: d}
}

// start returns a context that ends d from now, or with the parent.
func (a *attempts) start() context.Context {
	if a.ctx == nil {
		a.ctx, a.cancel = context.WithCancel(a.parent)
		a.timer = time.AfterFunc(a.d, a.cancel)
		return a.ctx
	}
	a.timer.Reset(a.d)
	return a.ctx
}

// stop ends the attempt start began. A timer that fired, or is firing,
// cancels its context at any moment, so the next start makes new ones.
func (a *attempts) stop() {
	if !a.timer.Stop() {
		a.cancel()
		a.ctx = nil
	}
}

// close releases the context and the timer.
func (a *attempts) close() {
	if a.ctx != nil {
		a.timer.Stop()
		a.cancel()
		a.ctx = nil
	}
}
