package kernel

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// affTimeout is the lab's affinity timeout: long enough that a paced
// client stays within it on a loaded machine, short for the idle wait.
const affTimeout = 1500 * time.Millisecond

// moving returns weights, over the nodes of from, that keep node keep in
// the table but give bucket b to another node.
func moving(t *testing.T, from []ctl.Weight, keep uint64, b int) []ctl.Weight {
	t.Helper()
	for w := uint32(2); w < 100; w++ {
		ws := slices.Clone(from)
		for i := range ws {
			if ws[i].Node != keep {
				ws[i].Weight = w
			}
		}
		if tb := ctl.Build(ws, tableM); tb[b] != keep && slices.Contains(tb, keep) {
			return ws
		}
	}
	t.Fatalf("no weights move bucket %d off node %d", b, keep)
	return nil
}

// weightsWhere returns weights 1–12 of nodes whose table satisfies ok.
func weightsWhere(t *testing.T, nodes []uint64, ok func([]uint64) bool) []ctl.Weight {
	t.Helper()
	ws := make([]ctl.Weight, len(nodes))
	var try func(i int) bool
	try = func(i int) bool {
		if i == len(nodes) {
			return ok(ctl.Build(ws, tableM))
		}
		for w := uint32(1); w <= 12; w++ {
			ws[i] = ctl.Weight{Node: nodes[i], Weight: w}
			if try(i + 1) {
				return true
			}
		}
		return false
	}
	if !try(0) {
		t.Fatalf("no weights of %v give the table wanted", nodes)
	}
	return ws
}

// entryOf is the client's affinity entry on the owner h1, if any.
func (l *lab) entryOf(t *testing.T) (Affinity, bool) {
	t.Helper()
	es, err := l.dp[1].Affinities(vip)
	if err != nil {
		t.Fatal(err)
	}
	me := netip.MustParseAddr(l.lab.Addr(client))
	for _, e := range es {
		if e.Client == me {
			return e, true
		}
	}
	return Affinity{}, false
}

// forget empties the owner's affinity maps, left by an earlier subtest:
// a plan without affinity carries no entry over.
func (l *lab) forget(t *testing.T) {
	t.Helper()
	aff := l.affinity
	l.affinity = 0
	l.applyAll(1, even, nil, 1)
	l.affinity = aff
}

// dialNode opens a connection through the VIP and returns its node.
func (l *lab) dialNode(t *testing.T) int { t.Helper(); return l.dialNodeTo(t, port) }

// dialNodeTo opens a connection to VIP:p and returns its node.
func (l *lab) dialNodeTo(t *testing.T, p uint16) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := l.dialTo(ctx, 0, p)
	if err != nil {
		t.Fatal(err)
	}
	c.c.Close()
	return c.node
}

func TestAffinity(t *testing.T) {
	l := newLab(t, 4)
	// Every node serves; only the owner h1's tables change below.
	l.applyAll(1, even, nil, 1, 2, 3)
	me := netip.AddrPortFrom(netip.MustParseAddr(l.lab.Addr(client)), 0)
	// Sticky starts the client on another node than the owner, so that
	// its entry holds a mark; sticky-wild on the owner (no mark).
	for _, policy := range []ctl.Policy{ctl.Sticky, ctl.StickyWild} {
		t.Run(policy.String(), func(t *testing.T) {
			l.policy, l.affinity = policy, affTimeout
			l.forget(t)
			b := Bucket(policy, me, tableM)
			w1 := even
			if policy == ctl.Sticky {
				w1 = moving(t, even, 1, b)
			}
			x := ctl.Build(w1, tableM)[b]
			if (x == 1) != (policy == ctl.StickyWild) {
				t.Fatalf("bucket %d starts on h%d", b, x)
			}
			w2 := moving(t, w1, x, b)
			y := ctl.Build(w2, tableM)[b]
			t.Logf("bucket %d: h%d, then h%d", b, x, y)
			l.applyAll(1, w1, nil, 1)
			if n := l.dialNode(t); n != int(x) {
				t.Fatalf("first flow went to h%d, its bucket's node is h%d", n, x)
			}
			if e, ok := l.entryOf(t); !ok || e.Node != x {
				t.Fatalf("affinity entry %+v (%v), want node %d", e, ok, x)
			}
			held, err := l.dial(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			defer held.c.Close()

			// The weight change moves the client's bucket to y: while it
			// keeps connecting within the timeout its flows stay on x,
			// for longer than the timeout in all.
			l.applyAll(1, w2, nil, 1)
			start := time.Now()
			var last time.Time
			for tick := time.NewTicker(affTimeout / 3); time.Since(start) < 2*affTimeout; <-tick.C {
				if n := l.dialNode(t); n != int(x) {
					t.Fatalf("after the weight change, a flow %v in went to h%d, want h%d (table: h%d)", time.Since(start), n, x, y)
				}
				last = time.Now()
			}
			if err := held.ping(); err != nil || held.node != int(x) {
				t.Fatalf("held connection on h%d across the change: %v", held.node, err)
			}
			held.c.Close()

			// Idle: the entry expires no sooner than the timeout, and the
			// client's next flow follows the new table.
			for {
				if _, ok := l.entryOf(t); !ok {
					break
				}
				if time.Since(last) > 3*affTimeout+5*time.Second {
					t.Fatalf("affinity entry still there %v after the last packet", time.Since(last))
				}
				time.Sleep(50 * time.Millisecond) // polling the kernel's map, not synchronising
			}
			if idle := time.Since(last); idle < affTimeout-100*time.Millisecond {
				t.Errorf("entry gone %v after the last flow, before the %v timeout", idle, affTimeout)
			}
			if n := l.dialNode(t); n != int(y) {
				t.Fatalf("after the timeout the flow went to h%d, want the table's h%d", n, y)
			}

			// y leaves the table: its entries go with it, at once.
			var w3 []ctl.Weight
			for _, w := range w2 {
				if w.Node != y {
					w3 = append(w3, w)
				}
			}
			z := ctl.Build(w3, tableM)[b]
			l.applyAll(1, w3, nil, 1)
			if e, ok := l.entryOf(t); ok && e.Node == y {
				t.Fatalf("entry for h%d kept after it left the table", y)
			}
			if n := l.dialNode(t); n != int(z) {
				t.Fatalf("after h%d left, the flow went to h%d, want h%d", y, n, z)
			}
		})
	}

	// A node leaving the plan renumbers the others' marks: the entries
	// carried over follow their node, not its old mark.
	t.Run("marks-shift", func(t *testing.T) {
		l.policy, l.affinity = ctl.Sticky, affTimeout
		l.forget(t)
		all := l.nodes
		defer func() { l.nodes = all }()
		b := Bucket(ctl.Sticky, me, tableM)
		w1 := weightsWhere(t, []uint64{1, 2, 3}, func(tb []uint64) bool { return tb[b] == 3 })
		w2 := weightsWhere(t, []uint64{1, 3}, func(tb []uint64) bool { return tb[b] == 1 && slices.Contains(tb, 3) })
		l.applyAll(1, w1, nil, 1)
		if n := l.dialNode(t); n != 3 {
			t.Fatalf("first flow went to h%d, want h3", n)
		}
		l.nodes = slices.DeleteFunc(slices.Clone(all), func(n Node) bool { return n.ID == 2 })
		l.applyAll(1, w2, nil, 1)
		if n := l.dialNode(t); n != 3 {
			t.Fatalf("after h2 left the plan the flow went to h%d, want h3 (table: h1)", n)
		}
		if e, ok := l.entryOf(t); !ok || e.Node != 3 {
			t.Fatalf("entry %+v (%v), want node 3", e, ok)
		}
	})

	// Sticky's entry is per port group: ports 80 and 81 have one table,
	// so a client steered on 80 is kept on its node for its first flow
	// to 81 after the change; sticky-wild's one table covers every port.
	const port2 = 81
	for i := 1; i <= 3; i++ {
		l.serveOn(i, port2)
	}
	for _, policy := range []ctl.Policy{ctl.Sticky, ctl.StickyWild} {
		t.Run("ports-"+policy.String(), func(t *testing.T) {
			l.policy, l.affinity = policy, affTimeout
			l.forget(t)
			b := Bucket(policy, me, tableM)
			w1 := moving(t, even, 1, b)
			x := ctl.Build(w1, tableM)[b]
			w2 := moving(t, w1, x, b)
			apply := func(ws []ctl.Weight) {
				t.Helper()
				p := l.plan(1, 1, ws, nil)
				if policy == ctl.Sticky {
					s := p.Addrs[0].Services[0]
					s.Port = port2
					p.Addrs[0].Services = append(p.Addrs[0].Services, s)
				}
				if err := l.dp[1].Apply(context.Background(), p); err != nil {
					t.Fatal(err)
				}
			}
			apply(w1)
			if n := l.dialNodeTo(t, port); n != int(x) {
				t.Fatalf("first flow went to h%d, want h%d", n, x)
			}
			apply(w2)
			if n := l.dialNodeTo(t, port2); n != int(x) {
				t.Fatalf("first flow to :%d after the change went to h%d, want h%d (table: h%d)", port2, n, x, ctl.Build(w2, tableM)[b])
			}
			e, ok := l.entryOf(t)
			if want := map[ctl.Policy]int{ctl.Sticky: 2, ctl.StickyWild: 1}[policy]; !ok || len(e.Services) != want {
				t.Fatalf("entry %+v (%v), want one for a group of %d services", e, ok, want)
			}
		})
	}

	t.Run("timeout-0", func(t *testing.T) {
		l.policy, l.affinity = ctl.Sticky, 0
		defer func() { l.affinity = 0 }()
		b := Bucket(ctl.Sticky, me, tableM)
		x := ctl.Build(even, tableM)[b]
		w2 := moving(t, even, x, b)
		y := ctl.Build(w2, tableM)[b]
		l.applyAll(1, even, nil, 1)
		if n := l.dialNode(t); n != int(x) {
			t.Fatalf("flow went to h%d, want h%d", n, x)
		}
		l.applyAll(1, w2, nil, 1)
		if n := l.dialNode(t); n != int(y) {
			t.Fatalf("without affinity, the flow after the change went to h%d, want the table's h%d", n, y)
		}
		if es, err := l.dp[1].Affinities(vip); err != nil || len(es) != 0 {
			t.Fatalf("affinity entries without a timeout: %v %v", es, err)
		}
	})
}
