package mesh

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkMeshConvergence is mesh/route's BenchmarkConvergence on real
// meshes (one process, TLS links over loopback, a proxy per link): the
// ROUTES and SEQNO_REQ frames all nodes send (RouteStats.AdvertsSent)
// after a cold start, and after one link flap (reset, settle, heal,
// settle), on a ring and on the same random graphs (about 4 links a
// node), the same link flapped. A phase ends when every node reaches
// every other and no advert went out for quietFor (over the router's
// tick, so a pending seqno request retry would show).
//
//	go test ./mesh -run '^$' -bench MeshConvergence -benchtime 1x
func BenchmarkMeshConvergence(b *testing.B) {
	for _, shape := range []string{"ring", "random"} {
		for _, n := range []int{5, 16} {
			b.Run(fmt.Sprintf("%s/n=%d", shape, n), func(b *testing.B) {
				var cold, down, up uint64
				for range b.N {
					edges := shapeEdges(shape, n)
					g := startGraph(b, n, edges, benchOpts{})
					cold = settled(b, g, "cold start")
					p := g.edge(edges[0][0], edges[0][1])
					p.Cut()
					down = settled(b, g, "link down")
					p.Heal()
					if _, ok := waitUntil(20*time.Second, func() bool {
						return g.node(edges[0][0]).Link(uint64(edges[0][1])) != nil
					}); !ok {
						b.Fatal("the flapped link did not come back")
					}
					up = settled(b, g, "link up")
					for _, nd := range g.nodes {
						nd.cancel()
						<-nd.done
					}
				}
				b.ReportMetric(float64(cold), "cold-frames")
				b.ReportMetric(float64(down), "down-frames")
				b.ReportMetric(float64(up), "up-frames")
				b.ReportMetric(float64(down+up), "flap-frames")
			})
		}
	}
}

// quietFor is how long no advert may go out for a phase to have ended:
// more than DefaultRouteTick, the seqno requests' retry period.
const quietFor = DefaultRouteTick + 300*time.Millisecond

// settled waits for g to converge and go quiet and returns the adverts
// sent since the last call.
func settled(b *testing.B, g *graphMesh, phase string) uint64 {
	b.Helper()
	sent := func() (s uint64) {
		for _, n := range g.nodes {
			s += n.m.RouteStats().AdvertsSent
		}
		return s
	}
	deadline := time.Now().Add(60 * time.Second)
	last, since := sent(), time.Now()
	for !g.converged() || time.Since(since) < quietFor {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not settled within 60s", phase)
		}
		time.Sleep(10 * time.Millisecond)
		if s := sent(); s != last {
			last, since = s, time.Now()
		}
	}
	d := last - g.counted
	g.counted = last
	return d
}

// shapeEdges is mesh/route's buildShape: a ring 1–2–…–n–1, or a random
// spanning tree plus random links up to 2n links (the same seed), the
// link to flap first.
func shapeEdges(shape string, n int) [][2]int {
	var es [][2]int
	seen := map[[2]int]bool{}
	link := func(a, b int) {
		k := [2]int{min(a, b), max(a, b)}
		if a != b && !seen[k] {
			seen[k] = true
			es = append(es, k)
		}
	}
	switch shape {
	case "ring":
		for i := 1; i <= n; i++ {
			link(i, i%n+1)
		}
	case "random":
		rng := rand.New(rand.NewPCG(uint64(n), 4))
		for i := 2; i <= n; i++ {
			link(i, 1+rng.IntN(i-1))
		}
		for len(es) < 2*n {
			link(1+rng.IntN(n), 1+rng.IntN(n))
		}
	}
	return es
}
