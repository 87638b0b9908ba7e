package dsvctest

import (
	"context"
	"sync"

	"github.com/corralhq/corral/dsvc"
)

// MemLocker is a dsvc.Locker inside one process: a writer-preferring
// read-write lock per LockKey. It does not lock across processes (use
// package dsvc/lock for that); it lets a module's tests run before or
// without the real lock service. The zero value is ready.
type MemLocker struct {
	mu    sync.Mutex // guards locks and every rw in it
	locks map[dsvc.LockKey]*rw
}

type rw struct {
	readers int           // holders in shared mode
	writer  bool          // held exclusive
	queued  int           // writers waiting: new readers wait behind them
	changed chan struct{} // closed and replaced whenever the lock is released
}

var _ dsvc.Locker = (*MemLocker)(nil)

// Lock takes key's lock. A reader waits while a writer holds or waits; a
// writer waits for every holder. nonblock: ErrBusy instead of waiting. A
// cancelled ctx ends the wait with an error wrapping ctx.Err().
func (l *MemLocker) Lock(ctx context.Context, key dsvc.LockKey, exclusive, nonblock bool) (dsvc.Unlocker, error) {
	l.mu.Lock()
	if l.locks == nil {
		l.locks = make(map[dsvc.LockKey]*rw)
	}
	s := l.locks[key]
	if s == nil {
		s = &rw{changed: make(chan struct{})}
		l.locks[key] = s
	}
	queued := false
	for {
		free := !s.writer && s.queued == 0 // a reader
		if exclusive {
			free = !s.writer && s.readers == 0
		}
		if free {
			if queued {
				s.queued--
			}
			if exclusive {
				s.writer = true
			} else {
				s.readers++
			}
			l.mu.Unlock()
			return &memUnlock{l: l, s: s, exclusive: exclusive}, nil
		}
		if nonblock {
			l.mu.Unlock()
			return nil, &dsvc.Error{Code: dsvc.CodeBusy, Detail: "container locked"}
		}
		if exclusive && !queued {
			queued = true
			s.queued++
		}
		ch := s.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			l.mu.Lock()
			if queued {
				s.queued--
				l.wakeLocked(s) // readers held back by this writer may go
			}
			l.mu.Unlock()
			return nil, &dsvc.Error{Code: dsvc.CodeBusy, Detail: "waiting for the container lock", Err: ctx.Err()}
		}
		l.mu.Lock()
	}
}

func (l *MemLocker) wakeLocked(s *rw) {
	close(s.changed)
	s.changed = make(chan struct{})
}

type memUnlock struct {
	l         *MemLocker
	s         *rw
	exclusive bool
	done      bool // guarded by l.mu
}

func (u *memUnlock) Unlock() error {
	u.l.mu.Lock()
	defer u.l.mu.Unlock()
	if u.done {
		return &dsvc.Error{Code: dsvc.CodeSynch, Detail: "lock released twice"}
	}
	u.done = true
	if u.exclusive {
		u.s.writer = false
	} else {
		u.s.readers--
	}
	u.l.wakeLocked(u.s)
	return nil
}
