package transport

import (
	"math/rand/v2"
	"time"
)

// Backoff spaces out reconnection attempts: each failure doubles the wait
// from Base up to Max, and each wait is drawn uniformly from [d/2, d] so
// that nodes restarted together do not redial in lockstep.
type Backoff struct {
	Base, Max time.Duration
	n         int
}

// Next returns the wait before the next attempt and counts a failure.
func (b *Backoff) Next() time.Duration {
	d := b.Base << min(b.n, 30)
	if d > b.Max || d <= 0 {
		d = b.Max
	}
	b.n++
	half := d / 2
	return half + rand.N(d-half+1)
}

// Reset starts over after a success.
func (b *Backoff) Reset() { b.n = 0 }
