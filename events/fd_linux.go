package events

import (
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// fdNotifier makes a file readable while a callback is pending: one byte in
// a Unix socket pair, written by arm, read back by disarm.
//
// A socket pair rather than a pipe or an eventfd: the user's end may be put
// in blocking mode (os.File.Fd does that), and MSG_DONTWAIT still keeps our
// reads from blocking, which matters because they run under the Service
// lock. MSG_NOSIGNAL keeps a closed user end from raising SIGPIPE.
type fdNotifier struct {
	log  *slog.Logger
	user *os.File // handed to the user; readable while armed
	own  int      // our end; closed by close, which makes user read EOF
}

func newFDNotifier(log *slog.Logger) (*fdNotifier, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("events: fd style: %w", err)
	}
	return &fdNotifier{log: log, user: os.NewFile(uintptr(fds[0]), "events"), own: fds[1]}, nil
}

func (n *fdNotifier) arm() {
	if err := unix.Sendto(n.own, []byte{1}, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, nil); err != nil {
		n.log.Warn("cannot arm event fd", "err", err)
	}
}

func (n *fdNotifier) disarm() {
	rc, err := n.user.SyscallConn()
	if err != nil {
		return // the user closed its end; nobody is listening
	}
	var buf [1]byte
	_ = rc.Control(func(fd uintptr) {
		_, _, err = unix.Recvfrom(int(fd), buf[:], unix.MSG_DONTWAIT)
	})
	if err != nil {
		n.log.Debug("cannot disarm event fd", "err", err)
	}
}

func (n *fdNotifier) close() { unix.Close(n.own) }
