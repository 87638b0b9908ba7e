package cluster

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/mesh"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/transport"
)

// These tests run real nodes in one process: each has its own data dir, a
// mesh of TLS links over loopback and a Cluster on it.

var testKey = bytes.Repeat([]byte{9}, transport.KeySize)

// recorder is a node's event sink: it keeps what was published.
type recorder struct {
	mu     sync.Mutex // guards evs and latest
	evs    []events.Event
	latest uint64
}

func (r *recorder) Publish(ev events.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Seq != 0 {
		if ev.Seq <= r.latest {
			return fmt.Errorf("seq %d published after %d", ev.Seq, r.latest)
		}
		r.latest = ev.Seq
	}
	r.evs = append(r.evs, ev)
	return nil
}

func (r *recorder) Skip(seq uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latest = max(r.latest, seq)
}

func (r *recorder) Latest() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.latest
}

func (r *recorder) events() []events.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]events.Event(nil), r.evs...)
}

// logBuf collects a node's log for a failing test.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type testNode struct {
	id   uint64
	dir  string
	ln   net.Listener
	addr string
	ev   *recorder
	log  *logBuf

	// Set per run.
	mesh   *mesh.Mesh
	cl     *Cluster
	cancel context.CancelFunc
	done   chan struct{}
	err    error

	machines  []rsm.Machine
	onFsync   func(time.Duration)
	snapEvery uint64
	linkDown  chan mesh.LinkEvent
}

type harness struct {
	t     *testing.T
	nodes []*testNode
	// removeAfter is the nodes' RemoveAfter: 0, the leader removes a
	// member whose link is down at once (after the controller's graces).
	removeAfter time.Duration
}

func newHarness(t *testing.T, n int) *harness {
	h := &harness{t: t}
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		h.nodes = append(h.nodes, &testNode{id: uint64(i + 1), dir: t.TempDir(), ln: ln, addr: ln.Addr().String(), ev: &recorder{}, log: &logBuf{}, linkDown: make(chan mesh.LinkEvent, 64)})
	}
	t.Cleanup(func() {
		for _, nd := range h.nodes {
			h.stop(nd)
		}
		if t.Failed() {
			for _, nd := range h.nodes {
				t.Logf("log of node %d:\n%s", nd.id, nd.log.String())
			}
		}
	})
	return h
}

// start runs node nd, founding the cluster if found, with links to peers.
func (h *harness) start(nd *testNode, found bool, peers ...*testNode) {
	h.t.Helper()
	if nd.ln == nil {
		ln, err := net.Listen("tcp", nd.addr)
		if err != nil {
			h.t.Fatal(err)
		}
		nd.ln = ln
	}
	log := slog.New(slog.NewTextHandler(nd.log, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", nd.id)
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, p.addr)
	}
	var cl *Cluster
	nd.mesh = mesh.New(mesh.Config{
		Self: nd.id, Listener: nd.ln, Peers: addrs, ReconnectMax: 200 * time.Millisecond, Logger: log,
		Link: &transport.Config{
			Cluster: "test", NodeID: nd.id, NodeName: fmt.Sprintf("n%d", nd.id), Key: testKey, Protocols: protos.All(),
			HandshakeTimeout: 2 * time.Second, HeartbeatInterval: 50 * time.Millisecond, HeartbeatTimeout: time.Second,
			Logger: log, ClusterID: func() uint64 {
				if cl == nil {
					return 0
				}
				return cl.ClusterID()
			},
		},
		OnLink: func(ev mesh.LinkEvent) {
			if cl != nil {
				cl.OnLink(ev)
			}
			if !ev.Up {
				select {
				case nd.linkDown <- ev:
				default:
				}
			}
		},
	})
	var err error
	cl, err = New(Config{
		Self: nd.id, Name: fmt.Sprintf("n%d", nd.id), Addr: nd.addr, DataDir: nd.dir, Bootstrap: found,
		Tick: 20 * time.Millisecond, ElectionTicks: 10, Heartbeat: 50 * time.Millisecond,
		HeartbeatTimeout: time.Second, RemoveAfter: h.removeAfter, MaxVoters: 5,
		Mesh: nd.mesh, Events: nd.ev, Machines: nd.machines, OnFsync: nd.onFsync, Logger: log,
		SnapshotEvery: nd.snapEvery,
	})
	if err != nil {
		h.t.Fatalf("node %d: %v", nd.id, err)
	}
	if err := cl.Open(); err != nil {
		h.t.Fatalf("node %d: %v", nd.id, err)
	}
	nd.cl = cl
	cl.Register(nd.mesh)
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel, nd.done = cancel, make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { nd.mesh.Run(ctx) })
	wg.Go(func() {
		if err := cl.Run(ctx); err != nil {
			nd.err = err
		}
	})
	go func() {
		wg.Wait()
		close(nd.done)
	}()
}

func (h *harness) stop(nd *testNode) {
	if nd.cancel == nil {
		return
	}
	nd.cancel()
	select {
	case <-nd.done:
	case <-time.After(20 * time.Second):
		h.t.Errorf("node %d did not stop", nd.id)
	}
	nd.cancel, nd.ln = nil, nil
	if nd.err != nil {
		h.t.Errorf("node %d: Run: %v", nd.id, nd.err)
	}
}

// eventually waits for cond with a deadline.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// viewIs reports whether nd's view holds exactly the ids.
func viewIs(nd *testNode, ids ...uint64) bool {
	v := nd.cl.View()
	if len(v.Members) != len(ids) {
		return false
	}
	for _, id := range ids {
		if !v.Has(id) {
			return false
		}
	}
	return true
}

// form starts every node, the first founding, the others joining it, and
// waits for one view of all.
func (h *harness) form() {
	h.t.Helper()
	h.start(h.nodes[0], true)
	var ids []uint64
	for _, nd := range h.nodes {
		ids = append(ids, nd.id)
		if nd != h.nodes[0] {
			h.start(nd, false, h.nodes[0])
		}
	}
	for _, nd := range h.nodes {
		eventually(h.t, 30*time.Second, fmt.Sprintf("node %d sees view %v", nd.id, ids), func() bool { return viewIs(nd, ids...) })
	}
}

func (h *harness) leader() *testNode {
	for _, nd := range h.nodes {
		if nd.cancel != nil && nd.cl.Status().IsLeader() {
			return nd
		}
	}
	return nil
}

func newViews(evs []events.Event) []uint64 {
	var out []uint64
	for _, ev := range evs {
		if ev.Desc == events.MSNewView {
			out = append(out, ev.Seq)
		}
	}
	return out
}
