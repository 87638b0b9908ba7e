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
