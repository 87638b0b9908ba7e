package acceptloop

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// RateLog passes at most one line per period to its logger and counts the
// lines it drops; the next line let through carries that count as
// "suppressed". It is for lines a remote party can cause at will, such as
// refused connections. It is safe for concurrent use.
type RateLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu         sync.Mutex // guards last and suppressed
	last       time.Time  // when the last line was let through
	suppressed int        // lines dropped since then
}

// NewRateLog makes a RateLog letting one line per every through to log;
// now is the clock (nil: time.Now).
func NewRateLog(log *slog.Logger, every time.Duration, now func() time.Time) *RateLog {
	if now == nil {
		now = time.Now
	}
	return &RateLog{log: log, every: every, now: now}
}

// Log logs msg with args at level unless a line was let through less than
// a period ago.
func (r *RateLog) Log(level slog.Level, msg string, args ...any) {
	if !r.log.Enabled(context.Background(), level) {
		return
	}
	r.mu.Lock()
	t := r.now()
	if !r.last.IsZero() && t.Sub(r.last) < r.every {
		r.suppressed++
		r.mu.Unlock()
		return
	}
	n := r.suppressed
	r.last, r.suppressed = t, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	r.log.Log(context.Background(), level, msg, args...)
}
