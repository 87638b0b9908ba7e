//go:build !unix

package events

import (
	"errors"
	"fmt"
	"syscall"
)

func checkSignal(sig syscall.Signal) error {
	return fmt.Errorf("%w: %w", ErrBadSignal, errors.ErrUnsupported)
}

type sigNotifier struct {
	sig syscall.Signal
	log any
}

func (n *sigNotifier) arm()    {}
func (n *sigNotifier) disarm() {}
func (n *sigNotifier) close()  {}
