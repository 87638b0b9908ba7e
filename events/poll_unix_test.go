//go:build unix

package events_test

import (
	"errors"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/events"
)

// pollReady polls f for input, waiting at most wait.
func pollReady(f *os.File, wait time.Duration) (bool, error) {
	for {
		fds := []unix.PollFd{{Fd: int32(f.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, int(wait/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		return n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP) != 0, err
	}
}

// pollLoop is the seed's select/poll loop: wait for the file, hand control
// to HandleEvent. It returns HandleEvent's error, ErrUnregistered once the
// handle is gone.
func pollLoop(f *os.File, h *events.Handle) error {
	for {
		ok, err := pollReady(f, timeout)
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("poll timed out")
		}
		if err := h.HandleEvent(); err != nil {
			return err
		}
	}
}
