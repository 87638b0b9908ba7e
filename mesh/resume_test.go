package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
)

// resetProxy forwards TCP connections to a target. reset closes every
// connection through it (both peers see the connection end); down makes
// it refuse new ones too, so the link stays down.
type resetProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex // guards conns, refuse
	conns   []net.Conn
	refuse  bool
	accepts int
}

func newResetProxy(t testing.TB, target string) *resetProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &resetProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() { ln.Close(); p.reset(); p.wg.Wait() })
	return p
}

func (p *resetProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refuse := p.refuse
		p.accepts++
		p.mu.Unlock()
		if refuse {
			c.Close()
			continue
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { io.Copy(u, c); u.Close() })
		p.wg.Go(func() { io.Copy(c, u); c.Close() })
	}
}

func (p *resetProxy) reset() {
	p.mu.Lock()
	cs := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range cs {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // a reset, not an orderly close
		}
		c.Close()
	}
}

func (p *resetProxy) down() {
	p.mu.Lock()
	p.refuse = true
	p.mu.Unlock()
	p.reset()
}

// resumeLine starts nodes 1..n, node i dialing node i+1 through a proxy,
// and waits until node 1 routes to node n.
func resumeLine(t testing.TB, n int, o txOpts) ([]*txNode, []*resetProxy) {
	lns := listeners2(t, n)
	nodes := make([]*txNode, n)
	pxs := make([]*resetProxy, n-1)
	for i := range n - 1 {
		pxs[i] = newResetProxy(t, lns[i+1].Addr().String())
	}
	for i := range n {
		var peers []string
		if i+1 < n {
			peers = []string{pxs[i].ln.Addr().String()}
		}
		nodes[i] = startTx(t, uint64(i+1), lns[i], peers, o)
	}
	waitFor(t, 10*time.Second, "node 1 routes to the last node", func() bool {
		r, ok := reachOf(nodes[0].m, uint64(n))
		return ok && r.Up && int(r.Hops) == n-1 && nodes[n-1].m.Reachable(1)
	})
	return nodes, pxs
}

// echoStream sends frames 1..total on x (an "echo" transaction), then
// closes it, and checks that the echoes come back exactly once each, in
// order, then EOF. sent reports progress.
func echoStream(ctx context.Context, x *Tx, total int, sent func()) error {
	errc := make(chan error, 1)
	go func() {
		for i := 1; i <= total; i++ {
			f, err := x.Recv(ctx)
			if err != nil {
				errc <- fmt.Errorf("%v: echo %d: %w", x.Key(), i, err)
				return
			}
			if got := binary.LittleEndian.Uint64(f.Body); got != uint64(i) {
				errc <- fmt.Errorf("%v: echo %d where %d was due", x.Key(), got, i)
				return
			}
		}
		if _, err := x.Recv(ctx); !errors.Is(err, io.EOF) {
			errc <- fmt.Errorf("%v: after the last echo: %v, want EOF", x.Key(), err)
			return
		}
		errc <- nil
	}()
	for i := 1; i <= total; i++ {
		if err := x.Send(ctx, binary.LittleEndian.AppendUint64(nil, uint64(i))); err != nil {
			return fmt.Errorf("%v: send %d: %w", x.Key(), i, err)
		}
		sent()
	}
	if err := x.Close(ctx); err != nil {
		return err
	}
	return <-errc
}

// TestTxResume: streaming transactions over 1 and 3 hops survive resets
// of a link on their path within the resume window: no LINKFAIL, every
// frame echoed exactly once in order, the link's session resumed.
func TestTxResume(t *testing.T) {
	for _, c := range []struct {
		name  string
		nodes int
		cut   int // the proxy reset: the link cut+1 – cut+2
	}{{"1 hop", 2, 0}, {"3 hops", 4, 1}} {
		t.Run(c.name, func(t *testing.T) {
			var logs lockedBuf
			t.Cleanup(func() {
				if t.Failed() {
					t.Log(logs.String())
				}
			})
			nodes, pxs := resumeLine(t, c.nodes, txOpts{window: 3 * time.Second, log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			const txs, total = 8, 1500
			var mu sync.Mutex
			progress := 0
			errc := make(chan error, txs)
			for range txs {
				x, err := nodes[0].m.Open(ctx, uint64(c.nodes), peer.OpStream, []byte("echo"), nil)
				if err != nil {
					t.Fatal(err)
				}
				go func() {
					errc <- echoStream(ctx, x, total, func() { mu.Lock(); progress++; mu.Unlock() })
				}()
			}
			sentSoFar := func() int { mu.Lock(); defer mu.Unlock(); return progress }
			a, b := nodes[c.cut].m, nodes[c.cut+1].m
			for k, at := range []int{txs * total / 3, 2 * txs * total / 3} {
				waitFor(t, 20*time.Second, "streams under way", func() bool { return sentSoFar() >= at })
				pxs[c.cut].reset()
				cutAt := time.Now()
				waitFor(t, 10*time.Second, "the link resumes", func() bool {
					ok := a.TxStats().Resumes > uint64(k) && b.TxStats().Resumes > uint64(k)
					if !ok && time.Since(cutAt) > 9*time.Second {
						for i, n := range nodes {
							t.Logf("node %d: %+v %+v", i+1, n.m.TxStats(), n.m.States())
						}
					}
					return ok
				})
			}
			for range txs {
				if err := <-errc; err != nil {
					for i, n := range nodes {
						t.Logf("node %d: %+v", i+1, n.m.TxStats())
					}
					t.Fatal(err)
				}
			}
			for i, n := range nodes {
				st := n.m.TxStats()
				if st.LinkFails != 0 || st.ResumeFails != 0 || st.SendDrops != 0 {
					t.Errorf("node %d: %+v", i+1, st)
				}
			}
			t.Logf("node %d: %+v; node %d: %+v", c.cut+1, a.TxStats(), c.cut+2, b.TxStats())
		})
	}
}

// TestTxResumeExpires: when the link stays down past the window, the
// transactions over it fail with LINKFAIL, once each at both ends
// (children before parents, as without resume), and the relays' tables
// empty.
func TestTxResumeExpires(t *testing.T) {
	const window = 300 * time.Millisecond
	nodes, pxs := resumeLine(t, 4, txOpts{window: window})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	const n = 20
	var open []*Tx
	for range n {
		x, err := nodes[0].m.Open(ctx, 4, peer.OpStream, []byte("hold"), nil)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, x)
	}
	child, err := nodes[0].m.Open(ctx, 4, peer.OpStream, []byte("hold"), open[0])
	if err != nil {
		t.Fatal(err)
	}
	open = append(open, child)
	waitFor(t, 10*time.Second, "node 4 accepted every transaction", func() bool { return len(nodes[3].accepts()) == n+1 })

	start := time.Now()
	pxs[1].down()
	ends := append(append([]*Tx(nil), open...), nodes[3].accepts()...)
	for _, x := range ends {
		select {
		case <-x.Done():
		case <-ctx.Done():
			t.Fatalf("%v not ended with the link down", x.Key())
		}
		if !errors.Is(x.Err(), proto.ErrLinkFail) {
			t.Fatalf("%v ended with %v", x.Key(), x.Err())
		}
		if lf, after, _ := drain(t, x); lf != 1 || after != 0 {
			t.Fatalf("%v: %d LINKFAILs, %d frames after", x.Key(), lf, after)
		}
	}
	if d := time.Since(start); d < window {
		t.Fatalf("LINKFAIL %v after the cut, inside the %v window", d, window)
	}
	for i, want := range []int{0, n + 1, n + 1, 0} {
		st := nodes[i].m.TxStats()
		if int(st.LinkFails) != want || st.Resumes != 0 {
			t.Errorf("node %d: %+v, want %d LINKFAILs and no resume", i+1, st, want)
		}
	}
	if st := nodes[1].m.TxStats(); st.ResumeFails != 1 {
		t.Errorf("node 2: %d resume failures, want 1", st.ResumeFails)
	}
	waitFor(t, 5*time.Second, "tables empty", tablesEmpty(nodes))
}
