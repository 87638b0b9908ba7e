//go:build !linux

package events

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
)

type fdNotifier struct{ user *os.File }

func newFDNotifier(*slog.Logger) (*fdNotifier, error) {
	return nil, fmt.Errorf("events: fd style: %w", errors.ErrUnsupported)
}

func (n *fdNotifier) arm()    {}
func (n *fdNotifier) disarm() {}
func (n *fdNotifier) close()  {}
