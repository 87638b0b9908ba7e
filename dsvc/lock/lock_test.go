package lock_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/lock"
)

func testKey(container string) dsvc.LockKey {
	return dsvc.LockKey{LocToken: "/var/dhcp", Module: "files", Version: 1, Container: container}
}

func newService(t testing.TB, dir string) *lock.Service {
	t.Helper()
	s, err := lock.New(lock.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustLock(t *testing.T, s *lock.Service, key dsvc.LockKey, excl bool) dsvc.Unlocker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	u, err := s.Lock(ctx, key, excl, false)
	if err != nil {
		t.Fatalf("Lock(%v, excl=%v): %v", key.Container, excl, err)
	}
	return u
}

func mustUnlock(t *testing.T, u dsvc.Unlocker) {
	t.Helper()
	if err := u.Unlock(); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
}

func wantBusy(t *testing.T, s *lock.Service, key dsvc.LockKey, excl bool) {
	t.Helper()
	start := time.Now()
	u, err := s.Lock(context.Background(), key, excl, true)
	if err == nil {
		u.Unlock()
		t.Fatalf("nonblock Lock(excl=%v) succeeded, want ErrBusy", excl)
	}
	if !errors.Is(err, dsvc.ErrBusy) {
		t.Fatalf("nonblock Lock(excl=%v): %v, want ErrBusy", excl, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("nonblock Lock took %v", d)
	}
}

// turnstileHeld reports whether some writer holds key's turnstile (byte 0,
// SPEC.md): the sign that a writer is queued.
func turnstileHeld(t *testing.T, dir string, key dsvc.LockKey) bool {
	t.Helper()
	fd, err := unix.Open(filepath.Join(dir, lock.FileName(key)), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	fl := unix.Flock_t{Type: unix.F_RDLCK, Start: 0, Len: 1}
	if err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &fl); err != nil {
		t.Fatal(err)
	}
	return fl.Type != unix.F_UNLCK
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestSharedReadersConcurrentAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	key := testKey("10.0.0.0")
	a := startHelper(t, dir, key.LocToken, key.Container)
	b := startHelper(t, dir, key.LocToken, key.Container)
	a.do("lock s", "ok")
	b.do("lock s nb", "ok") // both hold it shared at once
	s := newService(t, dir)
	u, err := s.Lock(context.Background(), key, false, true)
	if err != nil {
		t.Fatalf("third reader: %v", err)
	}
	mustUnlock(t, u)
	wantBusy(t, s, key, true)
	a.do("unlock", "ok")
	wantBusy(t, s, key, true) // b still reads
	b.do("unlock", "ok")
	mustUnlock(t, mustLock(t, s, key, true))
}

func TestWriterExcludesAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	key := testKey("10.0.0.0")
	s := newService(t, dir)
	w := startHelper(t, dir, key.LocToken, key.Container)
	w.do("lock x", "ok")
	wantBusy(t, s, key, false)
	wantBusy(t, s, key, true)
	other := startHelper(t, dir, key.LocToken, key.Container)
	other.do("lock s nb", busy)
	other.do("lock x nb", busy)

	// A blocking reader and a blocking writer wait until the writer leaves.
	other.send("lock x")
	got := make(chan error, 1)
	go func() {
		u, err := s.Lock(context.Background(), key, false, false)
		if err == nil {
			err = u.Unlock()
		}
		got <- err
	}()
	other.quiet(100 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("reader got in past a writer: %v", err)
	default:
	}
	w.do("unlock", "ok")
	other.expect("ok")
	other.do("unlock", "ok")
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader still waiting after the writers left")
	}
}

// Exclusion measured by its effect: three processes increment a number in a
// file under the exclusive lock, and none of the increments is lost.
func TestExclusiveIncrementsAcrossProcesses(t *testing.T) {
	dir := t.TempDir()
	key := testKey("dhcptab")
	counter := filepath.Join(t.TempDir(), "counter")
	const procs, n = 3, 100
	var hs []*helper
	for range procs {
		hs = append(hs, startHelper(t, dir, key.LocToken, key.Container))
	}
	for _, h := range hs {
		h.send(fmt.Sprintf("incr %s %d", counter, n))
	}
	for _, h := range hs {
		h.expect("ok")
	}
	b, err := os.ReadFile(counter)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := strconv.Atoi(string(b)); v != procs*n {
		t.Fatalf("counter %d, want %d: increments were lost, so writers overlapped", v, procs*n)
	}
}

// A reader arriving behind a queued writer waits for it: writer preference.
func TestWriterPreference(t *testing.T) {
	dir := t.TempDir()
	key := testKey("10.0.0.0")
	reader := startHelper(t, dir, key.LocToken, key.Container)
	writer := startHelper(t, dir, key.LocToken, key.Container)
	late := startHelper(t, dir, key.LocToken, key.Container)
	reader.do("lock s", "ok")
	writer.send("lock x")
	waitFor(t, "the writer to queue", func() bool { return turnstileHeld(t, dir, key) })
	late.do("lock s nb", busy) // a reader could share, but a writer waits
	late.send("lock s")
	late.quiet(50 * time.Millisecond)
	reader.do("unlock", "ok")
	writer.expect("ok") // the writer goes first
	late.quiet(50 * time.Millisecond)
	writer.do("unlock", "ok")
	late.expect("ok")
}

// A continuous stream of readers from several processes does not keep a
// writer out: it gets in within a bound, while the readers keep coming.
func TestReaderStreamDoesNotStarveWriter(t *testing.T) {
	dir := t.TempDir()
	key := testKey("10.0.0.0")
	var hs []*helper
	for range 3 {
		h := startHelper(t, dir, key.LocToken, key.Container)
		h.send("stream 2 2ms") // 6 readers holding 2ms each: the data range is never free
		hs = append(hs, h)
	}
	for _, h := range hs {
		h.expect("streaming")
		h.expect("streaming")
	}
	s := newService(t, dir)
	const bound = 2 * time.Second
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), bound)
		start := time.Now()
		u, err := s.Lock(ctx, key, true, false)
		cancel()
		if err != nil {
			t.Fatalf("writer %d: %v after %v (starved by readers)", i, err, time.Since(start))
		}
		t.Logf("writer %d in after %v", i, time.Since(start))
		mustUnlock(t, u)
	}
	for _, h := range hs {
		h.send("stop")
		l := h.next(10 * time.Second)
		if !strings.HasPrefix(l, "stopped ") || l == "stopped 0" {
			t.Fatalf("stream: %q", l)
		}
	}
}

func TestKill9ReleasesLocks(t *testing.T) {
	dir := t.TempDir()
	key := testKey("10.0.0.0")
	var logBuf syncBuffer
	s, err := lock.New(lock.Options{Dir: dir, Log: slog.New(slog.NewTextHandler(&logBuf, nil))})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("writer", func(t *testing.T) {
		h := startHelper(t, dir, key.LocToken, key.Container)
		h.do("lock x", "ok")
		wantBusy(t, s, key, false)
		h.kill9()
		mustUnlock(t, mustLock(t, s, key, true))
		if !strings.Contains(logBuf.String(), "may or may not have succeeded") {
			t.Fatalf("no warning about the dead writer; log: %q", logBuf.String())
		}
		logBuf.Reset()
		mustUnlock(t, mustLock(t, s, key, true))
		if logBuf.String() != "" {
			t.Fatalf("warning repeated after a clean unlock: %q", logBuf.String())
		}
	})
	t.Run("reader", func(t *testing.T) {
		h := startHelper(t, dir, key.LocToken, key.Container)
		h.do("lock s", "ok")
		wantBusy(t, s, key, true)
		h.kill9()
		mustUnlock(t, mustLock(t, s, key, true))
	})
	t.Run("queued writer", func(t *testing.T) {
		r := startHelper(t, dir, key.LocToken, key.Container)
		w := startHelper(t, dir, key.LocToken, key.Container)
		r.do("lock s", "ok")
		w.send("lock x")
		waitFor(t, "the writer to queue", func() bool { return turnstileHeld(t, dir, key) })
		wantBusy(t, s, key, false)
		w.kill9()
		waitFor(t, "the dead writer's turnstile to go", func() bool { return !turnstileHeld(t, dir, key) })
		u, err := s.Lock(context.Background(), key, false, true)
		if err != nil {
			t.Fatalf("reader after the queued writer died: %v", err)
		}
		mustUnlock(t, u)
	})
}

func TestNonBlockBusyThenSuccess(t *testing.T) {
	s := newService(t, t.TempDir())
	key := testKey("dhcptab")
	u := mustLock(t, s, key, true)
	wantBusy(t, s, key, true)
	wantBusy(t, s, key, false)
	mustUnlock(t, u)
	r1, err := s.Lock(context.Background(), key, false, true)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.Lock(context.Background(), key, false, true) // readers share, in one process too
	if err != nil {
		t.Fatal(err)
	}
	wantBusy(t, s, key, true)
	mustUnlock(t, r1)
	wantBusy(t, s, key, true)
	mustUnlock(t, r2)
	u, err = s.Lock(context.Background(), key, true, true)
	if err != nil {
		t.Fatal(err)
	}
	mustUnlock(t, u)
}

func TestDoubleUnlock(t *testing.T) {
	s := newService(t, t.TempDir())
	for _, excl := range []bool{false, true} {
		u := mustLock(t, s, testKey("dhcptab"), excl)
		mustUnlock(t, u)
		if err := u.Unlock(); !errors.Is(err, dsvc.ErrSynch) {
			t.Fatalf("second Unlock (excl=%v): %v, want ErrSynch", excl, err)
		}
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	dir := t.TempDir()
	key := testKey("10.0.0.0")
	s := newService(t, dir)
	for _, tc := range []struct {
		name       string
		holder     string // what the other process holds
		excl       bool   // what we wait for
		afterwards string // the other process can then take this at once
	}{
		{"writer behind writer", "x", true, ""},
		{"reader behind writer", "x", false, ""},
		{"writer behind reader", "s", true, "lock s nb"}, // our turnstile must be gone
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := startHelper(t, dir, key.LocToken, key.Container)
			h.do("lock "+tc.holder, "ok")
			ctx, cancel := context.WithCancel(context.Background())
			got := make(chan error, 1)
			go func() {
				u, err := s.Lock(ctx, key, tc.excl, false)
				if err == nil {
					u.Unlock()
				}
				got <- err
			}()
			if tc.excl && tc.holder == "s" {
				waitFor(t, "our writer to queue", func() bool { return turnstileHeld(t, dir, key) })
			}
			cancel()
			start := time.Now()
			select {
			case err := <-got:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled Lock: %v, want context.Canceled", err)
				}
				if d := time.Since(start); d > time.Second {
					t.Fatalf("cancelled Lock returned after %v", d)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("cancelled Lock did not return")
			}
			if tc.afterwards != "" {
				h.do(tc.afterwards, "ok")
				h.do("unlock", "ok")
			}
			h.do("unlock", "ok")
			u, err := s.Lock(context.Background(), key, true, true) // nothing left held by the cancelled call
			if err != nil {
				t.Fatalf("after cancel and release: %v", err)
			}
			mustUnlock(t, u)
		})
	}
	t.Run("done before", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := s.Lock(ctx, key, true, false); !errors.Is(err, context.Canceled) {
			t.Fatalf("Lock with a done ctx: %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		u := mustLock(t, s, key, true)
		defer mustUnlock(t, u)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := s.Lock(ctx, key, false, false); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Lock past its deadline: %v", err)
		}
	})
}

// Goroutines of one process exclude each other as processes do. The
// counters are atomic because the race detector does not see the kernel's
// locks as synchronisation.
func TestGoroutinesExclude(t *testing.T) {
	s := newService(t, t.TempDir())
	key := testKey("10.0.0.0")
	var readers, writers, maxReaders atomic.Int32
	var bad atomic.Value
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 40 {
				excl := (g+i)%4 == 0
				u, err := s.Lock(context.Background(), key, excl, false)
				if err != nil {
					bad.Store(err.Error())
					return
				}
				if excl {
					if w := writers.Add(1); w != 1 || readers.Load() != 0 {
						bad.Store(fmt.Sprintf("writer with %d writers, %d readers", w, readers.Load()))
					}
					writers.Add(-1)
				} else {
					r := readers.Add(1)
					if writers.Load() != 0 {
						bad.Store("reader with a writer")
					}
					for {
						m := maxReaders.Load()
						if r <= m || maxReaders.CompareAndSwap(m, r) {
							break
						}
					}
					readers.Add(-1)
				}
				if err := u.Unlock(); err != nil {
					bad.Store(err.Error())
				}
			}
		})
	}
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	t.Logf("at most %d readers at once", maxReaders.Load())
}

// The key is the container: every field counts, and the same key (the
// framework passes the module's canonical LocToken for every spelling of a
// location) is the same lock.
func TestKeys(t *testing.T) {
	s := newService(t, t.TempDir())
	base := testKey("10.0.0.0")
	u := mustLock(t, s, base, true)
	defer mustUnlock(t, u)
	same := dsvc.LockKey{LocToken: "/var/dhcp", Module: "files", Version: 1, Container: "10.0.0.0"}
	wantBusy(t, s, same, false)
	for _, k := range []dsvc.LockKey{
		{LocToken: "/var/dhcp2", Module: "files", Version: 1, Container: "10.0.0.0"},
		{LocToken: "/var/dhcp", Module: "binfiles", Version: 1, Container: "10.0.0.0"},
		{LocToken: "/var/dhcp", Module: "files", Version: 2, Container: "10.0.0.0"},
		{LocToken: "/var/dhcp", Module: "files", Version: 1, Container: "10.0.1.0"},
		{LocToken: "/var/dhcp", Module: "files", Version: 1, Container: "dhcptab"},
	} {
		v, err := s.Lock(context.Background(), k, true, true)
		if err != nil {
			t.Fatalf("%+v shares a lock with %+v: %v", k, base, err)
		}
		mustUnlock(t, v)
	}
	// Field boundaries are part of the name's hash.
	a := dsvc.LockKey{LocToken: "/a", Module: "bc", Version: 1, Container: "d"}
	b := dsvc.LockKey{LocToken: "/ab", Module: "c", Version: 1, Container: "d"}
	if lock.FileName(a) == lock.FileName(b) {
		t.Fatalf("%+v and %+v have one lock file", a, b)
	}
}

func TestUnusableDirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{file, filepath.Join(file, "sub")} {
		if _, err := lock.New(lock.Options{Dir: dir}); !errors.Is(err, dsvc.ErrNoLockMgr) {
			t.Errorf("New(%s): %v, want ErrNoLockMgr", dir, err)
		}
	}
	if os.Getuid() != 0 {
		ro := filepath.Join(t.TempDir(), "ro")
		if err := os.Mkdir(ro, 0o500); err != nil {
			t.Fatal(err)
		}
		if _, err := lock.New(lock.Options{Dir: ro}); !errors.Is(err, dsvc.ErrNoLockMgr) {
			t.Errorf("New(read-only dir): %v, want ErrNoLockMgr", err)
		}
	}
	// The directory removed under a running service.
	dir := filepath.Join(t.TempDir(), "locks")
	s := newService(t, dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lock(context.Background(), testKey("dhcptab"), true, false); !errors.Is(err, dsvc.ErrNoLockMgr) {
		t.Fatalf("Lock in a removed directory: %v, want ErrNoLockMgr", err)
	}
}

func TestReap(t *testing.T) {
	dir := t.TempDir()
	s := newService(t, dir)
	idle, held := testKey("10.0.0.0"), testKey("10.0.1.0")
	mustUnlock(t, mustLock(t, s, idle, true))
	u := mustLock(t, s, held, false)
	n, err := s.Reap(context.Background(), time.Hour)
	if err != nil || n != 0 {
		t.Fatalf("Reap(1h) = %d, %v; want 0 (nothing idle that long)", n, err)
	}
	n, err = s.Reap(context.Background(), 0)
	if err != nil || n != 1 {
		t.Fatalf("Reap(0) = %d, %v; want 1", n, err)
	}
	if _, err := os.Stat(filepath.Join(dir, lock.FileName(idle))); !os.IsNotExist(err) {
		t.Fatalf("idle lock file still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, lock.FileName(held))); err != nil {
		t.Fatalf("held lock file reaped: %v", err)
	}
	wantBusy(t, s, held, true)
	mustUnlock(t, u)
	mustUnlock(t, mustLock(t, s, idle, true)) // recreated on demand
}

// Reaping while goroutines lock and unlock never lets two writers in: a
// Lock that lands on a reaped file starts again on the new one.
func TestReapRacesLock(t *testing.T) {
	s := newService(t, t.TempDir())
	key := testKey("10.0.0.0")
	var writers atomic.Int32
	var bad atomic.Value
	stop := make(chan struct{})
	var reaped atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, err := s.Reap(context.Background(), 0)
			if err != nil {
				bad.Store(err.Error())
				return
			}
			reaped.Add(int64(n))
		}
	})
	var lockers sync.WaitGroup
	for range 4 {
		lockers.Go(func() {
			for range 200 {
				u, err := s.Lock(context.Background(), key, true, false)
				if err != nil {
					bad.Store(err.Error())
					return
				}
				if w := writers.Add(1); w != 1 {
					bad.Store(fmt.Sprintf("%d writers at once", w))
				}
				writers.Add(-1)
				if err := u.Unlock(); err != nil {
					bad.Store(err.Error())
				}
			}
		})
	}
	lockers.Wait()
	close(stop)
	wg.Wait()
	if v := bad.Load(); v != nil {
		t.Fatal(v)
	}
	t.Logf("%d lock files reaped during 800 locks", reaped.Load())
}

type syncBuffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// TestUnlockWakesWaitersInProcess: with a poll interval far beyond the
// test's deadline, waiters of the same Service (a reader behind a writer,
// a writer behind a reader) still get the lock as soon as it is
// released, not at their next poll.
func TestUnlockWakesWaitersInProcess(t *testing.T) {
	s, err := lock.New(lock.Options{Dir: t.TempDir(), PollMin: time.Hour, PollMax: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	key := testKey("10.0.0.0")
	for _, tc := range []struct {
		name           string
		holder, waiter bool // exclusive
	}{{"reader after writer", true, false}, {"writer after reader", false, true}, {"writer after writer", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			held := mustLock(t, s, key, tc.holder)
			got := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				u, err := s.Lock(ctx, key, tc.waiter, false)
				if err == nil {
					err = u.Unlock()
				}
				got <- err
			}()
			// Let the waiter fail its first attempt (it then waits an
			// hour unless woken); either way the lock must follow.
			select {
			case err := <-got:
				t.Fatalf("the waiter got the lock while it was held: %v", err)
			case <-time.After(50 * time.Millisecond):
			}
			mustUnlock(t, held)
			select {
			case err := <-got:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the waiter was not woken by the Unlock")
			}
		})
	}
}
