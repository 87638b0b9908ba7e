package clusterlog_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/clusterlog"
	"go.etcd.io/raft/v3/raftpb"
)

// TestSnapshotCatchUp cuts a follower off while the others commit enough to
// snapshot and compact past it; when it returns it must be sent the
// snapshot, restore it, and continue from there.
func TestSnapshotCatchUp(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 3, func(cfg *clusterlog.Config) {
		cfg.SnapshotEvery = 10
		cfg.SnapshotKeep = 0
	})
	lead := c.waitLeader(ctx)
	c.mustPropose(ctx, lead, "first")
	c.waitApplied(ctx, c.maxCommit())
	lag := c.running()[0]
	if lag == lead {
		lag = c.running()[1]
	}
	lagLast, _ := c.stores[lag].LastIndex()
	c.net.Isolate(lag)

	for i := range 50 {
		c.mustPropose(ctx, lead, fmt.Sprintf("e%d", i))
	}
	first, _ := c.stores[lead].FirstIndex()
	if first <= lagLast+1 {
		t.Fatalf("leader's log starts at %d; it should be compacted past the lagging follower's last entry %d", first, lagLast)
	}
	snap, err := c.stores[lead].Snapshot()
	if err != nil || snap.GetMetadata().GetIndex() == 0 {
		t.Fatalf("leader has no snapshot: %v %v", snap, err)
	}

	c.net.Heal()
	c.waitApplied(ctx, c.maxCommit())
	a := c.apps[lag]
	a.mu.Lock()
	restores := slices.Clone(a.restores)
	a.mu.Unlock()
	if len(restores) == 0 {
		t.Fatalf("lagging follower caught up without a snapshot")
	}
	if restores[0] <= lagLast {
		t.Errorf("restored snapshot %d, not newer than the follower's last entry %d", restores[0], lagLast)
	}
	c.mustPropose(ctx, lead, "last")
	c.waitApplied(ctx, c.maxCommit())
	state, _ := c.checkSameState()
	if len(state) != 52 {
		t.Errorf("applied %d entries, want 52", len(state))
	}

	// The follower restarts from its own snapshot and log.
	c.stop(lag)
	c.start(lag, nil)
	c.mustPropose(ctx, lead, "after-restart")
	c.waitApplied(ctx, c.maxCommit())
	c.checkSameState()
}

// TestRestoreSnapshotAtStart covers a crash between storing a received
// snapshot and handing it to the application: NewNode finds the snapshot
// newer than the applied index and restores it first.
func TestRestoreSnapshotAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	st, err := clusterlog.OpenStorage(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	snap := &raftpb.Snapshot{
		Data: []byte(`{"State":["x"],"Indexes":[7]}`),
		Metadata: &raftpb.SnapshotMetadata{
			Index: new(uint64(7)), Term: new(uint64(2)),
			ConfState: &raftpb.ConfState{Voters: []uint64{1}},
		},
	}
	err = st.Update(func(b *clusterlog.Batch) error {
		if err := b.ApplySnapshot(snap); err != nil {
			return err
		}
		return b.SetHardState(&raftpb.HardState{Term: new(uint64(2)), Commit: new(uint64(7))})
	})
	if err != nil {
		t.Fatal(err)
	}
	app := &testApp{}
	n, err := clusterlog.NewNode(clusterlog.Config{ID: 1, Storage: st, Applier: app, Sender: nopSender{}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop(testCtx(t))
	if got := n.Status().Applied; got != 7 {
		t.Errorf("applied = %d, want 7", got)
	}
	if state, _, _ := app.snapshot(); !slices.Equal(state, []string{"x"}) || !slices.Equal(app.restores, []uint64{7}) {
		t.Errorf("app state %v restores %v", state, app.restores)
	}
	if applied, cs := st.Applied(); applied != 7 || !slices.Equal(cs.GetVoters(), []uint64{1}) {
		t.Errorf("stored applied %d conf %v", applied, cs)
	}
}

type nopSender struct{}

func (nopSender) Send([]*raftpb.Message) {}

// TestSnapshotForNewNode adds a node after the log was compacted. The stored
// snapshot predates the node's addition, so its configuration lacks the
// node, which raft on the new node refuses; the leader must take a fresh
// snapshot on demand instead of waiting for the next periodic one, which
// on this quiet cluster never comes. The node is added both ways: as a
// learner (then promoted) and directly as a voter.
func TestSnapshotForNewNode(t *testing.T) {
	for _, tc := range []struct {
		name string
		add  func(n *clusterlog.Node, ctx context.Context, id uint64) (uint64, error)
	}{
		{"learner", (*clusterlog.Node).AddLearner},
		{"voter", (*clusterlog.Node).AddVoter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			const every = 20
			c := newCluster(t, 3, func(cfg *clusterlog.Config) {
				cfg.SnapshotEvery = every
				cfg.SnapshotKeep = 0
			})
			lead := c.waitLeader(ctx)
			for i := 0; ; i++ {
				c.mustPropose(ctx, lead, fmt.Sprintf("e%d", i))
				if first, _ := c.stores[lead].FirstIndex(); first > 1 {
					break
				}
			}
			c.waitApplied(ctx, c.maxCommit())
			old, err := c.stores[lead].Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			first, _ := c.stores[lead].FirstIndex()
			t.Logf("log compacted to %d, snapshot at %d", first, old.GetMetadata().GetIndex())

			took := c.nodes[lead].Stats().Snapshots
			addIdx, err := tc.add(c.nodes[lead], ctx, 4)
			if err != nil {
				t.Fatalf("add node 4: %v", err)
			}
			// Nothing more is proposed: the cluster stays far from its
			// next periodic snapshot.
			if applied := c.nodes[lead].Status().Applied; applied-old.GetMetadata().GetIndex() >= every {
				t.Fatalf("a periodic snapshot is due (applied %d, snapshot %d); the test proves nothing", applied, old.GetMetadata().GetIndex())
			}
			c.start(4, nil)
			catchUp, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			if _, err := c.nodes[4].WaitFor(catchUp, func(s clusterlog.Status) bool { return s.Applied >= addIdx }); err != nil {
				t.Fatalf("new node did not catch up to %d (status %+v): %v", addIdx, c.nodes[4].Status(), err)
			}
			if st := c.nodes[4].Stats(); st.Restores != 1 {
				t.Errorf("new node restored %d snapshots, want 1", st.Restores)
			}
			snap, err := c.stores[lead].Snapshot()
			if err != nil {
				t.Fatal(err)
			}
			if md := snap.GetMetadata(); md.GetIndex() < addIdx || !containsNode(md.GetConfState(), 4) {
				t.Errorf("leader's snapshot at %d (conf %v), want one at or after the addition %d that has node 4", md.GetIndex(), md.GetConfState(), addIdx)
			}
			// One fresh snapshot serves the new node, however often raft
			// asked while it was being taken.
			if st := c.nodes[lead].Status(); st.IsLeader() {
				if n := c.nodes[lead].Stats().Snapshots - took; n != 1 {
					t.Errorf("leader took %d snapshots for the new node, want 1", n)
				}
			}
			if tc.name == "learner" {
				if _, err := c.nodes[lead].AddVoter(ctx, 4); err != nil {
					t.Fatalf("promote node 4: %v", err)
				}
			}
			c.mustPropose(ctx, lead, "after")
			c.waitApplied(ctx, c.maxCommit())
			c.checkSameState()
			for _, id := range c.running() {
				if v := c.nodes[id].Status().Voters; !slices.Equal(v, []uint64{1, 2, 3, 4}) {
					t.Errorf("node %d: voters %v, want [1 2 3 4]", id, v)
				}
			}
		})
	}
}

func containsNode(cs *raftpb.ConfState, id uint64) bool {
	return slices.Contains(cs.GetVoters(), id) || slices.Contains(cs.GetLearners(), id)
}

// TestSnapshotBytes: large entries bring the snapshot (and the log's
// compaction) by their bytes, long before SnapshotEvery entries.
func TestSnapshotBytes(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 3, func(cfg *clusterlog.Config) {
		cfg.SnapshotEvery = 1 << 30
		cfg.SnapshotBytes = 64 << 10
	})
	lead := c.waitLeader(ctx)
	big := strings.Repeat("x", 16<<10)
	for i := range 12 {
		c.mustPropose(ctx, lead, fmt.Sprintf("%d%s", i, big))
	}
	c.waitApplied(ctx, c.maxCommit())
	snap, err := c.stores[lead].Snapshot()
	if err != nil || snap.GetMetadata().GetIndex() == 0 {
		t.Fatalf("no snapshot after %d KiB of entries with SnapshotBytes 64 KiB: %v", 12*16, err)
	}
	first, _ := c.stores[lead].FirstIndex()
	if first <= 2 {
		t.Errorf("the log was not compacted: first index %d", first)
	}
	c.checkSameState()
}
