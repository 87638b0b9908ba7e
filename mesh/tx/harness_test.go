package tx_test

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/corralhq/corral/mesh/tx"
	"github.com/corralhq/corral/proto"
)

// net is a mesh of tables joined by links, with one FIFO of frames in
// flight (which keeps each link's order). Link ids are neighbour node ids.
type net struct {
	tables   map[tx.NodeID]*tx.Table
	caps     map[tx.NodeID]int
	links    map[[2]tx.NodeID]bool        // up links, {low, high}
	override map[[2]tx.NodeID]tx.NodeID   // (node, target) → next hop
	queue    []flight                     // frames in flight
	app      map[tx.NodeID][]tx.Delivery  // what each application saw
	seen     map[tx.NodeID]map[tx.Key]int // deliveries per key; -1 once closed
	names    map[tx.Key]string
	keys     map[string]tx.Key
	targets  map[tx.Key]tx.NodeID
	epoch    uint32
	tomb     int
	fail     func(format string, args ...any)
}

type flight struct {
	from, to tx.NodeID
	f        proto.Frame
}

func newNet(fail func(string, ...any)) *net {
	return &net{
		tables:   map[tx.NodeID]*tx.Table{},
		caps:     map[tx.NodeID]int{},
		links:    map[[2]tx.NodeID]bool{},
		override: map[[2]tx.NodeID]tx.NodeID{},
		app:      map[tx.NodeID][]tx.Delivery{},
		seen:     map[tx.NodeID]map[tx.Key]int{},
		names:    map[tx.Key]string{},
		keys:     map[string]tx.Key{},
		targets:  map[tx.Key]tx.NodeID{},
		epoch:    1,
		tomb:     3,
		fail:     fail,
	}
}

func pair(a, b tx.NodeID) [2]tx.NodeID {
	if a > b {
		a, b = b, a
	}
	return [2]tx.NodeID{a, b}
}

func (n *net) node(id tx.NodeID) *tx.Table {
	if t := n.tables[id]; t != nil {
		return t
	}
	t, err := tx.New(tx.Config{
		Self: id, Epoch: n.epoch, RelayCap: n.caps[id], TombstoneTicks: n.tomb,
		Route: func(target tx.NodeID) (tx.LinkID, bool) { return n.route(id, target) },
	})
	if err != nil {
		panic(err)
	}
	n.tables[id] = t
	return t
}

func (n *net) neighbours(id tx.NodeID) []tx.NodeID {
	var out []tx.NodeID
	for l, up := range n.links {
		if !up {
			continue
		}
		if l[0] == id {
			out = append(out, l[1])
		} else if l[1] == id {
			out = append(out, l[0])
		}
	}
	slices.Sort(out)
	return out
}

// route is a shortest path by hop count, ties to the lowest next hop,
// unless a test overrode it.
func (n *net) route(from, target tx.NodeID) (tx.LinkID, bool) {
	if via, ok := n.override[[2]tx.NodeID{from, target}]; ok {
		if via == 0 {
			return 0, false
		}
		return tx.LinkID(via), n.links[pair(from, via)]
	}
	first := map[tx.NodeID]tx.NodeID{from: 0}
	q := []tx.NodeID{from}
	for len(q) > 0 {
		c := q[0]
		q = q[1:]
		if c == target {
			return tx.LinkID(first[c]), true
		}
		for _, nb := range n.neighbours(c) {
			if _, ok := first[nb]; ok {
				continue
			}
			if c == from {
				first[nb] = nb
			} else {
				first[nb] = first[c]
			}
			q = append(q, nb)
		}
	}
	return 0, false
}

func (n *net) name(k tx.Key) string {
	if s, ok := n.names[k]; ok {
		return s
	}
	return k.String()
}

func flagString(f proto.Flags) string {
	var p []string
	for _, x := range []struct {
		f proto.Flags
		s string
	}{{proto.FlagCreate, "CREATE"}, {proto.FlagDelete, "DELETE"}, {proto.FlagReply, "REPLY"}, {proto.FlagAbort, "ABORT"}} {
		if f&x.f != 0 {
			p = append(p, x.s)
		}
	}
	if len(p) == 0 {
		return "DATA"
	}
	return strings.Join(p, "|")
}

func (n *net) frameString(f *proto.Frame) string {
	s := flagString(f.Flags) + " " + n.name(tx.KeyOf(&f.Header))
	if f.Flags&proto.FlagAbort != 0 {
		if st, err := proto.ParseStatus(f.Body, "ABORT"); err == nil {
			s += fmt.Sprintf(" code=%d %q", st.Code, st.Text)
		}
	} else if len(f.Body) > 0 {
		s += fmt.Sprintf(" %q", f.Body)
	}
	if e, err := proto.ParseTxExt(f.Ext); err == nil {
		if e.Parent != (proto.TxRef{}) {
			s += " parent=" + n.name(tx.Key{Initiator: tx.NodeID(e.Parent.Initiator), MsgID: e.Parent.MsgID})
		}
		if e.FailedLink != [2]uint64{} {
			s += fmt.Sprintf(" failed=%d-%d", e.FailedLink[0], e.FailedLink[1])
		}
	}
	return s
}

// collect takes a node's outputs: frames join the queue, deliveries are
// recorded and printed.
func (n *net) collect(id tx.NodeID, out *strings.Builder) {
	t := n.node(id)
	rd := t.Ready()
	for _, m := range rd.Msgs {
		to := tx.NodeID(m.Link)
		f := m.Frame
		f.Ext, f.Body = slices.Clone(f.Ext), slices.Clone(f.Body)
		if !n.links[pair(id, to)] {
			n.fail("node %d sent %s on link %d-%d, which is down", id, n.frameString(&f), id, to)
		}
		n.queue = append(n.queue, flight{id, to, f})
	}
	for _, d := range rd.Deliveries {
		d.Frame.Ext, d.Frame.Body = slices.Clone(d.Frame.Ext), slices.Clone(d.Frame.Body)
		n.record(id, d)
		if out != nil {
			fmt.Fprintf(out, "  app %d: %s", id, n.deliveryString(d))
			out.WriteByte('\n')
		}
	}
	t.Advance()
}

func (n *net) deliveryString(d tx.Delivery) string {
	s := n.frameString(&d.Frame)
	if d.Err != nil {
		var pe *proto.Error
		if errors.As(d.Err, &pe) {
			s += fmt.Sprintf(" err=%s", pe.Code)
		}
	}
	if d.Closed {
		s += " closed"
	}
	return s
}

// record checks that nothing reaches an application after its
// transaction closed there.
func (n *net) record(id tx.NodeID, d tx.Delivery) {
	m := n.seen[id]
	if m == nil {
		m = map[tx.Key]int{}
		n.seen[id] = m
	}
	if m[d.Key] < 0 {
		n.fail("node %d: %s delivered after the transaction closed there", id, n.deliveryString(d))
	}
	m[d.Key]++
	if d.Closed {
		m[d.Key] = -1
	}
	n.app[id] = append(n.app[id], d)
}

// deliver hands up to max queued frames to their receivers.
func (n *net) deliver(max int, out *strings.Builder) {
	for i := 0; i < max && len(n.queue) > 0; i++ {
		fl := n.queue[0]
		n.queue = n.queue[1:]
		if out != nil {
			fmt.Fprintf(out, "%d->%d %s\n", fl.from, fl.to, n.frameString(&fl.f))
		}
		if err := n.node(fl.to).Step(tx.LinkID(fl.from), fl.f); err != nil {
			n.fail("step: %v", err)
		}
		n.collect(fl.to, out)
		n.check()
	}
}

// cut takes a link down: frames in flight on it are lost, and both ends
// are told at once (as after the resume window).
func (n *net) cut(a, b tx.NodeID, out *strings.Builder) {
	n.links[pair(a, b)] = false
	kept := n.queue[:0]
	lost := 0
	for _, fl := range n.queue {
		if pair(fl.from, fl.to) == pair(a, b) {
			lost++
			continue
		}
		kept = append(kept, fl)
	}
	n.queue = kept
	if out != nil && lost > 0 {
		fmt.Fprintf(out, "lost %d frames in flight\n", lost)
	}
	for _, x := range [2][2]tx.NodeID{{a, b}, {b, a}} {
		n.node(x[0]).LinkDown(tx.LinkID(x[1]))
		n.collect(x[0], out)
	}
}

// check runs the invariants: no entry names a link that is down; when
// nothing is in flight, every entry has its counterpart at each
// neighbour on its path, in the same state.
func (n *net) check() {
	ids := n.ids()
	for _, id := range ids {
		for _, e := range n.tables[id].Entries() {
			for _, l := range []tx.LinkID{e.TowardInit, e.TowardResp} {
				if l != tx.Local && !n.links[pair(id, tx.NodeID(l))] {
					n.fail("node %d: %s uses link %d-%d, which is down", id, n.name(e.Key), id, l)
				}
			}
		}
	}
	if len(n.queue) > 0 {
		return
	}
	for _, id := range ids {
		for _, e := range n.tables[id].Entries() {
			if (e.TowardInit == tx.Local) != (e.Role == tx.RoleInitiator) || (e.TowardResp == tx.Local) != (e.Role == tx.RoleResponder) {
				n.fail("node %d: %s is %s with links %d/%d", id, n.name(e.Key), e.Role, e.TowardInit, e.TowardResp)
			}
			for _, side := range []struct {
				l       tx.LinkID
				towardR bool
			}{{e.TowardInit, false}, {e.TowardResp, true}} {
				if side.l == tx.Local {
					continue
				}
				o, ok := n.entry(tx.NodeID(side.l), e.Key)
				back := o.TowardInit
				if !side.towardR {
					back = o.TowardResp
				}
				if !ok || back != tx.LinkID(id) {
					n.fail("node %d: %s goes to node %d, which holds %+v (%v)", id, n.name(e.Key), side.l, o, ok)
				}
				if o.CmdDeleted != e.CmdDeleted || o.RepDeleted != e.RepDeleted || o.RepCreated != e.RepCreated || o.Parent != e.Parent {
					n.fail("node %d: %s is %+v, at node %d %+v", id, n.name(e.Key), e, side.l, o)
				}
			}
		}
	}
}

func (n *net) entry(id tx.NodeID, k tx.Key) (tx.Entry, bool) {
	t := n.tables[id]
	if t == nil {
		return tx.Entry{}, false
	}
	for _, e := range t.Entries() {
		if e.Key == k {
			return e, true
		}
	}
	return tx.Entry{}, false
}

func (n *net) ids() []tx.NodeID {
	ids := make([]tx.NodeID, 0, len(n.tables))
	for id := range n.tables {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (n *net) txsString(id tx.NodeID) string {
	var sb strings.Builder
	t := n.node(id)
	for _, e := range t.Entries() {
		fmt.Fprintf(&sb, "%s %s init=%d resp=%d", n.name(e.Key), e.Role, e.TowardInit, e.TowardResp)
		if e.Parent != (tx.Key{}) {
			fmt.Fprintf(&sb, " parent=%s", n.name(e.Parent))
		}
		var st []string
		for _, b := range []struct {
			ok bool
			s  string
		}{{e.CmdDeleted, "cmd-deleted"}, {e.RepCreated, "replied"}, {e.RepDeleted, "rep-deleted"}} {
			if b.ok {
				st = append(st, b.s)
			}
		}
		if len(st) > 0 {
			sb.WriteString(" " + strings.Join(st, ","))
		}
		sb.WriteByte('\n')
	}
	s := t.Stats()
	fmt.Fprintf(&sb, "%d open, %d tombstones; relayed %d dropped %d linkfail %d noroute %d hoplimit %d busy %d\n",
		t.Len(), t.Tombstones(), s.Relayed, s.Dropped, s.LinkFail, s.NoRoute, s.HopLimit, s.Busy)
	return sb.String()
}

func parseID(s string) tx.NodeID {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		panic(fmt.Sprintf("node id %q: %v", s, err))
	}
	return tx.NodeID(v)
}

func sortedKeys(m map[string]tx.Key) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
