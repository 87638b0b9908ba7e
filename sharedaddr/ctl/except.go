package ctl

import (
	"cmp"
	"encoding/binary"
	"maps"
	"slices"

	"github.com/corralhq/corral/rsm"
)

// Exceptions: flows of an address that go to a node whatever their bucket
// (SPEC.md, "EXCEPT"). A table change moves buckets, and a held flow in a
// moved bucket would be reset by the node it now hashes to; the node that
// holds it says so through the log, so the owner, and any later owner,
// keeps it where it is.

// Exception is one flow of an address sent to Node.
type Exception struct {
	Flow
	Node uint64
}

// Report is the table generation a node's last complete EXCEPT of an
// address was for.
type Report struct {
	Node uint64
	Gen  uint64
}

// tableInput is what one table is built from; equal inputs, equal tables.
type tableInput struct {
	key   tableKey
	nodes []Weight
}

func equalInputs(a, b []tableInput) bool {
	return slices.EqualFunc(a, b, func(x, y tableInput) bool { return x.key == y.key && slices.Equal(x.nodes, y.nodes) })
}

// tableInputs returns the inputs of every table of the address, in key
// order: the generation moves when they do.
func (m *Machine) tableInputs(a Addr) []tableInput {
	as := m.st.addrs[a]
	if as == nil {
		return nil
	}
	var keys []tableKey
	for _, l := range m.sortedListeners(func(l Listener) bool { return l.Addr == a }) {
		k := tableKey{addr: a, proto: l.Proto, port: l.Port}
		if as.policy == StickyWild {
			k.port = 0
		}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	out := make([]tableInput, 0, len(keys))
	for _, k := range keys {
		if n := m.tableNodes(a, as, k); len(n) > 0 {
			out = append(out, tableInput{key: k, nodes: n})
		}
	}
	return out
}

func (m *Machine) bumpGen(tx rsm.Tx, a Addr) error {
	g := m.st.gens[a] + 1
	if err := tx.Put(genKey(a), binary.LittleEndian.AppendUint64(nil, g)); err != nil {
		return err
	}
	m.st.gens[a] = g
	return nil
}

// except applies EXCEPT and UNEXCEPT of an address that exists.
func (m *Machine) except(tx rsm.Tx, c *Cmd) (Reply, error) {
	st := &m.st
	for _, f := range c.Flows {
		if ip := f.Client.Addr(); !ip.IsValid() || (f.Proto != TCP && f.Proto != UDP) || f.Port == 0 {
			return refuse(BadField, "%v: flow %v", c.Op, f), nil
		}
	}
	if c.Op == OpUnexcept {
		// A flow the node does not hold is not refused: its exception
		// went with a view change or the address's replacement races.
		for _, f := range c.Flows {
			k := exceptKey{addr: c.Addr, flow: f}
			if n, ok := st.excepts[k]; ok && n == c.Node {
				if err := m.unexcept(tx, k); err != nil {
					return Reply{}, err
				}
			}
		}
		return Reply{}, nil
	}
	switch g := st.gens[c.Addr]; {
	case !st.view.has(c.Node):
		return refuse(NoNode, "EXCEPT: node %d is not in view %d", c.Node, st.view.instance), nil
	case c.Gen != g:
		return refuse(Stale, "EXCEPT: generation %d of %v is %d", c.Gen, c.Addr, g), nil
	}
	added := 0
	for _, f := range c.Flows {
		if _, ok := st.excepts[exceptKey{addr: c.Addr, flow: f}]; !ok {
			added++
		}
	}
	if n := st.nexcept[c.Addr] + added; n > MaxExceptions {
		return refuse(Full, "EXCEPT: %v would hold %d exceptions, limit %d", c.Addr, n, MaxExceptions), nil
	}
	for _, f := range c.Flows {
		// A flow named by another node moves: the node that says it
		// holds the flow last is where it lives now.
		k := exceptKey{addr: c.Addr, flow: f}
		prev, ok := st.excepts[k]
		if !ok {
			st.nexcept[c.Addr]++
		}
		if !ok || prev != c.Node {
			m.exceptChanges++
		}
		if err := tx.Put(exceptTxKey(k), leaseValue(c.Node)); err != nil {
			return Reply{}, err
		}
		st.excepts[k] = c.Node
	}
	if !c.Partial {
		rk := reportKey{addr: c.Addr, node: c.Node}
		if err := tx.Put(reportTxKey(rk), binary.LittleEndian.AppendUint64(nil, c.Gen)); err != nil {
			return Reply{}, err
		}
		st.reports[rk] = c.Gen
	}
	return Reply{}, nil
}

func (m *Machine) unexcept(tx rsm.Tx, k exceptKey) error {
	m.exceptChanges++
	delete(m.st.excepts, k)
	if m.st.nexcept[k.addr]--; m.st.nexcept[k.addr] <= 0 {
		delete(m.st.nexcept, k.addr)
	}
	return tx.Delete(exceptTxKey(k))
}

// dropExcepts removes, in key order, the exceptions and the reports the
// predicates choose.
func (m *Machine) dropExcepts(tx rsm.Tx, ex func(exceptKey, uint64) bool, rep func(reportKey) bool) error {
	var rks []reportKey
	for k := range m.st.reports {
		if rep(k) {
			rks = append(rks, k)
		}
	}
	slices.SortFunc(rks, cmpReport)
	for _, k := range rks {
		delete(m.st.reports, k)
		if err := tx.Delete(reportTxKey(k)); err != nil {
			return err
		}
	}
	var eks []exceptKey
	for k, n := range m.st.excepts {
		if ex(k, n) {
			eks = append(eks, k)
		}
	}
	slices.SortFunc(eks, cmpExcept)
	for _, k := range eks {
		if err := m.unexcept(tx, k); err != nil {
			return err
		}
	}
	return nil
}

func cmpReport(a, b reportKey) int {
	return cmp.Or(cmpAddr(a.addr, b.addr), cmp.Compare(a.node, b.node))
}

func cmpExcept(a, b exceptKey) int { return cmp.Or(cmpAddr(a.addr, b.addr), CmpFlow(a.flow, b.flow)) }

// Gen returns the address's table generation: it moves on every ADD and
// on every change of the listeners or the view that changes a table of
// the address. 0 for no address.
func (m *Machine) Gen(a Addr) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.gens[a]
}

// ExceptionChanges returns how many exceptions the entries this machine
// applied added, moved to another node or removed (by UNEXCEPT, DEL or a
// view change), since it was made; Restore and Load change none. It is
// this node's count, for a metric: nodes that started at different
// entries differ.
func (m *Machine) ExceptionChanges() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exceptChanges
}

// Exceptions returns the exceptions of the address, in flow order.
func (m *Machine) Exceptions(a Addr) []Exception {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exceptionsOf(a)
}

func (m *Machine) exceptionsOf(a Addr) []Exception {
	var out []Exception
	for k, n := range m.st.excepts {
		if k.addr == a {
			out = append(out, Exception{Flow: k.flow, Node: n})
		}
	}
	slices.SortFunc(out, func(x, y Exception) int { return CmpFlow(x.Flow, y.Flow) })
	return out
}

// Reports returns, per node in id order, the generation of the address
// its last complete EXCEPT was for.
func (m *Machine) Reports(a Addr) []Report {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reportsOf(a)
}

func (m *Machine) reportsOf(a Addr) []Report {
	var out []Report
	for _, k := range slices.SortedFunc(maps.Keys(m.st.reports), cmpReport) {
		if k.addr == a {
			out = append(out, Report{Node: k.node, Gen: m.st.reports[k]})
		}
	}
	return out
}
