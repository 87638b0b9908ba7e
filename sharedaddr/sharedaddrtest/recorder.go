// Package sharedaddrtest has a fake sharedaddr.Hooks that records every
// call and checks the order the hooks' contract promises, for tests of
// sharedaddr and of code built on it.
package sharedaddrtest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/corralhq/corral/sharedaddr"
)

// Event is one recorded hook call. IsClusterWide, a question rather than
// an event, is counted (Recorder.Queries) but not recorded.
type Event struct {
	Hook          string // "Listen", "Unlisten", "Bind", "Unbind", "Connect", "Disconnect", "IPIdent", "GetSPI", "CheckSPI", "DeleteSPI", "IdleSA"
	Stack         sharedaddr.StackID
	Proto         sharedaddr.Proto
	Outgoing      bool           // Connect
	Local, Remote netip.AddrPort // Remote: Connect and Disconnect
	SPI           uint32         // the SPI hooks
	Args          sharedaddr.Args
	Err           error // what Connect or CheckSPI returned
}

func (e Event) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s", strings.ToLower(e.Hook), e.Proto)
	switch e.Hook {
	case "Connect":
		dir := "in"
		if e.Outgoing {
			dir = "out"
		}
		fmt.Fprintf(&sb, " %s %s %s", dir, e.Local, e.Remote)
	case "Disconnect":
		fmt.Fprintf(&sb, " %s %s", e.Local, e.Remote)
		if e.Args.TimeWait {
			sb.WriteString(" time-wait")
		}
	case "Listen", "Unlisten", "Bind", "Unbind":
		fmt.Fprintf(&sb, " %s", e.Local)
	case "CheckSPI", "DeleteSPI", "IdleSA":
		fmt.Fprintf(&sb, " %#x", e.SPI)
	}
	if e.Err != nil {
		fmt.Fprintf(&sb, " refused: %v", e.Err)
	}
	return sb.String()
}

// ErrRefusedByTest is what Connect returns for a refused flow.
var ErrRefusedByTest = errors.New("sharedaddrtest: refused")

// Recorder is a sharedaddr.Hooks and sharedaddr.PortChooser that records
// its calls. Its shared addresses are those given to New; it refuses the
// flows the function given to Refuse picks; with Ports it hands out source
// ports from a slice, as a node leasing that slice would.
type Recorder struct {
	mu       sync.Mutex // guards every field below
	shared   map[netip.Addr]bool
	events   []Event
	queries  int
	refuse   func(Event) bool
	lo, hi   uint16 // the source-port slice; 0, 0: the kernel chooses
	next     uint16 // the next port of the slice to offer
	nextSPI  uint32
	nextIdnt uint32
}

var (
	_ sharedaddr.Hooks       = (*Recorder)(nil)
	_ sharedaddr.PortChooser = (*Recorder)(nil)
)

// New returns a recorder for which the given addresses are shared.
func New(shared ...netip.Addr) *Recorder {
	r := &Recorder{shared: make(map[netip.Addr]bool), nextSPI: 0x1000}
	for _, a := range shared {
		r.shared[a] = true
	}
	return r
}

// Refuse makes Connect refuse the flows fn returns true for.
func (r *Recorder) Refuse(fn func(Event) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refuse = fn
}

// Ports makes SourcePort offer lo, lo+1, ..., hi, then lo again.
func (r *Recorder) Ports(lo, hi uint16) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lo, r.hi, r.next = lo, hi, lo
}

// Events returns a copy of the events so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Strings returns the events so far, one String each.
func (r *Recorder) Strings() []string {
	var out []string
	for _, e := range r.Events() {
		out = append(out, e.String())
	}
	return out
}

// Queries returns how often IsClusterWide was asked.
func (r *Recorder) Queries() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.queries
}

func (r *Recorder) record(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func args(a *sharedaddr.Args) sharedaddr.Args {
	if a == nil {
		return sharedaddr.Args{}
	}
	return *a
}

func (r *Recorder) IsClusterWide(s sharedaddr.StackID, p sharedaddr.Proto, laddr netip.Addr, a *sharedaddr.Args) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.queries++
	return r.shared[laddr.Unmap()]
}

func (r *Recorder) IPIdent(s sharedaddr.StackID, p sharedaddr.Proto, laddr, faddr netip.Addr, a *sharedaddr.Args) uint32 {
	r.mu.Lock()
	r.nextIdnt++
	id := r.nextIdnt
	r.mu.Unlock()
	r.record(Event{Hook: "IPIdent", Stack: s, Proto: p, Local: netip.AddrPortFrom(laddr, 0), Remote: netip.AddrPortFrom(faddr, 0), Args: args(a)})
	return id
}

func (r *Recorder) GetSPI(s sharedaddr.StackID, p sharedaddr.Proto, buf []byte, a *sharedaddr.Args) {
	r.mu.Lock()
	r.nextSPI++
	spi := r.nextSPI
	r.mu.Unlock()
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], spi)
	copy(buf, b[:])
	r.record(Event{Hook: "GetSPI", Stack: s, Proto: p, SPI: spi, Args: args(a)})
}

func (r *Recorder) CheckSPI(s sharedaddr.StackID, p sharedaddr.Proto, spi uint32, a *sharedaddr.Args) error {
	r.record(Event{Hook: "CheckSPI", Stack: s, Proto: p, SPI: spi, Args: args(a)})
	return nil
}

func (r *Recorder) DeleteSPI(s sharedaddr.StackID, p sharedaddr.Proto, spi uint32, a *sharedaddr.Args) {
	r.record(Event{Hook: "DeleteSPI", Stack: s, Proto: p, SPI: spi, Args: args(a)})
}

func (r *Recorder) IdleSA(s sharedaddr.StackID, p sharedaddr.Proto, spi uint32, src, dst netip.Addr, a *sharedaddr.Args) {
	r.record(Event{Hook: "IdleSA", Stack: s, Proto: p, SPI: spi, Local: netip.AddrPortFrom(dst, 0), Remote: netip.AddrPortFrom(src, 0), Args: args(a)})
}

func (r *Recorder) Listen(s sharedaddr.StackID, p sharedaddr.Proto, laddr netip.AddrPort, a *sharedaddr.Args) {
	r.record(Event{Hook: "Listen", Stack: s, Proto: p, Local: laddr, Args: args(a)})
}

func (r *Recorder) Unlisten(s sharedaddr.StackID, p sharedaddr.Proto, laddr netip.AddrPort, a *sharedaddr.Args) {
	r.record(Event{Hook: "Unlisten", Stack: s, Proto: p, Local: laddr, Args: args(a)})
}

func (r *Recorder) Bind(s sharedaddr.StackID, p sharedaddr.Proto, laddr netip.AddrPort, a *sharedaddr.Args) {
	r.record(Event{Hook: "Bind", Stack: s, Proto: p, Local: laddr, Args: args(a)})
}

func (r *Recorder) Unbind(s sharedaddr.StackID, p sharedaddr.Proto, laddr netip.AddrPort, a *sharedaddr.Args) {
	r.record(Event{Hook: "Unbind", Stack: s, Proto: p, Local: laddr, Args: args(a)})
}

func (r *Recorder) Connect(s sharedaddr.StackID, p sharedaddr.Proto, isOutgoing bool, laddr, faddr netip.AddrPort, a *sharedaddr.Args) error {
	e := Event{Hook: "Connect", Stack: s, Proto: p, Outgoing: isOutgoing, Local: laddr, Remote: faddr, Args: args(a)}
	r.mu.Lock()
	refuse := r.refuse
	r.mu.Unlock()
	if refuse != nil && refuse(e) {
		e.Err = ErrRefusedByTest
	}
	r.record(e)
	return e.Err
}

func (r *Recorder) Disconnect(s sharedaddr.StackID, p sharedaddr.Proto, laddr, faddr netip.AddrPort, a *sharedaddr.Args) {
	r.record(Event{Hook: "Disconnect", Stack: s, Proto: p, Local: laddr, Remote: faddr, Args: args(a)})
}

// SourcePort offers the next port of the slice set by Ports, or 0.
func (r *Recorder) SourcePort(s sharedaddr.StackID, p sharedaddr.Proto, laddr netip.Addr, faddr netip.AddrPort, try int, a *sharedaddr.Args) (uint16, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lo == 0 {
		return 0, nil
	}
	if try > int(r.hi-r.lo) {
		return 0, fmt.Errorf("sharedaddrtest: every port of %d-%d tried", r.lo, r.hi)
	}
	port := r.next
	if r.next == r.hi {
		r.next = r.lo
	} else {
		r.next++
	}
	return port, nil
}
