package mesh

import (
	"context"
	"errors"
	"github.com/corralhq/corral/mesh/route"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
)

// line starts nodes 1..n, each dialing only the next: a line, not a mesh.
func line(t *testing.T, n int) []*testNode {
	lns := listeners(t, n)
	nodes := make([]*testNode, n)
	for i := range n {
		var peers []string
		if i+1 < n {
			peers = []string{lns[i+1].Addr().String()}
		}
		nodes[i] = start(t, uint64(i+1), lns[i], peers)
	}
	return nodes
}

func reachOf(m *Mesh, id uint64) (Reach, bool) {
	for _, r := range m.Reachability() {
		if r.ID == id {
			return r, true
		}
	}
	return Reach{}, false
}

// On a line 1-2-3-4, node 1 reaches node 4 through 2 and 3: the route's
// next hop, metric and length; Send is relayed, Call's request and its
// reply (and an ABORT reply) go both ways over the relays.
func TestRoutedLine(t *testing.T) {
	nodes := line(t, 4)
	m1 := nodes[0].m
	eventually(t, 10*time.Second, "node 1 routes to node 4", func() bool { return m1.Reachable(4) })
	eventually(t, 10*time.Second, "the route to node 4 settled", func() bool {
		r, ok := reachOf(m1, 4)
		return ok && r.Up && !r.Direct && r.NextHop == 2 && r.Hops == 3 && r.Metric == 3*DefaultLinkCost
	})
	if m1.Link(4) != nil {
		t.Fatal("node 1 has a direct link to node 4 on a line")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f := proto.Frame{Header: proto.Header{Opcode: peer.OpRaft, Flags: proto.FlagCreate | proto.FlagDelete}, Body: []byte("over three hops")}
	if err := m1.Send(ctx, 4, &f); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "node 4 got the frame", func() bool { return len(nodes[3].frames()) > 0 })
	got := nodes[3].frames()[0]
	// The recording handler stores the link's peer as Source: node 3, the
	// last relay.
	if string(got.Body) != "over three hops" || got.Source != 3 || got.Target != 4 || got.Hops != proto.HopLimit-2 {
		t.Fatalf("node 4 got %+v %q", got.Header, got.Body)
	}
	for _, relay := range nodes[1:3] {
		if st := relay.m.RouteStats(); st.Relayed == 0 {
			t.Errorf("relay %d relayed nothing: %+v", relay.m.cfg.Self, st)
		}
	}

	req := proto.Frame{Header: proto.Header{Opcode: peer.OpJoin}, Body: []byte("abc")}
	r, err := m1.Call(ctx, 4, &req)
	if err != nil || string(r.Body) != "cba" || r.Source != 4 || r.Target != 1 {
		t.Fatalf("routed call: %v, %+v", err, r)
	}
	req = proto.Frame{Header: proto.Header{Opcode: peer.OpLeave}, Body: []byte("x")}
	if _, err := m1.Call(ctx, 4, &req); !errors.Is(err, proto.ErrState) || !errStrContains(err, "not now") {
		t.Fatalf("routed ABORT: %v", err)
	}
	if st := m1.RouteStats(); st.RoutedCalls != 2 || st.RoutedReplies != 2 {
		t.Errorf("node 1's routed calls %+v", st)
	}

	// A relay that cannot go on answers a request at once: the hop count
	// ran out at node 2.
	ch := make(chan *proto.Frame, 1)
	id := m1.rt.callSeq.Add(1)
	m1.rt.calls.Store(id, ch)
	raw := proto.Frame{Header: proto.Header{Opcode: peer.OpJoin, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: id, Source: 1, Target: 4, Hops: 1}}
	if err := m1.Link(2).Send(ctx, &raw); err != nil {
		t.Fatal(err)
	}
	select {
	case b := <-ch:
		st, err := proto.ParseStatus(b.Body, "ABORT")
		if err != nil || st.Code != proto.CodeHopLimit || b.Source != 2 || b.Flags&proto.FlagAbort == 0 {
			t.Fatalf("bounce %+v %v %v", b.Header, st, err)
		}
	case <-ctx.Done():
		t.Fatal("no answer for a frame out of hops")
	}
	if st := nodes[1].m.RouteStats(); st.HopLimit != 1 {
		t.Errorf("node 2's hop-limit drops %d, want 1", st.HopLimit)
	}

	// Node 3 goes: node 4 is cut off, and a call fails at once.
	nodes[2].stop(t)
	eventually(t, 10*time.Second, "node 1 loses its route to node 4", func() bool { return !m1.Reachable(4) })
	r4, _ := reachOf(m1, 4)
	if r4.Up || r4.Since.IsZero() {
		t.Errorf("node 4's reachability after the cut: %+v", r4)
	}
	start := time.Now()
	req = proto.Frame{Header: proto.Header{Opcode: peer.OpJoin}, Body: []byte("abc")}
	if _, err := m1.Call(ctx, 4, &req); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("call without a route: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("a call without a route took %v", d)
	}
}

func errStrContains(err error, s string) bool { return err != nil && strings.Contains(err.Error(), s) }

// A ring of 5 survives a cut: the far side is reached the other way.
func TestRoutedRingReroutes(t *testing.T) {
	const n = 5
	lns := listeners(t, n)
	nodes := make([]*testNode, n)
	for i := range n {
		nodes[i] = start(t, uint64(i+1), lns[i], []string{lns[(i+1)%n].Addr().String()})
	}
	m1 := nodes[0].m
	eventually(t, 10*time.Second, "node 1 routes to node 3 via 2", func() bool {
		r, ok := reachOf(m1, 3)
		return ok && r.Up && r.NextHop == 2 && r.Hops == 2
	})
	// Cut 1-2 by stopping node 2: node 3 is now 3 hops away through 5.
	nodes[1].stop(t)
	eventually(t, 15*time.Second, "node 1 reroutes to node 3 via 5", func() bool {
		r, ok := reachOf(m1, 3)
		return ok && r.Up && r.NextHop == 5 && r.Hops == 3
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := proto.Frame{Header: proto.Header{Opcode: peer.OpJoin}, Body: []byte("ring")}
	r, err := m1.Call(ctx, 3, &req)
	if err != nil || string(r.Body) != "gnir" {
		t.Fatalf("call after the reroute: %v %v", r, err)
	}
	if st := m1.RouteStats(); st.Changes == 0 {
		t.Errorf("no route change counted: %+v", st)
	}
}

// The longest route is as long as a frame can travel: on a line of 18,
// node 1 routes to node 17 over 16 hops and a call there and back works,
// with the hop-limit counters at 0; node 18, 17 hops away, has no route.
func TestLongestRoute(t *testing.T) {
	const n = 18
	nodes := line(t, n)
	m1 := nodes[0].m
	eventually(t, 20*time.Second, "node 1 routes to node 17 over 16 hops", func() bool {
		r, ok := reachOf(m1, n-1)
		return ok && r.Up && r.Hops == n-2 && nodes[n-2].m.Reachable(1)
	})
	eventually(t, 20*time.Second, "node 17 routes to node 18 and to node 2", func() bool {
		return nodes[n-2].m.Reachable(n) && nodes[n-1].m.Reachable(2)
	})
	if m1.Reachable(n) {
		t.Fatalf("node 1 routes to node %d, %d hops away, beyond what a frame travels", n, n-1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req := proto.Frame{Header: proto.Header{Opcode: peer.OpJoin}, Body: []byte("abc")}
	r, err := m1.Call(ctx, n-1, &req)
	if err != nil || string(r.Body) != "cba" {
		t.Fatalf("call over 16 hops: %v, %+v", err, r)
	}
	for _, x := range nodes {
		if st := x.m.RouteStats(); st.HopLimit != 0 {
			t.Errorf("node %d dropped %d frames at the hop limit", x.m.cfg.Self, st.HopLimit)
		}
	}
}

// A node starts at the routing seqno it is given (the persisted one plus
// one), and a restart below what a neighbour remembers is raised at that
// neighbour's request and reported for persisting.
func TestRouteSeqnoGivenAndRaised(t *testing.T) {
	lns := listeners(t, 2)
	a := start(t, 1, lns[0], nil)
	// Node 1 advertises node 2 to node 3, so it keeps a feasibility
	// distance for it.
	c := start(t, 3, lns[1], []string{lns[0].Addr().String()})
	life := func(seqno uint16, raised chan<- uint16) *testNode {
		return startCfg(t, 2, listenersOne(t), []string{lns[0].Addr().String()}, func(c *Config) {
			c.RouteSeqno = &seqno
			c.OnRouteSeqno = func(s uint16) {
				select {
				case raised <- s:
				default:
				}
			}
		})
	}
	seqnoAt1 := func() uint16 { r, _ := reachOf(a.m, 2); return r.Seqno }
	first := life(1234, make(chan uint16, 1))
	eventually(t, 10*time.Second, "node 1 routes to node 2 at seqno 1234, and node 3 through node 1", func() bool {
		r, ok := reachOf(c.m, 2)
		return a.m.Reachable(2) && seqnoAt1() == 1234 && ok && r.Up && r.Seqno == 1234
	})
	first.stop(t)
	eventually(t, 10*time.Second, "node 1 lost node 2", func() bool { return !a.m.Reachable(2) })
	// Below the feasibility distance node 1 keeps for node 2: it asks for
	// a newer seqno, which the new life grants and reports.
	raised := make(chan uint16, 1)
	life(1000, raised)
	select {
	case s := <-raised:
		if !route.Seqno(s).Newer(1234) {
			t.Fatalf("raised to %d, not newer than the old life's 1234", s)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the restarted node never raised its seqno")
	}
	eventually(t, 10*time.Second, "node 1 routes to node 2 again", func() bool { return a.m.Reachable(2) })
}
