package events

import (
	"fmt"
	"os"
	"slices"
	"syscall"
)

// Priority orders the callbacks of an event across all local handles
// (seed §3.2): values closer to zero are processed first. Valid priorities
// are PriorityMin..PriorityMax; negative values are refused because "closer
// to zero" would make -n and n tie.
type Priority int

// Priority range and the three bands of the seed's example (§5). Values
// below PriorityHigh let a component (e.g. a lock manager) finish with an
// event before any application sees it.
const (
	PriorityMin  Priority = 0
	PriorityHigh Priority = 64  // OC_EV_PRIO_HIGH
	PriorityMed  Priority = 128 // OC_EV_PRIO_MED
	PriorityLow  Priority = 192 // OC_EV_PRIO_LOW
	PriorityMax  Priority = 255
)

// Valid reports whether p is within PriorityMin..PriorityMax.
func (p Priority) Valid() bool { return p >= PriorityMin && p <= PriorityMax }

// Style is an activation style (seed §3.3).
type Style int

// Activation styles.
const (
	StyleNone     Style = iota // not activated
	StyleNoReturn              // OC_EV_AS_NORETURN: HandleEvent blocks until Unregister
	StyleFD                    // OC_EV_AS_GET_FD: a file readable while a callback is pending
	StyleSignal                // OC_EV_AS_SIGNAL: a signal raised when a callback becomes pending
	StyleChan                  // corral: a channel that receives when a callback becomes pending
)

func (s Style) String() string {
	switch s {
	case StyleNone:
		return "none"
	case StyleNoReturn:
		return "noreturn"
	case StyleFD:
		return "fd"
	case StyleSignal:
		return "signal"
	case StyleChan:
		return "chan"
	}
	return fmt.Sprintf("Style(%d)", int(s))
}

// Callback handles one event (oc_ev_callback_t). It must report completion
// with CallbackDone(c), before or after it returns; until then the event is
// outstanding and no later event, and no callback of a lower priority for
// this event, is delivered anywhere on the node.
type Callback func(ev Event, c Cookie)

// Cookie identifies one callback invocation (the seed's cookie). The zero
// Cookie is invalid.
type Cookie struct{ d *delivery }

// Handle is one registration with a Service (oc_ev_t). Its methods are safe
// for concurrent use; its state is guarded by the Service's mutex.
type Handle struct {
	s *Service

	// Guarded by s.mu.
	cb       [numClasses + 1]binding // by Class; fn nil: disabled
	style    Style
	n        notifier      // nil until activated
	wake     chan struct{} // the no-return style's channel, nil otherwise
	cur      *delivery     // this handle's delivery of the current event, until complete
	pending  bool          // cur is ready: a callback waits for HandleEvent
	running  int           // callbacks of this handle executing now
	closed   bool          // unregistered
	closeErr error         // why: ErrUnregistered or ErrClosed
}

type binding struct {
	pri Priority
	fn  Callback
}

// notifier tells a handle's user that a callback is pending.
type notifier interface {
	arm()    // a callback became pending
	disarm() // none is pending any more
	close()  // unregistered: wake waiters for good
}

// SetCallback sets the callback for one class (oc_ev_set_callback). A later
// call for the same class replaces the function and priority; a nil fn
// disables the class. The change applies to events whose dispatch starts
// later and, for the function, to a delivery of the current event that has
// not run yet: disabling cancels it, replacing runs the new function. The
// priority of the current event's deliveries is fixed when it starts.
func (h *Handle) SetCallback(pri Priority, class Class, fn Callback) error {
	if !class.Valid() {
		return fmt.Errorf("%w: %d", ErrBadClass, class)
	}
	if !pri.Valid() {
		return fmt.Errorf("%w: %d", ErrBadPriority, pri)
	}
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.closed {
		return h.closeErr
	}
	h.cb[class] = binding{pri: pri, fn: fn}
	if d := h.cur; fn == nil && d != nil && d.class == class && d.state == dReady {
		s.completeLocked(d)
	}
	s.interestChangedLocked()
	return nil
}

// Style returns how h was activated, StyleNone before.
func (h *Handle) Style() Style {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	return h.style
}

// activate checks the preconditions of seed §3.3 and installs the notifier
// made by mk, under the lock so that no event can slip in between.
func (h *Handle) activate(style Style, mk func() (notifier, error)) error {
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case h.closed:
		return h.closeErr
	case h.style != StyleNone:
		return fmt.Errorf("%w: style %v", ErrActive, h.style)
	case !slices.ContainsFunc(h.cb[:], func(b binding) bool { return b.fn != nil }):
		return ErrNoCallback
	}
	n, err := mk()
	if err != nil {
		return err
	}
	h.style, h.n = style, n
	s.log.Debug("handle activated", "style", style)
	s.interestChangedLocked()
	return nil
}

// ActivateNoReturn activates h in the no-return style (OC_EV_AS_NORETURN):
// the caller then gives a goroutine to HandleEvent, which runs callbacks as
// events arrive and returns only once h is unregistered.
func (h *Handle) ActivateNoReturn() error {
	return h.activate(StyleNoReturn, func() (notifier, error) {
		n := newChanNotifier()
		h.wake = n.c
		return n, nil
	})
}

// ActivateChan activates h in corral's channel style, the Go form of the fd
// style: the channel receives a value when a callback becomes pending; then
// call HandleEvent. The channel is closed when h is unregistered. A value may
// be stale (the callback was cancelled): HandleEvent then does nothing.
func (h *Handle) ActivateChan() (<-chan struct{}, error) {
	var n *chanNotifier
	err := h.activate(StyleChan, func() (notifier, error) {
		n = newChanNotifier()
		return n, nil
	})
	if err != nil {
		return nil, err
	}
	return n.c, nil
}

// ActivateFD activates h in the fd style (OC_EV_AS_GET_FD). The file is
// readable (poll POLLIN, select) exactly while a callback is pending; then
// call HandleEvent. Its content is opaque: never read or write it. After
// Unregister it stays readable (end of file), so a poll loop wakes up, gets
// ErrUnregistered from HandleEvent and leaves; the caller owns the file and
// closes it when its loop is done. Linux only.
func (h *Handle) ActivateFD() (*os.File, error) {
	var n *fdNotifier
	err := h.activate(StyleFD, func() (notifier, error) {
		var err error
		n, err = newFDNotifier(h.s.log)
		return n, err
	})
	if err != nil {
		return nil, err
	}
	return n.user, nil
}

// ActivateSignal activates h in the signal style (OC_EV_AS_SIGNAL): sig is
// raised to the own process each time a callback becomes pending; then call
// HandleEvent. The process must catch sig (signal.Notify) before events
// arrive: a Go program ignores an un-notified SIGUSR1, so the event would
// wait unnoticed. Signals coalesce; HandleEvent runs every pending callback,
// so one signal is enough. Clear your "signal seen" flag before calling
// HandleEvent, not after as in the seed's example, or a signal raised during
// HandleEvent is lost. SIGKILL and SIGSTOP are refused (ErrBadSignal).
func (h *Handle) ActivateSignal(sig syscall.Signal) error {
	if err := checkSignal(sig); err != nil {
		return err
	}
	return h.activate(StyleSignal, func() (notifier, error) {
		return &sigNotifier{sig: sig, log: h.s.log}, nil
	})
}

// HandleEvent runs pending callbacks in the calling goroutine
// (oc_ev_handle_event), in event order.
//
// In the no-return style it blocks, running callbacks as they become
// pending, until h is unregistered: it returns nil after Unregister and
// ErrClosed after Service.Close. In the other styles it runs every callback
// pending now, including those that become pending while it runs, and
// returns without waiting; with none pending it does nothing.
//
// It fails with ErrNotActive before activation and ErrUnregistered (or
// ErrClosed) once h is unregistered.
func (h *Handle) HandleEvent() error {
	if h == nil {
		return ErrUnregistered
	}
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.closed {
		return h.closeErr
	}
	switch h.style {
	case StyleNone:
		return ErrNotActive
	case StyleNoReturn:
		for {
			if h.closed {
				if h.closeErr == ErrClosed {
					return ErrClosed
				}
				return nil
			}
			if h.pending {
				h.runLocked()
				continue
			}
			s.mu.Unlock()
			<-h.wake // closed by Unregister
			s.mu.Lock()
		}
	}
	for h.pending && !h.closed {
		h.runLocked()
	}
	return nil
}

// runLocked runs the pending callback. s.mu is held on entry and on return,
// released while the callback runs.
func (h *Handle) runLocked() {
	s := h.s
	d := h.cur
	d.state = dRunning
	h.setPendingLocked(false)
	fn := h.cb[d.class].fn // disabling cancels a ready delivery, so fn != nil
	h.running++
	s.mu.Unlock()
	defer func() {
		// Deferred so that a panicking callback leaves consistent state.
		s.mu.Lock()
		h.running--
		if d.state == dRunning {
			d.state = dReturned
		}
		if h.closed && d.state != dDone {
			// Unregistered during the callback: clean up now that it
			// has returned (seed §3.1), completing it for the others.
			d.released = true
			s.completeLocked(d)
		}
	}()
	fn(d.dp.ev, Cookie{d})
}

// setPendingLocked records whether a callback is pending and tells the
// user on a change. The notifiers never block (a non-blocking channel
// operation, a one-byte socket write or read, kill), so they run under the
// lock and stay consistent with pending.
func (h *Handle) setPendingLocked(p bool) {
	if h.pending == p {
		return
	}
	h.pending = p
	if h.n == nil || h.closed {
		return
	}
	if p {
		h.n.arm()
	} else {
		h.n.disarm()
	}
}

// CallbackDone reports that the callback given c has completed
// (oc_ev_callback_done). Call it exactly once per invocation, from any
// goroutine, inside the callback or later. When every callback of a
// priority band has completed, the next band gets the event; when every
// callback of the event has, the next event is delivered.
//
// It returns ErrBadCookie for a zero Cookie and ErrCookieDone if c was
// already completed. A cookie released by Unregister or Close may still be
// completed: that is a no-op.
func CallbackDone(c Cookie) error {
	d := c.d
	if d == nil {
		return ErrBadCookie
	}
	s := d.h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if d.state == dDone {
		if d.released {
			return nil
		}
		return ErrCookieDone
	}
	s.completeLocked(d)
	return nil
}

// Unregister ends h (oc_ev_unregister). After it returns no callback of h
// starts; the file or channel of h is closed (the fd style's file becomes
// readable at end of file), and HandleEvent in the no-return style returns.
// A callback of h running at the time, including the one calling Unregister,
// is not waited for: the event it delivers is completed for everyone else
// when it returns, whether or not it calls CallbackDone. Any other
// outstanding callback of h is completed at once. It fails with
// ErrUnregistered if h was already unregistered.
func (h *Handle) Unregister() error {
	if h == nil {
		return ErrUnregistered
	}
	s := h.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.closed {
		return h.closeErr
	}
	h.unregisterLocked(ErrUnregistered)
	return nil
}

func (h *Handle) unregisterLocked(reason error) {
	h.closeLocked(reason)
	h.releaseLocked()
}

// closeLocked stops h from getting callbacks and wakes its user.
func (h *Handle) closeLocked(reason error) {
	s := h.s
	h.closed, h.closeErr = true, reason
	s.handles = slices.DeleteFunc(s.handles, func(x *Handle) bool { return x == h })
	if h.n != nil {
		h.n.close()
	}
	s.log.Debug("handle unregistered", "reason", reason)
	s.interestChangedLocked()
}

// releaseLocked completes the outstanding delivery of closed h, unless its
// callback is running (runLocked completes it on return).
func (h *Handle) releaseLocked() {
	s := h.s
	if d := h.cur; d != nil && d.state != dRunning {
		d.released = true
		s.completeLocked(d)
	}
}

// chanNotifier keeps at most one token in a channel.
type chanNotifier struct{ c chan struct{} }

func newChanNotifier() *chanNotifier { return &chanNotifier{c: make(chan struct{}, 1)} }

func (n *chanNotifier) arm() {
	select {
	case n.c <- struct{}{}:
	default:
	}
}

func (n *chanNotifier) disarm() {
	select {
	case <-n.c:
	default:
	}
}

func (n *chanNotifier) close() { close(n.c) }
