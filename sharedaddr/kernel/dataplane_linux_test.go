package kernel

import (
	"context"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var (
	even   = []ctl.Weight{{Node: 1, Weight: 1}, {Node: 2, Weight: 1}, {Node: 3, Weight: 1}}
	uneven = []ctl.Weight{{Node: 1, Weight: 2}, {Node: 2, Weight: 1}, {Node: 3, Weight: 1}}
)

// checkSplit fails unless every node's share of the connections is
// within 5 points of its share of the weight.
func checkSplit(t *testing.T, count map[int]int, weights []ctl.Weight) {
	t.Helper()
	var total, wsum float64
	for _, c := range count {
		total += float64(c)
	}
	for _, w := range weights {
		wsum += float64(w.Weight)
	}
	for _, w := range weights {
		got, want := float64(count[int(w.Node)])/total, float64(w.Weight)/wsum
		if math.Abs(got-want) > 0.05 {
			t.Errorf("node %d: %.1f%% of the connections, want %.1f%% ± 5", w.Node, 100*got, 100*want)
		}
	}
	t.Logf("split %v over %v", count, weights)
}

// TestDataPath runs the server side in a lab, in order: bring-up and
// ARP, direct return, weighted dispatch and an online weight change,
// idempotence and convergence, then fencing of a partitioned owner and
// failover.
func TestDataPath(t *testing.T) {
	l := newLab(t, 4)
	ctx := context.Background()
	l.applyAll(1, even, nil, 1, 2, 3)

	t.Run("arp", func(t *testing.T) {
		got := l.arpAnswers()
		if len(got) != 1 || !got[l.macs[1].String()] {
			t.Fatalf("ARP for %v answered by %v; want only the owner h1 %v", vip, got, l.macs[1])
		}
	})

	t.Run("direct-return", func(t *testing.T) {
		d := l.dp[client]
		link, _ := d.nl.LinkByName("eth0")
		var fd int
		if err := d.in(func() (err error) {
			fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP)))
			if err == nil {
				err = unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: link.Attrs().Index})
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer unix.Close(fd)
		tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		// Source MAC of the replies to each client port, from the capture.
		replyMAC := map[uint16]string{}
		var conns []*conn
		served := map[int]bool{}
		for len(served) < 3 && len(conns) < 60 {
			c, err := l.dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.c.Close()
			conns = append(conns, c)
			served[c.node] = true
			if want := netip.AddrPortFrom(netip.MustParseAddr(l.lab.Addr(client)), c.local().Port()).String(); c.seen != want {
				t.Errorf("node %d saw the client as %s, want %s", c.node, c.seen, want)
			}
		}
		buf := make([]byte, 2048)
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end) && len(replyMAC) < len(conns); {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 14+20+4 || buf[14+9] != 6 || netip.AddrFrom4([4]byte(buf[26:30])) != vip {
				continue
			}
			ihl := int(buf[14]&0xf) * 4
			dport := uint16(buf[14+ihl+2])<<8 | uint16(buf[14+ihl+3])
			replyMAC[dport] = net.HardwareAddr(buf[6:12]).String()
		}
		for _, c := range conns {
			got, ok := replyMAC[c.local().Port()]
			if !ok {
				t.Errorf("no reply to %v captured", c.local())
			} else if got != l.macs[c.node].String() {
				t.Errorf("reply to %v served by h%d came from %s, want h%d's %s", c.local(), c.node, got, c.node, l.macs[c.node])
			}
		}
		if len(served) < 3 {
			t.Errorf("only nodes %v served %d connections", served, len(conns))
		}
	})

	t.Run("weighted", func(t *testing.T) {
		table := ctl.Build(even, tableM)
		checkSplit(t, l.spread(3000, table), even)

		// Held connections across the change to 2:1:1: those whose
		// bucket moved get exceptions, as the walk would report them.
		var held []*conn
		for range 60 {
			c, err := l.dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.c.Close()
			held = append(held, c)
		}
		next := ctl.Build(uneven, tableM)
		var exc []Exception
		moved := 0
		for _, c := range held {
			if predict(next, nil, c.local()) != c.node {
				exc = append(exc, Exception{Client: c.local(), Node: uint64(c.node)})
				moved++
			}
		}
		if moved == 0 {
			t.Fatal("no held connection's bucket moved: the test shows nothing")
		}
		l.applyAll(1, uneven, exc, 1, 2, 3)
		for _, c := range held {
			if err := c.ping(); err != nil {
				t.Errorf("held %v on h%d: %v", c.local(), c.node, err)
			}
		}
		checkSplit(t, l.spread(3000, next), uneven)

		// Control: without the exceptions the moved flows reach a node
		// with no socket for them, which resets them.
		l.applyAll(1, uneven, nil, 1)
		resets := 0
		for _, c := range held {
			err := c.ping()
			wantGone := predict(next, nil, c.local()) != c.node
			switch {
			case wantGone && isReset(err):
				resets++
			case wantGone:
				t.Errorf("moved %v without exception: %v, want a reset", c.local(), err)
			case err != nil:
				t.Errorf("unmoved %v: %v", c.local(), err)
			}
		}
		t.Logf("%d of %d held connections moved; kept by exceptions, reset without", moved, len(held))
		l.applyAll(1, even, nil, 1, 2, 3)
	})

	// Settles the local-rule question (research notes §6) by showing the
	// alternative: with "lookup local" at 0 ahead of the fwmark rules the
	// owner keeps every flow.
	t.Run("local-rule", func(t *testing.T) {
		d := l.dp[1]
		if err := d.nl.RuleAdd(localRule(0, unix.RTPROT_KERNEL)); err != nil {
			t.Fatal(err)
		}
		if count := l.spread(90, nil); count[1] != 90 {
			t.Errorf("with the local rule first: split %v, want all 90 on the owner h1", count)
		}
		if err := d.nl.RuleDel(localRule(0, 0)); err != nil {
			t.Fatal(err)
		}
		l.spread(90, ctl.Build(even, tableM))
	})

	t.Run("sticky", func(t *testing.T) { // and sticky-wild: a table for every port
		l.policy = ctl.Sticky
		defer func() { l.policy = ctl.Weighted; l.applyAll(1, even, nil, 1, 2, 3) }()
		l.applyAll(1, even, nil, 1)
		count := l.spread(60, ctl.Build(even, tableM))
		if len(count) != 1 {
			t.Errorf("sticky: one client's connections went to %v, want one node", count)
		}
		l.policy = ctl.StickyWild
		l.applyAll(1, uneven, nil, 1)
		count = l.spread(60, ctl.Build(uneven, tableM))
		if len(count) != 1 {
			t.Errorf("sticky-wild: one client's connections went to %v, want one node", count)
		}
	})

	t.Run("idempotent", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			before := l.state(i)
			if err := l.dp[i].Apply(ctx, l.plan(i, 1, even, nil)); err != nil {
				t.Fatal(err)
			}
			if after := l.state(i); after != before {
				t.Errorf("h%d: a second Apply changed the state\nbefore:\n%s\nafter:\n%s", i, before, after)
			}
		}
	})

	t.Run("converges", func(t *testing.T) {
		want := l.state(1)
		d := l.dp[1]
		// A half-applied state: a route and the address gone, a stale
		// rule and route of a node no longer in the plan, no nft table.
		link, _ := d.nl.LinkByName("eth0")
		rs, err := d.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: TableBase + 1}, netlink.RT_FILTER_TABLE)
		if err != nil || len(rs) != 1 {
			t.Fatalf("routes of table %d: %v %v", TableBase+1, rs, err)
		}
		if err := d.nl.RouteDel(&rs[0]); err != nil {
			t.Fatal(err)
		}
		if err := d.nl.AddrDel(link, &netlink.Addr{IPNet: &net.IPNet{IP: vip.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
			t.Fatal(err)
		}
		if err := d.nl.RuleAdd(fwRule(TableBase + 9)); err != nil {
			t.Fatal(err)
		}
		if err := d.nl.RouteReplace(&netlink.Route{Table: TableBase + 9, LinkIndex: link.Attrs().Index, Protocol: RTProto,
			Gw: net.ParseIP("10.251.0.9"), Flags: int(netlink.FLAG_ONLINK)}); err != nil {
			t.Fatal(err)
		}
		if err := d.dropTable(); err != nil {
			t.Fatal(err)
		}
		if err := d.Apply(ctx, l.plan(1, 1, even, nil)); err != nil {
			t.Fatal(err)
		}
		// Rule and chain handles are new after a rebuild; compare the rest.
		if got := stripHandles(l.state(1)); got != stripHandles(want) {
			t.Errorf("after Apply over a half-applied state\n got:\n%s\nwant:\n%s", got, stripHandles(want))
		}
		c, err := l.dial(ctx)
		if err != nil {
			t.Fatalf("dial after convergence: %v", err)
		}
		c.c.Close()
	})

	t.Run("fencing", func(t *testing.T) {
		var held []*conn
		for len(held) < 20 {
			c, err := l.dial(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer c.c.Close()
			if c.node != 1 {
				held = append(held, c)
			}
		}
		if got := l.neigh(); got != l.macs[1].String() {
			t.Fatalf("client's neighbour entry for the VIP is %q, want h1's %s", got, l.macs[1])
		}
		// h1 is cut off from the majority and fences itself; the
		// majority's new owner takes over; then the partition heals.
		l.lab.Partition([]int{1}, []int{2, 3, client})
		if err := l.dp[1].Drop(ctx); err != nil {
			t.Fatalf("drop on h1: %v", err)
		}
		if s := l.state(1); strings.Contains(s, vip.String()) || strings.Contains(s, "nft ") || !strings.Contains(s, "0:\tfrom all lookup local") {
			t.Errorf("h1 after Drop still holds corral's state:\n%s", s)
		}
		// The new view: h2 owns, h2 and h3 serve; held flows whose bucket
		// moved are the walk's exceptions.
		survivors := []ctl.Weight{{Node: 2, Weight: 1}, {Node: 3, Weight: 1}}
		next := ctl.Build(survivors, tableM)
		var exc []Exception
		for _, c := range held {
			if predict(next, nil, c.local()) != c.node {
				exc = append(exc, Exception{Client: c.local(), Node: uint64(c.node)})
			}
		}
		l.applyAll(2, survivors, exc, 3, 2)
		if err := l.dp[2].Announce(ctx, vip); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for l.neigh() != l.macs[2].String() {
			if time.Now().After(deadline) {
				t.Fatalf("client's neighbour entry is %q 2 s after the announcement, want h2's %s", l.neigh(), l.macs[2])
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, c := range held {
			if err := c.ping(); err != nil {
				t.Errorf("held %v on h%d across the failover: %v", c.local(), c.node, err)
			}
		}
		l.lab.Heal()
		if got := l.arpAnswers(); len(got) != 1 || !got[l.macs[2].String()] {
			t.Errorf("ARP after failover and heal answered by %v; want only h2 %v", got, l.macs[2])
		}
		count := l.spread(300, next)
		if count[1] != 0 || count[2] == 0 || count[3] == 0 {
			t.Errorf("after failover the split is %v; want h2 and h3 only", count)
		}
	})
}

func stripHandles(s string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.Index(line, " handle "); strings.HasPrefix(line, "nft ") && i > 0 {
			line = line[:i] + line[strings.Index(line, " exprs"):]
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
