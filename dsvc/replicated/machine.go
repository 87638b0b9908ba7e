package replicated

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/rsm"
)

// Machine is the data-service machine (rsm.DataSvc). Apply, Snapshot,
// Restore and Load run on the node's goroutine; the reads may be called
// from any goroutine.
type Machine struct {
	// mu guards st: Apply, Load and Restore (one goroutine) write it under
	// the write lock; the reads hold the read lock. Apply reads st without
	// the lock: it is the only writer.
	mu sync.RWMutex
	st state
	// applied is the index of the last data-service entry applied since
	// the process started (0: none yet): the position a local read
	// reflects, reported with it.
	applied atomic.Uint64
}

// Applied returns the index of the last data-service entry this machine
// applied since the process started; the state reads return reflects it.
func (m *Machine) Applied() uint64 { return m.applied.Load() }

var (
	_ rsm.Machine = (*Machine)(nil)
	_ rsm.Loader  = (*Machine)(nil)
)

// state is the mirror of the machine's Tx.
type state struct {
	locs map[string]*location
}

type location struct {
	dt map[string]*dtTable
	dn map[string]*dnTable
}

type dtKey struct {
	key string
	typ dsvc.DTType
}

func cmpDT(a, b dtKey) int { return cmp.Or(strings.Compare(a.key, b.key), cmp.Compare(a.typ, b.typ)) }

// dtTable is a dhcptab container: records by (Key, Type), and the keys in
// that order.
type dtTable struct {
	id    uint64
	recs  map[dtKey]*dsvc.DTRecord
	order []dtKey
}

// dnTable is a network container: records by CIP, the CIPs in order, and
// per client id the CIPs that have it, in order.
type dnTable struct {
	id    uint64
	net   netip.Prefix
	recs  map[uint32]*dsvc.DNRecord
	order []uint32
	byCID map[string]*keySet
}

func newState() state { return state{locs: map[string]*location{}} }

func newLocation() *location {
	return &location{dt: map[string]*dtTable{}, dn: map[string]*dnTable{}}
}

func newDT(id uint64) *dtTable { return &dtTable{id: id, recs: map[dtKey]*dsvc.DTRecord{}} }

func newDN(id uint64, net netip.Prefix) *dnTable {
	return &dnTable{id: id, net: net, recs: map[uint32]*dsvc.DNRecord{}, byCID: map[string]*keySet{}}
}

func ip4(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// insertSorted inserts v into sorted s if absent.
func insertSorted[T any](s []T, v T, c func(a, b T) int) []T {
	i, found := slices.BinarySearchFunc(s, v, c)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

func removeSorted[T any](s []T, v T, c func(a, b T) int) []T {
	if i, found := slices.BinarySearchFunc(s, v, c); found {
		return slices.Delete(s, i, i+1)
	}
	return s
}

func (t *dtTable) put(r *dsvc.DTRecord, bulk bool) {
	k := dtKey{r.Key, r.Type}
	if _, ok := t.recs[k]; !ok && !bulk {
		t.order = insertSorted(t.order, k, cmpDT)
	}
	t.recs[k] = r
}

func (t *dtTable) del(k dtKey) {
	delete(t.recs, k)
	t.order = removeSorted(t.order, k, cmpDT)
}

// reorder rebuilds order after bulk puts.
func (t *dtTable) reorder() { t.order = slices.SortedFunc(maps.Keys(t.recs), cmpDT) }

func (t *dnTable) put(r *dsvc.DNRecord, bulk bool) {
	k := ip4(r.CIP)
	old, ok := t.recs[k]
	if ok && !bulk {
		t.unindex(old, k)
	} else if !ok && !bulk {
		t.order = insertSorted(t.order, k, cmp.Compare[uint32])
	}
	t.recs[k] = r
	if !bulk {
		ks := t.byCID[string(r.CID)]
		if ks == nil {
			ks = &keySet{}
			t.byCID[string(r.CID)] = ks
		}
		ks.insert(k)
	}
}

func (t *dnTable) unindex(r *dsvc.DNRecord, k uint32) {
	cid := string(r.CID)
	if ks := t.byCID[cid]; ks != nil {
		if ks.remove(k); ks.len() == 0 {
			delete(t.byCID, cid)
		}
	}
}

func (t *dnTable) del(k uint32) {
	if old, ok := t.recs[k]; ok {
		t.unindex(old, k)
		delete(t.recs, k)
		t.order = removeSorted(t.order, k, cmp.Compare[uint32])
	}
}

// reorder rebuilds order and the client id index after bulk puts.
func (t *dnTable) reorder() {
	t.order = slices.Sorted(maps.Keys(t.recs))
	t.byCID = map[string]*keySet{}
	for _, k := range t.order {
		cid := string(t.recs[k].CID)
		ks := t.byCID[cid]
		if ks == nil {
			ks = &keySet{}
			t.byCID[cid] = ks
		}
		ks.keys = append(ks.keys, k)
	}
}

// New returns a machine with no state; Load or Restore gives it the log's.
func New() *Machine { return &Machine{st: newState()} }

// ID implements rsm.Machine.
func (*Machine) ID() rsm.ID { return rsm.DataSvc }

func refuse(c dsvc.Code, format string, args ...any) Reply {
	return Reply{Code: c, Message: truncate(fmt.Sprintf(format, args...), MaxMessage)}
}

func refuseErr(err error) Reply {
	var detail string
	if e, ok := err.(*dsvc.Error); ok {
		detail = e.Detail
	} else {
		detail = err.Error()
	}
	return refuse(dsvc.CodeOf(err), "%s", detail)
}

// checkName refuses an empty name, one with a NUL or not UTF-8; lengths
// are the parser's.
func checkName(what, s string) error {
	switch {
	case s == "":
		return dsvc.Errorf(dsvc.CodeInval, "empty %s", what)
	case strings.IndexByte(s, 0) >= 0:
		return dsvc.Errorf(dsvc.CodeInval, "%s has a NUL byte", what)
	case !utf8.ValidString(s):
		return dsvc.Errorf(dsvc.CodeInval, "%s is not UTF-8", what)
	}
	return nil
}

// checkNet refuses a network that is not an IPv4 prefix of 1..32 bits
// without host bits.
func checkNet(p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() < 1 || p.Masked() != p {
		return dsvc.Errorf(dsvc.CodeInval, "network %v is not an IPv4 network of 1..32 bits without host bits", p)
	}
	return nil
}

// Apply implements rsm.Machine. A command that does not parse, or that the
// state refuses, is answered with a code in the Reply; the error is only a
// failed Tx.
func (m *Machine) Apply(tx rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	c, err := ParseCommand(e.Cmd)
	var r Reply
	if err != nil {
		r = refuse(dsvc.CodeInval, "%v", err)
	} else if r, err = m.apply(tx, e.Index, &c); err != nil {
		return rsm.Result{}, fmt.Errorf("replicated: entry %d (%v): %w", e.Index, c.Op, err)
	}
	m.applied.Store(e.Index)
	return rsm.Result{Reply: AppendReply(nil, &r)}, nil
}

// apply runs one command; its error is a failed Tx.
func (m *Machine) apply(tx rsm.Tx, index uint64, c *Command) (Reply, error) {
	if err := checkName("location", c.Loc); err != nil {
		return refuseErr(err), nil
	}
	loc := m.st.locs[c.Loc]
	if c.Op == OpMkLoc {
		if loc != nil {
			return refuse(dsvc.CodeExists, "location %q exists", c.Loc), nil
		}
		if err := tx.Put(locKey(c.Loc), []byte{1}); err != nil {
			return Reply{}, err
		}
		m.mu.Lock()
		m.st.locs[c.Loc] = newLocation()
		m.mu.Unlock()
		return Reply{}, nil
	}
	if loc == nil {
		return refuse(dsvc.CodeNoLocation, "location %q does not exist", c.Loc), nil
	}
	if err := checkName("container name", c.Container); err != nil {
		return refuseErr(err), nil
	}
	switch c.Op {
	case OpCreate:
		return m.create(tx, index, loc, c)
	case OpRemove:
		return m.remove(tx, loc, c)
	}
	if c.Kind == dsvc.DHCPTab {
		t := loc.dt[c.Container]
		if t == nil {
			return refuse(dsvc.CodeNoTable, "no dhcptab container %q", c.Container), nil
		}
		return m.applyDT(tx, t, c)
	}
	t := loc.dn[c.Container]
	if t == nil {
		return refuse(dsvc.CodeNoTable, "no network container %q", c.Container), nil
	}
	return m.applyDN(tx, t, c)
}

func (m *Machine) create(tx rsm.Tx, index uint64, loc *location, c *Command) (Reply, error) {
	var exists bool
	if c.Kind == dsvc.DHCPTab {
		_, exists = loc.dt[c.Container]
	} else {
		if err := checkNet(c.Prefix); err != nil {
			return refuseErr(err), nil
		}
		_, exists = loc.dn[c.Container]
	}
	if exists {
		return refuse(dsvc.CodeTableExists, "container %q exists", c.Container), nil
	}
	// The entry's index names the container's records: unique, and the
	// same on every node.
	if err := tx.Put(containerKey(c.Loc, c.Kind, c.Container), containerValue(index, c.Prefix)); err != nil {
		return Reply{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.Kind == dsvc.DHCPTab {
		loc.dt[c.Container] = newDT(index)
		return Reply{}, nil
	}
	loc.dn[c.Container] = newDN(index, c.Prefix)
	return Reply{Prefix: c.Prefix}, nil
}

func (m *Machine) remove(tx rsm.Tx, loc *location, c *Command) (Reply, error) {
	var keys [][]byte
	if c.Kind == dsvc.DHCPTab {
		t := loc.dt[c.Container]
		if t == nil {
			return refuse(dsvc.CodeNoTable, "no dhcptab container %q", c.Container), nil
		}
		for _, k := range t.order {
			keys = append(keys, dtRecKey(t.id, k.key, k.typ))
		}
	} else {
		t := loc.dn[c.Container]
		if t == nil {
			return refuse(dsvc.CodeNoTable, "no network container %q", c.Container), nil
		}
		for _, k := range t.order {
			keys = append(keys, dnRecKey(t.id, k))
		}
	}
	for _, k := range keys {
		if err := tx.Delete(k); err != nil {
			return Reply{}, err
		}
	}
	if err := tx.Delete(containerKey(c.Loc, c.Kind, c.Container)); err != nil {
		return Reply{}, err
	}
	m.mu.Lock()
	if c.Kind == dsvc.DHCPTab {
		delete(loc.dt, c.Container)
	} else {
		delete(loc.dn, c.Container)
	}
	m.mu.Unlock()
	return Reply{}, nil
}

func (m *Machine) applyDT(tx rsm.Tx, t *dtTable, c *Command) (Reply, error) {
	for i := range c.DT {
		full := c.Op != OpDelete && !(c.Op == OpModify && i == 0)
		if err := dsvc.ValidateDT(&c.DT[i], full); err != nil {
			return refuseErr(err), nil
		}
	}
	put := func(r *dsvc.DTRecord) error { return tx.Put(dtRecKey(t.id, r.Key, r.Type), dtRecValue(r)) }
	switch c.Op {
	case OpAdd:
		r := c.DT[0]
		if _, ok := t.recs[dtKey{r.Key, r.Type}]; ok {
			return refuse(dsvc.CodeExists, "%c %q is stored", r.Type, r.Key), nil
		}
		r.Sig = dsvc.NewSig(c.Gen)
		if err := put(&r); err != nil {
			return Reply{}, err
		}
		m.mu.Lock()
		t.put(&r, false)
		m.mu.Unlock()
		return Reply{Sig: r.Sig}, nil
	case OpModify:
		orig, r := &c.DT[0], c.DT[1]
		ok, nk := dtKey{orig.Key, orig.Type}, dtKey{r.Key, r.Type}
		old := t.recs[ok]
		switch {
		case old == nil:
			return refuse(dsvc.CodeNoEnt, "%c %q is not stored", orig.Type, orig.Key), nil
		case old.Sig != orig.Sig:
			return refuse(dsvc.CodeCollision, "%c %q changed since it was read", orig.Type, orig.Key), nil
		}
		if nk != ok {
			if t.recs[nk] != nil {
				return refuse(dsvc.CodeExists, "%c %q is stored", r.Type, r.Key), nil
			}
			if err := tx.Delete(dtRecKey(t.id, ok.key, ok.typ)); err != nil {
				return Reply{}, err
			}
		}
		r.Sig = dsvc.NextSig(old.Sig)
		if err := put(&r); err != nil {
			return Reply{}, err
		}
		m.mu.Lock()
		if nk != ok {
			t.del(ok)
		}
		t.put(&r, false)
		m.mu.Unlock()
		return Reply{Sig: r.Sig}, nil
	case OpDelete:
		r := &c.DT[0]
		k := dtKey{r.Key, r.Type}
		old := t.recs[k]
		switch {
		case old == nil:
			return refuse(dsvc.CodeNoEnt, "%c %q is not stored", r.Type, r.Key), nil
		case r.Sig != 0 && old.Sig != r.Sig:
			return refuse(dsvc.CodeCollision, "%c %q changed since it was read", r.Type, r.Key), nil
		}
		if err := tx.Delete(dtRecKey(t.id, k.key, k.typ)); err != nil {
			return Reply{}, err
		}
		m.mu.Lock()
		t.del(k)
		m.mu.Unlock()
		return Reply{}, nil
	}
	// IMPORT: every record with its signature; like the other modules, a
	// key stored already (or twice in the command) refuses the whole
	// command, so nothing is written.
	seen := make(map[dtKey]bool, len(c.DT))
	for i := range c.DT {
		k := dtKey{c.DT[i].Key, c.DT[i].Type}
		if _, ok := t.recs[k]; ok || seen[k] {
			return refuse(dsvc.CodeExists, "%c %q is stored", k.typ, k.key), nil
		}
		seen[k] = true
	}
	rs := make([]*dsvc.DTRecord, len(c.DT))
	for i := range c.DT {
		r := c.DT[i]
		if r.Sig == 0 {
			r.Sig = dsvc.NewSig(c.Gen)
		}
		if err := put(&r); err != nil {
			return Reply{}, err
		}
		rs[i] = &r
	}
	m.mu.Lock()
	for _, r := range rs {
		t.put(r, true)
	}
	t.reorder()
	m.mu.Unlock()
	return Reply{}, nil
}

func (m *Machine) applyDN(tx rsm.Tx, t *dnTable, c *Command) (Reply, error) {
	for i := range c.DN {
		full := c.Op != OpDelete && !(c.Op == OpModify && i == 0)
		if err := dsvc.ValidateDN(&c.DN[i], t.net, full); err != nil {
			return refuseErr(err), nil
		}
	}
	put := func(r *dsvc.DNRecord) error { return tx.Put(dnRecKey(t.id, ip4(r.CIP)), dnRecValue(r)) }
	switch c.Op {
	case OpAdd:
		r := c.DN[0]
		if t.recs[ip4(r.CIP)] != nil {
			return refuse(dsvc.CodeExists, "client ip %v is stored", r.CIP), nil
		}
		r.Sig = dsvc.NewSig(c.Gen)
		if err := put(&r); err != nil {
			return Reply{}, err
		}
		m.mu.Lock()
		t.put(&r, false)
		m.mu.Unlock()
		return Reply{Sig: r.Sig}, nil
	case OpModify:
		orig, r := &c.DN[0], c.DN[1]
		ok, nk := ip4(orig.CIP), ip4(r.CIP)
		old := t.recs[ok]
		switch {
		case old == nil:
			return refuse(dsvc.CodeNoEnt, "client ip %v is not stored", orig.CIP), nil
		case old.Sig != orig.Sig:
			return refuse(dsvc.CodeCollision, "client ip %v changed since it was read", orig.CIP), nil
		}
		if nk != ok {
			if t.recs[nk] != nil {
				return refuse(dsvc.CodeExists, "client ip %v is stored", r.CIP), nil
			}
			if err := tx.Delete(dnRecKey(t.id, ok)); err != nil {
				return Reply{}, err
			}
		}
		r.Sig = dsvc.NextSig(old.Sig)
		if err := put(&r); err != nil {
			return Reply{}, err
		}
		m.mu.Lock()
		if nk != ok {
			t.del(ok)
		}
		t.put(&r, false)
		m.mu.Unlock()
		return Reply{Sig: r.Sig}, nil
	case OpDelete:
		r := &c.DN[0]
		k := ip4(r.CIP)
		old := t.recs[k]
		switch {
		case old == nil:
			return refuse(dsvc.CodeNoEnt, "client ip %v is not stored", r.CIP), nil
		case r.Sig != 0 && old.Sig != r.Sig:
			return refuse(dsvc.CodeCollision, "client ip %v changed since it was read", r.CIP), nil
		}
		if err := tx.Delete(dnRecKey(t.id, k)); err != nil {
			return Reply{}, err
		}
		m.mu.Lock()
		t.del(k)
		m.mu.Unlock()
		return Reply{}, nil
	}
	// IMPORT, as for the dhcptab: a stored address refuses the command.
	seen := make(map[uint32]bool, len(c.DN))
	for i := range c.DN {
		k := ip4(c.DN[i].CIP)
		if t.recs[k] != nil || seen[k] {
			return refuse(dsvc.CodeExists, "client ip %v is stored", c.DN[i].CIP), nil
		}
		seen[k] = true
	}
	rs := make([]*dsvc.DNRecord, len(c.DN))
	for i := range c.DN {
		r := c.DN[i]
		if r.Sig == 0 {
			r.Sig = dsvc.NewSig(c.Gen)
		}
		if err := put(&r); err != nil {
			return Reply{}, err
		}
		rs[i] = &r
	}
	m.mu.Lock()
	for _, r := range rs {
		t.put(r, true)
	}
	t.reorder()
	m.mu.Unlock()
	return Reply{}, nil
}

// Reads. They return *dsvc.Error failures with Op and Container set.

func opErr(op, container string, err *dsvc.Error) error {
	err.Op, err.Container = op, container
	return err
}

func (m *Machine) locLocked(op, loc string) (*location, error) {
	l := m.st.locs[loc]
	if l == nil {
		return nil, opErr(op, "", dsvc.Errorf(dsvc.CodeNoLocation, "location %q", loc))
	}
	return l, nil
}

// Status returns nil if location loc was made, else ErrNoLocation.
func (m *Machine) Status(loc string) error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	_, err := m.locLocked("status", loc)
	return err
}

// List returns the names of loc's containers of kind, sorted.
func (m *Machine) List(loc string, kind dsvc.Kind) ([]string, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, err := m.locLocked("list", loc)
	if err != nil {
		return nil, err
	}
	switch kind {
	case dsvc.DHCPTab:
		return slices.Sorted(maps.Keys(l.dt)), nil
	case dsvc.Network:
		return slices.Sorted(maps.Keys(l.dn)), nil
	}
	return nil, opErr("list", "", dsvc.Errorf(dsvc.CodeInval, "container kind %d", kind))
}

// Container returns the network of a network container (the zero Prefix
// for the dhcptab), ErrNoTable if it does not exist.
func (m *Machine) Container(loc string, kind dsvc.Kind, name string) (netip.Prefix, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l, err := m.locLocked("open", loc)
	if err != nil {
		return netip.Prefix{}, err
	}
	switch kind {
	case dsvc.DHCPTab:
		if l.dt[name] != nil {
			return netip.Prefix{}, nil
		}
	case dsvc.Network:
		if t := l.dn[name]; t != nil {
			return t.net, nil
		}
	default:
		return netip.Prefix{}, opErr("open", name, dsvc.Errorf(dsvc.CodeInval, "container kind %d", kind))
	}
	return netip.Prefix{}, opErr("open", name, dsvc.Errorf(dsvc.CodeNoTable, "no such container"))
}

func checkQuery(op, name string, q, all dsvc.Query, hasTarget bool) error {
	if !q.Valid(all) {
		return opErr(op, name, dsvc.Errorf(dsvc.CodeInval, "query %#08x uses bits outside %#04x", uint32(q), uint32(all)))
	}
	if q&all != 0 && !hasTarget {
		return opErr(op, name, dsvc.Errorf(dsvc.CodeInval, "query selects fields but has no target record"))
	}
	return nil
}

func (m *Machine) dtLocked(op, loc, name string, q dsvc.Query, target *dsvc.DTRecord) (*dtTable, error) {
	if err := checkQuery(op, name, q, dsvc.DTQAll, target != nil); err != nil {
		return nil, err
	}
	l, err := m.locLocked(op, loc)
	if err != nil {
		return nil, err
	}
	t := l.dt[name]
	if t == nil {
		return nil, opErr(op, name, dsvc.Errorf(dsvc.CodeNoTable, "no such container"))
	}
	return t, nil
}

// scanDT calls fn with the records matching q against target, in (Key,
// Type) order, until it returns false.
func (t *dtTable) scan(q dsvc.Query, target *dsvc.DTRecord, fn func(*dsvc.DTRecord) bool) {
	if target == nil {
		target = &dsvc.DTRecord{}
	}
	if q.IsEq(dsvc.DTQKey) {
		for _, typ := range []dsvc.DTType{dsvc.DTMacro, dsvc.DTSymbol} { // 'm' < 's'
			if r := t.recs[dtKey{target.Key, typ}]; r != nil && dsvc.MatchDT(q, r, target) && !fn(r) {
				return
			}
		}
		return
	}
	for _, k := range t.order {
		if r := t.recs[k]; dsvc.MatchDT(q, r, target) && !fn(r) {
			return
		}
	}
}

// LookupDT returns at most count records (count < 0: all) of dhcptab
// container name matching q against target, in (Key, Type) order.
func (m *Machine) LookupDT(loc, name string, q dsvc.Query, count int, target *dsvc.DTRecord) ([]dsvc.DTRecord, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, err := m.dtLocked("lookup", loc, name, q, target)
	if err != nil || count == 0 {
		return nil, err
	}
	var out []dsvc.DTRecord
	t.scan(q, target, func(r *dsvc.DTRecord) bool {
		out = append(out, *r)
		return count < 0 || len(out) < count
	})
	return out, nil
}

// CountDT returns how many records of dhcptab container name match q
// against target.
func (m *Machine) CountDT(loc, name string, q dsvc.Query, target *dsvc.DTRecord) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, err := m.dtLocked("count", loc, name, q, target)
	if err != nil {
		return 0, err
	}
	if q&dsvc.DTQAll == 0 {
		return len(t.recs), nil
	}
	n := 0
	t.scan(q, target, func(*dsvc.DTRecord) bool { n++; return true })
	return n, nil
}

func (m *Machine) dnLocked(op, loc, name string, q dsvc.Query, target *dsvc.DNRecord) (*dnTable, error) {
	if err := checkQuery(op, name, q, dsvc.DNQAll, target != nil); err != nil {
		return nil, err
	}
	l, err := m.locLocked(op, loc)
	if err != nil {
		return nil, err
	}
	t := l.dn[name]
	if t == nil {
		return nil, opErr(op, name, dsvc.Errorf(dsvc.CodeNoTable, "no such container"))
	}
	return t, nil
}

// scan calls fn with the records matching q against target, in CIP order,
// until it returns false: a map hit for CIP equal, the client id index for
// CID equal, else every record.
func (t *dnTable) scan(q dsvc.Query, target *dsvc.DNRecord, fn func(*dsvc.DNRecord) bool) {
	if target == nil {
		target = &dsvc.DNRecord{}
	}
	switch {
	case q.IsEq(dsvc.DNQCIP):
		if !target.CIP.Is4() {
			return
		}
		if r := t.recs[ip4(target.CIP)]; r != nil && dsvc.MatchDN(q, r, target) {
			fn(r)
		}
		return
	case q.IsEq(dsvc.DNQCID):
		if ks := t.byCID[string(target.CID)]; ks != nil {
			ks.each(func(k uint32) bool {
				r := t.recs[k]
				return !dsvc.MatchDN(q, r, target) || fn(r)
			})
		}
		return
	}
	for _, k := range t.order {
		if r := t.recs[k]; dsvc.MatchDN(q, r, target) && !fn(r) {
			return
		}
	}
}

// LookupDN returns at most count records (count < 0: all) of network
// container name matching q against target, in CIP order.
func (m *Machine) LookupDN(loc, name string, q dsvc.Query, count int, target *dsvc.DNRecord) ([]dsvc.DNRecord, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, err := m.dnLocked("lookup", loc, name, q, target)
	if err != nil || count == 0 {
		return nil, err
	}
	var out []dsvc.DNRecord
	t.scan(q, target, func(r *dsvc.DNRecord) bool {
		c := *r
		c.CID = bytes.Clone(r.CID) // the caller may change it
		out = append(out, c)
		return count < 0 || len(out) < count
	})
	return out, nil
}

// CountDN returns how many records of network container name match q
// against target.
func (m *Machine) CountDN(loc, name string, q dsvc.Query, target *dsvc.DNRecord) (int, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, err := m.dnLocked("count", loc, name, q, target)
	if err != nil {
		return 0, err
	}
	if q&dsvc.DNQAll == 0 {
		return len(t.recs), nil
	}
	n := 0
	t.scan(q, target, func(*dsvc.DNRecord) bool { n++; return true })
	return n, nil
}
