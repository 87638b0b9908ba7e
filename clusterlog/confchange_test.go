package clusterlog_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/corralhq/corral/clusterlog"
)

// TestConfChange adds node 4 as a learner, promotes it to voter, then
// removes node from the founding three, checking every node's view of the
// configuration and that the log keeps committing throughout.
func TestConfChange(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	leader := c.nodes[lead]

	// Only the leader proposes changes.
	for _, id := range c.running() {
		if id == lead {
			continue
		}
		if _, err := c.nodes[id].AddLearner(ctx, 4); !errors.Is(err, clusterlog.ErrNotLeader) {
			t.Errorf("AddLearner on follower %d: %v, want ErrNotLeader", id, err)
		}
		break
	}
	if _, err := leader.RemoveNode(ctx, 0); !errors.Is(err, clusterlog.ErrInvalidConfChange) {
		t.Errorf("RemoveNode(0): %v, want ErrInvalidConfChange", err)
	}

	// Node 4 joins with an empty log and no founding peers.
	c.start(4, nil)
	idx, err := leader.ProposeConfChange(ctx, clusterlog.ConfChange{Type: clusterlog.AddLearner, NodeID: 4, Context: []byte("addr-4")})
	if err != nil {
		t.Fatalf("AddLearner(4): %v", err)
	}
	c.mustPropose(ctx, lead, "with-learner")
	c.waitApplied(ctx, c.maxCommit())
	for _, id := range c.running() {
		st := c.nodes[id].Status()
		if !slices.Equal(st.Voters, []uint64{1, 2, 3}) || !slices.Equal(st.Learners, []uint64{4}) {
			t.Errorf("node %d after AddLearner: voters %v learners %v", id, st.Voters, st.Learners)
		}
	}
	checkConfEntry(t, c.apps[4], idx, clusterlog.ConfChange{Type: clusterlog.AddLearner, NodeID: 4, Context: []byte("addr-4")})

	if _, err := leader.AddVoter(ctx, 4); err != nil {
		t.Fatalf("AddVoter(4): %v", err)
	}
	c.mustPropose(ctx, lead, "four-voters")
	c.waitApplied(ctx, c.maxCommit())
	for _, id := range c.running() {
		st := c.nodes[id].Status()
		if !slices.Equal(st.Voters, []uint64{1, 2, 3, 4}) || len(st.Learners) != 0 {
			t.Errorf("node %d after promotion: voters %v learners %v", id, st.Voters, st.Learners)
		}
	}

	// Remove a founding follower; the remaining three keep committing.
	var gone uint64
	for _, id := range []uint64{1, 2, 3} {
		if id != lead {
			gone = id
			break
		}
	}
	idx, err = leader.RemoveNode(ctx, gone)
	if err != nil {
		t.Fatalf("RemoveNode(%d): %v", gone, err)
	}
	rest := slices.DeleteFunc(c.running(), func(id uint64) bool { return id == gone })
	c.waitApplied(ctx, idx, rest...)
	c.stop(gone)
	for i := range 5 {
		c.mustPropose(ctx, lead, fmt.Sprintf("after-remove-%d", i))
	}
	c.waitApplied(ctx, c.maxCommit())
	want := slices.DeleteFunc([]uint64{1, 2, 3, 4}, func(id uint64) bool { return id == gone })
	for _, id := range c.running() {
		if st := c.nodes[id].Status(); !slices.Equal(st.Voters, want) {
			t.Errorf("node %d after RemoveNode(%d): voters %v, want %v", id, gone, st.Voters, want)
		}
	}
	checkConfEntry(t, c.apps[4], idx, clusterlog.ConfChange{Type: clusterlog.RemoveNode, NodeID: gone})
	c.checkSameState()

	// The configuration survives a restart of the leader's file.
	c.stop(lead)
	c.start(lead, nil)
	if st := c.nodes[lead].Status(); !slices.Equal(st.Voters, want) {
		t.Errorf("after restart: voters %v, want %v", st.Voters, want)
	}
}

func checkConfEntry(t *testing.T, a *testApp, index uint64, want clusterlog.ConfChange) {
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range a.confs {
		if e.Index != index {
			continue
		}
		if e.Change.Type != want.Type || e.Change.NodeID != want.NodeID || string(e.Change.Context) != string(want.Context) {
			t.Errorf("entry %d: change %+v, want %+v", index, e.Change, want)
		}
		return
	}
	t.Errorf("no configuration entry delivered at index %d", index)
}

// TestOnlyVoterCannotLeave checks that a change leaving no voter is refused.
func TestOnlyVoterCannotLeave(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 1, nil)
	lead := c.waitLeader(ctx)
	for _, cc := range []clusterlog.ConfChange{
		{Type: clusterlog.RemoveNode, NodeID: lead},
		{Type: clusterlog.AddLearner, NodeID: lead},
	} {
		if _, err := c.nodes[lead].ProposeConfChange(ctx, cc); !errors.Is(err, clusterlog.ErrInvalidConfChange) {
			t.Errorf("%v of the only voter: %v, want ErrInvalidConfChange", cc.Type, err)
		}
	}
	c.mustPropose(ctx, lead, "still-works")
}
