package addrsvc

import (
	"cmp"
	"io"
	"slices"
	"sync"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/sharedaddr/ctl"
)

// Source is what the data path reads: the state, and a wake-up after
// every change of it. sharedaddr/kernel consumes this; a test can fake it.
type Source interface {
	// State returns the state as applied on this node. The result is
	// shared and must not be modified; it is never changed after it is
	// returned (a change makes a new one).
	State() *State
	// Watch returns a channel that receives a value (coalesced: at most
	// one waits) after every applied entry that changes the state, and a
	// stop function that releases it.
	Watch() (changes <-chan struct{}, stop func())
}

// State is the shared-address state at one applied entry, the same on
// every node that applied it.
type State struct {
	// Gen counts the changes this node applied since it started; a larger
	// Gen is a later state. It is local: two nodes may differ.
	Gen     uint64
	View    uint64   // the view instance the machine holds
	Members []uint64 // the view's members, oldest first
	Addrs   []Addr   // in (stack, IP) order
	SPI     []ctl.Lease
}

// Addr is one address: the machine's AddrInfo (owner, listeners, leases)
// and its dispatch tables.
type Addr struct {
	ctl.AddrInfo
	Tables []Table // in (proto, port) order
}

// Table is a dispatch table of an address: Buckets[i] is the node that a
// new flow in bucket i (ctl.Bucket) goes to.
type Table struct {
	Proto   uint8
	Port    uint16   // 0: a sticky-wild table, for every port of Proto
	Buckets []uint64 // shared with the machine: do not modify
}

// Reported says whether node's last complete EXCEPT of the address was
// for its present table generation: the node has walked its connections
// for the present tables.
func (a Addr) Reported(node uint64) bool {
	for _, r := range a.Reports {
		if r.Node == node {
			return r.Gen == a.Gen
		}
	}
	return false
}

// table returns the buckets of a's table for flows to proto/port (the
// sticky-wild one for any port); nil if there is none.
func (a Addr) table(proto uint8, port uint16) []uint64 {
	for _, t := range a.Tables {
		if t.Proto == proto && (t.Port == port || t.Port == 0) {
			return t.Buckets
		}
	}
	return nil
}

// Share is one node's part of a table.
type Share struct {
	Node    uint64
	Buckets int
}

// Shares returns the buckets of each node of the table, in node order.
func (t Table) Shares() []Share {
	n := map[uint64]int{}
	for _, b := range t.Buckets {
		n[b]++
	}
	out := make([]Share, 0, len(n))
	for node, c := range n {
		out = append(out, Share{Node: node, Buckets: c})
	}
	slices.SortFunc(out, func(a, b Share) int { return cmp.Compare(a.Node, b.Node) })
	return out
}

// Addr returns the address a names, if the state has it.
func (s *State) Addr(a ctl.Addr) (Addr, bool) {
	i, ok := slices.BinarySearchFunc(s.Addrs, a, func(x Addr, a ctl.Addr) int {
		return cmp.Or(cmp.Compare(x.Addr.Stack, a.Stack), x.Addr.IP.Compare(a.IP))
	})
	if !ok {
		return Addr{}, false
	}
	return s.Addrs[i], true
}

// InView says whether node is in the state's view.
func (s *State) InView(node uint64) bool { return slices.Contains(s.Members, node) }

// observed is the machine the service registers: ctl's, with a change
// count and wake-ups after every entry that changes it. The log goroutine
// calls it; State may be called from any goroutine.
type observed struct {
	m *ctl.Machine

	// mu is held for writing while the log goroutine applies, and for
	// reading while State reads the machine, so a State is never torn
	// between two entries.
	mu sync.RWMutex

	wmu      sync.Mutex // guards gen, cached, watchers
	gen      uint64
	cached   *State
	watchers map[chan struct{}]struct{}
}

var (
	_ rsm.Machine      = (*observed)(nil)
	_ rsm.ViewObserver = (*observed)(nil)
	_ rsm.Loader       = (*observed)(nil)
	_ Source           = (*observed)(nil)
)

func newObserved(m *ctl.Machine) *observed {
	return &observed{m: m, watchers: map[chan struct{}]struct{}{}}
}

func (o *observed) ID() rsm.ID { return o.m.ID() }

func (o *observed) Apply(tx rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, err := o.m.Apply(tx, e)
	// A refusal changes nothing: only an OK reply wakes the data path.
	if rep, perr := ctl.ParseReply(r.Reply); err == nil && perr == nil && rep.Code == ctl.OK {
		o.changed()
	}
	return r, err
}

func (o *observed) ApplyView(tx rsm.Tx, e rsm.Entry, v *events.Membership) (rsm.Result, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	r, err := o.m.ApplyView(tx, e, v)
	if err == nil {
		o.changed()
	}
	return r, err
}

func (o *observed) Snapshot(tx rsm.Tx, w io.Writer) error { return o.m.Snapshot(tx, w) }

func (o *observed) Restore(tx rsm.Tx, r io.Reader) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.m.Restore(tx, r)
	o.changed()
	return err
}

func (o *observed) Load(tx rsm.Tx) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	err := o.m.Load(tx)
	o.changed()
	return err
}

// changed counts a change and wakes every watcher (the caller holds mu,
// so a State built after it sees the change) without blocking the log
// goroutine: a watcher that has not read the last wake-up gets no
// second one, and reads the latest State when it does.
func (o *observed) changed() {
	o.wmu.Lock()
	defer o.wmu.Unlock()
	o.gen++
	o.cached = nil
	for ch := range o.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (o *observed) Watch() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	o.wmu.Lock()
	o.watchers[ch] = struct{}{}
	o.wmu.Unlock()
	return ch, func() {
		o.wmu.Lock()
		delete(o.watchers, ch)
		o.wmu.Unlock()
	}
}

func (o *observed) State() *State {
	o.wmu.Lock()
	if s := o.cached; s != nil {
		o.wmu.Unlock()
		return s
	}
	o.wmu.Unlock()
	o.mu.RLock()
	o.wmu.Lock()
	gen := o.gen
	o.wmu.Unlock()
	s := o.build(gen)
	o.mu.RUnlock()
	o.wmu.Lock()
	defer o.wmu.Unlock()
	if o.gen == gen {
		o.cached = s
	}
	return s
}

// build reads the machine; the caller holds mu for reading.
func (o *observed) build(gen uint64) *State {
	s := &State{Gen: gen, SPI: o.m.SPILeases()}
	s.View, s.Members = o.m.View()
	for _, ai := range o.m.Addrs() {
		a := Addr{AddrInfo: ai}
		type tk struct {
			proto uint8
			port  uint16
		}
		var keys []tk
		for _, l := range ai.Listeners {
			k := tk{l.Proto, l.Port}
			if ai.Policy == ctl.StickyWild {
				k.port = 0
			}
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(x, y tk) int { return cmp.Or(cmp.Compare(x.proto, y.proto), cmp.Compare(x.port, y.port)) })
		for _, k := range keys {
			// A sticky-wild table is asked for by any port; the machine
			// keys it by none.
			port := k.port
			if port == 0 {
				for _, l := range ai.Listeners {
					if l.Proto == k.proto {
						port = l.Port
						break
					}
				}
			}
			if t := o.m.Table(ai.Addr, k.proto, port); len(t) > 0 {
				a.Tables = append(a.Tables, Table{Proto: k.proto, Port: k.port, Buckets: t})
			}
		}
		s.Addrs = append(s.Addrs, a)
	}
	return s
}
