//go:build !unix

package events_test

import (
	"errors"
	"os"

	"github.com/corralhq/corral/events"
)

// pollLoop is never reached: the fd style is Linux only.
func pollLoop(*os.File, *events.Handle) error { return errors.ErrUnsupported }
