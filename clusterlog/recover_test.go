package clusterlog_test

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"testing"

	"github.com/corralhq/corral/clusterlog"
)

// A cluster that lost two of its three voters for good restarts from the
// survivor's log as a one-voter cluster, keeps its state, commits again,
// and a new node that joins gets the new configuration and the state by
// snapshot, never the old entries.
func TestForceNewCluster(t *testing.T) {
	c := newCluster(t, 3, func(cfg *clusterlog.Config) { cfg.SnapshotEvery = 1000 })
	ctx := testCtx(t)
	leader := c.waitLeader(ctx)
	var last uint64
	for i := range 5 {
		last = c.mustPropose(ctx, leader, fmt.Sprintf("before-%d", i))
	}
	c.waitApplied(ctx, last, 1)
	c.stop(2)
	c.stop(3)
	c.stop(1)

	st, err := clusterlog.OpenStorage(filepath.Join(c.dir, "node1.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	fixed := false
	r, err := st.ForceNewCluster(1, func(*clusterlog.AppTx) error { fixed = true; return nil }, c.apps[1].Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	if !fixed || r.Index < last || !slices.Equal(r.Voters, []uint64{1, 2, 3}) {
		t.Fatalf("recovered %+v (fix called %v), want index >= %d, voters were 1 2 3", r, fixed, last)
	}
	first, _ := st.FirstIndex()
	lastIdx, _ := st.LastIndex()
	snap, _ := st.Snapshot()
	hs, cs, _ := st.InitialState()
	if first != r.Index+1 || lastIdx != r.Index || snap.GetMetadata().GetIndex() != r.Index ||
		!slices.Equal(snap.GetMetadata().GetConfState().GetVoters(), []uint64{1}) || !slices.Equal(cs.GetVoters(), []uint64{1}) || hs.GetCommit() != r.Index {
		t.Fatalf("after recovery: first %d last %d snapshot %v conf %v commit %d", first, lastIdx, snap.GetMetadata(), cs, hs.GetCommit())
	}
	st.Close()

	// The rewritten file passes OpenStorage's checks, and the node leads alone.
	c.start(1, nil)
	if l := c.waitLeader(ctx, 1); l != 1 {
		t.Fatalf("leader %d", l)
	}
	after := c.mustPropose(ctx, 1, "after")
	c.start(4, nil)
	if _, err := c.nodes[1].ProposeConfChange(ctx, clusterlog.ConfChange{Type: clusterlog.AddLearner, NodeID: 4}); err != nil {
		t.Fatal(err)
	}
	c.waitApplied(ctx, after, 4)
	st4 := c.nodes[4].Status()
	if !slices.Equal(st4.Voters, []uint64{1}) || !slices.Equal(st4.Learners, []uint64{4}) {
		t.Fatalf("new node's configuration: voters %v learners %v, want 1 and 4", st4.Voters, st4.Learners)
	}
	s1, _ := c.checkSameState(1, 4)
	if len(s1) != 6 || s1[5] != "after" {
		t.Fatalf("state %v", s1)
	}
	// It started from a snapshot (the one taken for it, with it as a
	// learner), and no entry of the old log reached it.
	if rs := c.apps[4].restores; len(rs) != 1 || rs[0] < r.Index {
		t.Fatalf("new node restored %v, want one snapshot at or after %d", rs, r.Index)
	}
	for _, i := range c.apps[4].delivered {
		if i <= r.Index {
			t.Fatalf("entry %d of the old log reached the new node (delivered %v)", i, c.apps[4].delivered)
		}
	}
}

func TestForceNewClusterEmpty(t *testing.T) {
	st, err := clusterlog.OpenStorage(filepath.Join(t.TempDir(), "log.db"), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = st.ForceNewCluster(1, func(*clusterlog.AppTx) error { return nil }, func(*clusterlog.AppTx, io.Writer) error { return nil })
	if !errors.Is(err, clusterlog.ErrNothingToRecover) {
		t.Fatalf("recovering an empty log: %v", err)
	}
}
