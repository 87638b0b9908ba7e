package rsm_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/clusterlog/clusterlogtest"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
)

const (
	kvID      rsm.ID = 10
	counterID rsm.ID = 11
)

// kv is a toy machine: "k=v" stores v under k, one event per write.
type kv struct{}

func (kv) ID() rsm.ID { return kvID }

func (kv) Apply(tx rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	k, v, ok := strings.Cut(string(e.Cmd), "=")
	if !ok {
		return rsm.Result{Reply: []byte("bad command")}, nil
	}
	if err := tx.Put([]byte(k), []byte(v)); err != nil {
		return rsm.Result{}, err
	}
	return rsm.Result{Events: []events.Event{{Desc: events.MSNewView}}, Reply: []byte("ok")}, nil
}

func (kv) Snapshot(tx rsm.Tx, w io.Writer) error {
	return tx.Scan(nil, func(k, v []byte) error {
		_, err := fmt.Fprintf(w, "%s=%s\n", k, v)
		return err
	})
}

func (kv) Restore(tx rsm.Tx, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			if err := tx.Put([]byte(k), []byte(v)); err != nil {
				return err
			}
		}
	}
	return nil
}

// counter is a toy machine: "inc" adds one and replies with the new value.
type counter struct{}

func (counter) ID() rsm.ID { return counterID }

func (counter) Apply(tx rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	n := binary.LittleEndian.Uint64(append(tx.Get([]byte("n")), make([]byte, 8)...))
	n++
	if err := tx.Put([]byte("n"), binary.LittleEndian.AppendUint64(nil, n)); err != nil {
		return rsm.Result{}, err
	}
	return rsm.Result{Events: []events.Event{{Desc: events.MSNewView}}, Reply: []byte(strconv.FormatUint(n, 10))}, nil
}

func (counter) Snapshot(tx rsm.Tx, w io.Writer) error {
	_, err := w.Write(tx.Get([]byte("n")))
	return err
}

func (counter) Restore(tx rsm.Tx, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil || len(b) == 0 {
		return err
	}
	return tx.Put([]byte("n"), b)
}

// node is one cluster member with its Mux and the events it published.
type node struct {
	st  *clusterlog.Storage
	n   *clusterlog.Node
	mux *rsm.Mux

	mu     sync.Mutex // guards events
	events []uint64   // Seq of every published event, in order
}

func (n *node) published() []uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.events)
}

type cluster struct {
	t     *testing.T
	dir   string
	net   *clusterlogtest.Network
	peers []uint64
	nodes map[uint64]*node
	tweak func(*clusterlog.Config)
}

func newCluster(t *testing.T, tweak func(*clusterlog.Config)) *cluster {
	c := &cluster{t: t, dir: t.TempDir(), net: clusterlogtest.New(), peers: []uint64{1, 2, 3}, nodes: map[uint64]*node{}, tweak: tweak}
	for _, id := range c.peers {
		c.start(id, c.peers, nil)
	}
	t.Cleanup(func() {
		for _, id := range slices.Sorted(maps.Keys(c.nodes)) {
			c.stop(id)
		}
		c.net.Close()
	})
	return c
}

// start opens node id's file and starts it with a new Mux and new
// machines: all the state they have is what the file holds. prev carries
// the events published before a restart.
func (c *cluster) start(id uint64, peers []uint64, prev []uint64) *node {
	c.t.Helper()
	st, err := clusterlog.OpenStorage(filepath.Join(c.dir, fmt.Sprintf("n%d.db", id)), nil)
	if err != nil {
		c.t.Fatal(err)
	}
	nd := &node{st: st, events: prev}
	nd.mux = rsm.NewMux(func(ev events.Event) {
		nd.mu.Lock()
		nd.events = append(nd.events, ev.Seq)
		nd.mu.Unlock()
	}, nil)
	for _, m := range []rsm.Machine{kv{}, counter{}} {
		if err := nd.mux.Register(m); err != nil {
			c.t.Fatal(err)
		}
	}
	cfg := clusterlog.Config{ID: id, Storage: st, Applier: nd.mux, Sender: c.net.Endpoint(id), Peers: peers,
		TickInterval: 10 * time.Millisecond, ElectionTicks: 20, HeartbeatTicks: 2}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	if nd.n, err = clusterlog.NewNode(cfg); err != nil {
		c.t.Fatal(err)
	}
	c.net.Attach(id, nd.n)
	c.nodes[id] = nd
	return nd
}

func (c *cluster) stop(id uint64) []uint64 {
	nd := c.nodes[id]
	c.net.Detach(id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := nd.n.Stop(ctx); err != nil {
		c.t.Error(err)
	}
	if err := nd.n.Err(); err != nil {
		c.t.Errorf("node %d failed: %v", id, err)
	}
	if err := nd.st.Close(); err != nil {
		c.t.Error(err)
	}
	delete(c.nodes, id)
	return nd.published()
}

// testProposer is a NodeProposer on one node of the cluster.
type testProposer struct {
	*rsm.NodeProposer
	node func() *clusterlog.Node
}

func (c *cluster) proposer(id uint64) testProposer {
	node := func() *clusterlog.Node {
		if nd := c.nodes[id]; nd != nil {
			return nd.n
		}
		return nil
	}
	return testProposer{rsm.NewProposer(id, node), node}
}

// propose retries while raft drops the proposal for want of a leader, and
// when an attempt times out (a proposal forwarded to a leader that is then
// lost vanishes). Every attempt carries the same request id, so a retry of
// a proposal that did get in is not applied twice: this is what request ids
// are for.
func propose(ctx context.Context, t *testing.T, p testProposer, id rsm.ID, req uint64, cmd string) ([]byte, error) {
	t.Helper()
	if req == 0 {
		req = p.NextRequest()
	}
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, reply, err := p.ProposeRequest(actx, id, req, []byte(cmd))
		cancel()
		switch {
		case errors.Is(err, clusterlog.ErrProposalDropped):
			if _, werr := p.node().WaitFor(ctx, func(s clusterlog.Status) bool { return s.Leader != 0 }); werr != nil {
				return nil, err
			}
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		default:
			return reply, err
		}
	}
}

func (c *cluster) waitApplied(ctx context.Context) {
	c.t.Helper()
	var commit uint64
	for _, nd := range c.nodes {
		commit = max(commit, nd.n.Status().Commit)
	}
	for id, nd := range c.nodes {
		if _, err := nd.n.WaitFor(ctx, func(s clusterlog.Status) bool { return s.Applied >= commit }); err != nil {
			c.t.Fatalf("node %d did not apply %d: %v", id, commit, err)
		}
	}
}

// dump returns every machine bucket and the request table of a node's
// file, the node stopped.
func dump(t *testing.T, path string) map[string]string {
	t.Helper()
	st, err := clusterlog.OpenStorage(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]string{}
	err = st.Update(func(b *clusterlog.Batch) error {
		for _, name := range []string{"m\x0a", "m\x0b", "rsm.dedupe"} {
			bk, err := b.App().Bucket([]byte(name))
			if err != nil {
				return err
			}
			if err := bk.Scan(nil, func(k, v []byte) error { out[name+"/"+string(k)] = string(v); return nil }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMuxCluster runs both machines on three nodes, with bad entries,
// retried requests and a restart of one node in the middle: every node
// ends with the same state and published the same events, each once.
func TestMuxCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCluster(t, nil)
	p1, p2 := c.proposer(1), c.proposer(2)

	for i := range 5 {
		if reply, err := propose(ctx, t, p1, kvID, 0, fmt.Sprintf("a%d=%d", i, i)); err != nil || string(reply) != "ok" {
			t.Fatalf("put: %q %v", reply, err)
		}
	}
	if reply, err := propose(ctx, t, p2, counterID, 0, "inc"); err != nil || string(reply) != "1" {
		t.Fatalf("inc: %q %v", reply, err)
	}
	// An unknown machine and a bad envelope are skipped everywhere; the
	// proposer learns why.
	if _, err := propose(ctx, t, p1, 99, 0, "x"); !errors.Is(err, rsm.ErrUnknownMachine) || !errors.Is(err, clusterlog.ErrRejected) {
		t.Errorf("unknown machine: %v, want ErrUnknownMachine", err)
	}
	if _, _, err := c.nodes[1].n.Propose(ctx, []byte{9, 9, 9}); !errors.Is(err, rsm.ErrEnvelope) {
		t.Errorf("bad envelope: %v, want ErrEnvelope", err)
	}
	// A retried request applies once and answers the first reply.
	req := p2.NextRequest()
	r1, err := propose(ctx, t, p2, counterID, req, "inc")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := propose(ctx, t, p2, counterID, req, "inc")
	if err != nil || string(r1) != "2" || string(r2) != "2" {
		t.Errorf("retried request: replies %q, %q (%v), want 2 and 2", r1, r2, err)
	}

	// Node 3 stops in the middle and comes back from its file alone.
	c.waitApplied(ctx)
	before := c.stop(3)
	for i := range 5 {
		if _, err := propose(ctx, t, p1, kvID, 0, fmt.Sprintf("b%d=%d", i, i)); err != nil {
			t.Fatal(err)
		}
	}
	// The same request after the restart of the proposer's node: still once.
	if r, err := propose(ctx, t, p2, counterID, req, "inc"); err != nil || string(r) != "2" {
		t.Errorf("request retried later: %q %v, want 2", r, err)
	}
	c.start(3, nil, before)
	if r, err := propose(ctx, t, p1, counterID, 0, "inc"); err != nil || string(r) != "3" {
		t.Errorf("inc after restart: %q %v, want 3", r, err)
	}
	c.waitApplied(ctx)

	// Same events, each once, on every node.
	want := c.nodes[1].published()
	if len(want) != 13 || !slices.IsSorted(want) || len(slices.Compact(slices.Clone(want))) != len(want) {
		t.Errorf("node 1 published %v: want 13 distinct increasing Seqs", want)
	}
	for id, nd := range c.nodes {
		if got := nd.published(); !slices.Equal(got, want) {
			t.Errorf("node %d published %v, node 1 %v", id, got, want)
		}
	}
	// Same state in every file.
	var states []map[string]string
	for _, id := range []uint64{1, 2, 3} {
		c.stop(id)
		states = append(states, dump(t, filepath.Join(c.dir, fmt.Sprintf("n%d.db", id))))
	}
	if states[0]["m\x0a/b4"] != "4" || binary.LittleEndian.Uint64([]byte(states[0]["m\x0b/n"])) != 3 {
		t.Errorf("state %q", states[0])
	}
	for i := 1; i < 3; i++ {
		if !maps.Equal(states[i], states[0]) {
			t.Errorf("node %d state differs from node 1:\n%q\n%q", i+1, states[i], states[0])
		}
	}
}

// TestMuxSnapshot compacts the log and adds a node, which gets the
// composite snapshot (both machines and the request table).
func TestMuxSnapshot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCluster(t, func(cfg *clusterlog.Config) { cfg.SnapshotEvery, cfg.SnapshotKeep = 8, 0 })
	p := c.proposer(1)
	req := p.NextRequest()
	if _, err := propose(ctx, t, p, counterID, req, "inc"); err != nil {
		t.Fatal(err)
	}
	st, err := c.nodes[1].n.WaitFor(ctx, func(s clusterlog.Status) bool { return s.Leader != 0 })
	if err != nil {
		t.Fatal(err)
	}
	lead := st.Leader
	if _, err := c.nodes[lead].n.AddLearner(ctx, 4); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if _, err := propose(ctx, t, p, kvID, 0, fmt.Sprintf("k%d=%d", i, i)); err != nil {
			t.Fatal(err)
		}
	}
	if first, _ := c.nodes[lead].st.FirstIndex(); first < 8 {
		t.Fatalf("log not compacted: first index %d", first)
	}
	c.start(4, nil, nil)
	if _, err := propose(ctx, t, p, kvID, 0, "last=1"); err != nil {
		t.Fatal(err)
	}
	c.waitApplied(ctx)
	if c.nodes[4].n.Stats().Restores != 1 {
		t.Errorf("node 4 restored %d snapshots, want 1", c.nodes[4].n.Stats().Restores)
	}
	c.stop(4)
	c.stop(lead)
	got, want := dump(t, filepath.Join(c.dir, "n4.db")), dump(t, filepath.Join(c.dir, fmt.Sprintf("n%d.db", lead)))
	if !maps.Equal(got, want) || len(want) < 12 {
		t.Errorf("node 4 state differs from the leader's:\n%q\n%q", got, want)
	}
}

// TestDedupeWindowExpiry: once a proposer's window is full, a retry of a
// request that fell out of it is refused with ErrRequestExpired, never
// applied again; a retry of one still in the window gets its first reply.
func TestDedupeWindowExpiry(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c := newCluster(t, func(cfg *clusterlog.Config) { cfg.SnapshotEvery, cfg.SnapshotKeep = 64, 0 })
	p := c.proposer(1)
	first := p.NextRequest()
	var last uint64
	var lastReply []byte
	for i := range rsm.DedupeWindow + 10 {
		req := first
		if i > 0 {
			req = p.NextRequest()
		}
		reply, err := propose(ctx, t, p, counterID, req, "inc")
		if err != nil {
			t.Fatal(err)
		}
		last, lastReply = req, reply
	}
	want := strconv.Itoa(rsm.DedupeWindow + 10)
	if string(lastReply) != want {
		t.Fatalf("counter %s after %s increments", lastReply, want)
	}
	// The first request is out of the window: refused, not counted again.
	_, err := propose(ctx, t, p, counterID, first, "inc")
	if !errors.Is(err, rsm.ErrRequestExpired) || !errors.Is(err, clusterlog.ErrRejected) {
		t.Fatalf("a retry below the window: %v, want ErrRequestExpired", err)
	}
	// The last is in it: its first reply, not counted again.
	if reply, err := propose(ctx, t, p, counterID, last, "inc"); err != nil || string(reply) != want {
		t.Fatalf("a retry in the window: %q %v, want %q", reply, err, want)
	}
	// A new request counts.
	if reply, err := propose(ctx, t, p, counterID, 0, "inc"); err != nil || string(reply) != strconv.Itoa(rsm.DedupeWindow+11) {
		t.Fatalf("a new request after the retries: %q %v", reply, err)
	}
	// The floor travels in snapshots: a node restored from one refuses the
	// expired retry too, so every node ends with the same state.
	st, err := c.nodes[1].n.WaitFor(ctx, func(s clusterlog.Status) bool { return s.Leader != 0 })
	if err != nil {
		t.Fatal(err)
	}
	lead := st.Leader
	if _, err := c.nodes[lead].n.AddLearner(ctx, 4); err != nil {
		t.Fatal(err)
	}
	c.start(4, nil, nil)
	if _, err := propose(ctx, t, p, kvID, 0, "after=1"); err != nil {
		t.Fatal(err)
	}
	c.waitApplied(ctx)
	if c.nodes[4].n.Stats().Restores != 1 {
		t.Fatalf("node 4 restored %d snapshots, want 1", c.nodes[4].n.Stats().Restores)
	}
	if _, err := propose(ctx, t, p, counterID, first, "inc"); !errors.Is(err, rsm.ErrRequestExpired) {
		t.Fatalf("the expired retry after a restore: %v", err)
	}
	c.waitApplied(ctx)
	c.stop(4)
	c.stop(lead)
	d4, dl := dump(t, filepath.Join(c.dir, "n4.db")), dump(t, filepath.Join(c.dir, fmt.Sprintf("n%d.db", lead)))
	if !maps.Equal(d4, dl) {
		t.Errorf("node 4 state differs from the leader's after the expired retry")
	}
}

func TestRegisterDuplicate(t *testing.T) {
	m := rsm.NewMux(nil, nil)
	if err := m.Register(kv{}); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(kv{}); !errors.Is(err, rsm.ErrDuplicateMachine) {
		t.Errorf("second Register: %v, want ErrDuplicateMachine", err)
	}
}

// TestRestoreUnknownMachine restores a snapshot that has a machine this Mux
// lacks: a typed error. A registered machine missing from it is restored
// empty.
func TestRestoreUnknownMachine(t *testing.T) {
	st, err := clusterlog.OpenStorage(filepath.Join(t.TempDir(), "x.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	full := rsm.NewMux(nil, nil)
	_ = full.Register(kv{})
	_ = full.Register(counter{})
	var snap bytes.Buffer
	err = st.Update(func(b *clusterlog.Batch) error {
		if _, err := full.Apply(b.App(), clusterlog.Entry{Index: 1, Kind: clusterlog.KindData,
			Data: rsm.AppendEnvelope(nil, rsm.Envelope{Machine: kvID, Proposer: 1, Cmd: []byte("a=1")})}); err != nil {
			return err
		}
		return full.Snapshot(b.App(), &snap)
	})
	if err != nil {
		t.Fatal(err)
	}
	only := rsm.NewMux(nil, nil)
	_ = only.Register(counter{})
	err = st.Update(func(b *clusterlog.Batch) error {
		return only.Restore(b.App(), clusterlog.SnapshotMeta{}, bytes.NewReader(snap.Bytes()))
	})
	if !errors.Is(err, rsm.ErrUnknownMachine) || !errors.Is(err, rsm.ErrSnapshot) {
		t.Errorf("restore with machine %d missing: %v, want ErrUnknownMachine", kvID, err)
	}
}

// TestProposerReadIndex: after ReadIndex returns on a follower, the
// follower has applied every write committed before the call.
func TestProposerReadIndex(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := newCluster(t, nil)
	p := c.proposer(1)
	for range 3 {
		if _, err := propose(ctx, t, p, counterID, 0, "inc"); err != nil {
			t.Fatal(err)
		}
	}
	commit := c.nodes[1].n.Status().Commit
	for _, id := range []uint64{1, 2, 3} {
		idx, err := c.proposer(id).ReadIndex(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st := c.nodes[id].n.Status(); idx < commit || st.Applied < idx {
			t.Errorf("node %d: read index %d, applied %d; want both ≥ %d", id, idx, st.Applied, commit)
		}
	}
}
