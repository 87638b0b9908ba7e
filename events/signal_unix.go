//go:build unix

package events

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkSignal refuses signals that cannot be caught or do not exist
// (Linux numbers them 1..64).
func checkSignal(sig syscall.Signal) error {
	if sig <= 0 || sig > 64 || sig == unix.SIGKILL || sig == unix.SIGSTOP {
		return fmt.Errorf("%w: %v", ErrBadSignal, sig)
	}
	return nil
}

// sigNotifier raises its signal to the own process when a callback becomes
// pending. Nothing to undo on disarm: a signal is an edge, not a level.
type sigNotifier struct {
	sig syscall.Signal
	log *slog.Logger
}

func (n *sigNotifier) arm() {
	if err := unix.Kill(os.Getpid(), n.sig); err != nil {
		n.log.Warn("cannot raise event signal", "signal", n.sig, "err", err)
	}
}

func (n *sigNotifier) disarm() {}
func (n *sigNotifier) close()  {}
