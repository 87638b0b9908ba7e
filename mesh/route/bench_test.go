package route_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/corralhq/corral/mesh/route"
)

// BenchmarkConvergence reports the control traffic to converge after a
// cold start (every link comes up at once) and after one link flap (down,
// converge, up, converge), on a ring and on a random graph of average
// degree about 4, cost 100 per link. The figures are deterministic: they
// are per run, not per second. Two delivery models: "each" hands over one
// message at a time and drains the receiver's Ready after each (no
// batching, the worst case); "rounds" delivers everything in flight, then
// drains every router once, as a caller that drains Ready after a burst
// of frames would.
//
//	go test ./mesh/route -run '^$' -bench Convergence -benchtime 1x
func BenchmarkConvergence(b *testing.B) {
	for _, shape := range []string{"ring", "random"} {
		for _, n := range []int{5, 16, 64} {
			if shape == "ring" && n == 64 {
				continue // half the ring is beyond the hop limit
			}
			for _, model := range []string{"each", "rounds"} {
				b.Run(fmt.Sprintf("%s/n=%d/%s", shape, n, model), func(b *testing.B) {
					benchConvergence(b, shape, n, model == "rounds")
				})
			}
		}
	}
}

func benchConvergence(b *testing.B, shape string, n int, rounds bool) {
	var cold, down, up counts
	for range b.N {
		nw := newNetwork(b, route.Config{}, n, 1)
		nw.quiet = true
		nw.batch = rounds
		edges := buildShape(nw, shape, n)
		nw.settleAny(rounds)
		cold = nw.counts()
		e := edges[0]
		nw.reset()
		nw.down(e.a, e.b)
		nw.settleAny(rounds)
		down = nw.counts()
		nw.reset()
		nw.up(e.a, e.b, 100)
		nw.settleAny(rounds)
		up = nw.counts()
		if err := nw.dijkstra(nw.nodes[1].Config().MaxHops); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cold.msgs), "cold-msgs")
	b.ReportMetric(float64(cold.bytes), "cold-bytes")
	b.ReportMetric(float64(down.msgs), "down-msgs")
	b.ReportMetric(float64(up.msgs), "up-msgs")
	b.ReportMetric(float64(down.bytes+up.bytes), "flap-bytes")
	b.ReportMetric(float64(down.reqs+up.reqs), "flap-reqs")
}

// settleAny settles one message at a time, or in rounds.
func (nw *network) settleAny(rounds bool) {
	if !rounds {
		nw.settle(100)
		return
	}
	nw.harvestAll()
	for i := 0; ; i++ {
		for len(nw.queue) > 0 {
			q := nw.queue
			nw.queue = nil
			for _, m := range q {
				if err := nw.nodes[m.to].Step(m.from, roundTrip(nw.t, m.m)); err != nil {
					nw.t.Fatal(err)
				}
			}
			nw.harvestAll()
		}
		if !nw.starving() || i == 100 {
			return
		}
		nw.tick()
		nw.harvestAll()
	}
}

type counts struct{ msgs, updates, reqs, bytes int }

func (nw *network) counts() counts { return counts{nw.msgs, nw.updates, nw.reqs, nw.bytes} }
func (nw *network) reset()         { nw.msgs, nw.updates, nw.reqs, nw.bytes = 0, 0, 0, 0 }

// buildShape links nodes 1..n and returns the links, the one to flap
// first: on the ring 1-2, on the random graph a link of its spanning tree.
func buildShape(nw *network, shape string, n int) []edge {
	var es []edge
	link := func(a, b route.NodeID) {
		if a != b && nw.links[mkEdge(a, b)] == nil {
			nw.up(a, b, 100)
			es = append(es, mkEdge(a, b))
		}
	}
	switch shape {
	case "ring":
		for i := 1; i <= n; i++ {
			link(route.NodeID(i), route.NodeID(i%n+1))
		}
	case "random":
		rng := rand.New(rand.NewPCG(uint64(n), 4))
		for i := 2; i <= n; i++ {
			link(route.NodeID(i), route.NodeID(1+rng.IntN(i-1)))
		}
		for len(es) < 2*n {
			link(route.NodeID(1+rng.IntN(n)), route.NodeID(1+rng.IntN(n)))
		}
	}
	return es
}
