package clusterlog_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/clusterlog"
)

// TestConfChangeRefused proposes an AddVoter the application refuses: every
// node applies it as a no-op, so the voters stay the same everywhere, the
// proposer gets ErrConfChangeRefused, and the log goes on.
func TestConfChangeRefused(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	c.start(4, nil)
	idx, err := c.nodes[lead].ProposeConfChange(ctx, clusterlog.ConfChange{Type: clusterlog.AddVoter, NodeID: 4, Context: []byte("refuse")})
	if !errors.Is(err, clusterlog.ErrConfChangeRefused) || !errors.Is(err, errRefused) {
		t.Fatalf("refused AddVoter: index %d, err %v; want ErrConfChangeRefused wrapping the application's error", idx, err)
	}
	c.mustPropose(ctx, lead, "after-refusal")
	c.waitApplied(ctx, c.maxCommit(1, 2, 3), 1, 2, 3)
	for _, id := range []uint64{1, 2, 3} {
		st := c.nodes[id].Status()
		if !slices.Equal(st.Voters, []uint64{1, 2, 3}) || len(st.Learners) != 0 {
			t.Errorf("node %d after a refused AddVoter: voters %v learners %v", id, st.Voters, st.Learners)
		}
		for _, e := range c.apps[id].confs {
			if e.Index == idx {
				t.Errorf("node %d: refused change %d reached Apply", id, idx)
			}
		}
	}
	// The change the application accepts still works afterwards.
	if _, err := c.nodes[lead].AddLearner(ctx, 4); err != nil {
		t.Fatalf("AddLearner(4) after the refusal: %v", err)
	}
	c.waitApplied(ctx, c.maxCommit())
	if st := c.nodes[lead].Status(); !slices.Equal(st.Learners, []uint64{4}) {
		t.Errorf("learners %v, want [4]", st.Learners)
	}
}

// TestProposeReply checks that Propose returns the Applier's reply, and an
// ErrRejected from Apply as the error while the log goes on.
func TestProposeReply(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	idx, reply, err := c.nodes[lead].Propose(ctx, []byte("x"))
	if err != nil || string(reply) != "applied "+itoa(idx) {
		t.Fatalf("Propose = %d %q %v", idx, reply, err)
	}
	if _, _, err := c.nodes[lead].Propose(ctx, []byte("reject")); !errors.Is(err, clusterlog.ErrRejected) {
		t.Fatalf("rejected entry: %v, want ErrRejected", err)
	}
	c.mustPropose(ctx, lead, "y")
	c.waitApplied(ctx, c.maxCommit())
	state, _ := c.checkSameState()
	if !slices.Equal(state, []string{"x", "y"}) {
		t.Errorf("state %q", state)
	}
	// Committed follows the applied index, after it is durable.
	a := c.apps[lead]
	a.mu.Lock()
	committed := slices.Clone(a.committed)
	a.mu.Unlock()
	if len(committed) == 0 || !slices.IsSorted(committed) || committed[len(committed)-1] < idx {
		t.Errorf("Committed calls %v", committed)
	}
}

func itoa(i uint64) string { return string(appendUint(nil, i)) }

func appendUint(b []byte, i uint64) []byte {
	if i >= 10 {
		b = appendUint(b, i/10)
	}
	return append(b, byte('0'+i%10))
}

// TestFsyncsPerConfChange counts the fsyncs a membership change costs each
// node: one to persist the entry and one to record it applied with the
// application's writes (the leader's commit-index-only hard state rides
// with the record).
func TestFsyncsPerConfChange(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 3, func(cfg *clusterlog.Config) { cfg.TickInterval = time.Hour }) // no heartbeats in the count
	lead := uint64(1)
	// raft refuses to campaign before the founding entries are applied,
	// which happens on the node's first Ready.
	c.net.Isolate(lead)
	if err := c.nodes[lead].Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitApplied(ctx, 3, lead)
	c.net.Heal()
	if err := c.nodes[lead].Campaign(ctx); err != nil {
		t.Fatal(err)
	}
	c.waitLeader(ctx)
	c.mustPropose(ctx, lead, "warmup")
	c.waitApplied(ctx, c.maxCommit())
	const changes = 6
	before := map[uint64]uint64{}
	for _, id := range c.running() {
		before[id] = c.nodes[id].Stats().Fsyncs
	}
	for i := range changes {
		typ := clusterlog.AddLearner
		if i%2 == 1 {
			typ = clusterlog.RemoveNode
		}
		if _, err := c.nodes[lead].ProposeConfChange(ctx, clusterlog.ConfChange{Type: typ, NodeID: 9, Context: []byte("m")}); err != nil {
			t.Fatal(err)
		}
	}
	c.waitApplied(ctx, c.nodes[lead].Status().Commit)
	for _, id := range c.running() {
		per := float64(c.nodes[id].Stats().Fsyncs-before[id]) / changes
		t.Logf("node %d: %.2f fsyncs per configuration change", id, per)
		if per > 2 {
			t.Errorf("node %d: %.2f fsyncs per configuration change, want at most 2", id, per)
		}
	}
	if st := c.nodes[lead].Stats(); st.ConfChanges != changes || st.Proposals < 1 {
		t.Errorf("leader stats %+v", st)
	}
}

// TestReadIndex checks that ReadIndex returns at least the commit index
// seen when it was called, on the leader and on a follower, and fails with
// ErrNoLeader when there is none.
func TestReadIndex(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	for range 3 {
		c.mustPropose(ctx, lead, "w")
	}
	for _, id := range c.running() {
		commit := c.nodes[lead].Status().Commit
		idx, err := c.nodes[id].ReadIndex(ctx)
		if err != nil {
			t.Fatalf("ReadIndex on node %d: %v", id, err)
		}
		if idx < commit {
			t.Errorf("ReadIndex on node %d = %d, below the commit index %d seen at the call", id, idx, commit)
		}
	}
	if got := c.nodes[lead].Stats().ReadIndexes; got != 1 {
		t.Errorf("leader answered %d reads, want 1", got)
	}

	// Without a quorum there is no leader; ReadIndex gives up with the
	// context and says why.
	for _, id := range c.running() {
		c.net.Isolate(id)
	}
	f := c.running()[0]
	if _, err := c.nodes[f].WaitFor(ctx, func(s clusterlog.Status) bool { return s.Leader == 0 }); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := c.nodes[f].ReadIndex(short); !errors.Is(err, clusterlog.ErrNoLeader) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ReadIndex without a leader: %v, want ErrNoLeader and DeadlineExceeded", err)
	}
}
