package route_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/corralhq/corral/mesh/route"
)

// edge is a configured link, a < b.
type edge struct{ a, b route.NodeID }

func mkEdge(a, b route.NodeID) edge {
	if a > b {
		a, b = b, a
	}
	return edge{a, b}
}

type link struct {
	cost route.Metric
	up   bool
}

// msg is one message in flight: an ordered, reliable link delivers in
// the order sent.
type msg struct {
	from, to route.NodeID
	m        route.Message
}

// network is N routers, their links and the messages in flight between
// them. Every link is FIFO; the global queue keeps that order.
type network struct {
	t     testing.TB
	cfg   route.Config
	ids   []route.NodeID // sorted
	nodes map[route.NodeID]*route.Router
	alive map[route.NodeID]bool
	links map[edge]*link
	queue []msg
	out   []string // trace of the current command
	quiet bool     // do not trace what routers send (converge)
	batch bool     // inputs do not drain Ready; harvestAll does

	// Counters since the last reset.
	msgs, updates, reqs, bytes int
}

func newNetwork(t testing.TB, cfg route.Config, n int, seqno route.Seqno) *network {
	nw := &network{t: t, cfg: cfg, nodes: map[route.NodeID]*route.Router{}, alive: map[route.NodeID]bool{}, links: map[edge]*link{}}
	for i := 1; i <= n; i++ {
		id := route.NodeID(i)
		nw.ids = append(nw.ids, id)
		c := cfg
		c.Self = id
		nw.nodes[id] = route.New(c, seqno)
		nw.alive[id] = true
	}
	return nw
}

func (nw *network) logf(format string, args ...any) {
	nw.out = append(nw.out, fmt.Sprintf(format, args...))
}

// harvest drains router id's Ready into the queue and the trace.
func (nw *network) harvest(id route.NodeID) {
	r := nw.nodes[id]
	if !r.HasReady() {
		return
	}
	rd := r.Ready()
	for _, o := range rd.Msgs {
		if !nw.linkUp(id, o.To) {
			nw.t.Fatalf("%d sent to %d over a link that is down", id, o.To)
		}
		nw.queue = append(nw.queue, msg{from: id, to: o.To, m: o.Msg})
		nw.count(o.Msg)
		if !nw.quiet {
			nw.logf("  %d -> %d: %s", id, o.To, fmtMsg(o.Msg))
		}
	}
	if !nw.quiet {
		if rd.SeqnoChanged {
			nw.logf("  %d: own seqno %d", id, rd.Seqno)
		}
		for _, c := range rd.Changes {
			nw.logf("  %d: %s", id, fmtChange(c))
		}
	}
	r.Advance()
}

func (nw *network) count(m route.Message) {
	nw.msgs++
	nw.updates += len(m.Updates)
	nw.reqs += len(m.Requests)
	nw.bytes += wireSize(m)
}

func (nw *network) linkUp(a, b route.NodeID) bool {
	l := nw.links[mkEdge(a, b)]
	return l != nil && l.up && nw.alive[a] && nw.alive[b]
}

func (nw *network) do(id route.NodeID, f func(r *route.Router) error) {
	if err := f(nw.nodes[id]); err != nil {
		nw.t.Fatalf("node %d: %v", id, err)
	}
	if !nw.batch {
		nw.harvest(id)
	}
}

// harvestAll drains every live router's Ready, in id order.
func (nw *network) harvestAll() {
	for _, id := range nw.ids {
		if nw.alive[id] {
			nw.harvest(id)
		}
	}
}

func (nw *network) up(a, b route.NodeID, cost route.Metric) {
	e := mkEdge(a, b)
	l := nw.links[e]
	if l == nil {
		l = &link{}
		nw.links[e] = l
	}
	if nw.linkUp(a, b) {
		nw.t.Fatalf("link %d-%d is already up", a, b)
	}
	l.cost, l.up = cost, true
	if !nw.alive[a] || !nw.alive[b] {
		return
	}
	nw.do(a, func(r *route.Router) error { return r.LinkUp(b, cost) })
	nw.do(b, func(r *route.Router) error { return r.LinkUp(a, cost) })
}

func (nw *network) down(a, b route.NodeID) {
	l := nw.links[mkEdge(a, b)]
	if l == nil || !l.up {
		nw.t.Fatalf("link %d-%d is not up", a, b)
	}
	wasUp := nw.linkUp(a, b)
	l.up = false
	if wasUp {
		nw.cut(a, b)
	}
}

// cut ends the link a-b at both ends: what is in flight on it is lost.
func (nw *network) cut(a, b route.NodeID) {
	nw.queue = slices.DeleteFunc(nw.queue, func(m msg) bool { return mkEdge(m.from, m.to) == mkEdge(a, b) })
	for _, x := range []edge{{a, b}, {b, a}} {
		if nw.alive[x.a] {
			nw.linkDown(x.a, x.b)
		}
	}
}

// replace swaps the link a-b for a new one, as when both ends dial at
// once: what is in flight on the old one is lost, and both ends reset.
// A replacement moves no route: every table is as it was.
func (nw *network) replace(a, b route.NodeID) {
	if !nw.linkUp(a, b) {
		nw.t.Fatalf("link %d-%d is not up", a, b)
	}
	before := map[route.NodeID][]route.Route{a: nw.nodes[a].Table(), b: nw.nodes[b].Table()}
	lost := len(nw.queue)
	nw.queue = slices.DeleteFunc(nw.queue, func(m msg) bool { return mkEdge(m.from, m.to) == mkEdge(a, b) })
	if lost -= len(nw.queue); lost > 0 {
		nw.logf("  %d messages lost with the old link", lost)
	}
	for _, x := range []edge{{a, b}, {b, a}} {
		nw.do(x.a, func(r *route.Router) error { return r.LinkReset(x.b) })
		if after := nw.nodes[x.a].Table(); !slices.Equal(after, before[x.a]) {
			nw.t.Fatalf("node %d: replacing its link to %d changed its table:\n%v\nto\n%v", x.a, x.b, before[x.a], after)
		}
	}
}

// lose drops the messages in flight from a to b, as a send that failed on
// a live link, and tells a to send again what they carried.
func (nw *network) lose(a, b route.NodeID) {
	if !nw.linkUp(a, b) {
		nw.t.Fatalf("link %d-%d is not up", a, b)
	}
	var lost route.Message
	n := len(nw.queue)
	nw.queue = slices.DeleteFunc(nw.queue, func(m msg) bool {
		if m.from != a || m.to != b {
			return false
		}
		lost.Updates = append(lost.Updates, m.m.Updates...)
		lost.Requests = append(lost.Requests, m.m.Requests...)
		return true
	})
	nw.logf("  %d messages lost %d -> %d", n-len(nw.queue), a, b)
	nw.do(a, func(r *route.Router) error { return r.Resend(b, lost) })
}

// linkDown tells a that its link to b ended and checks that every route
// through b moved to its alternate at once, with no message needed.
func (nw *network) linkDown(a, b route.NodeID) {
	r := nw.nodes[a]
	type alt struct {
		next route.NodeID
		m    route.Metric
	}
	want := map[route.NodeID]alt{}
	for _, rt := range r.Table() {
		if rt.NextHop == b {
			want[rt.Dest] = alt{rt.Alt, rt.AltMetric}
		}
	}
	nw.do(a, func(r *route.Router) error { r.LinkDown(b); return nil })
	for dest, w := range want {
		next, m, ok := r.Lookup(dest)
		if w.next == 0 && ok || w.next != 0 && (next != w.next || m != w.m) {
			nw.t.Fatalf("node %d lost link %d: route to %d is %d m=%d (%v), its alternate was %d m=%d", a, b, dest, next, m, ok, w.next, w.m)
		}
	}
}

func (nw *network) setCost(a, b route.NodeID, c route.Metric) {
	l := nw.links[mkEdge(a, b)]
	if l == nil {
		nw.t.Fatalf("no link %d-%d", a, b)
	}
	l.cost = c
	if nw.linkUp(a, b) {
		nw.do(a, func(r *route.Router) error { return r.LinkCost(b, c) })
		nw.do(b, func(r *route.Router) error { return r.LinkCost(a, c) })
	}
}

func (nw *network) neighbours(id route.NodeID) []route.NodeID {
	var ns []route.NodeID
	for _, o := range nw.ids {
		if o != id && nw.links[mkEdge(id, o)] != nil && nw.links[mkEdge(id, o)].up {
			ns = append(ns, o)
		}
	}
	return ns
}

// crash stops node id: its links end.
func (nw *network) crash(id route.NodeID) {
	if !nw.alive[id] {
		nw.t.Fatalf("node %d is down", id)
	}
	for _, o := range nw.neighbours(id) {
		if nw.alive[o] {
			nw.queue = slices.DeleteFunc(nw.queue, func(m msg) bool { return mkEdge(m.from, m.to) == mkEdge(id, o) })
			nw.linkDown(o, id)
		}
	}
	nw.alive[id] = false
}

// start starts node id with a fresh router at seqno; its links come up.
func (nw *network) start(id route.NodeID, seqno route.Seqno) {
	c := nw.cfg
	c.Self = id
	nw.nodes[id] = route.New(c, seqno)
	nw.alive[id] = true
	for _, o := range nw.neighbours(id) {
		if nw.alive[o] {
			cost := nw.links[mkEdge(id, o)].cost
			nw.do(id, func(r *route.Router) error { return r.LinkUp(o, cost) })
			nw.do(o, func(r *route.Router) error { return r.LinkUp(id, cost) })
		}
	}
}

// deliverOne hands the oldest message in flight to its receiver.
func (nw *network) deliverOne(i int) {
	m := nw.queue[i]
	nw.queue = slices.Delete(nw.queue, i, i+1)
	if !nw.quiet {
		nw.logf("%d -> %d: %s", m.from, m.to, fmtMsg(m.m))
	}
	nw.do(m.to, func(r *route.Router) error { return r.Step(m.from, roundTrip(nw.t, m.m)) })
}

// converge delivers until nothing is in flight.
func (nw *network) converge(limit int) int {
	n := 0
	for len(nw.queue) > 0 {
		if n++; n > limit {
			nw.t.Fatalf("not converged after %d messages", limit)
		}
		nw.deliverOne(0)
	}
	return n
}

func (nw *network) tick() {
	for _, id := range nw.ids {
		if nw.alive[id] {
			nw.do(id, func(r *route.Router) error { r.Tick(); return nil })
		}
	}
}

// settle delivers and ticks until no message is in flight and no router
// starves: the state in which every table must equal Dijkstra's.
func (nw *network) settle(maxTicks int) {
	for i := 0; ; i++ {
		nw.converge(1 << 20)
		if !nw.starving() {
			return
		}
		if i == maxTicks {
			nw.t.Fatalf("still starving after %d ticks", maxTicks)
		}
		nw.tick()
	}
}

func (nw *network) starving() bool {
	for _, id := range nw.ids {
		if nw.alive[id] && len(nw.nodes[id].Starving()) > 0 {
			return true
		}
	}
	return false
}

func fmtMsg(m route.Message) string {
	var parts []string
	if len(m.Updates) > 0 {
		s := make([]string, len(m.Updates))
		for i, u := range m.Updates {
			s[i] = u.String()
		}
		parts = append(parts, "ROUTES "+strings.Join(s, " "))
	}
	for _, q := range m.Requests {
		parts = append(parts, "SEQNO_REQ "+q.String())
	}
	return strings.Join(parts, "; ")
}

func fmtChange(c route.Change) string {
	if c.NextHop == 0 {
		return fmt.Sprintf("route %d unreachable", c.Dest)
	}
	s := fmt.Sprintf("route %d via %d m=%d", c.Dest, c.NextHop, c.Metric)
	if c.Alt != 0 {
		s += fmt.Sprintf(" alt %d", c.Alt)
	}
	return s
}

func (nw *network) table(id route.NodeID) string {
	if !nw.alive[id] {
		return fmt.Sprintf("%d: down", id)
	}
	var s []string
	for _, rt := range nw.nodes[id].Table() {
		e := fmt.Sprintf("%d via %d m=%d h=%d s=%d", rt.Dest, rt.NextHop, rt.Metric, rt.Hops, rt.Seqno)
		if rt.Alt != 0 {
			e += fmt.Sprintf(" alt %d m=%d", rt.Alt, rt.AltMetric)
		}
		s = append(s, e)
	}
	if len(s) == 0 {
		return fmt.Sprintf("%d (s%d): -", id, nw.nodes[id].Seqno())
	}
	return fmt.Sprintf("%d (s%d): %s", id, nw.nodes[id].Seqno(), strings.Join(s, " | "))
}

func (nw *network) sources(id route.NodeID) string {
	var s []string
	for _, src := range nw.nodes[id].Sources() {
		s = append(s, fmt.Sprintf("%d s%d m%d", src.Origin, src.Seqno, src.Metric))
	}
	if len(s) == 0 {
		return fmt.Sprintf("%d: -", id)
	}
	return fmt.Sprintf("%d: %s", id, strings.Join(s, " | "))
}

// build links the nodes 1..n in the shape kind.
func (nw *network) build(kind string, cost route.Metric) {
	n := len(nw.ids)
	id := func(i int) route.NodeID { return route.NodeID(i) }
	switch kind {
	case "none":
	case "line", "ring":
		for i := 1; i < n; i++ {
			nw.up(id(i), id(i+1), cost)
		}
		if kind == "ring" && n > 2 {
			nw.up(id(n), id(1), cost)
		}
	case "star":
		for i := 2; i <= n; i++ {
			nw.up(1, id(i), cost)
		}
	case "mesh":
		for i := 1; i <= n; i++ {
			for j := i + 1; j <= n; j++ {
				nw.up(id(i), id(j), cost)
			}
		}
	default:
		nw.t.Fatalf("unknown topology %q", kind)
	}
}

// run is one script command.
func (nw *network) run(t *testing.T, d *datadriven.TestData) string {
	nw.t = t
	nw.out = nil
	nw.quiet = false
	pos := func(i int) route.NodeID {
		if i >= len(d.CmdArgs) {
			t.Fatalf("%s: missing argument %d", d.Cmd, i+1)
		}
		v, err := strconv.ParseUint(d.CmdArgs[i].Key, 10, 64)
		if err != nil {
			t.Fatalf("%s: %v", d.Cmd, err)
		}
		return route.NodeID(v)
	}
	num := func(key string, def int) int {
		for _, a := range d.CmdArgs {
			if a.Key == key && len(a.Vals) > 0 {
				v, err := strconv.Atoi(a.Vals[0])
				if err != nil {
					t.Fatalf("%s: %v", key, err)
				}
				return v
			}
		}
		return def
	}
	switch d.Cmd {
	case "link-up":
		nw.up(pos(0), pos(1), route.Metric(num("cost", 100)))
	case "link-down":
		nw.down(pos(0), pos(1))
	case "replace":
		nw.replace(pos(0), pos(1))
	case "lose":
		nw.lose(pos(0), pos(1))
	case "cost":
		nw.setCost(pos(0), pos(1), route.Metric(pos(2)))
	case "deliver":
		n := num("n", len(nw.queue))
		for range n {
			if len(nw.queue) == 0 {
				break
			}
			nw.deliverOne(0)
		}
		if len(nw.out) == 0 {
			nw.logf("nothing in flight")
		}
	case "converge":
		nw.quiet = true
		nw.msgs, nw.updates, nw.reqs, nw.bytes = 0, 0, 0, 0
		// What is already queued was counted when sent; count it again
		// here so the figure is the cost of converging from this point.
		for _, m := range nw.queue {
			nw.count(m.m)
		}
		nw.converge(1 << 20)
		nw.logf("%d messages (%d updates, %d requests, %d bytes)", nw.msgs, nw.updates, nw.reqs, nw.bytes)
		for _, id := range nw.ids {
			nw.logf("%s", nw.table(id))
		}
	case "tick":
		for range num("n", 1) {
			nw.tick()
		}
	case "crash":
		nw.crash(pos(0))
	case "restart":
		id := pos(0)
		seqno := nw.nodes[id].Seqno() + 1
		if nw.alive[id] {
			nw.crash(id)
		}
		nw.start(id, route.Seqno(num("seqno", int(seqno))))
	case "routes":
		ids := nw.ids
		if len(d.CmdArgs) > 0 {
			ids = []route.NodeID{pos(0)}
		}
		for _, id := range ids {
			nw.logf("%s", nw.table(id))
		}
	case "sources":
		ids := nw.ids
		if len(d.CmdArgs) > 0 {
			ids = []route.NodeID{pos(0)}
		}
		for _, id := range ids {
			nw.logf("%s", nw.sources(id))
		}
	default:
		t.Fatalf("unknown command %q", d.Cmd)
	}
	nw.check()
	if len(nw.out) == 0 {
		return "ok\n"
	}
	return strings.Join(nw.out, "\n") + "\n"
}
