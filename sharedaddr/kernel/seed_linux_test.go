package kernel

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// The affinity entries of an owner that dies die with it; the new owner
// seeds its own from the exceptions (seed_linux.go). The client is on h3
// by its bucket; a weight change gives the bucket to h2, and its held
// flow is the walk's exception. h1 dies; h2, the new owner, would deliver
// the client's next flow locally by the table. With the seed, the client
// stays on h3, with the full timeout; a client with an entry already
// keeps it; and a restart of h2's process keeps the entries.
func TestAffinitySeed(t *testing.T) {
	const timeout = time.Minute // no expiry under the test
	l := newLab(t, 4)
	l.policy, l.affinity = ctl.Sticky, timeout
	me := netip.AddrPortFrom(netip.MustParseAddr(l.lab.Addr(client)), 0)
	b := Bucket(ctl.Sticky, me, tableM)
	w1 := weightsWhere(t, []uint64{1, 2, 3}, func(tb []uint64) bool { return tb[b] == 3 })
	w2 := weightsWhere(t, []uint64{1, 2, 3}, func(tb []uint64) bool { return tb[b] == 2 })
	l.applyAll(1, w1, nil, 1, 2, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	held, err := l.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer held.c.Close()
	if held.node != 3 {
		t.Fatalf("first flow on h%d, its bucket's node is h3", held.node)
	}
	exc := []Exception{{Client: held.local(), Node: 3, Proto: TCP, Port: port}}
	l.applyAll(1, w2, exc, 1, 2, 3)

	// h1 dies: h2 takes the address, as the agent does, first with the
	// plan it holds, then the new one.
	if err := l.dp[1].Drop(ctx); err != nil {
		t.Fatal(err)
	}
	l.applyAll(2, w2, exc, 2, 3)
	l.announceTo(ctx, t, 2, client)
	entry := func(d *Dataplane, c netip.Addr) (Affinity, bool) {
		t.Helper()
		es, err := d.Affinities(vip)
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(es, func(e Affinity) bool { return e.Client == c })
		if i < 0 {
			return Affinity{}, false
		}
		return es[i], true
	}
	if e, ok := entry(l.dp[2], me.Addr()); !ok || e.Node != 3 || e.Left < timeout-10*time.Second {
		t.Fatalf("new owner's entry for the client %+v (%v), want node 3 with about %v left", e, ok, timeout)
	}
	for range 5 {
		if n := l.dialNode(t); n != 3 {
			t.Fatalf("after the failover a new flow went to h%d, want h3 (its held flow's node; table: h2)", n)
		}
	}
	if err := held.ping(); err != nil {
		t.Fatalf("held flow on h3 across the failover: %v", err)
	}

	// Owner already: a new exception seeds in a batch of its own; an
	// exception of a client with an entry changes nothing.
	other := netip.MustParseAddrPort("192.0.2.7:4000")
	exc2 := append(slices.Clone(exc), Exception{Client: other, Node: 1, Proto: TCP, Port: port},
		Exception{Client: netip.AddrPortFrom(me.Addr(), 1), Node: 2, Proto: TCP, Port: port})
	l.applyAll(2, w2, exc2, 2)
	if e, ok := entry(l.dp[2], other.Addr()); !ok || e.Node != 1 {
		t.Fatalf("entry for %v after its exception: %+v (%v), want node 1", other, e, ok)
	}
	if e, ok := entry(l.dp[2], me.Addr()); !ok || e.Node != 3 {
		t.Fatalf("the client's entry after an exception to h2: %+v (%v), want node 3 kept", e, ok)
	}

	// h2's process restarts: it holds nothing in memory, applies a
	// plan that owns nothing (fenced), then owns again.
	l.dp[2].Close()
	d, err := Open("/var/run/netns/"+l.lab.Namespace(2), "eth0", nil)
	if err != nil {
		t.Fatal(err)
	}
	l.dp[2] = d
	t.Cleanup(func() { d.Close() })
	l.applyAll(0, w2, exc2, 2)
	l.applyAll(2, w2, exc2, 2)
	if e, ok := entry(l.dp[2], me.Addr()); !ok || e.Node != 3 {
		t.Fatalf("after a restart of h2's process the client's entry is %+v (%v), want node 3", e, ok)
	}
	if n := l.dialNode(t); n != 3 {
		t.Fatalf("after a restart of h2's process a new flow went to h%d, want h3", n)
	}
}
