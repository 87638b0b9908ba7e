package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/mesh/tx"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// txNode is a mesh whose STREAM service echoes every frame of a
// transaction whose first body is "echo" (and closes when the other end
// does), reads and drops every frame of a "sink" one, and holds any other
// open until it ends, recording what it accepted.
type txNode struct {
	*testNode
	mu       sync.Mutex // guards accepted, fails
	accepted []*Tx
	fails    []linkFail // OnLinkFail calls
}

type txOpts struct {
	cost     func(peer uint64) uint16
	relayCap int           // 0: the default
	queue    int           // the links' send queue bytes; 0: the default
	window   time.Duration // Config.ResumeWindow
	log      *slog.Logger
}

func startTx(t testing.TB, id uint64, ln net.Listener, peers []string, o txOpts) *txNode {
	n := &txNode{testNode: &testNode{done: make(chan struct{})}}
	cfg := Config{
		Self: id, Listener: ln, Peers: peers,
		Link: &transport.Config{
			Cluster: "test", NodeID: id, NodeName: fmt.Sprintf("n%d", id), Key: testKey, Protocols: protos.All(),
			HandshakeTimeout: 2 * time.Second, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: time.Second,
			Logger: o.log, QueueBytes: o.queue,
		},
		ReconnectMax: 200 * time.Millisecond,
		LinkCost:     o.cost,
		TxRelayCap:   o.relayCap,
		ResumeWindow: o.window,
		Logger:       o.log,
		TxEpoch:      uint32(id),
		TxTick:       20 * time.Millisecond,
		TxTombstone:  200 * time.Millisecond,
		OnLinkFail: func(p uint64, k int) {
			n.mu.Lock()
			n.fails = append(n.fails, linkFail{p, k})
			n.mu.Unlock()
		},
	}
	n.m = New(cfg)
	n.m.HandleTx(peer.OpStream, peer.OpStream, n.serve)
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		n.err = n.m.Run(ctx)
		close(n.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-n.done
	})
	return n
}

func (n *txNode) serve(t *Tx) {
	n.mu.Lock()
	n.accepted = append(n.accepted, t)
	n.mu.Unlock()
	ctx := context.Background()
	f, err := t.Recv(ctx)
	if err != nil {
		return
	}
	switch string(f.Body) {
	case "echo":
	case "sink":
		for {
			if _, err := t.Recv(ctx); err != nil {
				t.Close(ctx)
				return
			}
		}
	default:
		<-t.Done()
		return
	}
	for {
		f, err := t.Recv(ctx)
		switch {
		case errors.Is(err, io.EOF):
			t.Close(ctx)
			return
		case err != nil:
			return
		}
		if err := t.Send(ctx, f.Body); err != nil {
			return
		}
	}
}

func (n *txNode) accepts() []*Tx {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*Tx(nil), n.accepted...)
}

func (n *txNode) linkFails() []linkFail {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]linkFail(nil), n.fails...)
}

// txLine starts nodes 1..n, each dialing the next, and waits until node
// 1 routes to node n.
func txLine(t testing.TB, n int) []*txNode { return txLineWith(t, n, txOpts{}) }

// txLineWith is txLine with options for every node.
func txLineWith(t testing.TB, n int, o txOpts) []*txNode {
	lns := listeners2(t, n)
	nodes := make([]*txNode, n)
	for i := range n {
		var peers []string
		if i+1 < n {
			peers = []string{lns[i+1].Addr().String()}
		}
		nodes[i] = startTx(t, uint64(i+1), lns[i], peers, o)
	}
	waitFor(t, 10*time.Second, "node 1 routes to the last node", func() bool {
		r, ok := reachOf(nodes[0].m, uint64(n))
		return ok && r.Up && int(r.Hops) == n-1 && nodes[n-1].m.Reachable(1)
	})
	return nodes
}

func listeners2(t testing.TB, n int) []net.Listener {
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	return lns
}

// waitFor waits for cond with a deadline instead of sleeping.
func waitFor(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func recvBody(t *testing.T, ctx context.Context, x *Tx) string {
	t.Helper()
	f, err := x.Recv(ctx)
	if err != nil {
		t.Fatalf("recv on %v: %v", x.Key(), err)
	}
	return string(f.Body)
}

func tablesEmpty(nodes []*txNode) func() bool {
	return func() bool {
		for _, n := range nodes {
			if st := n.m.TxStats(); st.Open != 0 || st.Tombstones != 0 {
				return false
			}
		}
		return true
	}
}

// A stream over 1 and over 3 hops: frames both ways in order, each end's
// half-close, and the tables of every node empty afterwards.
func TestTxStream(t *testing.T) {
	for _, hops := range []int{1, 3} {
		t.Run(fmt.Sprintf("hops=%d", hops), func(t *testing.T) {
			nodes := txLine(t, hops+1)
			far := uint64(hops + 1)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			m1 := nodes[0].m
			x, err := m1.Open(ctx, far, peer.OpStream, []byte("echo"), nil)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 50 {
				if err := x.Send(ctx, fmt.Appendf(nil, "frame %d", i)); err != nil {
					t.Fatal(err)
				}
			}
			for i := range 50 {
				if got, want := recvBody(t, ctx, x), fmt.Sprintf("frame %d", i); got != want {
					t.Fatalf("echo %d: %q, want %q", i, got, want)
				}
			}
			// A relay holds it, pinned: in on the link from node 1's
			// side, out toward node far.
			if hops > 1 {
				es := nodes[1].m.TxEntries()
				if len(es) != 1 || es[0].Role != tx.RoleRelay || es[0].TowardInit != 1 || es[0].TowardResp != 3 || es[0].Key != x.Key() {
					t.Fatalf("relay 2's entries %+v", es)
				}
				// It counted the CREATE ("echo") and the 50 frames each
				// way, with their bodies' bytes.
				var body uint64
				for i := range 50 {
					body += uint64(len(fmt.Sprintf("frame %d", i)))
				}
				if st := nodes[1].m.TxStats(); st.Relayed < 101 || st.RelayedBytes < 4+2*body {
					t.Fatalf("relay 2 counted %d frames, %d bytes; want at least 101 and %d", st.Relayed, st.RelayedBytes, 4+2*body)
				}
			}
			// The initiator closes first; the echo closes in answer.
			if err := x.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if f, err := x.Recv(ctx); !errors.Is(err, io.EOF) {
				t.Fatalf("after both closed: %v %v", f, err)
			}
			select {
			case <-x.Done():
			case <-ctx.Done():
				t.Fatal("the transaction is not over at the initiator")
			}
			if err := x.Send(ctx, []byte("late")); err == nil {
				t.Fatal("Send after the end succeeded")
			}
			waitFor(t, 5*time.Second, "every table empty", tablesEmpty(nodes))
			acc := nodes[hops].accepts()
			if len(acc) != 1 || acc[0].Peer() != 1 || acc[0].Initiator() || acc[0].Key() != x.Key() {
				t.Fatalf("responder accepted %v", acc)
			}

			// The responder closes first, with a last frame; the
			// initiator sends on, then closes.
			y, err := m1.Open(ctx, far, peer.OpStream, []byte("hold"), nil)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the responder accepted", func() bool { return len(nodes[hops].accepts()) == 2 })
			r := nodes[hops].accepts()[1]
			if err := r.CloseWith(ctx, []byte("bye")); err != nil {
				t.Fatal(err)
			}
			if got := recvBody(t, ctx, y); got != "bye" {
				t.Fatalf("last frame %q", got)
			}
			if _, err := y.Recv(ctx); !errors.Is(err, io.EOF) {
				t.Fatalf("after the responder's DELETE: %v", err)
			}
			if err := y.Send(ctx, []byte("still open this way")); err != nil {
				t.Fatal(err)
			}
			if err := r.Send(ctx, []byte("x")); !errors.Is(err, tx.ErrClosed) {
				t.Fatalf("responder sends after its DELETE: %v", err)
			}
			if err := y.Close(ctx); err != nil {
				t.Fatal(err)
			}
			for _, e := range []*Tx{y, r} {
				select {
				case <-e.Done():
				case <-ctx.Done():
					t.Fatalf("%v not over", e.Key())
				}
				if e.Err() != nil {
					t.Fatalf("%v ended with %v", e.Key(), e.Err())
				}
			}
			waitFor(t, 5*time.Second, "every table empty", tablesEmpty(nodes))

			// Both close at once: DELETEs cross on the path.
			z, err := m1.Open(ctx, far, peer.OpStream, []byte("hold"), nil)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the responder accepted", func() bool { return len(nodes[hops].accepts()) == 3 })
			rz := nodes[hops].accepts()[2]
			var wg sync.WaitGroup
			for _, e := range []*Tx{z, rz} {
				wg.Go(func() {
					if err := e.Close(ctx); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
			for _, e := range []*Tx{z, rz} {
				select {
				case <-e.Done():
				case <-ctx.Done():
					t.Fatalf("%v not over after crossed DELETEs", e.Key())
				}
			}
			waitFor(t, 5*time.Second, "every table empty", tablesEmpty(nodes))
			if st := nodes[0].m.TxStats(); st.LinkFails != 0 || st.SendDrops != 0 {
				t.Errorf("node 1's stats %+v", st)
			}
		})
	}
}

// An opcode without a handler is refused by the responder with an ABORT
// that ends the initiator's receive direction; the link stays.
func TestTxNoHandler(t *testing.T) {
	nodes := txLine(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	x, err := nodes[0].m.Open(ctx, 2, peer.OpRaft, []byte("?"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x.Recv(ctx); !errors.Is(err, proto.ErrOpcode) {
		t.Fatalf("no handler: %v", err)
	}
	if err := x.Close(ctx); err != nil {
		t.Fatal(err)
	}
	<-x.Done()
	waitFor(t, 5*time.Second, "tables empty", tablesEmpty(nodes))
	if nodes[0].m.Link(2) == nil {
		t.Fatal("the link ended")
	}
	if _, err := nodes[0].m.Open(ctx, 1, peer.OpStream, nil, nil); !errors.Is(err, tx.ErrSelf) {
		t.Fatalf("open to self: %v", err)
	}
}

// drain takes everything a transaction that is over still holds for
// Recv: the LINKFAIL frames among it, and the frames after the first.
func drain(t *testing.T, x *Tx) (linkFails int, after int, last *proto.Frame) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for {
		f, err := x.Recv(ctx)
		if f == nil {
			if !errors.Is(err, proto.ErrLinkFail) {
				t.Errorf("%v ends with %v, want LINKFAIL", x.Key(), err)
			}
			return
		}
		if linkFails > 0 {
			after++
		}
		if errors.Is(err, proto.ErrLinkFail) {
			linkFails++
			last = f
		}
	}
}

// Cutting the middle link of a line 1-2-3-4 under 100 open transactions
// and a stacked pair ends each with exactly one LINKFAIL at each end, and
// nothing after it; the relays' tables empty, and each relay tells of
// the lost link once, with the count.
func TestTxLinkFailLine(t *testing.T) {
	nodes := txLine(t, 4)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	m1 := nodes[0].m
	const n = 100
	var open []*Tx
	for i := range n {
		x, err := m1.Open(ctx, 4, peer.OpStream, []byte("hold"), nil)
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		open = append(open, x)
	}
	child, err := m1.Open(ctx, 4, peer.OpStream, []byte("hold"), open[0])
	if err != nil {
		t.Fatal(err)
	}
	open = append(open, child)
	waitFor(t, 10*time.Second, "node 4 accepted every transaction", func() bool { return len(nodes[3].accepts()) == n+1 })
	if st := nodes[1].m.TxStats(); st.Open != n+1 {
		t.Fatalf("relay 2 holds %d transactions, want %d", st.Open, n+1)
	}

	nodes[1].m.Link(3).Close(proto.CodeShutdown, "cut")
	ends := append(append([]*Tx(nil), open...), nodes[3].accepts()...)
	for _, x := range ends {
		select {
		case <-x.Done():
		case <-ctx.Done():
			t.Fatalf("%v (initiator %v) not ended by the cut", x.Key(), x.Initiator())
		}
		if !errors.Is(x.Err(), proto.ErrLinkFail) {
			t.Fatalf("%v ended with %v", x.Key(), x.Err())
		}
		lf, after, last := drain(t, x)
		if lf != 1 || after != 0 {
			t.Fatalf("%v (initiator %v): %d LINKFAILs, %d frames after", x.Key(), x.Initiator(), lf, after)
		}
		e, err := proto.ParseTxExt(last.Ext)
		want := [2]uint64{2, 3}
		if !x.Initiator() {
			want = [2]uint64{3, 2}
		}
		if err != nil || e.FailedLink != want {
			t.Fatalf("%v: LINKFAIL names link %v (%v), want %v", x.Key(), e.FailedLink, err, want)
		}
	}
	if err := open[1].Send(ctx, []byte("late")); !errors.Is(err, proto.ErrLinkFail) {
		t.Fatalf("send after LINKFAIL: %v", err)
	}
	for i, want := range []int{0, n + 1, n + 1, 0} {
		st := nodes[i].m.TxStats()
		if st.Open != 0 || int(st.LinkFails) != want {
			t.Errorf("node %d after the cut: %+v, want %d LINKFAILs", i+1, st, want)
		}
	}
	waitFor(t, 5*time.Second, "tombstones expire", tablesEmpty(nodes))
	for i, want := range [][]linkFail{nil, {{3, n + 1}}, {{2, n + 1}}, nil} {
		if got := nodes[i].linkFails(); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("node %d OnLinkFail %v, want %v", i+1, got, want)
		}
	}
}

// On a line 1-2-3, a transaction stays on its path when a cheaper one
// appears (links 1-5, 5-4, 4-3 of cost 1), while a new one takes the new
// path.
func TestTxPinnedAfterReroute(t *testing.T) {
	lns := listeners2(t, 5)
	addr := func(id int) string { return lns[id-1].Addr().String() }
	cheap := func(to uint64) func(uint64) uint16 {
		return func(p uint64) uint16 {
			if p == to {
				return 1
			}
			return 0
		}
	}
	nodes := []*txNode{
		startTx(t, 1, lns[0], []string{addr(2)}, txOpts{cost: cheap(5)}),
		startTx(t, 2, lns[1], []string{addr(3)}, txOpts{}),
		startTx(t, 3, lns[2], nil, txOpts{}),
		startTx(t, 4, lns[3], nil, txOpts{cost: cheap(3)}),
		startTx(t, 5, lns[4], []string{addr(4)}, txOpts{cost: cheap(4)}),
	}
	m1 := nodes[0].m
	waitFor(t, 10*time.Second, "node 1 routes to node 3 via 2", func() bool {
		r, ok := reachOf(m1, 3)
		return ok && r.Up && r.NextHop == 2 && nodes[2].m.Reachable(1)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	old, err := m1.Open(ctx, 3, peer.OpStream, []byte("echo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.AddPeer(addr(5)); err != nil {
		t.Fatal(err)
	}
	if err := nodes[3].m.AddPeer(addr(3)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "node 1 reroutes to node 3 via 5", func() bool {
		// The router's table and the forwarding table frames take: the
		// routing goroutine installs the latter after the router chose.
		r, ok := reachOf(m1, 3)
		l := m1.rt.nextHop(3)
		return ok && r.Up && r.NextHop == 5 && r.Metric == 3 && l != nil && l.Peer().NodeID == 5
	})
	// Node 3's route back to node 1 still goes via 2 (the cheap links
	// are cheap one way): the new transaction's replies follow its pinned
	// path, not the route.
	young, err := m1.Open(ctx, 3, peer.OpStream, []byte("echo"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		for _, x := range []*Tx{old, young} {
			body := fmt.Sprintf("%v %d", x.Key(), i)
			if err := x.Send(ctx, []byte(body)); err != nil {
				t.Fatal(err)
			}
			if got := recvBody(t, ctx, x); got != body {
				t.Fatalf("echo %q, want %q", got, body)
			}
		}
	}
	keys := func(n *txNode) []tx.Key {
		var ks []tx.Key
		for _, e := range n.m.TxEntries() {
			ks = append(ks, e.Key)
		}
		return ks
	}
	if got := keys(nodes[1]); len(got) != 1 || got[0] != old.Key() {
		t.Errorf("relay 2 holds %v, want only the old transaction %v", got, old.Key())
	}
	for _, r := range nodes[3:] {
		if got := keys(r); len(got) != 1 || got[0] != young.Key() {
			t.Errorf("relay %d holds %v, want only the new transaction %v", r.m.cfg.Self, got, young.Key())
		}
	}
	for _, x := range []*Tx{old, young} {
		if err := x.Close(ctx); err != nil {
			t.Fatal(err)
		}
		<-x.Done()
	}
	waitFor(t, 5*time.Second, "tables empty", tablesEmpty(nodes))
}

// A routed request with a critical extension the peer protocol does not
// know is refused by its reply (CodeField), and the relays' links stay.
// (PARENT, which it knows, passes: the stacked CREATE of
// TestTxLinkFailLine.)
func TestRoutedUnknownCritical(t *testing.T) {
	nodes := txLine(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f := proto.Frame{Header: proto.Header{Opcode: peer.OpJoin}, Ext: proto.AppendTLV(nil, 0xFF7E, []byte{1})}
	if _, err := nodes[0].m.Call(ctx, 3, &f); !errors.Is(err, proto.ErrField) || !errStrContains(err, "0xff7e") {
		t.Fatalf("unknown critical extension: %v", err)
	}
	if nodes[1].m.Link(3) == nil || nodes[0].m.Link(2) == nil {
		t.Fatal("a link ended")
	}
}

// When a link dies under more open transactions than the relay's next
// link can queue ABORTs for at once, every one still ends at the far end
// with exactly one LINKFAIL: the relay's terminal ABORTs wait for room,
// none is dropped.
func TestTxLinkFailOverFullQueue(t *testing.T) {
	const n = 3000 // about 300 KB of terminal ABORTs, against a 16 KiB queue
	nodes := txLineWith(t, 3, txOpts{queue: 16 << 10})
	m1 := nodes[0].m
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range n {
		if _, err := m1.Open(ctx, 3, peer.OpStream, []byte("hold"), nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "node 3 accepted them all", func() bool { return len(nodes[2].accepts()) == n })
	m1.Link(2).Close(proto.CodeShutdown, "cut")
	for i, x := range nodes[2].accepts() {
		select {
		case <-x.Done():
		case <-ctx.Done():
			t.Fatalf("responder transaction %d of %d never ended after the cut", i, n)
		}
		if !errors.Is(x.Err(), proto.ErrLinkFail) {
			t.Fatalf("responder transaction %d ended with %v, want LINKFAIL", i, x.Err())
		}
	}
	waitFor(t, 10*time.Second, "every table empty", tablesEmpty(nodes))
}
