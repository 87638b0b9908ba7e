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

// KeyedRateLog is a RateLog per key, such as a remote host, so that one
// peer retrying a refused link every few seconds logs one line a period
// with a count, while another peer's first refusal is still shown at
// once. It is safe for concurrent use.
type KeyedRateLog struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex // guards keys
	keys map[string]*keyState

	overall *RateLog // if set, the lines let through pass it too
}

type keyState struct {
	last       time.Time // when the key's last line was let through
	suppressed int       // the key's lines dropped since then
}

// maxKeys bounds the keys kept; past it, keys quiet for a period are
// dropped, so many remote addresses cannot grow the map without end.
const maxKeys = 1024

// NewKeyedRateLog makes a KeyedRateLog letting one line per key and per
// every through to log; now is the clock (nil: time.Now).
func NewKeyedRateLog(log *slog.Logger, every time.Duration, now func() time.Time) *KeyedRateLog {
	if now == nil {
		now = time.Now
	}
	return &KeyedRateLog{log: log, every: every, now: now, keys: make(map[string]*keyState)}
}

// Log logs msg with args at level unless a line of the same key was let
// through less than a period ago.
func (r *KeyedRateLog) Log(key string, level slog.Level, msg string, args ...any) {
	if !r.log.Enabled(context.Background(), level) {
		return
	}
	r.mu.Lock()
	t := r.now()
	k := r.keys[key]
	if k != nil && t.Sub(k.last) < r.every {
		k.suppressed++
		r.mu.Unlock()
		return
	}
	if k == nil {
		if len(r.keys) >= maxKeys {
			for key, k := range r.keys {
				if t.Sub(k.last) >= r.every {
					delete(r.keys, key)
				}
			}
		}
		k = &keyState{}
		r.keys[key] = k
	}
	n := k.suppressed
	k.last, k.suppressed = t, 0
	r.mu.Unlock()
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	if r.overall != nil {
		r.overall.Log(level, msg, args...)
		return
	}
	r.log.Log(context.Background(), level, msg, args...)
}

// Within makes the lines r lets through pass o as well, so that many keys
// at once (junk from many addresses) still log at most o's rate. It
// returns r.
func (r *KeyedRateLog) Within(o *RateLog) *KeyedRateLog {
	r.overall = o
	return r
}
