package acceptloop

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// Backoff bounds of Serve, those of net/http's Server.Serve.
const (
	MinDelay = 5 * time.Millisecond
	MaxDelay = time.Second
)

// Serve accepts connections from ln and passes each to handle, which runs
// on Serve's goroutine and must not block (it starts what serves the
// connection). Serve returns when ln is closed, with an error wrapping
// net.ErrClosed, or when ctx is done, with ctx.Err(); it does not close ln.
// Any other accept error is retried after a backoff; log hears the first
// error of a burst and, when an accept succeeds again, how many there were.
func Serve(ctx context.Context, ln net.Listener, log *slog.Logger, handle func(net.Conn)) error {
	var (
		failed int       // accept errors since the last success
		first  time.Time // when the burst began
		delay  time.Duration
		timer  *time.Timer
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		conn, err := ln.Accept()
		if err == nil {
			if failed > 0 {
				log.Info("accept recovered", "listener", ln.Addr().String(), "errors", failed,
					"after", time.Since(first).Round(time.Millisecond))
				failed, delay = 0, 0
			}
			handle(conn)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, net.ErrClosed) {
			return err
		}
		if failed == 0 {
			first = time.Now()
			log.Warn("accept failed; retrying with backoff", "listener", ln.Addr().String(), "err", err.Error())
		}
		failed++
		delay = nextDelay(delay)
		if timer == nil {
			timer = time.NewTimer(delay)
		} else {
			timer.Reset(delay)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// nextDelay doubles d within [MinDelay, MaxDelay].
func nextDelay(d time.Duration) time.Duration {
	if d == 0 {
		return MinDelay
	}
	return min(2*d, MaxDelay)
}
