package mesh

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/mesh/route"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// Helpers of the measurements (bench_test.go, reroute_test.go,
// convergence_test.go): meshes that count instead of record, and TCP
// proxies that stand for a link that can be cut.

// benchNode is a mesh for the measurements: it counts the frames of
// opcodes 0x0100..0x01FF it gets and answers JOIN with its body.
type benchNode struct {
	m      *Mesh
	got    atomic.Uint64 // frames received of 0x0100..0x01FF
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
}

// benchOpts are the knobs the measurements turn.
type benchOpts struct {
	heartbeatTimeout time.Duration            // default 1s
	cost             func(a, b uint64) uint16 // nil: DefaultLinkCost
}

func startBench(tb testing.TB, id uint64, ln net.Listener, peers []string, o benchOpts) *benchNode {
	tb.Helper()
	if o.heartbeatTimeout == 0 {
		o.heartbeatTimeout = time.Second
	}
	n := &benchNode{done: make(chan struct{})}
	cfg := Config{
		Self: id, Listener: ln, Peers: peers,
		Link: &transport.Config{
			Cluster: "test", NodeID: id, NodeName: "b" + string(rune('a'+id%26)), Key: testKey, Protocols: protos.All(),
			HandshakeTimeout: 2 * time.Second, HeartbeatInterval: o.heartbeatTimeout / 4, HeartbeatTimeout: o.heartbeatTimeout,
		},
		ReconnectMax: 200 * time.Millisecond,
	}
	if o.cost != nil {
		cfg.LinkCost = func(p uint64) uint16 { return o.cost(id, p) }
	}
	n.m = New(cfg)
	n.m.Handle(0x0100, 0x01FF, func(*transport.Link, *proto.Frame) error {
		n.got.Add(1)
		return nil
	})
	n.m.Handle(peer.OpJoin, peer.OpJoin, func(l *transport.Link, f *proto.Frame) error {
		return l.Reply(context.Background(), f, f.Body)
	})
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		n.m.Run(ctx)
		close(n.done)
	}()
	tb.Cleanup(func() {
		cancel()
		<-n.done
	})
	return n
}

// waitFor polls cond every 100µs until it holds or within passes; it
// returns when cond first held, or false.
func waitUntil(within time.Duration, cond func() bool) (time.Time, bool) {
	deadline := time.Now().Add(within)
	for {
		if cond() {
			return time.Now(), true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// fwdHop is the next hop the forwarding table holds for dest, 0 for
// none: what Send and the relays use.
func (m *Mesh) fwdHop(dest uint64) uint64 { return (*m.rt.fwd.Load())[dest] }

// proxy stands for one link: the dialing node connects to it, it connects
// to the listener. Cut resets both connections at once (RST, SO_LINGER
// 0), as a link that dies loudly does, and refuses new ones until Heal.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex            // guards cut, conns
	cut   bool                  // refusing connections
	conns map[net.Conn]struct{} // both sides of every relayed connection
	wg    sync.WaitGroup        // the accept loop and the copiers
}

func newProxy(tb testing.TB, target string) *proxy {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	tb.Cleanup(func() {
		ln.Close()
		p.Cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			reset(c)
			continue
		}
		d, err := net.Dial("tcp", p.target)
		if err != nil {
			reset(c)
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			reset(c)
			reset(d)
			continue
		}
		p.conns[c], p.conns[d] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(c, d) })
		p.wg.Go(func() { p.pipe(d, c) })
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil || errors.Is(err, net.ErrClosed) {
		// One side closed: pass the close on.
		dst.(*net.TCPConn).CloseWrite()
	}
	p.mu.Lock()
	delete(p.conns, src)
	p.mu.Unlock()
	src.Close()
}

// Cut resets every connection through the proxy and refuses new ones.
func (p *proxy) Cut() {
	p.mu.Lock()
	p.cut = true
	for c := range p.conns {
		reset(c)
	}
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
}

// Heal lets connections through again.
func (p *proxy) Heal() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// graphMesh starts nodes 1..n linked by edges (pairs of ids), the smaller
// id dialing the larger through a proxy per edge.
type graphMesh struct {
	nodes   []*benchNode // nodes[i] is node i+1
	proxies map[[2]int]*proxy
	counted uint64 // adverts sent up to the last settled (convergence_test.go)
}

func startGraph(tb testing.TB, n int, edges [][2]int, o benchOpts) *graphMesh {
	tb.Helper()
	lns := listenersTB(tb, n)
	g := &graphMesh{nodes: make([]*benchNode, n), proxies: map[[2]int]*proxy{}}
	peers := make([][]string, n)
	for _, e := range edges {
		a, b := min(e[0], e[1]), max(e[0], e[1])
		p := newProxy(tb, lns[b-1].Addr().String())
		g.proxies[[2]int{a, b}] = p
		peers[a-1] = append(peers[a-1], p.Addr())
	}
	for i := range n {
		g.nodes[i] = startBench(tb, uint64(i+1), lns[i], peers[i], o)
	}
	return g
}

func (g *graphMesh) edge(a, b int) *proxy { return g.proxies[[2]int{min(a, b), max(a, b)}] }

func (g *graphMesh) node(i int) *Mesh { return g.nodes[i-1].m }

// converged reports whether every node has a way to exactly the nodes
// that the links not cut join it to within the hop limit: routes of
// route.DefaultMaxHops hops or more are refused (a ring of 18 with a cut
// is a line 17 hops long).
func (g *graphMesh) converged() bool {
	adj := map[int][]int{}
	for e, p := range g.proxies {
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if !cut {
			adj[e[0]] = append(adj[e[0]], e[1])
			adj[e[1]] = append(adj[e[1]], e[0])
		}
	}
	for i, a := range g.nodes {
		dist := map[int]int{i + 1: 0}
		q := []int{i + 1}
		for len(q) > 0 {
			v := q[0]
			q = q[1:]
			for _, w := range adj[v] {
				if _, ok := dist[w]; !ok {
					dist[w] = dist[v] + 1
					q = append(q, w)
				}
			}
		}
		for j := range g.nodes {
			if i == j {
				continue
			}
			d, ok := dist[j+1]
			want := ok && d < route.DefaultMaxHops
			if a.m.Reachable(uint64(j+1)) != want {
				return false
			}
		}
	}
	return true
}

func listenersTB(tb testing.TB, n int) []net.Listener {
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		lns[i] = ln
	}
	return lns
}
