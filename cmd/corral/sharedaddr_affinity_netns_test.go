package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/corralhq/corral/internal/netlab"
)

// Affinity across an owner failover (issue 13): a sticky address with a
// minute's affinity, 24 client addresses on h4, each holding a flow. A
// weight change moves the buckets of some of them; their held flows
// become exceptions, and the owner n1 keeps the clients on their nodes.
// Then n1 is killed with -9. The new owner seeds its affinity maps from
// the exceptions: a new connection from each of those clients still
// lands on the node that holds its flow, not on its bucket's.
func TestSharedAddrAffinityFailover(t *testing.T) {
	l := newSALab(t, steadyMembership...)
	l.waitOneMAC(1, 10*time.Second)
	if out, code := addrTool("addr", "add", saVIP, "--replace", "--policy", "sticky", "--affinity-timeout", "1m", "--data-dir", l.nodes[0].dir); code != 0 {
		t.Fatalf("addr add --replace: exit %d: %s", code, out)
	}
	var clients []netip.Addr
	l.in(l.client, func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		for i := range 24 {
			ip := netip.MustParseAddr(netlab.Prefix + strconv.Itoa(200+i))
			if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}); err != nil {
				return err
			}
			clients = append(clients, ip)
		}
		return nil
	})
	waitAddrs(t, l.nodes, 10*time.Second, "sticky with affinity", func(as []addrJSON) error {
		if len(as) != 1 || as[0].Policy != "sticky" || as[0].AffinityMS != 60000 {
			return fmt.Errorf("addresses %+v", as)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	held := map[netip.Addr]*saConn{}
	// The owner applies the sticky table a moment after it commits: a
	// client's first flows may still follow the weighted one.
	for deadline := time.Now().Add(10 * time.Second); ; {
		for _, c := range held {
			c.c.Close()
		}
		clear(held)
		// A table change under the warm-up may reset a connection:
		// the round is made again.
		stable := true
		var lastErr error
		for _, ip := range clients {
			c, err := l.dialFrom(ctx, ip, saPort)
			if err != nil {
				stable, lastErr = false, err
				break
			}
			held[ip] = c
			c2, err := l.dialFrom(ctx, ip, saPort)
			if err != nil {
				stable, lastErr = false, err
				break
			}
			c2.c.Close()
			stable = stable && c2.node == c.node
		}
		if stable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the clients' flows did not settle on their nodes (last error %v)", lastErr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer func() {
		for _, c := range held {
			c.c.Close()
		}
	}()
	// Weights that give n1 nothing it would lose, and move buckets
	// between n2 and n3.
	if out, code := addrTool("addr", "add", saVIP, "--replace", "--policy", "sticky", "--affinity-timeout", "1m",
		"--weights", "1=1,2=1,3=6", "--data-dir", l.nodes[1].dir); code != 0 {
		t.Fatalf("addr add --replace: exit %d: %s", code, out)
	}
	excepted := map[netip.Addr]int{}
	waitAddrs(t, l.nodes, 15*time.Second, "the held flows whose bucket moved are exceptions", func(as []addrJSON) error {
		if len(as) != 1 || len(as[0].Weights) != 3 {
			return fmt.Errorf("addresses %+v", as)
		}
		clear(excepted)
		for _, e := range as[0].Exceptions {
			ap, err := netip.ParseAddrPort(e.Client)
			if err != nil {
				return err
			}
			if c := held[ap.Addr()]; c != nil && c.node != 1 && int(e.Node) == c.node {
				excepted[ap.Addr()] = c.node
			}
		}
		if len(excepted) == 0 {
			return fmt.Errorf("no exception of a held flow on n2/n3 (%d exceptions)", len(as[0].Exceptions))
		}
		return nil
	})
	t.Logf("%d of %d clients hold a flow on n2/n3 whose bucket moved", len(excepted), len(clients))

	r := l.killHost(1, 10*time.Second)
	t.Logf("kill -9 of owner h1: gratuitous ARP of h%d after %v", r.newOwner, r.garp)
	waitAddrs(t, l.nodes[1:], 10*time.Second, "a new owner", func(as []addrJSON) error {
		if len(as) != 1 || as[0].Owner == 1 || as[0].Owner == 0 {
			return fmt.Errorf("addresses %+v", as)
		}
		return nil
	})
	moved := 0
	for ip, node := range excepted {
		var c *saConn
		var err error
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if c, err = l.dialFrom(ctx, ip, saPort); err == nil || time.Now().After(deadline) {
				break
			}
		}
		if err != nil {
			t.Fatalf("from %v after the failover: %v", ip, err)
		}
		c.c.Close()
		if c.node != node {
			moved++
			t.Errorf("after the failover a new flow from %v went to n%d, its held flow is on n%d", ip, c.node, node)
		}
		if err := held[ip].ping(3 * time.Second); err != nil {
			t.Errorf("held flow from %v on n%d across the failover: %v", ip, node, err)
		}
	}
	t.Logf("after the failover: %d of %d excepted clients' new flows left their node", moved, len(excepted))
}
