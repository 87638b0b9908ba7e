package ctl_test

import (
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// Whatever the order of LISTENs, UNLISTENs and LEASEs, no port a node
// listens on is a slice's (Lease.Has, Lease.Ports) or routed to a slice's
// node (PortOwner), every other port of a leased block is, and the
// machine says the same after a snapshot.
func TestSliceNeverHoldsServicePort(t *testing.T) {
	a := ctl.Addr{IP: netip.MustParseAddr("10.0.0.100")}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 13))
		n := newNode(251)
		index := uint64(1)
		n.view(t, index, 1, [2]uint64{1, 1}, [2]uint64{2, 2}, [2]uint64{3, 3})
		index++
		n.apply(t, index, ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: ctl.Policy(1 + rng.IntN(3))})
		for range 200 {
			index++
			proto := []uint8{ctl.TCP, ctl.UDP}[rng.IntN(2)]
			node := uint64(1 + rng.IntN(3))
			// Ports near the bottom, where the first slices are, and
			// block edges.
			port := uint16(1000 + rng.IntN(3200))
			switch rng.IntN(4) {
			case 0, 1:
				n.apply(t, index, ctl.Cmd{Op: ctl.OpListen, Addr: a, Node: node, Proto: proto, Port: port})
			case 2:
				n.apply(t, index, ctl.Cmd{Op: ctl.OpLease, Kind: ctl.Slice, Addr: a, Node: node, Proto: proto})
			case 3:
				for _, l := range n.m.Addrs()[0].Listeners {
					if rng.IntN(4) == 0 {
						n.apply(t, index, ctl.Cmd{Op: ctl.OpUnlisten, Addr: a, Node: l.Node, Proto: l.Proto, Port: l.Port})
						break
					}
				}
			}
		}
		checkSlicePorts(t, n, a)
	}
}

func checkSlicePorts(t *testing.T, n *node, a ctl.Addr) {
	t.Helper()
	ai := n.m.Addrs()[0]
	type pp struct {
		proto uint8
		port  uint16
	}
	served := map[pp]bool{}
	for _, l := range ai.Listeners {
		served[pp{l.Proto, l.Port}] = true
	}
	leases := 0
	for _, l := range ai.Leases {
		if l.Kind != ctl.Slice {
			continue
		}
		leases++
		inRanges := map[uint16]bool{}
		for _, r := range l.Ports() {
			if r.First > r.Last {
				t.Fatalf("slice %d: empty range %v", l.Index, r)
			}
			for p := uint32(r.First); p <= uint32(r.Last); p++ {
				inRanges[uint16(p)] = true
			}
		}
		for p := l.First; p <= l.Last; p++ {
			port := uint16(p)
			want := !served[pp{l.Proto, port}]
			if got := l.Has(p); got != want {
				t.Fatalf("slice %v %d: Has(%d) = %v, served %v", l.Proto, l.Index, p, got, !want)
			}
			if inRanges[port] != want {
				t.Fatalf("slice %v %d: port %d in Ports() %v, served %v", l.Proto, l.Index, p, inRanges[port], !want)
			}
			node, ok := n.m.PortOwner(a, l.Proto, port)
			if ok != want || (ok && node != l.Node) {
				t.Fatalf("PortOwner(%d/%d) = %d, %v; slice of node %d, served %v", port, l.Proto, node, ok, l.Node, !want)
			}
		}
	}
	if leases == 0 {
		t.Fatal("no slice leased")
	}
}
