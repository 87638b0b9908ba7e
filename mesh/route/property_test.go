package route_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/mesh/route"
)

var (
	seedFlag  = flag.Uint64("seed", 0, "run TestRandom with this seed only")
	seedCount = flag.Int("seeds", 100, "how many seeds TestRandom runs")
)

// TestRandom drives random connected graphs through random events —
// messages delivered in random order (FIFO per link), links flapping,
// costs changing, links added, nodes crashing and restarting with their
// persisted or a reset seqno, ticks — and checks the invariants after
// every step. At the end the network settles and every table must be
// Dijkstra's. Each seed runs twice and must give the same trace.
func TestRandom(t *testing.T) {
	seeds := make([]uint64, 0, *seedCount)
	if *seedFlag != 0 {
		seeds = append(seeds, *seedFlag)
	} else {
		count := *seedCount
		if testing.Short() {
			count = 30
		}
		for i := range count {
			seeds = append(seeds, uint64(i+1))
		}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			a := randomRun(t, seed)
			b := randomRun(t, seed)
			if a != b {
				t.Fatalf("seed %d: replay differs", seed)
			}
		})
	}
}

func randomRun(t *testing.T, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, 0x6d657368))
	n := 3 + rng.IntN(10)
	cfg := route.Config{ReqRetryTicks: 1 + rng.IntN(3), SourceGCTicks: 20 + rng.IntN(20)}
	if rng.IntN(4) == 0 {
		cfg.Hysteresis = route.Metric(1 + rng.IntN(30))
	}
	nw := newNetwork(t, cfg, n, route.Seqno(rng.Uint32()))
	var trace []string
	fail := func(step string, err error) {
		t.Helper()
		t.Fatalf("seed %d (rerun: go test ./mesh/route -run TestRandom -seed %d), %+v, after %s: %v\n%s\ntrace:\n%s",
			seed, seed, nw.nodes[1].Config(), step, err, nw.dumpAll(), strings.Join(trace[max(0, len(trace)-40):], "\n"))
	}
	cost := func() route.Metric { return route.Metric(1 + rng.IntN(300)) }
	// A random spanning tree keeps the graph connected, then extra links.
	for i := 2; i <= n; i++ {
		nw.up(route.NodeID(i), route.NodeID(1+rng.IntN(i-1)), cost())
	}
	for range rng.IntN(n) {
		a, b := route.NodeID(1+rng.IntN(n)), route.NodeID(1+rng.IntN(n))
		if a != b && nw.links[mkEdge(a, b)] == nil {
			nw.up(a, b, cost())
		}
	}
	edges := func() []edge {
		var es []edge
		for e := range nw.links {
			es = append(es, e)
		}
		slices.SortFunc(es, func(x, y edge) int {
			if x.a != y.a {
				return int(x.a) - int(y.a)
			}
			return int(x.b) - int(y.b)
		})
		return es
	}
	check := func(step string) {
		nw.out = append(nw.out, "# "+step)
		trace = append(trace, nw.out...)
		nw.out = nil
		if err := nw.invariants(); err != nil {
			fail(step, err)
		}
	}
	check("build")
	lostSeqno := map[route.NodeID]bool{}
	for step := range 40 + rng.IntN(60) {
		var what string
		switch k := rng.IntN(22); {
		case k < 10: // deliver some messages, FIFO per link
			for range 1 + rng.IntN(8) {
				if len(nw.queue) == 0 {
					break
				}
				nw.deliverOne(headOfRandomLink(rng, nw.queue))
			}
			what = "deliver"
		case k < 12: // flap a link
			e := edges()[rng.IntN(len(nw.links))]
			if nw.links[e].up {
				nw.down(e.a, e.b)
				what = fmt.Sprintf("link-down %d %d", e.a, e.b)
			} else {
				nw.up(e.a, e.b, nw.links[e].cost)
				what = fmt.Sprintf("link-up %d %d", e.a, e.b)
			}
		case k < 14:
			e := edges()[rng.IntN(len(nw.links))]
			c := cost()
			nw.setCost(e.a, e.b, c)
			what = fmt.Sprintf("cost %d %d %d", e.a, e.b, c)
		case k < 15:
			a, b := route.NodeID(1+rng.IntN(n)), route.NodeID(1+rng.IntN(n))
			if a == b || nw.links[mkEdge(a, b)] != nil {
				continue
			}
			nw.up(a, b, cost())
			what = fmt.Sprintf("link-up %d %d (new)", a, b)
		case k < 17:
			id := route.NodeID(1 + rng.IntN(n))
			if nw.alive[id] {
				nw.crash(id)
				what = fmt.Sprintf("crash %d", id)
			} else {
				s := nw.nodes[id].Seqno() + 1
				if rng.IntN(2) == 0 && !lostSeqno[id] {
					// The persisted seqno was lost: once per node.
					// Seqnos compare modulo 2^16, which is not
					// transitive across half the range: adverts of
					// three lives with two random seqnos can compare
					// in a cycle, which no feasibility condition
					// orders (seed 1090 made two nodes route through
					// each other). Agents persist theirs
					// (agent/ROUTESEQNO.md), so that takes two lost
					// data directories within the FDs' lifetime.
					s = route.Seqno(rng.Uint32())
					lostSeqno[id] = true
				}
				nw.start(id, s)
				what = fmt.Sprintf("start %d seqno=%d", id, s)
			}
		case k < 18:
			id := route.NodeID(1 + rng.IntN(n))
			if nw.alive[id] {
				nw.crash(id)
				nw.start(id, nw.nodes[id].Seqno()+1)
				what = fmt.Sprintf("restart %d", id)
			}
		case k < 19: // both ends dialled: the link is replaced, its messages lost
			e := edges()[rng.IntN(len(nw.links))]
			if nw.linkUp(e.a, e.b) {
				nw.replace(e.a, e.b)
				what = fmt.Sprintf("replace %d %d", e.a, e.b)
			}
		case k < 20: // a send failed on a live link: its messages go again
			e := edges()[rng.IntN(len(nw.links))]
			if nw.linkUp(e.a, e.b) {
				a, b := e.a, e.b
				if rng.IntN(2) == 0 {
					a, b = b, a
				}
				nw.lose(a, b)
				what = fmt.Sprintf("lose %d %d", a, b)
			}
		default:
			nw.tick()
			what = "tick"
		}
		check(fmt.Sprintf("step %d: %s", step, what))
	}
	// Heal: every node up, every link up, then quiet.
	for _, id := range nw.ids {
		if !nw.alive[id] {
			nw.start(id, nw.nodes[id].Seqno()+1)
		}
	}
	for _, e := range edges() {
		if !nw.links[e].up {
			nw.up(e.a, e.b, nw.links[e].cost)
		}
	}
	check("heal")
	for i := 0; ; i++ {
		for len(nw.queue) > 0 {
			nw.deliverOne(headOfRandomLink(rng, nw.queue))
			check("settle")
		}
		if !nw.starving() && !nw.unconfirmed() {
			break
		}
		if i > 4*cfg.SourceGCTicks {
			fail("settle", fmt.Errorf("still starving after %d ticks: %v", i, nw.starvingNodes()))
		}
		nw.tick()
		check("settle tick")
	}
	if err := nw.dijkstra(nw.nodes[1].Config().MaxHops); err != nil {
		fail("settle", err)
	}
	return strings.Join(trace, "\n")
}

// headOfRandomLink picks the oldest message of a random link.
func headOfRandomLink(rng *rand.Rand, q []msg) int {
	type dir struct{ from, to route.NodeID }
	seen := map[dir]bool{}
	var heads []int
	for i, m := range q {
		if d := (dir{m.from, m.to}); !seen[d] {
			seen[d] = true
			heads = append(heads, i)
		}
	}
	return heads[rng.IntN(len(heads))]
}

func (nw *network) starvingNodes() string {
	var s []string
	for _, id := range nw.ids {
		if st := nw.nodes[id].Starving(); len(st) > 0 {
			s = append(s, fmt.Sprintf("%d starves for %v", id, st))
		}
	}
	return strings.Join(s, "; ")
}
