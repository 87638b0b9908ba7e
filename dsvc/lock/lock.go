package lock

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/dsvc"
)

// The byte ranges of a lock file (SPEC.md). They are the cross-process
// protocol: every corral version on a host must use the same ones.
const (
	offTurnstile = 0 // held exclusive by a writer from before it waits for data until it unlocks
	offData      = 1 // the container lock proper: shared by readers, exclusive by a writer
	offMarker    = 0 // the marker byte (file content, not a range): 1 while a writer holds the lock
)

// RunDir is the preferred lock directory (a tmpfs on systemd hosts, so lock
// files vanish at boot and marker writes cost no disk I/O).
const RunDir = "/run/corral/dsvc-locks"

// Default poll bounds of a blocking Lock (see doc.go, "Waiting").
const (
	DefaultPollMin = 50 * time.Microsecond
	DefaultPollMax = 2 * time.Millisecond
)

// Options configures a Service.
type Options struct {
	// Dir is the lock directory; "" chooses DefaultDir(). It is created if
	// missing (mode 0700 when corral chooses a directory under $TMPDIR).
	// Processes lock each other out only if they use the same directory.
	Dir string
	// Log receives the warning about a writer that died holding its lock.
	// nil discards.
	Log *slog.Logger
	// PollMin and PollMax bound the back-off of a waiting Lock; 0 chooses
	// DefaultPollMin and DefaultPollMax.
	PollMin, PollMax time.Duration
}

// Service is the synchronization service: a dsvc.Locker over lock files in
// one directory. It is safe for concurrent use and holds no state between
// calls except its options and the release signals of its own waiters;
// there is nothing to close.
type Service struct {
	dir              string
	log              *slog.Logger
	pollMin, pollMax time.Duration

	// relMu guards rel: per lock file path, a channel closed (and
	// removed) when a lock of this Service on that file is unlocked, so
	// that its waiters in this process retry at once instead of at their
	// next poll. Holders in other processes are still found by polling.
	relMu sync.Mutex
	rel   map[string]chan struct{}
}

// released returns the channel the next Unlock of a lock on path closes.
func (s *Service) released(path string) <-chan struct{} {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	c, ok := s.rel[path]
	if !ok {
		if s.rel == nil {
			s.rel = map[string]chan struct{}{}
		}
		c = make(chan struct{})
		s.rel[path] = c
	}
	return c
}

// release wakes this process's waiters for path.
func (s *Service) release(path string) {
	s.relMu.Lock()
	defer s.relMu.Unlock()
	if c, ok := s.rel[path]; ok {
		close(c)
		delete(s.rel, path)
	}
}

var _ dsvc.Locker = (*Service)(nil)

// DefaultDir returns RunDir if it exists or can be created and is
// writable, else $TMPDIR/corral-dsvc-locks-<uid>.
func DefaultDir() string {
	if err := os.MkdirAll(RunDir, 0o755); err == nil && unix.Access(RunDir, unix.W_OK|unix.X_OK) == nil {
		return RunDir
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("corral-dsvc-locks-%d", os.Getuid()))
}

// New returns a Service on opts.Dir. A directory that cannot be created,
// is not a directory, is not writable, is not ours (under $TMPDIR), or does
// not support open-file-description locks gives an error matching
// dsvc.ErrNoLockMgr.
func New(opts Options) (*Service, error) {
	dir := opts.Dir
	mine := false
	if dir == "" {
		dir = DefaultDir()
		mine = dir != RunDir
	}
	s := &Service{dir: dir, log: opts.Log, pollMin: opts.PollMin, pollMax: opts.PollMax}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("subsystem", "dsvc.lock")
	if s.pollMin <= 0 {
		s.pollMin = DefaultPollMin
	}
	if s.pollMax < s.pollMin {
		s.pollMax = max(DefaultPollMax, s.pollMin)
	}
	mode := os.FileMode(0o755)
	if mine {
		mode = 0o700
	}
	if err := os.MkdirAll(dir, mode); err != nil {
		return nil, noLockMgr(dir, err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, noLockMgr(dir, err)
	}
	if !fi.IsDir() {
		return nil, noLockMgr(dir, errors.New("not a directory"))
	}
	if mine {
		// A shared $TMPDIR: someone else's directory (or a symlink they
		// planted) could hold our locks forever or redirect our files.
		st, ok := fi.Sys().(*unix.Stat_t)
		if !ok {
			st = new(unix.Stat_t)
			_ = unix.Lstat(dir, st)
		}
		if int(st.Uid) != os.Getuid() || fi.Mode().Perm()&0o022 != 0 {
			return nil, noLockMgr(dir, errors.New("not owned by this user or writable by others"))
		}
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return nil, noLockMgr(dir, err)
	}
	if err := s.probe(); err != nil {
		return nil, noLockMgr(dir, err)
	}
	return s, nil
}

// probe checks that the directory's file system supports OFD locks (some
// network and FUSE file systems do not).
func (s *Service) probe() error {
	fd, err := unix.Open(filepath.Join(s.dir, probeName), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	// Byte 2: byte 0 of the probe file is the reapers' lock (reap.go).
	if _, err := setlk(fd, unix.F_RDLCK, 2, 1); err != nil {
		return fmt.Errorf("open-file-description lock: %w", err)
	}
	return nil
}

// Dir returns the lock directory.
func (s *Service) Dir() string { return s.dir }

func noLockMgr(dir string, err error) error {
	return &dsvc.Error{Code: dsvc.CodeNoLockMgr, Op: "lock", Detail: "lock directory " + dir, Err: err}
}

const (
	probeName  = ".probe"
	namePrefix = "v1-"
	nameSuffix = ".lock"
)

// FileName returns the name of key's lock file in the lock directory:
// "v1-<readable>-<hash>.lock" (SPEC.md). The readable part is for people
// listing the directory; the hash (of every field, length-prefixed) makes
// the name unique per key.
func FileName(key dsvc.LockKey) string {
	h := sha256.New()
	var n [8]byte
	for _, f := range []string{key.LocToken, key.Module, key.Container} {
		binary.BigEndian.PutUint64(n[:], uint64(len(f)))
		h.Write(n[:])
		h.Write([]byte(f))
	}
	binary.BigEndian.PutUint64(n[:], uint64(int64(key.Version)))
	h.Write(n[:])
	sum := h.Sum(nil)
	readable := fmt.Sprintf("%s%d_%s", key.Module, key.Version, key.Container)
	return namePrefix + sanitize(readable, 64) + "-" + hex.EncodeToString(sum[:16]) + nameSuffix
}

// sanitize keeps [A-Za-z0-9._] and maps every other byte to '_', at most n
// bytes.
func sanitize(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < n; i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_':
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// Lock takes the lock of key's container, shared or exclusive, waiting
// (honouring ctx) unless nonblock, which fails at once with dsvc.ErrBusy
// where it would wait. Every call uses its own open file description, so
// goroutines of one process exclude each other as processes do.
func (s *Service) Lock(ctx context.Context, key dsvc.LockKey, exclusive, nonblock bool) (dsvc.Unlocker, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path := filepath.Join(s.dir, FileName(key))
	for {
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, s.openErr(key, err)
		}
		if exclusive {
			err = s.lockExclusive(ctx, fd, path, nonblock)
		} else {
			err = s.lockShared(ctx, fd, path, nonblock)
		}
		if err != nil {
			unix.Close(fd)
			if errors.Is(err, errBusy) {
				return nil, &dsvc.Error{Code: dsvc.CodeBusy, Op: "lock", Container: key.Container}
			}
			return nil, s.wrap(key, err)
		}
		// Reap unlinks a file only while it holds both ranges; a file we
		// locked after that is orphaned and locks nobody out.
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, s.wrap(key, err)
		}
		if st.Nlink == 0 {
			unix.Close(fd)
			continue
		}
		u := &unlocker{s: s, path: path, key: key, exclusive: exclusive}
		u.fd.Store(int64(fd))
		if exclusive {
			s.markWriter(fd, key)
		}
		return u, nil
	}
}

var errBusy = errors.New("lock: busy")

func (s *Service) openErr(key dsvc.LockKey, err error) error {
	switch {
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM), errors.Is(err, unix.EROFS):
		return &dsvc.Error{Code: dsvc.CodeAccess, Op: "lock", Container: key.Container, Detail: "lock file in " + s.dir, Err: err}
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		return &dsvc.Error{Code: dsvc.CodeNoLockMgr, Op: "lock", Container: key.Container, Detail: "lock directory " + s.dir, Err: err}
	case errors.Is(err, unix.EMFILE), errors.Is(err, unix.ENFILE), errors.Is(err, unix.ENOSPC):
		return &dsvc.Error{Code: dsvc.CodeNoResources, Op: "lock", Container: key.Container, Err: err}
	}
	return s.wrap(key, err)
}

func (s *Service) wrap(key dsvc.LockKey, err error) error {
	var de *dsvc.Error
	if errors.As(err, &de) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &dsvc.Error{Code: dsvc.CodeSynch, Op: "lock", Container: key.Container, Err: err}
}

// lockExclusive: the turnstile first, so readers arriving from now on stay
// out, then the data range once the readers inside have left. The turnstile
// is kept until Unlock closes the file.
func (s *Service) lockExclusive(ctx context.Context, fd int, path string, nonblock bool) error {
	w := s.waiter(path)
	for {
		w.arm()
		ok, err := setlk(fd, unix.F_WRLCK, offTurnstile, 1)
		if err != nil {
			return err
		}
		if ok {
			break
		}
		if nonblock {
			return errBusy
		}
		if err := w.wait(ctx); err != nil {
			return err
		}
	}
	for {
		w.arm()
		ok, err := setlk(fd, unix.F_WRLCK, offData, 1)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if nonblock {
			return errBusy
		}
		if err := w.wait(ctx); err != nil {
			// Closing the file (the caller does) drops the turnstile, so
			// the readers held back by it go on.
			return err
		}
	}
}

// lockShared: the data range shared, then a look at the turnstile; a writer
// holding it (waiting or writing) sends the reader back out to wait, which
// is the writer preference fcntl locks do not give by themselves.
func (s *Service) lockShared(ctx context.Context, fd int, path string, nonblock bool) error {
	w := s.waiter(path)
	for {
		w.arm()
		ok, err := setlk(fd, unix.F_RDLCK, offData, 1)
		if err != nil {
			return err
		}
		if ok {
			held, err := writerQueued(fd)
			if err != nil {
				return err
			}
			if !held {
				return nil
			}
			if _, err := setlk(fd, unix.F_UNLCK, offData, 1); err != nil {
				return err
			}
		}
		if nonblock {
			return errBusy
		}
		// Wait until the turnstile is free before touching the data range
		// again, so a queued writer is not delayed by our retries.
		for {
			if err := w.wait(ctx); err != nil {
				return err
			}
			w.arm()
			held, err := writerQueued(fd)
			if err != nil {
				return err
			}
			if !held {
				break
			}
		}
	}
}

// setlk tries one OFD lock operation without waiting; ok false means
// another open file description holds a conflicting lock.
func setlk(fd int, typ int16, start, n int64) (ok bool, err error) {
	fl := unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: n}
	for {
		err = unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &fl)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES):
			return false, nil
		}
		return false, fmt.Errorf("fcntl F_OFD_SETLK: %w", err)
	}
}

// writerQueued reports whether a writer holds the turnstile.
func writerQueued(fd int) (bool, error) {
	fl := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: offTurnstile, Len: 1}
	for {
		err := unix.FcntlFlock(uintptr(fd), unix.F_OFD_GETLK, &fl)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("fcntl F_OFD_GETLK: %w", err)
		}
		return fl.Type != unix.F_UNLCK, nil
	}
}

// markWriter sets the marker byte and warns if it was set already: the
// previous writer died holding the lock (the kernel released it), so its
// write may or may not have happened. Best effort: a failure to read or
// write the marker only loses the warning.
func (s *Service) markWriter(fd int, key dsvc.LockKey) {
	var b [1]byte
	if n, _ := unix.Pread(fd, b[:], offMarker); n == 1 && b[0] == 1 {
		s.log.Warn("a process exited while writing the container; its write may or may not have succeeded",
			"container", key.Container, "module", key.Module, "version", key.Version, "location", key.LocToken)
	}
	b[0] = 1
	_, _ = unix.Pwrite(fd, b[:], offMarker)
}

// waiter is the back-off of one waiting Lock: exponential from pollMin to
// pollMax with jitter, so waiters of several processes do not poll in step;
// an Unlock in this process of a lock on the same file ends a wait at once
// (arm, before each attempt, takes the signal the attempt's failure then
// waits for, so an Unlock between the two is not missed).
type waiter struct {
	s      *Service
	path   string
	d, max time.Duration
	t      *time.Timer
	rel    <-chan struct{}
}

func (s *Service) waiter(path string) *waiter {
	return &waiter{s: s, path: path, d: s.pollMin, max: s.pollMax}
}

func (w *waiter) arm() { w.rel = w.s.released(w.path) }

func (w *waiter) wait(ctx context.Context) error {
	d := w.d/2 + rand.N(w.d)
	if w.t == nil {
		w.t = time.NewTimer(d)
	} else {
		w.t.Reset(d)
	}
	select {
	case <-ctx.Done():
		w.t.Stop()
		return ctx.Err()
	case <-w.rel:
		// Released here: the holder was in this process, so the next
		// one probably is too; poll from the start again.
		w.t.Stop()
		w.d = w.s.pollMin
		return nil
	case <-w.t.C:
	}
	w.d = min(2*w.d, w.max)
	return nil
}

// unlocker is one held lock: its open file description.
type unlocker struct {
	fd        atomic.Int64 // -1 once unlocked
	s         *Service
	path      string
	key       dsvc.LockKey
	exclusive bool
}

// Unlock clears the marker of a writer and closes the file, which drops
// both ranges. A second Unlock is dsvc.ErrSynch.
func (u *unlocker) Unlock() error {
	fd := int(u.fd.Swap(-1))
	if fd < 0 {
		return &dsvc.Error{Code: dsvc.CodeSynch, Op: "unlock", Container: u.key.Container, Detail: "not locked"}
	}
	if u.exclusive {
		_, _ = unix.Pwrite(fd, []byte{0}, offMarker)
	}
	err := unix.Close(fd)
	u.s.release(u.path)
	if err != nil {
		return &dsvc.Error{Code: dsvc.CodeSynch, Op: "unlock", Container: u.key.Container, Err: err}
	}
	return nil
}
