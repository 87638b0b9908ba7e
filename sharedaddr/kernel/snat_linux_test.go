package kernel

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// TestUnmodifiedClient: applications that bind the VIP without the
// library — a plain Dialer from VIP:0 or from a fixed port in no slice,
// a plain UDP socket on VIP:0 or such a port — on all three nodes at
// once reach h5, which sees each flow from a port of its node's slice,
// and get their replies; flows in from h4 to every serving node keep
// the service port and the client's address. A control run without
// the snat rules loses the replies of a non-owner's flows; across an
// owner failover the mapped flows live on.
func TestUnmodifiedClient(t *testing.T) {
	l := newLab(t, 5)
	// A lost reply shows as a connect that never completes: bound it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := func(i int) uint16 { return uint16(40000 + 1000*(i-1)) }
	inSlice := func(i int, p uint16) bool { return p >= base(i) && p <= base(i)+999 }
	for i := 1; i <= 3; i++ {
		for _, proto := range []uint8{TCP, UDP} {
			l.slices = append(l.slices, Slice{Proto: proto, First: base(i), Last: base(i) + 999, Node: uint64(i)})
		}
		// The kernel's ephemeral ports, all outside the slices: every
		// VIP:0 flow must be mapped, none lands in a slice by chance.
		if err := l.dp[i].in(func() error {
			return os.WriteFile("/proc/sys/net/ipv4/ip_local_port_range", []byte("20000 29999"), 0)
		}); err != nil {
			t.Fatal(err)
		}
	}
	l.applyAll(1, even, nil, 1, 2, 3)
	l.outside()

	var wg sync.WaitGroup
	var mu sync.Mutex // guards held
	var held []*conn
	for i := 1; i <= 3; i++ {
		wg.Go(func() {
			fixed := uint16(30000 + i)
			for _, p := range []uint16{0, 0, 0, 0, fixed} {
				c, err := l.dialOut(ctx, i, p)
				if err != nil {
					t.Errorf("h%d from VIP:%d: %v", i, p, err)
					continue
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
				app := c.local()
				if inSlice(i, app.Port()) || (p != 0 && app.Port() != p) {
					t.Errorf("h%d's socket is on %v, want a port outside its slice (%d)", i, app, p)
				}
				seen, err := netip.ParseAddrPort(c.seen)
				if err != nil || seen.Addr() != vip || !inSlice(i, seen.Port()) {
					t.Errorf("h5 saw h%d's flow from %s, want VIP:%d-%d", i, c.seen, base(i), base(i)+999)
				}
				if err := c.ping(); err != nil {
					t.Errorf("h%d from %v: echo: %v", i, app, err)
				}
			}
			for _, p := range []uint16{0, uint16(31000 + i)} {
				got, err := l.udpOut(i, p)
				if err != nil {
					t.Errorf("h%d udp from VIP:%d: %v", i, p, err)
					continue
				}
				seen, err := netip.ParseAddrPort(got)
				if err != nil || seen.Addr() != vip || !inSlice(i, seen.Port()) {
					t.Errorf("h5 saw h%d's datagram from VIP:%d as %s, want VIP:%d-%d", i, p, got, base(i), base(i)+999)
				}
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range held {
			c.c.Close()
		}
	}()
	// The mapped flows live on while new ones come in.
	for _, c := range held {
		if err := c.ping(); err != nil {
			t.Errorf("h%d's flow from %v: %v", c.node, c.local(), err)
		}
	}

	// Flows in: dispatched to all three nodes, owner included, with the
	// client's address seen and the replies from VIP:80 (a reply from
	// any other port would not open the client's connection).
	served := map[int]int{}
	for range 30 {
		c, err := l.dial(ctx)
		if err != nil {
			t.Fatalf("h4 to VIP:%d: %v", port, err)
		}
		if c.seen != c.local().String() {
			t.Errorf("h%d saw h4's flow from %s, want %v", c.node, c.seen, c.local())
		}
		if got := c.c.RemoteAddr().String(); got != netip.AddrPortFrom(vip, port).String() {
			t.Errorf("h4's flow to h%d is from %s", c.node, got)
		}
		if err := c.ping(); err != nil {
			t.Errorf("h4 to h%d: echo: %v", c.node, err)
		}
		served[c.node]++
		c.c.Close()
	}
	if len(served) != 3 {
		t.Errorf("flows in went to %v, want all three nodes", served)
	}
	if t.Failed() {
		return
	}

	// Failover: h1 fences itself, h2 takes over (h1's slices go, so
	// every table is rebuilt). The mapped flows of h2 and h3 live on,
	// and new ones are mapped, on the new owner too.
	if err := l.dp[1].Drop(ctx); err != nil {
		t.Fatal(err)
	}
	var kept []Slice
	for _, s := range l.slices {
		if s.Node != 1 {
			kept = append(kept, s)
		}
	}
	l.slices = kept
	l.applyAll(2, even[1:], nil, 3, 2)
	l.announceTo(ctx, t, 2, server)
	for _, c := range held {
		if c.node == 1 {
			continue
		}
		if err := c.ping(); err != nil {
			t.Errorf("h%d's mapped flow from %v across the failover: %v", c.node, c.local(), err)
		}
	}
	for _, i := range []int{2, 3} {
		c, err := l.dialOut(ctx, i, 0)
		if err != nil {
			t.Errorf("h%d from VIP:0 after the failover: %v", i, err)
			continue
		}
		c.c.Close()
		if seen, err := netip.ParseAddrPort(c.seen); err != nil || !inSlice(i, seen.Port()) {
			t.Errorf("h5 saw h%d's flow after the failover from %s", i, c.seen)
		}
		if got, err := l.udpOut(i, 0); err != nil {
			t.Errorf("h%d udp from VIP:0 after the failover: %v", i, err)
		} else if seen, err := netip.ParseAddrPort(got); err != nil || !inSlice(i, seen.Port()) {
			t.Errorf("h5 saw h%d's datagram after the failover from %s", i, got)
		}
	}

	// Control, last: without the snat rules, the replies to a
	// non-owner's flows from ports outside its slice go to the owner,
	// and are lost. (Last, for removing a netns's last nat rule stops
	// its conntrack, and with it the mapping of the flows held.)
	for i := 2; i <= 3; i++ {
		c, err := l.dp[i].nftConn()
		if err != nil {
			t.Fatal(err)
		}
		c.FlushChain(snatCh)
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{3} { // h2 owns: replies come to it
		for _, p := range []uint16{0, uint16(30100 + i)} {
			cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			if c, err := l.dialOut(cctx, i, p); err == nil {
				c.c.Close()
				t.Errorf("h%d connected from VIP:%d without the snat rules; want a failure", i, p)
			}
			cancel()
		}
		if got, err := l.udpOut(i, 0); err == nil {
			t.Errorf("h%d's datagram from VIP:0 answered without the snat rules (h5 saw %s)", i, got)
		}
	}
}

// TestUnmodifiedClientServedUDP: the owner's answers to datagrams it
// serves itself start flows in its conntrack (its dispatch is
// untracked); they come from the service's port, so the owner's snat
// rule leaves them alone, and h4's connected socket gets them. A node's
// own datagrams from another port are still mapped.
func TestUnmodifiedClientServedUDP(t *testing.T) {
	l := newLab(t, 5)
	const udpPort = 5300
	for i := 1; i <= 3; i++ {
		for _, proto := range []uint8{TCP, UDP} {
			l.slices = append(l.slices, Slice{Proto: proto, First: uint16(40000 + 1000*(i-1)), Last: uint16(40999 + 1000*(i-1)), Node: uint64(i)})
		}
	}
	for i := 1; i <= 3; i++ {
		p := l.plan(i, 1, even, nil)
		p.Addrs[0].Services = append(p.Addrs[0].Services,
			Service{Proto: UDP, Port: udpPort, Table: ctl.Build([]ctl.Weight{{Node: 1, Weight: 1}}, tableM)})
		if err := l.dp[i].Apply(context.Background(), p); err != nil {
			t.Fatalf("apply on h%d: %v", i, err)
		}
	}
	var pc net.PacketConn
	if err := l.dp[1].in(func() (err error) {
		pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(vip, udpPort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer pc.Close()
	wg.Go(func() {
		buf := make([]byte, 512)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	})
	var c net.Conn
	if err := l.dp[client].in(func() (err error) {
		c, err = net.Dial("udp4", netip.AddrPortFrom(vip, udpPort).String())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 512)
	// A datagram may be lost while h4 resolves the VIP; ask again.
	var err error
	for range 5 {
		c.Write([]byte("hello"))
		c.SetReadDeadline(time.Now().Add(time.Second))
		var n int
		if n, err = c.Read(buf); err == nil {
			if string(buf[:n]) != "hello" {
				t.Fatalf("h4 got %q", buf[:n])
			}
			break
		}
	}
	if err != nil {
		t.Fatalf("h4's datagrams to VIP:%d, served by the owner: no answer from VIP:%d: %v", udpPort, udpPort, err)
	}
	l.outside()
	got, err := l.udpOut(1, 0)
	if err != nil {
		t.Fatalf("h1 udp from VIP:0: %v", err)
	}
	if seen, err := netip.ParseAddrPort(got); err != nil || seen.Port() < 40000 || seen.Port() > 40999 {
		t.Errorf("h5 saw the owner's datagram from VIP:0 as %s, want VIP:40000-40999", got)
	}
}

// TestUnmodifiedClientRoles: a change of roles alone (h2 becomes owner,
// h1 serves on; the tables stay) refills the raw and snat chains in a
// small batch, and a non-owner's mapped flow and the old owner's live on.
func TestUnmodifiedClientRoles(t *testing.T) {
	l := newLab(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 1; i <= 3; i++ {
		l.slices = append(l.slices, Slice{Proto: TCP, First: uint16(40000 + 1000*(i-1)), Last: uint16(40999 + 1000*(i-1)), Node: uint64(i)})
	}
	l.applyAll(1, even, nil, 1, 2, 3)
	l.outside()
	var held []*conn
	defer func() {
		for _, c := range held {
			c.c.Close()
		}
	}()
	for _, i := range []int{1, 2, 3} {
		c, err := l.dialOut(ctx, i, uint16(30000+i))
		if err != nil {
			t.Fatalf("h%d from VIP:%d: %v", i, 30000+i, err)
		}
		held = append(held, c)
	}
	before, err := l.dp[2].Installed()
	if err != nil {
		t.Fatal(err)
	}
	l.applyAll(2, even, nil, 1, 2, 3)
	if after, err := l.dp[2].Installed(); err != nil || after != before {
		t.Fatalf("h2's tables changed (%q → %q, %v): want a roles-only batch", before, after, err)
	}
	l.announceTo(ctx, t, 2, server)
	for _, c := range held {
		if err := c.ping(); err != nil {
			t.Errorf("h%d's mapped flow from %v across the change of owner: %v", c.node, c.local(), err)
		}
	}
}

// TestServedFlowsUntracked: with every node leasing slices (so their
// snat rules turn conntrack on), flows in to a service port and their
// replies stay out of conntrack on every node, owner included, while a
// node's own flow from the address is still tracked and mapped.
func TestServedFlowsUntracked(t *testing.T) {
	l := newLab(t, 5)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := 1; i <= 3; i++ {
		for _, proto := range []uint8{TCP, UDP} {
			l.slices = append(l.slices, Slice{Proto: proto, First: uint16(40000 + 1000*(i-1)), Last: uint16(40999 + 1000*(i-1)), Node: uint64(i)})
		}
	}
	l.applyAll(1, even, nil, 1, 2, 3)
	entries := func(i int) int {
		var n int
		if err := l.dp[i].in(func() error {
			b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
			if err == nil {
				n, err = strconv.Atoi(strings.TrimSpace(string(b)))
			}
			return err
		}); err != nil {
			t.Fatalf("h%d: conntrack count: %v", i, err)
		}
		return n
	}
	var held []*conn
	defer func() {
		for _, c := range held {
			c.c.Close()
		}
	}()
	served := map[int]int{}
	for range 30 {
		c, err := l.dial(ctx)
		if err != nil {
			t.Fatalf("h4 to VIP:%d: %v", port, err)
		}
		held = append(held, c)
		if err := c.ping(); err != nil {
			t.Errorf("h4 to h%d: echo: %v", c.node, err)
		}
		served[c.node]++
	}
	if len(served) != 3 {
		t.Errorf("flows in went to %v, want all three nodes", served)
	}
	for i := 1; i <= 3; i++ {
		if n := entries(i); n != 0 {
			t.Errorf("h%d holds %d conntrack entries for %d flows in; want 0", i, n, served[i])
		}
	}
	// Control: conntrack is on, and sees the node's own flow.
	l.outside()
	c, err := l.dialOut(ctx, 2, 0)
	if err != nil {
		t.Fatalf("h2 from VIP:0: %v", err)
	}
	held = append(held, c)
	if seen, err := netip.ParseAddrPort(c.seen); err != nil || seen.Port() < 41000 || seen.Port() > 41999 {
		t.Errorf("h5 saw h2's flow from %s, want VIP:41000-41999", c.seen)
	}
	if n := entries(2); n == 0 {
		t.Errorf("h2 holds no conntrack entry for its own mapped flow")
	}
	for _, c := range held {
		if err := c.ping(); err != nil {
			t.Errorf("h%d's flow from %v: %v", c.node, c.local(), err)
		}
	}
}
