package event

import "errors"

// Conditions callers branch on; package events re-exports them under the
// same names. Errors returned by this package wrap one of these with %w and
// add the offending value. The texts keep the "events:" prefix they had
// before the types moved here, since applications see them through events.
var (
	// ErrBadClass: a class outside ClassComm..ClassGroup.
	ErrBadClass = errors.New("events: unknown event class")
	// ErrBadEvent: an unknown or INVALID event descriptor or name.
	ErrBadEvent = errors.New("events: unknown event")
)
