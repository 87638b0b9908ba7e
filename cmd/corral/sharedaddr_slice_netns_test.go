package main

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// A service on a port inside the first source-port slice (1500, in
// 1024–2047, which one of the three nodes leases): the slice's node
// routing would send every flow to that node; the port is a hole of the
// slice (ctl's "Slice ports"), so the owner dispatches it and flows reach
// every serving node.
func TestSharedAddrServicePortInSlice(t *testing.T) {
	const port = 1500
	l := newSALab(t, steadyMembership...)
	for i := 1; i <= 3; i++ {
		l.echo[100+i] = l.serveEchoPort(i, port)
	}
	waitAddrs(t, l.nodes, 20*time.Second, "three listeners on 1500 and every node's TCP slice", func(as []addrJSON) error {
		if len(as) != 1 {
			return fmt.Errorf("addresses %+v", as)
		}
		on := 0
		for _, ln := range as[0].Listeners {
			if ln.Port == port {
				on++
			}
		}
		slices := map[uint64]bool{}
		first := false
		for _, ls := range as[0].Leases {
			if ls.Kind == "slice" && ls.Proto == "tcp" {
				slices[ls.Node] = true
				first = first || (ls.First <= port && port <= ls.Last)
			}
		}
		if on != 3 || len(slices) != 3 || !first || len(as[0].Tables) != 2 {
			return fmt.Errorf("listeners on %d: %d, TCP slices of %v (one holding %d: %v), %d tables", port, on, slices, port, first, len(as[0].Tables))
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The owner serves the port itself until its kernel holds the port's
	// table (a moment after the state has it): wait until each node
	// has taken a connection, then count.
	seen := map[int]bool{}
	for deadline := time.Now().Add(20 * time.Second); len(seen) < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("connections to port %d reached nodes %v only", port, seen)
		}
		c, err := l.dialFrom(ctx, netip.Addr{}, port)
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		seen[c.node] = true
		c.c.Close()
	}
	count := map[int]int{}
	var lastErr error
	for range 300 {
		c, err := l.dialFrom(ctx, netip.Addr{}, port)
		if err != nil {
			lastErr = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		count[c.node]++
		c.c.Close()
	}
	t.Logf("300 connections to %s:%d by node: %v (last error %v)", saVIP, port, count, lastErr)
	total := count[1] + count[2] + count[3]
	if total < 290 {
		t.Fatalf("%d of 300 connections to port %d succeeded (last error %v)", total, port, lastErr)
	}
	for n := 1; n <= 3; n++ {
		if count[n] < total/6 {
			t.Errorf("node %d took %d of %d connections to port %d, want about a third (%v)", n, count[n], total, port, count)
		}
	}
}
