package clusterlog_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/clusterlog/clusterlogtest"
)

// testTimeout bounds every wait in these tests. Waits are on conditions, never
// on sleeps; the bound only turns a hang into a failure.
const testTimeout = 30 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("CLUSTERLOG_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// testApp is a state machine whose state is the list of payloads applied, in
// order. It records every delivery so tests can check order and
// exactly-once delivery.
type testApp struct {
	countOnly bool // keep no payloads, only count them (benchmarks)

	mu        sync.Mutex // guards all fields below
	count     int        // data entries applied (countOnly)
	state     []string   // payloads of data entries, in log order
	indexes   []uint64   // index of each element of state
	last      uint64     // last index applied or restored
	delivered []uint64   // every index passed to Apply, in call order
	dups      []uint64   // indexes delivered at or below last
	confs     []clusterlog.Entry
	restores  []uint64
	committed []uint64 // arguments of Committed
}

func (a *testApp) Apply(tx *clusterlog.AppTx, e clusterlog.Entry) ([]byte, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.delivered = append(a.delivered, e.Index)
	if e.Index <= a.last {
		a.dups = append(a.dups, e.Index)
		return nil, nil
	}
	a.last = e.Index
	switch e.Kind {
	case clusterlog.KindData:
		if string(e.Data) == "reject" {
			return nil, fmt.Errorf("%w: test rejects it", clusterlog.ErrRejected)
		}
		if a.countOnly {
			a.count++
			return nil, nil
		}
		a.state = append(a.state, string(e.Data))
		a.indexes = append(a.indexes, e.Index)
	case clusterlog.KindConfChange:
		a.confs = append(a.confs, e)
	}
	return fmt.Appendf(nil, "applied %d", e.Index), nil
}

// CheckConfChange refuses a change whose context is "refuse".
func (a *testApp) CheckConfChange(tx *clusterlog.AppTx, e clusterlog.Entry) error {
	if string(e.Change.Context) == "refuse" {
		return errRefused
	}
	return nil
}

var errRefused = errors.New("test refuses this change")

func (a *testApp) Committed(applied uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.committed = append(a.committed, applied)
}

type appSnapshot struct {
	State   []string
	Indexes []uint64
	Count   int
}

func (a *testApp) Snapshot(tx *clusterlog.AppTx, w io.Writer) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return json.NewEncoder(w).Encode(appSnapshot{a.state, a.indexes, a.count})
}

func (a *testApp) Restore(tx *clusterlog.AppTx, s clusterlog.SnapshotMeta, r io.Reader) error {
	var snap appSnapshot
	if err := json.NewDecoder(r).Decode(&snap); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.state, a.indexes, a.count, a.last = snap.State, snap.Indexes, snap.Count, s.Index
	a.restores = append(a.restores, s.Index)
	return nil
}

func (a *testApp) snapshot() (state []string, indexes []uint64, dups []uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.state), slices.Clone(a.indexes), slices.Clone(a.dups)
}

// cluster is n nodes on one in-memory network, each with its own bbolt file.
type cluster struct {
	t     testing.TB
	dir   string
	net   *clusterlogtest.Network
	tweak func(*clusterlog.Config)
	// tweakApp, if set, gives the Applier for a node instead of a testApp.
	tweakApp func(id uint64) clusterlog.Applier
	light    bool // applications only count entries
	peers    []uint64
	nodes    map[uint64]*clusterlog.Node
	stores   map[uint64]*clusterlog.Storage
	apps     map[uint64]*testApp
}

func fastConfig(c *clusterlog.Config) {
	c.TickInterval = 10 * time.Millisecond
	c.ElectionTicks = 20
	c.HeartbeatTicks = 2
}

// newCluster starts founding members 1..n.
func newCluster(t testing.TB, n int, tweak func(*clusterlog.Config)) *cluster {
	return newClusterOpts(t, n, tweak, false)
}

// newClusterOpts is newCluster, with applications that only count entries
// if light is set.
func newClusterOpts(t testing.TB, n int, tweak func(*clusterlog.Config), light bool) *cluster {
	c := &cluster{
		light:  light,
		t:      t,
		dir:    t.TempDir(),
		net:    clusterlogtest.New(),
		tweak:  tweak,
		nodes:  make(map[uint64]*clusterlog.Node),
		stores: make(map[uint64]*clusterlog.Storage),
		apps:   make(map[uint64]*testApp),
	}
	for id := uint64(1); id <= uint64(n); id++ {
		c.peers = append(c.peers, id)
	}
	for _, id := range c.peers {
		c.start(id, c.peers)
	}
	t.Cleanup(c.close)
	return c
}

// start starts node id, reopening its file if it exists and reusing its
// application (whose state stands for state the application keeps durably).
func (c *cluster) start(id uint64, peers []uint64) *clusterlog.Node {
	c.t.Helper()
	st, err := clusterlog.OpenStorage(filepath.Join(c.dir, fmt.Sprintf("node%d.db", id)), testLogger(c.t))
	if err != nil {
		c.t.Fatalf("open storage %d: %v", id, err)
	}
	app := c.apps[id]
	if app == nil {
		app = &testApp{countOnly: c.light}
		c.apps[id] = app
	}
	var applier clusterlog.Applier = app
	if c.tweakApp != nil {
		applier = c.tweakApp(id)
	}
	cfg := clusterlog.Config{
		ID:      id,
		Storage: st,
		Applier: applier,
		Sender:  c.net.Endpoint(id),
		Logger:  testLogger(c.t),
		Peers:   peers,
	}
	fastConfig(&cfg)
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	n, err := clusterlog.NewNode(cfg)
	if err != nil {
		st.Close()
		c.t.Fatalf("start node %d: %v", id, err)
	}
	c.nodes[id], c.stores[id] = n, st
	c.net.Attach(id, n)
	return n
}

// stop takes node id off the network, stops it and closes its file.
func (c *cluster) stop(id uint64) {
	c.t.Helper()
	n := c.nodes[id]
	if n == nil {
		return
	}
	c.net.Detach(id)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := n.Stop(ctx); err != nil {
		c.t.Errorf("stop node %d: %v", id, err)
	}
	if err := n.Err(); err != nil {
		c.t.Errorf("node %d failed: %v", id, err)
	}
	if err := c.stores[id].Close(); err != nil {
		c.t.Errorf("close storage %d: %v", id, err)
	}
	delete(c.nodes, id)
	delete(c.stores, id)
}

func (c *cluster) close() {
	for _, id := range slices.Sorted(maps.Keys(c.nodes)) {
		c.stop(id)
	}
	c.net.Close()
}

func (c *cluster) running() []uint64 { return slices.Sorted(maps.Keys(c.nodes)) }

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitLeader waits until every listed node (default: all running) knows the
// same leader, that leader is among them and says it leads, and returns it.
func (c *cluster) waitLeader(ctx context.Context, ids ...uint64) uint64 {
	c.t.Helper()
	if len(ids) == 0 {
		ids = c.running()
	}
	for {
		var lead uint64
		agreed := true
		var changed []<-chan struct{}
		for _, id := range ids {
			st, ch := c.nodes[id].Watch()
			changed = append(changed, ch)
			if st.Leader == 0 || (lead != 0 && st.Leader != lead) {
				agreed = false
			}
			lead = st.Leader
		}
		if agreed && slices.Contains(ids, lead) && c.nodes[lead].Status().IsLeader() {
			return lead
		}
		waitAny(c.t, ctx, changed, "a leader all of %v agree on", ids)
	}
}

// waitAny waits until one of the channels is closed.
func waitAny(t testing.TB, ctx context.Context, chans []<-chan struct{}, what string, args ...any) {
	t.Helper()
	cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())}}
	for _, ch := range chans {
		cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
	}
	if i, _, _ := reflect.Select(cases); i == 0 {
		t.Fatalf("timed out waiting for %s", fmt.Sprintf(what, args...))
	}
}

// waitApplied waits until every listed node (default: all running) has
// applied index.
func (c *cluster) waitApplied(ctx context.Context, index uint64, ids ...uint64) {
	c.t.Helper()
	if len(ids) == 0 {
		ids = c.running()
	}
	for _, id := range ids {
		if _, err := c.nodes[id].WaitFor(ctx, func(s clusterlog.Status) bool { return s.Applied >= index }); err != nil {
			c.t.Fatalf("node %d did not apply %d (status %+v): %v", id, index, c.nodes[id].Status(), err)
		}
	}
}

// propose proposes data on node id, retrying while raft drops the proposal
// for want of a leader (a dropped proposal is certainly not in the log).
func (c *cluster) propose(ctx context.Context, id uint64, data string) (uint64, error) {
	for {
		idx, _, err := c.nodes[id].Propose(ctx, []byte(data))
		if errors.Is(err, clusterlog.ErrProposalDropped) {
			if _, werr := c.nodes[id].WaitFor(ctx, func(s clusterlog.Status) bool { return s.Leader != 0 }); werr != nil {
				return 0, err
			}
			continue
		}
		return idx, err
	}
}

// mustPropose proposes data on id and returns its index.
func (c *cluster) mustPropose(ctx context.Context, id uint64, data string) uint64 {
	c.t.Helper()
	idx, err := c.propose(ctx, id, data)
	if err != nil {
		c.t.Fatalf("propose %q on node %d: %v", data, id, err)
	}
	return idx
}

// checkSameState checks that every listed node (default: all running) has
// the same application state, with no duplicate delivery, and returns it.
func (c *cluster) checkSameState(ids ...uint64) ([]string, []uint64) {
	c.t.Helper()
	if len(ids) == 0 {
		ids = c.running()
	}
	var want []string
	var wantIdx []uint64
	for i, id := range ids {
		state, idx, dups := c.apps[id].snapshot()
		if len(dups) > 0 {
			c.t.Errorf("node %d: entries delivered twice: %v", id, dups)
		}
		if i == 0 {
			want, wantIdx = state, idx
			continue
		}
		if !slices.Equal(state, want) || !slices.Equal(idx, wantIdx) {
			c.t.Errorf("node %d state differs from node %d:\n got %d entries %v\nwant %d entries %v",
				id, ids[0], len(state), abbrev(state), len(want), abbrev(want))
		}
	}
	return want, wantIdx
}

func abbrev(s []string) []string {
	if len(s) <= 12 {
		return s
	}
	return append(append(slices.Clone(s[:6]), "..."), s[len(s)-6:]...)
}

// maxCommit returns the highest commit index among the listed nodes.
func (c *cluster) maxCommit(ids ...uint64) uint64 {
	if len(ids) == 0 {
		ids = c.running()
	}
	var m uint64
	for _, id := range ids {
		m = max(m, c.nodes[id].Status().Commit)
	}
	return m
}
