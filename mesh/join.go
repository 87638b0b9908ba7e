package mesh

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrUnreachable is wrapped by Join when no link to the address came up.
var ErrUnreachable = errors.New("mesh: peer unreachable")

// UnreachableError is Join's error when no link to Addr came up: Why is
// the last dial error, or "no answer".
type UnreachableError struct {
	Addr, Why string
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("%v: %s: %s", ErrUnreachable, e.Addr, e.Why)
}

func (e *UnreachableError) Unwrap() error { return ErrUnreachable }

// joinPoll is how often Join looks for the link it waits for.
const joinPoll = 20 * time.Millisecond

// Join adds addr as AddPeer does and waits until a link to the node there
// is up (corral join). If the first dial of an address Join added fails,
// or no link comes up before ctx is done, that address is dropped again, so
// that no dialer keeps trying it and no row stays down for ever, and the
// dial error is returned.
func (m *Mesh) Join(ctx context.Context, addr string) error {
	known := m.tab.configured(addr)
	if err := m.AddPeer(addr); err != nil {
		return err
	}
	t := time.NewTicker(joinPoll)
	defer t.Stop()
	for {
		up, why := m.tab.upAt(addr)
		if up {
			return nil
		}
		if known || why == "" {
			// A fresh address fails at its first failed dial; one known
			// before may be failing from earlier, so it gets until ctx.
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
			}
		}
		if !known {
			m.tab.unconfigure(addr)
		}
		if why == "" {
			why = "no answer"
		}
		return &UnreachableError{Addr: addr, Why: why}
	}
}
