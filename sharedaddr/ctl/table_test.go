package ctl_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// moved is the fraction of buckets whose node differs.
func moved(a, b []uint64) float64 {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return float64(n) / float64(len(a))
}

// ideal is the least fraction of buckets a change of shares must move:
// the sum of the shares that grew.
func ideal(before, after []ctl.Weight) float64 {
	share := func(ws []ctl.Weight) map[uint64]float64 {
		var sum float64
		for _, w := range ws {
			sum += float64(w.Weight)
		}
		m := map[uint64]float64{}
		for _, w := range ws {
			m[w.Node] = float64(w.Weight) / sum
		}
		return m
	}
	b, a := share(before), share(after)
	var grew float64
	for n, s := range a {
		if s > b[n] {
			grew += s - b[n]
		}
	}
	return grew
}

func equalWeights(n int, w uint32) []ctl.Weight {
	var ws []ctl.Weight
	for i := range n {
		ws = append(ws, ctl.Weight{Node: uint64(i + 1), Weight: w})
	}
	return ws
}

// TestBuildShares: every node's share of the buckets is its share of the
// weight, to within a bucket or two.
func TestBuildShares(t *testing.T) {
	for _, ws := range [][]ctl.Weight{
		equalWeights(3, 1),
		{{1, 1}, {2, 2}, {3, 3}},
		{{4, 100}, {9, 200}, {17, 700}},
		{{1, 1}, {2, 65536}},
		equalWeights(16, 10),
	} {
		tb := ctl.Build(ws, ctl.TableSize)
		var sum float64
		for _, w := range ws {
			sum += float64(w.Weight)
		}
		for _, w := range ws {
			got := float64(countOf(tb, w.Node))
			want := float64(w.Weight) / sum * ctl.TableSize
			if d := got - want; d > 2 || d < -2 {
				t.Errorf("weights %v: node %d has %v buckets, want %.1f", ws, w.Node, got, want)
			}
		}
	}
}

func TestBuildNotPrime(t *testing.T) {
	if tb := ctl.Build(equalWeights(3, 1), 1024); tb != nil {
		t.Errorf("Build with 1024 buckets = %d buckets, want nil", len(tb))
	}
	if tb := ctl.Build(equalWeights(3, 1), 1031); len(tb) != 1031 {
		t.Errorf("Build with 1031 buckets = %d buckets", len(tb))
	}
}

func countOf(tb []uint64, node uint64) int {
	n := 0
	for _, x := range tb {
		if x == node {
			n++
		}
	}
	return n
}

// TestWeightSplit: 3000 clients through the machine's Lookup land on the
// nodes in their weights' proportions: each node's share of the clients
// within 5 percentage points of its weight's share. (The table itself is
// exact, TestBuildShares; what remains is sampling: with 3000 clients one
// standard deviation of a 1/6 share is 0.7 points.)
func TestWeightSplit(t *testing.T) {
	for _, tc := range []struct {
		policy ctl.Policy
		ws     []ctl.Weight
	}{
		{ctl.Weighted, []ctl.Weight{{1, 1}, {2, 2}, {3, 3}}},
		{ctl.Weighted, []ctl.Weight{{1, 1}, {2, 1}, {3, 1}}},
		{ctl.Sticky, []ctl.Weight{{1, 50}, {2, 30}, {3, 20}}},
	} {
		n := newNode(0)
		n.view(t, 1, 1, [2]uint64{1, 1}, [2]uint64{2, 2}, [2]uint64{3, 3})
		a := ctl.Addr{IP: netip.MustParseAddr("10.1.0.1")}
		n.apply(t, 2, ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: tc.policy, Weights: tc.ws})
		for i, w := range tc.ws {
			if r := n.apply(t, uint64(3+i), ctl.Cmd{Op: ctl.OpListen, Addr: a, Node: w.Node, Proto: ctl.TCP, Port: 80}); r.Code != ctl.OK {
				t.Fatal(replyText(r))
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		const clients = 3000
		got := map[uint64]int{}
		for range clients {
			ip := netip.AddrFrom4([4]byte{byte(rng.IntN(223) + 1), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			node, ok := n.m.Lookup(a, ctl.TCP, 80, netip.AddrPortFrom(ip, uint16(1024+rng.IntN(60000))))
			if !ok {
				t.Fatal("no node")
			}
			got[node]++
		}
		var sum float64
		for _, w := range tc.ws {
			sum += float64(w.Weight)
		}
		for _, w := range tc.ws {
			want := float64(w.Weight) / sum * clients
			rel := (float64(got[w.Node]) - want) / want
			points := (float64(got[w.Node]) - want) / clients
			t.Logf("%v %v: node %d got %d of %d clients, want %.0f (%+.1f %% of its share, %+.2f points)", tc.policy, tc.ws, w.Node, got[w.Node], clients, want, 100*rel, 100*points)
			if points > 0.05 || points < -0.05 {
				t.Errorf("%v %v: node %d got %d clients, want %.0f ± 5 points", tc.policy, tc.ws, w.Node, got[w.Node], want)
			}
		}
	}
}

// TestDisruption measures the buckets a change moves against the least
// any table could (the share that moves), and bounds it.
func TestDisruption(t *testing.T) {
	type change struct {
		name          string
		before, after []ctl.Weight
	}
	var cs []change
	for _, n := range []int{3, 5, 10} {
		base := equalWeights(n, 100)
		up := slices.Clone(base)
		up[0].Weight = 150
		down := slices.Clone(base)
		down[0].Weight = 50
		drain := slices.Clone(base[1:])
		join := equalWeights(n+1, 100)
		cs = append(cs,
			change{fmt.Sprintf("%d nodes, one weight 100→150", n), base, up},
			change{fmt.Sprintf("%d nodes, one weight 100→50", n), base, down},
			change{fmt.Sprintf("%d nodes, one leaves", n), base, drain},
			change{fmt.Sprintf("%d nodes, one joins", n), base, join},
		)
	}
	for _, c := range cs {
		a, b := ctl.Build(c.before, ctl.TableSize), ctl.Build(c.after, ctl.TableSize)
		m, id := moved(a, b), ideal(c.before, c.after)
		t.Logf("%-32s moved %5.2f %% of buckets, least possible %5.2f %% (×%.2f)", c.name, 100*m, 100*id, m/id)
		// A leave moves exactly the leaver's buckets with Maglev's fill
		// order; the others stay within a small multiple of the least.
		if m > 3*id+0.01 {
			t.Errorf("%s: moved %.2f %%, least %.2f %%", c.name, 100*m, 100*id)
		}
	}
}

// TestSameCommandsSameTables: machines fed the same random commands — one
// of them restored from the other's snapshot half-way — hold the same
// state and derive the same owners and tables at every step.
func TestSameCommandsSameTables(t *testing.T) {
	const size = 1021
	rng := rand.New(rand.NewPCG(7, 7))
	a, b := newNode(size), newNode(size)
	addrs := []ctl.Addr{
		{IP: netip.MustParseAddr("10.0.0.1")},
		{IP: netip.MustParseAddr("10.0.0.2")},
		{Stack: 9, IP: netip.MustParseAddr("2001:db8::1")},
	}
	ports := []uint16{22, 80, 443}
	protos := []uint8{ctl.TCP, ctl.UDP}
	born := map[uint64]uint64{}
	inView := map[uint64]bool{}
	instance := uint64(0)
	for step := range 2000 {
		index := uint64(step + 1)
		if rng.IntN(20) == 0 {
			// A new view: a random member leaves or a new one joins.
			instance++
			id := uint64(rng.IntN(6) + 1)
			if inView[id] {
				delete(inView, id)
			} else {
				inView[id] = true
				born[id] = instance
			}
			var ms [][2]uint64
			for _, id := range slices.Sorted(func(yield func(uint64) bool) {
				for id := range inView {
					if !yield(id) {
						return
					}
				}
			}) {
				ms = append(ms, [2]uint64{id, born[id]})
			}
			a.view(t, index, instance, ms...)
			b.view(t, index, instance, ms...)
		} else {
			c := ctl.Cmd{
				Op:   ctl.Op(rng.IntN(6) + 1),
				Addr: addrs[rng.IntN(len(addrs))], Node: uint64(rng.IntN(6) + 1),
				Proto: protos[rng.IntN(2)], Port: ports[rng.IntN(len(ports))],
				Policy: ctl.Policy(rng.IntN(3) + 1), Replace: rng.IntN(2) == 0,
				Kind: ctl.Kind(rng.IntN(3) + 1), Index: uint16(rng.IntN(4)),
				Affinity: time.Duration(rng.IntN(3)) * time.Second,
			}
			if c.Op == ctl.OpAdd && c.Policy == ctl.Sticky {
				c.Proto = 0 // unused by ADD; keeps ParseCmd ∘ AppendCmd exact
			}
			if c.Kind != ctl.Slice {
				c.Proto = 0
			}
			if c.Kind == ctl.SPI && (c.Op == ctl.OpLease || c.Op == ctl.OpRelease) {
				c.Addr.IP = netip.Addr{}
			}
			for n := range uint64(rng.IntN(4)) {
				c.Weights = append(c.Weights, ctl.Weight{Node: n*2 + 1, Weight: uint32(rng.IntN(4))})
			}
			ra, rb := a.apply(t, index, c), b.apply(t, index, c)
			if ra != rb {
				t.Fatalf("step %d %v: replies differ: %v / %v", step, c.Op, replyText(ra), replyText(rb))
			}
		}
		if step == 1000 {
			var buf bytes.Buffer
			if err := a.m.Snapshot(a.tx, &buf); err != nil {
				t.Fatal(err)
			}
			b = newNode(size)
			if err := b.m.Restore(b.tx, &buf); err != nil {
				t.Fatal(err)
			}
		}
		if step%50 != 0 {
			continue
		}
		if sa, sb := a.stateText(), b.stateText(); sa != sb {
			t.Fatalf("step %d: states differ:\n%s\n%s", step, sa, sb)
		}
		for _, ad := range addrs {
			oa, oka := a.m.Owner(ad)
			ob, okb := b.m.Owner(ad)
			if oa != ob || oka != okb {
				t.Fatalf("step %d: owners of %v differ: %d %d", step, ad, oa, ob)
			}
			for _, p := range protos {
				for _, port := range ports {
					if ta, tb := a.m.Table(ad, p, port), b.m.Table(ad, p, port); !slices.Equal(ta, tb) {
						t.Fatalf("step %d: tables of %v %d/%d differ", step, ad, port, p)
					}
				}
			}
		}
	}
	if s := a.stateText(); len(s) < 100 {
		t.Fatalf("the random commands left almost nothing to compare:\n%s", s)
	}
}
