package clusterlog_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

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
