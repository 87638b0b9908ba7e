package kernel

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// nftLines is the nft part of a state: chain, rule handle, expressions.
func nftLines(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "nft a") {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestLargeTable installs a table of ctl's default size (65537 buckets)
// on every node, dispatches by it, and moves the ownership to a node that
// already holds it: that Apply leaves the maps in place (same rule
// handles) and changes only the roles.
func TestLargeTable(t *testing.T) {
	l := newLab(t, 4)
	ctx := context.Background()
	table := ctl.Build(uneven, ctl.TableSize)
	plan := func(self, owner int) Plan {
		p := l.plan(self, owner, even, nil)
		p.Addrs[0].Services[0].Table = table
		return p
	}
	for i := 3; i >= 1; i-- {
		start := time.Now()
		if err := l.dp[i].Apply(ctx, plan(i, 1)); err != nil {
			t.Fatalf("apply on h%d: %v", i, err)
		}
		t.Logf("h%d: first Apply took %v", i, time.Since(start))
	}
	checkSplit(t, l.spread(600, table), uneven)

	before := nftLines(l.state(2))
	if err := l.dp[1].Drop(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := l.dp[2].Apply(ctx, plan(2, 2)); err != nil {
		t.Fatal(err)
	}
	t.Logf("h2: Apply that makes it owner took %v", time.Since(start))
	if after := nftLines(l.state(2)); after != before || before == "" {
		t.Errorf("becoming owner rebuilt the maps\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if err := l.dp[3].Apply(ctx, plan(3, 2)); err != nil {
		t.Fatal(err)
	}
	if err := l.dp[2].Announce(ctx, vip); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for l.neigh() != l.macs[2].String() {
		if time.Now().After(deadline) {
			t.Fatalf("client's neighbour entry is %q, want h2's %s", l.neigh(), l.macs[2])
		}
		time.Sleep(10 * time.Millisecond)
	}
	// h1 is gone but still named by the table: the client uses source
	// ports (below the ephemeral range, so free) whose buckets are h2's and
	// h3's, and each flow must land where Bucket says.
	client := netip.MustParseAddr(l.lab.Addr(client))
	count := map[int]int{}
	for p := uint16(20000); count[2]+count[3] < 60; p++ {
		want := predict(table, nil, netip.AddrPortFrom(client, p))
		if want == 1 {
			continue
		}
		c, err := l.dialFrom(ctx, p)
		if err != nil {
			t.Fatalf("from port %d: %v", p, err)
		}
		if want != c.node {
			t.Errorf("%v on h%d, predicted h%d", c.local(), c.node, want)
		}
		count[c.node]++
		c.c.Close()
	}
}

// TestWeightChangePatch: a weight change of a 65537-bucket table on the
// owner updates only the buckets that move, in place (the address
// chain's rules keep their handles), and the dispatch follows the new
// table at once. A data path without the old plan in memory (a restart)
// rebuilds the table; both times are logged.
func TestWeightChangePatch(t *testing.T) {
	l := newLab(t, 4)
	ctx := context.Background()
	table := ctl.Build(uneven, ctl.TableSize)
	from := func(port uint16) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr(l.lab.Addr(client)), port)
	}
	exc := []Exception{{Client: from(19999), Node: 3}, {Client: from(19998), Node: 3}}
	plan := func(self int) Plan {
		p := l.plan(self, 1, even, exc)
		p.Addrs[0].Services[0].Table = table
		return p
	}
	for i := 1; i <= 3; i++ {
		if err := l.dp[i].Apply(ctx, plan(i)); err != nil {
			t.Fatalf("apply on h%d: %v", i, err)
		}
	}
	before := nftLines(l.state(1))
	fp, err := l.dp[1].Installed()
	if err != nil {
		t.Fatal(err)
	}
	table = ctl.Build(even, ctl.TableSize)
	// One exception moves, one goes, one comes.
	exc = []Exception{{Client: from(19999), Node: 2}, {Client: from(19997), Node: 3}}
	moved := 0
	for b, n := range ctl.Build(uneven, ctl.TableSize) {
		if table[b] != n {
			moved++
		}
	}
	start := time.Now()
	if err := l.dp[1].Apply(ctx, plan(1)); err != nil {
		t.Fatal(err)
	}
	patched := time.Since(start)
	// h2 as after a restart: a new data path, which knows no old plan.
	d2, err := Open("/var/run/netns/"+l.lab.Namespace(2), "eth0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	start = time.Now()
	if err := d2.Apply(ctx, plan(2)); err != nil {
		t.Fatal(err)
	}
	t.Logf("weight change, %d of %d buckets moved: patched on the owner in %v; rebuilt without the old plan in %v",
		moved, len(table), patched, time.Since(start))
	if after := nftLines(l.state(1)); after != before {
		t.Errorf("the weight change rebuilt the owner's maps\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if now, err := l.dp[1].Installed(); err != nil || now == fp {
		t.Errorf("the owner's tables fingerprint %q after the change (was %q, %v): want the new plan's", now, fp, err)
	}
	checkSplit(t, l.spread(600, table), even)
	for _, port := range []uint16{19999, 19998, 19997} {
		c, err := l.dialFrom(ctx, port)
		if err != nil {
			t.Fatalf("from port %d: %v", port, err)
		}
		c.c.Close()
		if want := predict(table, exc, from(port)); c.node != want {
			t.Errorf("%v on h%d after the change, want h%d", c.local(), c.node, want)
		}
	}
}
