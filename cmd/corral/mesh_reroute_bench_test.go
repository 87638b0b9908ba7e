package main

// Reroute time with real agents on netlab graph labs, measured from
// outside through each agent's admin socket (ROUTES, what corral routes
// shows). Long: behind CORRAL_BENCH_REROUTE (1 for 100 cuts per graph and
// mode, or a count), skipped otherwise; bench/reroute.sh runs it.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
	"github.com/corralhq/corral/proto/admin"
)

// agentWatch is one route to time: at node at, dest's next hop becomes
// via; gone is the peer whose direct link the cut ends, seen from at.
type agentWatch struct {
	name                string
	at, dest, via, gone uint64
}

func TestMeshRerouteAgents(t *testing.T) {
	v := os.Getenv("CORRAL_BENCH_REROUTE")
	if v == "" {
		t.Skip("skipped: set CORRAL_BENCH_REROUTE=1 (100 cuts) or a number of cuts")
	}
	needRoot(t)
	cuts := 100
	if n, err := strconv.Atoi(v); err == nil && n > 1 {
		cuts = n
	}
	modes := []string{"reset", "silent"}
	if m := os.Getenv("REROUTE_MODES"); m != "" {
		modes = strings.Split(m, ",")
	}
	const hbTimeout = 500 * time.Millisecond // the agent's default
	// A ring of 4, cut 1–2: node 1's route to 3 (via 2, 200) has a
	// feasible alternate via 4 (advertising 100); node 1's route to 2,
	// once the link is gone, has none (4 advertises 200, not below 100):
	// it starves until node 2 answers a seqno request.
	// A ring of 5, cut 1–2: no feasible alternate anywhere; node 3, one
	// hop from the cut, reroutes by propagation.
	type graph struct {
		name  string
		n     int
		extra []string
		watch []agentWatch
	}
	graphs := []graph{
		// Links to node 4 cost 110 at nodes 1 and 3, so node 1's route to
		// 3 is via 2 (200), not a tie with via 4 (210).
		{"ring4", 4, []string{"--link-cost", "4=110"}, []agentWatch{
			{"1→3 feasible alternate", 1, 3, 4, 2},
			{"1→2 starved", 1, 2, 4, 2},
			{"2→1 starved", 2, 1, 3, 1},
		}},
		{"ring5", 5, nil, []agentWatch{
			{"1→3 starved", 1, 3, 5, 2},
			{"2→5 starved", 2, 5, 3, 1},
			{"3→1 one hop away", 3, 1, 4, 0},
		}},
	}
	for _, g := range graphs {
		t.Run(g.name, func(t *testing.T) {
			lab := netlab.Ring(t, g.n)
			nodes := graphCluster(t, lab, 90*time.Second, g.extra...)
			for _, mode := range modes {
				t.Run(mode, func(t *testing.T) { agentReroutes(t, lab, nodes, g.watch, mode, cuts, hbTimeout) })
			}
		})
	}
}

func routeRowsOf(nd *node) (map[uint64]admin.Route, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rs, err := requestRoutes(ctx, nd.dir)
	if err != nil {
		return nil, err
	}
	m := make(map[uint64]admin.Route, len(rs))
	for _, r := range rs {
		m[r.ID] = r
	}
	return m, nil
}

func agentReroutes(t *testing.T, lab *netlab.Lab, nodes []*node, watch []agentWatch, mode string, cuts int, hb time.Duration) {
	// The routes before the cut, to wait for after each heal.
	before := make([]uint64, len(watch))
	settledRoutes := func() bool {
		for k, w := range watch {
			rs, err := routeRowsOf(nodes[w.at-1])
			if err != nil {
				return false
			}
			r := rs[w.dest]
			if !r.Up || r.NextHop == w.via || (w.gone != 0 && !rs[w.gone].Direct) {
				return false
			}
			before[k] = r.NextHop
		}
		return true
	}
	heal := func(i int) {
		deadline := time.Now().Add(60 * time.Second)
		for stable := 0; stable < 5; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s cut %d: routes not back within 60s", mode, i)
			}
			if settledRoutes() {
				stable++
			} else {
				stable = 0
			}
		}
	}
	heal(-1)
	detect := make([][]time.Duration, len(watch))
	total := make([][]time.Duration, len(watch))
	var resetTook []time.Duration
	// A slow cut (over the goal) is told apart from a scheduling stall: a
	// heartbeat timer that wakes late by half the timeout gives its peer
	// a fresh timeout, and logs so.
	lateWakes := func() (n int) {
		for _, nd := range nodes {
			n += strings.Count(nd.log.String(), "heartbeat woke late")
		}
		return n
	}
	slow, slowLate := 0, 0
	for i := range cuts {
		late0 := lateWakes()
		lab.CutEdge(1, 2)
		t0 := time.Now()
		if mode == "reset" {
			lab.ResetEdge(1, 2)
			resetTook = append(resetTook, time.Since(t0))
		}
		det := make([]time.Time, len(watch))
		done := make([]time.Time, len(watch))
		for deadline := t0.Add(10 * time.Second); ; {
			all := true
			for k, w := range watch {
				if !done[k].IsZero() {
					continue
				}
				rs, err := routeRowsOf(nodes[w.at-1])
				now := time.Now()
				if err != nil {
					all = false
					continue
				}
				if det[k].IsZero() && (w.gone == 0 || !rs[w.gone].Direct) {
					det[k] = now
				}
				if r := rs[w.dest]; r.Up && r.NextHop == w.via && !det[k].IsZero() {
					done[k] = now
				}
				all = all && !done[k].IsZero()
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s cut %d: not every route changed within 10s: detected %v rerouted %v", mode, i, det, done)
			}
		}
		for k, w := range watch {
			if w.gone == 0 {
				det[k] = t0
			}
			detect[k] = append(detect[k], det[k].Sub(t0))
			total[k] = append(total[k], done[k].Sub(t0))
		}
		if slices.ContainsFunc(done, func(d time.Time) bool { return d.Sub(t0) > hb+50*time.Millisecond+100*time.Millisecond }) {
			slow++
			if lateWakes() > late0 {
				slowLate++
			}
		}
		lab.RestoreEdge(1, 2)
		heal(i)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("%s, %d cuts of 1–2, heartbeat timeout %v, load %s", mode, cuts, hb, strings.Join(strings.Fields(string(load))[:3], " "))
	t.Logf("  cuts over the goal + 100 ms: %d, of them %d with a heartbeat that woke late (a stalled process: its peer gets a fresh timeout)", slow, slowLate)
	if len(resetTook) > 0 {
		t.Logf("  (the clock starts as ResetEdge starts; it took %s)", pcts(resetTook))
	}
	for k, w := range watch {
		prop := make([]time.Duration, len(total[k]))
		for i := range prop {
			prop[i] = total[k][i] - detect[k][i]
		}
		t.Logf("  %-22s detection %s  propagation %s  total %s", w.name, pcts(detect[k]), pcts(prop), pcts(total[k]))
		if p99 := pct(total[k], 99); p99 > hb+50*time.Millisecond {
			t.Logf("  %s: p99 %v over the goal %v", w.name, p99, hb+50*time.Millisecond)
		}
	}
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func pcts(ds []time.Duration) string {
	r := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("p50 %s p99 %s", r(pct(ds, 50)), r(pct(ds, 99)))
}
