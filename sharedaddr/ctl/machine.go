package ctl

import (
	"cmp"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
)

// Machine is the shared-address machine (rsm.SharedAddr). Apply,
// ApplyView, Snapshot, Restore and Load run on the node's log goroutine;
// the queries (Owner, Table, Lookup, Addrs, SPILeases, View) may be
// called from any goroutine.
type Machine struct {
	log *slog.Logger
	// tableSize is the number of buckets of every dispatch table.
	tableSize int

	mu sync.Mutex // guards st and tables: the log goroutine writes, the queries read
	st state
	// tables caches the derived dispatch tables; any change of st clears
	// it, so a cached table is always the one st gives.
	tables map[tableKey][]uint64
	// exceptChanges counts the exceptions this machine's entries added,
	// moved to another node or removed (ExceptionChanges); local, not
	// replicated state.
	exceptChanges uint64
}

var (
	_ rsm.Machine      = (*Machine)(nil)
	_ rsm.ViewObserver = (*Machine)(nil)
	_ rsm.Loader       = (*Machine)(nil)
)

// TableSize is the default number of buckets of a dispatch table: a prime
// above 100 times any cluster size corral expects (Maglev's rule), so a
// node's share is within 1/M of its weight's.
const TableSize = 65537

// Options configure a Machine.
type Options struct {
	// TableSize is the number of buckets of every dispatch table, rounded
	// up to a prime (Build's permutations need one); 0 means TableSize.
	// Every node of a cluster must use the same.
	TableSize int
}

// NewMachine returns a machine with no state; Load or Restore gives it
// the log's.
func NewMachine(log *slog.Logger, o Options) *Machine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.TableSize == 0 {
		o.TableSize = TableSize
	}
	o.TableSize = nextPrime(o.TableSize)
	return &Machine{log: log.With("subsystem", "sharedaddr"), tableSize: o.TableSize, st: newState(), tables: map[tableKey][]uint64{}}
}

// ID implements rsm.Machine.
func (*Machine) ID() rsm.ID { return rsm.SharedAddr }

// state is the mirror of the machine's Tx.
type state struct {
	view      view
	addrs     map[Addr]*addrState
	listeners map[Listener]struct{}
	leases    map[leaseKey]uint64 // → node
	// gens is each address's table generation (absent: 0).
	gens map[Addr]uint64
	// reports is, per address and node, the generation of the node's
	// last complete EXCEPT.
	reports map[reportKey]uint64
	// excepts sends single flows of an address to a node (→ node);
	// nexcept counts them per address, for the bound.
	excepts map[exceptKey]uint64
	nexcept map[Addr]int
	// owners is each address's recorded owner; an address without one
	// (state version 2 wrote) is owned by the oldest member.
	owners map[Addr]uint64
}

type reportKey struct {
	addr Addr
	node uint64
}

type exceptKey struct {
	addr Addr
	flow Flow
}

// view is the last NEWVIEW's members, oldest first (BornOn, ID).
type view struct {
	instance uint64
	members  []member
}

type member struct{ id, bornOn uint64 }

func (v *view) has(node uint64) bool {
	return slices.ContainsFunc(v.members, func(m member) bool { return m.id == node })
}

type addrState struct {
	policy   Policy
	affinity time.Duration
	weights  []Weight // sorted by node
}

// Listener is one node listening on a port of a shared address.
type Listener struct {
	Addr  Addr
	Proto uint8
	Port  uint16
	Node  uint64
}

type leaseKey struct {
	kind  Kind
	addr  Addr // Stack only for SPI
	proto uint8
	index uint16
}

func newState() state {
	return state{addrs: map[Addr]*addrState{}, listeners: map[Listener]struct{}{}, leases: map[leaseKey]uint64{},
		gens: map[Addr]uint64{}, reports: map[reportKey]uint64{}, excepts: map[exceptKey]uint64{}, nexcept: map[Addr]int{}, owners: map[Addr]uint64{}}
}

func refuse(code Code, format string, args ...any) Reply {
	return Reply{Code: code, Text: fmt.Sprintf(format, args...)}
}

// Apply implements rsm.Machine: it applies one command and answers it.
func (m *Machine) Apply(tx rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	c, err := ParseCmd(e.Cmd)
	if err != nil {
		return rsm.Result{Reply: AppendReply(nil, refuse(Malformed, "%v", err))}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r, err := m.apply(tx, &c)
	if err != nil {
		return rsm.Result{}, fmt.Errorf("sharedaddr: entry %d (%v): %w", e.Index, c.Op, err)
	}
	if r.Code == OK {
		clear(m.tables)
	}
	return rsm.Result{Reply: AppendReply(nil, r)}, nil
}

// apply applies c; its error is a failed Tx, a refusal is its Reply.
func (m *Machine) apply(tx rsm.Tx, c *Cmd) (Reply, error) {
	st := &m.st
	if c.Kind != SPI || (c.Op != OpLease && c.Op != OpRelease) {
		if !c.Addr.IP.IsValid() {
			return refuse(BadField, "%v: no address", c.Op), nil
		}
		if a := c.Addr.IP; a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			return refuse(BadField, "%v: %v cannot be shared", c.Op, a), nil
		}
	}
	as := st.addrs[c.Addr]
	switch c.Op {
	case OpAdd:
		switch {
		case as != nil && !c.Replace:
			return refuse(Exists, "ADD: %v exists", c.Addr), nil
		case c.Policy < Weighted || c.Policy > StickyWild:
			return refuse(BadField, "ADD: policy %d", c.Policy), nil
		case len(c.Weights) > MaxWeights:
			return refuse(BadField, "ADD: %d weights, limit %d", len(c.Weights), MaxWeights), nil
		}
		for _, w := range c.Weights {
			if w.Weight > MaxWeight {
				return refuse(BadField, "ADD: weight %d of node %d above %d", w.Weight, w.Node, MaxWeight), nil
			}
		}
		isNew := as == nil
		as = &addrState{policy: c.Policy, affinity: c.Affinity, weights: slices.Clone(c.Weights)}
		if err := tx.Put(addrKey(c.Addr), addrValue(as)); err != nil {
			return Reply{}, err
		}
		st.addrs[c.Addr] = as
		// A replace keeps the owner: a weight change moves no ARP.
		if isNew {
			if err := m.setOwner(tx, c.Addr, m.chooseOwner(c.Addr, m.ownerLoad(c.Addr))); err != nil {
				return Reply{}, err
			}
		}
		// Every ADD is a new generation, even one that leaves the
		// tables as they were: the nodes walk once more, harmlessly.
		return Reply{}, m.bumpGen(tx, c.Addr)
	case OpLease, OpRelease:
		return m.lease(tx, c, as)
	}
	if as == nil {
		return refuse(NoAddr, "%v: no address %v", c.Op, c.Addr), nil
	}
	switch c.Op {
	case OpExcept, OpUnexcept:
		return m.except(tx, c)
	case OpListen, OpUnlisten:
		before := m.tableInputs(c.Addr)
		r, err := m.listen(tx, c)
		if err != nil || r.Code != OK {
			return r, err
		}
		if !equalInputs(before, m.tableInputs(c.Addr)) {
			return r, m.bumpGen(tx, c.Addr)
		}
		return r, nil
	}
	switch c.Op {
	case OpDel:
		for _, l := range m.sortedListeners(func(l Listener) bool { return l.Addr == c.Addr }) {
			if err := m.unlisten(tx, l); err != nil {
				return Reply{}, err
			}
		}
		for _, k := range m.sortedLeases(func(k leaseKey, _ uint64) bool { return k.kind != SPI && k.addr == c.Addr }) {
			if err := m.release(tx, k); err != nil {
				return Reply{}, err
			}
		}
		if err := m.dropExcepts(tx, func(k exceptKey, _ uint64) bool { return k.addr == c.Addr },
			func(k reportKey) bool { return k.addr == c.Addr }); err != nil {
			return Reply{}, err
		}
		if err := tx.Delete(genKey(c.Addr)); err != nil {
			return Reply{}, err
		}
		delete(st.gens, c.Addr)
		if err := m.setOwner(tx, c.Addr, 0); err != nil {
			return Reply{}, err
		}
		if err := tx.Delete(addrKey(c.Addr)); err != nil {
			return Reply{}, err
		}
		delete(st.addrs, c.Addr)
		return Reply{}, nil
	}
	return refuse(BadField, "unknown op %d", c.Op), nil
}

// listen applies LISTEN and UNLISTEN of an address that exists.
func (m *Machine) listen(tx rsm.Tx, c *Cmd) (Reply, error) {
	st := &m.st
	switch c.Op {
	case OpListen, OpUnlisten:
		if c.Proto != TCP && c.Proto != UDP {
			return refuse(BadField, "%v: protocol %d", c.Op, c.Proto), nil
		}
		if c.Port == 0 {
			return refuse(BadField, "%v: port 0", c.Op), nil
		}
		l := Listener{Addr: c.Addr, Proto: c.Proto, Port: c.Port, Node: c.Node}
		_, have := st.listeners[l]
		if c.Op == OpUnlisten {
			if !have {
				return refuse(NotHeld, "UNLISTEN: node %d does not listen on %v %d/%d", c.Node, c.Addr, c.Port, c.Proto), nil
			}
			return Reply{}, m.unlisten(tx, l)
		}
		switch {
		case have:
			return refuse(Duplicate, "LISTEN: node %d listens on %v %d/%d already", c.Node, c.Addr, c.Port, c.Proto), nil
		case !st.view.has(c.Node):
			return refuse(NoNode, "LISTEN: node %d is not in view %d", c.Node, st.view.instance), nil
		}
		if err := tx.Put(listenerKey(l), []byte{0}); err != nil {
			return Reply{}, err
		}
		st.listeners[l] = struct{}{}
		return Reply{}, nil
	}
	return refuse(BadField, "unknown op %d", c.Op), nil
}

// lease applies LEASE and RELEASE.
func (m *Machine) lease(tx rsm.Tx, c *Cmd, as *addrState) (Reply, error) {
	st := &m.st
	k := leaseKey{kind: c.Kind, addr: c.Addr, proto: c.Proto}
	switch c.Kind {
	case Slice:
		if c.Proto != TCP && c.Proto != UDP {
			return refuse(BadField, "%v slice: protocol %d", c.Op, c.Proto), nil
		}
	case Ident:
		if c.Proto != 0 {
			return refuse(BadField, "%v ident: protocol %d (must be 0)", c.Op, c.Proto), nil
		}
	case SPI:
		if c.Proto != 0 || c.Addr.IP.IsValid() {
			return refuse(BadField, "%v spi: names an address or protocol", c.Op), nil
		}
	default:
		return refuse(BadField, "%v: kind %d", c.Op, c.Kind), nil
	}
	if c.Kind != SPI && as == nil {
		return refuse(NoAddr, "%v %v: no address %v", c.Op, c.Kind, c.Addr), nil
	}
	if c.Op == OpRelease {
		k.index = c.Index
		if n, ok := st.leases[k]; !ok || n != c.Node {
			return refuse(NotHeld, "RELEASE: node %d does not hold %v block %d", c.Node, c.Kind, c.Index), nil
		}
		return Reply{}, m.release(tx, k)
	}
	if !st.view.has(c.Node) {
		return refuse(NoNode, "LEASE: node %d is not in view %d", c.Node, st.view.instance), nil
	}
	// The lowest free block: deterministic, and a node that leaves gives
	// its blocks back to the bottom of the space.
	for i := range c.Kind.count() {
		k.index = uint16(i)
		if _, taken := st.leases[k]; taken {
			continue
		}
		if err := tx.Put(leaseTxKey(k), leaseValue(c.Node)); err != nil {
			return Reply{}, err
		}
		st.leases[k] = c.Node
		first, last := c.Kind.Range(k.index)
		return Reply{Index: k.index, First: first, Last: last}, nil
	}
	return refuse(Exhausted, "LEASE: all %d %v blocks of %v are leased", c.Kind.count(), c.Kind, c.Addr), nil
}

func (m *Machine) unlisten(tx rsm.Tx, l Listener) error {
	delete(m.st.listeners, l)
	return tx.Delete(listenerKey(l))
}

func (m *Machine) release(tx rsm.Tx, k leaseKey) error {
	delete(m.st.leases, k)
	return tx.Delete(leaseTxKey(k))
}

func (m *Machine) sortedListeners(keep func(Listener) bool) []Listener {
	var ls []Listener
	for l := range m.st.listeners {
		if keep(l) {
			ls = append(ls, l)
		}
	}
	slices.SortFunc(ls, cmpListener)
	return ls
}

func cmpListener(a, b Listener) int {
	return cmp.Or(cmpAddr(a.Addr, b.Addr), cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Node, b.Node))
}

func cmpAddr(a, b Addr) int { return cmp.Or(cmp.Compare(a.Stack, b.Stack), a.IP.Compare(b.IP)) }

func cmpLease(a, b leaseKey) int {
	return cmp.Or(cmp.Compare(a.kind, b.kind), cmpAddr(a.addr, b.addr), cmp.Compare(a.proto, b.proto), cmp.Compare(a.index, b.index))
}

func (m *Machine) sortedLeases(keep func(leaseKey, uint64) bool) []leaseKey {
	var ks []leaseKey
	for k, n := range m.st.leases {
		if keep(k, n) {
			ks = append(ks, k)
		}
	}
	slices.SortFunc(ks, cmpLease)
	return ks
}

// ApplyView implements rsm.ViewObserver: it records the view, gives the
// addresses of an owner that left to the members (reown), and releases
// every listener and lease of a node that is not in it.
func (m *Machine) ApplyView(tx rsm.Tx, e rsm.Entry, v *events.Membership) (rsm.Result, error) {
	nv := view{instance: v.Instance}
	for _, n := range v.Members {
		nv.members = append(nv.members, member{id: n.ID, bornOn: n.BornOn})
	}
	slices.SortFunc(nv.members, func(a, b member) int {
		return cmp.Or(cmp.Compare(a.bornOn, b.bornOn), cmp.Compare(a.id, b.id))
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.tables)
	if err := tx.Put(keyView, viewValue(nv)); err != nil {
		return rsm.Result{}, fmt.Errorf("sharedaddr: view of entry %d: %w", e.Index, err)
	}
	prev := m.st.view
	m.st.view = nv
	if err := m.reown(tx, prev); err != nil {
		return rsm.Result{}, fmt.Errorf("sharedaddr: view of entry %d: %w", e.Index, err)
	}
	before := map[Addr][]tableInput{}
	for a := range m.st.addrs {
		before[a] = m.tableInputs(a)
	}
	for _, l := range m.sortedListeners(func(l Listener) bool { return !nv.has(l.Node) }) {
		if err := m.unlisten(tx, l); err != nil {
			return rsm.Result{}, fmt.Errorf("sharedaddr: view of entry %d: %w", e.Index, err)
		}
	}
	for _, a := range slices.SortedFunc(maps.Keys(m.st.addrs), cmpAddr) {
		if !equalInputs(before[a], m.tableInputs(a)) {
			if err := m.bumpGen(tx, a); err != nil {
				return rsm.Result{}, fmt.Errorf("sharedaddr: view of entry %d: %w", e.Index, err)
			}
		}
	}
	if err := m.dropExcepts(tx, func(_ exceptKey, n uint64) bool { return !nv.has(n) },
		func(k reportKey) bool { return !nv.has(k.node) }); err != nil {
		return rsm.Result{}, fmt.Errorf("sharedaddr: view of entry %d: %w", e.Index, err)
	}
	for _, k := range m.sortedLeases(func(_ leaseKey, n uint64) bool { return !nv.has(n) }) {
		if err := m.release(tx, k); err != nil {
			return rsm.Result{}, fmt.Errorf("sharedaddr: view of entry %d: %w", e.Index, err)
		}
	}
	return rsm.Result{}, nil
}

// Owner returns the node that answers ARP for the address and steers its
// flows: the member recorded for it, chosen at ADD and again only when
// the recorded owner leaves the view (chooseOwner), so owners spread over
// the members and a join never moves an address. ok is false for an
// address that does not exist or an empty view.
func (m *Machine) Owner(a Addr) (node uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.st.addrs[a] == nil {
		return 0, false
	}
	node = m.ownerOf(a)
	return node, node != 0
}

// Lease is one leased block.
type Lease struct {
	Kind        Kind
	Stack       uint64
	Proto       uint8 // Slice only
	Index       uint16
	First, Last uint32
	Node        uint64
	// Holes are, for a slice, the ports of its block a node listens on
	// (of its protocol), sorted: they are not the slice's (Has, Ports).
	Holes []uint16
}

// AddrInfo is one address as `corral addr list` shows it.
type AddrInfo struct {
	Addr      Addr
	Policy    Policy
	Affinity  time.Duration
	Weights   []Weight
	Owner     uint64 // 0: no view
	Listeners []Listener
	Leases    []Lease // slices and ident blocks
	// Gen is the table generation; Reports, per node, the generation its
	// last complete EXCEPT was for; Exceptions, in flow order.
	Gen        uint64
	Reports    []Report
	Exceptions []Exception
}

// Addrs returns every address, in (stack, IP) order.
func (m *Machine) Addrs() []AddrInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []AddrInfo
	for _, a := range slices.SortedFunc(maps.Keys(m.st.addrs), cmpAddr) {
		as := m.st.addrs[a]
		ai := AddrInfo{Addr: a, Policy: as.policy, Affinity: as.affinity, Weights: slices.Clone(as.weights),
			Listeners: m.sortedListeners(func(l Listener) bool { return l.Addr == a }),
			Gen:       m.st.gens[a], Reports: m.reportsOf(a), Exceptions: m.exceptionsOf(a)}
		ai.Owner = m.ownerOf(a)
		for _, k := range m.sortedLeases(func(k leaseKey, _ uint64) bool { return k.kind != SPI && k.addr == a }) {
			ai.Leases = append(ai.Leases, m.leaseOf(k))
		}
		out = append(out, ai)
	}
	return out
}

func (m *Machine) leaseOf(k leaseKey) Lease {
	first, last := k.kind.Range(k.index)
	l := Lease{Kind: k.kind, Stack: k.addr.Stack, Proto: k.proto, Index: k.index, First: first, Last: last, Node: m.st.leases[k]}
	if k.kind == Slice {
		l.Holes = m.holes(k.addr, k.proto, first, last)
	}
	return l
}

// SPILeases returns the SPI blocks leased, in (stack, index) order.
func (m *Machine) SPILeases() []Lease {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Lease
	for _, k := range m.sortedLeases(func(k leaseKey, _ uint64) bool { return k.kind == SPI }) {
		out = append(out, m.leaseOf(k))
	}
	return out
}

// PortOwner returns the node holding the slice of the address's source
// ports that port falls in: where the owner routes a reply to that port
// (client side, issue 13 item 4). ok is false outside every leased slice,
// and for a port a node listens on (a hole: see Lease.Holes).
func (m *Machine) PortOwner(a Addr, proto uint8, port uint16) (node uint64, ok bool) {
	if port < SliceBase {
		return 0, false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.served(a, proto, port) {
		return 0, false
	}
	node, ok = m.st.leases[leaseKey{kind: Slice, addr: a, proto: proto, index: (port - SliceBase) / SliceSize}]
	return node, ok
}

// View returns the instance and the members (ids, oldest first) of the
// view the machine holds.
func (m *Machine) View() (instance uint64, members []uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mb := range m.st.view.members {
		members = append(members, mb.id)
	}
	return m.st.view.instance, members
}

type tableKey struct {
	addr  Addr
	proto uint8
	port  uint16 // 0 for sticky-wild: one table for every port
}

// Table returns the dispatch table of the address for flows to port:
// TableSize buckets, each the node a flow whose key hashes to it (Bucket)
// goes to. The nodes are those listening on the port (for sticky-wild, on
// any port of the protocol), with their weights (DefaultWeight if the
// address names none; weight 0 drains: no bucket). The table is shared:
// the caller must not modify it. nil if no node serves the port.
func (m *Machine) Table(a Addr, proto uint8, port uint16) []uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	as := m.st.addrs[a]
	if as == nil {
		return nil
	}
	k := tableKey{addr: a, proto: proto, port: port}
	if as.policy == StickyWild {
		k.port = 0
	}
	if t, ok := m.tables[k]; ok {
		return t
	}
	nodes := m.tableNodes(a, as, k)
	t := Build(nodes, m.tableSize)
	m.tables[k] = t
	return t
}

// tableNodes returns the nodes and weights table k is built over.
func (m *Machine) tableNodes(a Addr, as *addrState, k tableKey) []Weight {
	var nodes []Weight
	for _, l := range m.sortedListeners(func(l Listener) bool {
		return l.Addr == a && l.Proto == k.proto && (k.port == 0 || l.Port == k.port)
	}) {
		w := uint32(DefaultWeight)
		if i, ok := slices.BinarySearchFunc(as.weights, l.Node, func(w Weight, n uint64) int { return cmp.Compare(w.Node, n) }); ok {
			w = as.weights[i].Weight
		}
		if w > 0 {
			nodes = append(nodes, Weight{Node: l.Node, Weight: w})
		}
	}
	slices.SortFunc(nodes, func(a, b Weight) int { return cmp.Compare(a.Node, b.Node) })
	// Sticky-wild: a node listening on several ports counts once.
	return slices.CompactFunc(nodes, func(a, b Weight) bool { return a.Node == b.Node })
}

// Lookup returns the node a new flow from client to port of the address
// goes to, by the address's policy.
func (m *Machine) Lookup(a Addr, proto uint8, port uint16, client netip.AddrPort) (uint64, bool) {
	m.mu.Lock()
	as := m.st.addrs[a]
	m.mu.Unlock()
	if as == nil {
		return 0, false
	}
	t := m.Table(a, proto, port)
	if len(t) == 0 {
		return 0, false
	}
	return t[Bucket(as.policy, client, len(t))], true
}
