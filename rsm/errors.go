package rsm

import (
	"errors"
	"fmt"
)

// Sentinel errors; the errors returned wrap them with detail.
var (
	// ErrEnvelope is matched by every *EnvelopeError.
	ErrEnvelope = errors.New("rsm: bad command envelope")
	// ErrUnknownMachine is returned for a machine id no machine is
	// registered for: by Propose for an entry every node skipped, and by
	// Restore for a snapshot section.
	ErrUnknownMachine = errors.New("rsm: unknown machine")
	// ErrRequestExpired is returned (wrapped in clusterlog.ErrRejected)
	// for a request id below its proposer's window once the window is
	// full: the request may have applied before and been forgotten, so it
	// is not applied; whether it applied earlier is unknown.
	ErrRequestExpired = errors.New("rsm: request id below the proposer's deduplication window")
	// ErrDuplicateMachine is returned by Register for an id already taken.
	ErrDuplicateMachine = errors.New("rsm: machine id already registered")
	// ErrSnapshot is matched by every *SnapshotError.
	ErrSnapshot = errors.New("rsm: bad snapshot")
)

// EnvelopeError says what is wrong with a command envelope (SPEC.md). It
// matches ErrEnvelope.
type EnvelopeError struct {
	Reason string
}

func (e *EnvelopeError) Error() string { return "rsm: bad command envelope: " + e.Reason }

// Unwrap returns ErrEnvelope.
func (e *EnvelopeError) Unwrap() error { return ErrEnvelope }

// SnapshotError says what is wrong with a composite snapshot (SPEC.md). It
// matches ErrSnapshot and, if set, Err.
type SnapshotError struct {
	Offset int64 // byte offset in the snapshot stream
	Reason string
	Err    error
}

func (e *SnapshotError) Error() string {
	s := fmt.Sprintf("rsm: bad snapshot at byte %d: %s", e.Offset, e.Reason)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrSnapshot and the underlying error, if any.
func (e *SnapshotError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrSnapshot}
	}
	return []error{ErrSnapshot, e.Err}
}
