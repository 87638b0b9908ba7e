package route_test

import (
	"fmt"
	"strings"

	"github.com/corralhq/corral/mesh/route"
)

// check asserts what must hold after every step: routes only over live
// links and below the hop limit, next hops acyclic per destination, and
// when nothing is in flight and nobody starves, every metric is
// Dijkstra's (within the hysteresis allowance).
func (nw *network) check() {
	nw.t.Helper()
	if err := nw.invariants(); err != nil {
		nw.t.Fatalf("%v\n%s", err, nw.dumpAll())
	}
}

func (nw *network) dumpAll() string {
	var s []string
	for _, id := range nw.ids {
		s = append(s, nw.table(id))
	}
	return strings.Join(s, "\n")
}

func (nw *network) invariants() error {
	maxHops := nw.nodes[nw.ids[0]].Config().MaxHops
	for _, id := range nw.ids {
		if !nw.alive[id] {
			continue
		}
		for _, rt := range nw.nodes[id].Table() {
			switch {
			case rt.Hops >= maxHops:
				return fmt.Errorf("node %d: route to %d of %d hops, limit %d", id, rt.Dest, rt.Hops, maxHops)
			case rt.Dest == id:
				return fmt.Errorf("node %d: route to itself", id)
			case !nw.linkUp(id, rt.NextHop):
				return fmt.Errorf("node %d: route to %d via %d, not a live link", id, rt.Dest, rt.NextHop)
			case rt.Alt != 0 && (rt.Alt == rt.NextHop || !nw.linkUp(id, rt.Alt)):
				return fmt.Errorf("node %d: route to %d has alternate %d", id, rt.Dest, rt.Alt)
			case rt.Metric == route.Inf:
				return fmt.Errorf("node %d: selected route to %d with metric Inf", id, rt.Dest)
			}
			r := nw.nodes[id]
			next, m, ok := r.Lookup(rt.Dest)
			anext, am, aok := r.Alternate(rt.Dest)
			if !ok || next != rt.NextHop || m != rt.Metric || aok != (rt.Alt != 0) || anext != rt.Alt || am != rt.AltMetric {
				return fmt.Errorf("node %d: Lookup/Alternate for %d disagree with Table", id, rt.Dest)
			}
		}
	}
	for _, dst := range nw.ids {
		for _, src := range nw.ids {
			if src == dst || !nw.alive[src] {
				continue
			}
			seen := map[route.NodeID]bool{}
			var path []route.NodeID
			for x := src; x != dst; {
				if seen[x] {
					return fmt.Errorf("routing loop towards %d: %v", dst, append(path, x))
				}
				seen[x] = true
				path = append(path, x)
				nh, _, ok := nw.nodes[x].Lookup(dst)
				if !ok {
					break
				}
				x = nh
			}
		}
	}
	if len(nw.queue) == 0 && !nw.starving() && !nw.unconfirmed() {
		return nw.dijkstra(maxHops)
	}
	return nil
}

// unconfirmed reports whether a live router holds routes a reset link's
// neighbour has not repeated yet: the table is not quiet until they go.
func (nw *network) unconfirmed() bool {
	for _, id := range nw.ids {
		if nw.alive[id] && nw.nodes[id].Unconfirmed() > 0 {
			return true
		}
	}
	return false
}

// dijkstra compares every table with shortest paths over the live links.
// Where some shortest path is too long for the hop limit the distance
// vector need not find it, so then the comparison is skipped.
func (nw *network) dijkstra(maxHops uint8) error {
	h := nw.nodes[nw.ids[0]].Config().Hysteresis
	const inf = 1 << 30
	for _, dst := range nw.ids {
		if !nw.alive[dst] {
			continue
		}
		dist := map[route.NodeID]int{}
		for _, id := range nw.ids {
			dist[id] = inf
		}
		dist[dst] = 0
		done := map[route.NodeID]bool{}
		var order []route.NodeID
		for {
			u, du := route.NodeID(0), inf
			for _, id := range nw.ids {
				if !done[id] && dist[id] < du {
					u, du = id, dist[id]
				}
			}
			if u == 0 {
				break
			}
			done[u] = true
			order = append(order, u)
			for _, v := range nw.neighbours(u) {
				if nw.linkUp(u, v) {
					if d := du + int(nw.links[mkEdge(u, v)].cost); d < dist[v] {
						dist[v] = d
					}
				}
			}
		}
		// hmax: the most hops of any shortest path.
		hmax := map[route.NodeID]int{dst: 0}
		for _, x := range order[1:] {
			for _, y := range nw.neighbours(x) {
				if nw.linkUp(x, y) && done[y] && dist[x] == dist[y]+int(nw.links[mkEdge(x, y)].cost) {
					hmax[x] = max(hmax[x], hmax[y]+1)
				}
			}
			if hmax[x] >= int(maxHops) || dist[x] >= int(route.Inf) {
				return nil
			}
		}
		for _, x := range nw.ids {
			if x == dst || !nw.alive[x] {
				continue
			}
			_, m, ok := nw.nodes[x].Lookup(dst)
			switch {
			case dist[x] == inf && ok:
				return fmt.Errorf("quiet: node %d has a route to unreachable %d", x, dst)
			case dist[x] == inf:
			case !ok:
				return fmt.Errorf("quiet: node %d has no route to %d (distance %d)", x, dst, dist[x])
			case int(m) < dist[x] || int(m) > dist[x]+int(h)*hmax[x]:
				return fmt.Errorf("quiet: node %d reaches %d at metric %d, shortest %d", x, dst, m, dist[x])
			}
		}
	}
	return nil
}
