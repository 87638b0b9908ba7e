package events

import (
	"errors"

	"github.com/corralhq/corral/types/event"
)

// Conditions callers branch on. Errors returned by this package wrap one of
// these with %w and add the offending value.
var (
	// ErrClosed: the Service was closed; its handles are gone.
	ErrClosed = errors.New("events: service closed")
	// ErrUnregistered: the handle was unregistered (the seed's "invalid
	// handle", the only failure of oc_ev_unregister).
	ErrUnregistered = errors.New("events: handle unregistered")
	// ErrNoCallback: activation without any callback set (seed §3.3).
	ErrNoCallback = errors.New("events: no callback registered")
	// ErrActive: the handle was already activated.
	ErrActive = errors.New("events: handle already activated")
	// ErrNotActive: HandleEvent before activation.
	ErrNotActive = errors.New("events: handle not activated")
	// ErrBadClass: a class outside ClassComm..ClassGroup.
	ErrBadClass = event.ErrBadClass
	// ErrBadPriority: a priority outside PriorityMin..PriorityMax.
	ErrBadPriority = errors.New("events: priority out of range")
	// ErrBadSignal: a signal that cannot carry notifications.
	ErrBadSignal = errors.New("events: signal cannot be used for notification")
	// ErrBadEvent: an unknown or INVALID event descriptor or name.
	ErrBadEvent = event.ErrBadEvent
	// ErrDataClass: Event.Data belongs to another class than Event.Desc.
	ErrDataClass = errors.New("events: data does not match event class")
	// ErrStaleSeq: a cluster-wide Seq not above the last one published;
	// the event was already delivered (exactly once) and is dropped.
	ErrStaleSeq = errors.New("events: sequence number already published")
	// ErrBadCookie: a zero Cookie, not one passed to a callback.
	ErrBadCookie = errors.New("events: invalid cookie")
	// ErrCookieDone: CallbackDone was already called with this cookie.
	ErrCookieDone = errors.New("events: callback already done")
)
