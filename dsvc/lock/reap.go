package lock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Reap removes the lock files of containers that nobody holds or waits
// for and that no writer has locked for at least idle (the file's mtime,
// which every exclusive Lock and Unlock update through the marker byte).
// It is the counterpart of dsvclockd's reaper of idle containers; there is
// no daemon to exit. Safe against concurrent Locks in any process: a file
// is unlinked only while Reap holds both of its ranges, and a Lock that
// ends up holding an unlinked file starts again on a new one. A file whose
// marker says a writer died is kept, so the next writer still warns. While
// another process reaps the directory, Reap returns 0 at once. A NonBlock
// Lock of a file in the instant Reap holds it gets ErrBusy; Reap only
// holds files idle for the given time, so run it with a long one (dsvclockd
// reaped after an hour).
func (s *Service) Reap(ctx context.Context, idle time.Duration) (removed int, err error) {
	// One reaper per directory: between its check that a name is still the
	// inode it locked and its unlink, no one else may unlink that name (a
	// Lock only ever creates one).
	pfd, err := unix.Open(filepath.Join(s.dir, probeName), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return 0, noLockMgr(s.dir, err)
	}
	defer unix.Close(pfd)
	if ok, err := setlk(pfd, unix.F_WRLCK, offTurnstile, 1); err != nil || !ok {
		return 0, err
	}
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, noLockMgr(s.dir, err)
	}
	now := time.Now()
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		name := e.Name()
		if !strings.HasPrefix(name, namePrefix) || !strings.HasSuffix(name, nameSuffix) || !e.Type().IsRegular() {
			continue
		}
		ok, err := s.reapOne(filepath.Join(s.dir, name), now, idle)
		if err != nil {
			return removed, err
		}
		if ok {
			removed++
		}
	}
	return removed, nil
}

func (s *Service) reapOne(path string, now time.Time, idle time.Duration) (bool, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		return false, nil // another reaper was faster
	}
	if err != nil {
		return false, &os.PathError{Op: "reap", Path: path, Err: err}
	}
	defer unix.Close(fd)
	ok, err := setlk(fd, unix.F_WRLCK, offTurnstile, 2)
	if err != nil || !ok {
		return false, err
	}
	var st, pst unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	if st.Nlink == 0 || now.Sub(time.Unix(st.Mtim.Unix())) < idle {
		return false, nil
	}
	var b [1]byte
	if n, _ := unix.Pread(fd, b[:], offMarker); n == 1 && b[0] == 1 {
		return false, nil
	}
	// The name must still be this inode: a reaper before us may have
	// removed it and a Lock created a new one since we opened it.
	if err := unix.Stat(path, &pst); err != nil || pst.Ino != st.Ino || pst.Dev != st.Dev {
		return false, nil
	}
	if err := unix.Unlink(path); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, &os.PathError{Op: "reap", Path: path, Err: err}
	}
	return true, nil
}
