package sharedaddrtest

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/corralhq/corral/sharedaddr"
)

// flows and bindings are per stack: two stacks may use one address.
type flow struct {
	stack         sharedaddr.StackID
	proto         uint8
	local, remote netip.AddrPort
}

type bound struct {
	stack sharedaddr.StackID
	proto uint8
	local netip.AddrPort
}

// Check returns every breach of the hooks' contract in the events so far:
//   - an event hook for an address that is neither shared nor, for
//     Listen and Bind, unspecified;
//   - an incoming Connect with no Listen in force on its port (for its
//     address or the unspecified one);
//   - Unlisten without Listen, Unbind without Bind, a second Listen or
//     Bind of an address in force;
//   - Disconnect without an accepted Connect of its flow, or a second one.
//
// With closed, every Listen must have had its Unlisten, every Bind its
// Unbind and every accepted TCP Connect its Disconnect: call it so once
// the test has closed everything.
func (r *Recorder) Check(closed bool) error {
	events := r.Events()
	r.mu.Lock()
	shared := make(map[netip.Addr]bool, len(r.shared))
	for a := range r.shared {
		shared[a] = true
	}
	r.mu.Unlock()
	var errs []error
	bad := func(i int, e Event, format string, args ...any) {
		errs = append(errs, fmt.Errorf("event %d (%s): %s", i, e, fmt.Sprintf(format, args...)))
	}
	listening := make(map[bound]bool)
	binds := make(map[bound]bool)
	open := make(map[flow]bool)
	for i, e := range events {
		b := bound{e.Stack, uint8(e.Proto), e.Local}
		switch e.Hook {
		case "Listen", "Bind", "Unlisten", "Unbind":
			if !shared[e.Local.Addr()] && !e.Local.Addr().IsUnspecified() {
				bad(i, e, "address is not shared")
			}
		case "Connect", "Disconnect":
			if !shared[e.Local.Addr()] {
				bad(i, e, "address is not shared")
			}
		}
		switch e.Hook {
		case "Listen":
			if listening[b] {
				bad(i, e, "already listening")
			}
			listening[b] = true
		case "Unlisten":
			if !listening[b] {
				bad(i, e, "no Listen in force")
			}
			delete(listening, b)
		case "Bind":
			if binds[b] {
				bad(i, e, "already bound")
			}
			binds[b] = true
		case "Unbind":
			if !binds[b] {
				bad(i, e, "no Bind in force")
			}
			delete(binds, b)
		case "Connect":
			if !e.Outgoing {
				any := netip.AddrPortFrom(netip.IPv4Unspecified(), e.Local.Port())
				any6 := netip.AddrPortFrom(netip.IPv6Unspecified(), e.Local.Port())
				if !listening[b] && !listening[bound{e.Stack, b.proto, any}] && !listening[bound{e.Stack, b.proto, any6}] {
					bad(i, e, "incoming Connect before any Listen on port %d", e.Local.Port())
				}
			}
			if e.Err == nil && e.Proto == 6 {
				f := flow{e.Stack, uint8(e.Proto), e.Local, e.Remote}
				if open[f] {
					bad(i, e, "flow already connected")
				}
				open[f] = true
			}
		case "Disconnect":
			f := flow{e.Stack, uint8(e.Proto), e.Local, e.Remote}
			if !open[f] {
				bad(i, e, "no accepted Connect in force for this flow (or a second Disconnect)")
			}
			delete(open, f)
		}
	}
	if closed {
		for b := range listening {
			errs = append(errs, fmt.Errorf("Listen %v without Unlisten", b.local))
		}
		for b := range binds {
			errs = append(errs, fmt.Errorf("Bind %v without Unbind", b.local))
		}
		for f := range open {
			errs = append(errs, fmt.Errorf("Connect %v %v without Disconnect", f.local, f.remote))
		}
	}
	return errors.Join(errs...)
}
