package clusterlog_test

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/corralhq/corral/clusterlog"
)

func TestLeaderElection(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			ctx := testCtx(t)
			c := newCluster(t, size, nil)
			lead := c.waitLeader(ctx)
			leaders := 0
			for _, id := range c.running() {
				st, err := c.nodes[id].WaitFor(ctx, func(s clusterlog.Status) bool {
					return s.QuorumContact && len(s.Voters) == size
				})
				if err != nil {
					t.Fatalf("node %d never had quorum contact: %v (status %+v)", id, err, st)
				}
				if st.IsLeader() {
					leaders++
				}
				if !slices.Equal(st.Voters, c.peers) || len(st.Learners) != 0 {
					t.Errorf("node %d: voters %v learners %v, want voters %v", id, st.Voters, st.Learners, c.peers)
				}
			}
			if leaders != 1 {
				t.Errorf("%d nodes say they lead, want 1 (agreed leader %d)", leaders, lead)
			}
			// Every node applied the bootstrap configuration entries.
			for _, id := range c.running() {
				a := c.apps[id]
				a.mu.Lock()
				n := len(a.confs)
				a.mu.Unlock()
				if n != size {
					t.Errorf("node %d applied %d bootstrap configuration entries, want %d", id, n, size)
				}
			}
		})
	}
}

// TestSameOrderEverywhere proposes concurrently on every node and checks that
// every node applied the same entries in the same order, each exactly once,
// and that the index Propose returns is where the entry landed.
func TestSameOrderEverywhere(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d nodes", size), func(t *testing.T) {
			ctx := testCtx(t)
			c := newCluster(t, size, nil)
			c.waitLeader(ctx)
			const perNode = 40
			type result struct {
				data  string
				index uint64
			}
			var mu sync.Mutex
			var results []result
			var wg sync.WaitGroup
			for _, id := range c.running() {
				for w := 0; w < 4; w++ {
					wg.Go(func() {
						for i := w; i < perNode; i += 4 {
							data := fmt.Sprintf("n%d-%d", id, i)
							idx, err := c.propose(ctx, id, data)
							if err != nil {
								t.Errorf("propose %s: %v", data, err)
								return
							}
							mu.Lock()
							results = append(results, result{data, idx})
							mu.Unlock()
						}
					})
				}
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			c.waitApplied(ctx, c.maxCommit())
			state, indexes := c.checkSameState()
			if len(state) != size*perNode {
				t.Fatalf("applied %d entries, want %d", len(state), size*perNode)
			}
			at := make(map[uint64]string)
			for i, idx := range indexes {
				at[idx] = state[i]
			}
			for _, r := range results {
				if at[r.index] != r.data {
					t.Errorf("Propose(%q) returned index %d, which holds %q", r.data, r.index, at[r.index])
				}
			}
		})
	}
}

// TestFollowerRestart stops a follower, commits more without it, and
// restarts it from its bbolt file: it must catch up without any entry being
// delivered twice.
func TestFollowerRestart(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	for i := range 20 {
		c.mustPropose(ctx, lead, fmt.Sprintf("a%d", i))
	}
	c.waitApplied(ctx, c.maxCommit())
	f := c.running()[0]
	if f == lead {
		f = c.running()[1]
	}
	opens := c.stores[f].Opens()
	stopped := c.nodes[f]
	c.stop(f)
	before := stopped.Status() // final: published as it stopped

	for i := range 20 {
		c.mustPropose(ctx, lead, fmt.Sprintf("b%d", i))
	}
	n := c.start(f, c.peers)
	if got := c.stores[f].Opens(); got != opens+1 {
		t.Errorf("opens after reopen = %d, want %d", got, opens+1)
	}
	if st := n.Status(); st.Applied != before.Applied || st.Term < before.Term {
		t.Errorf("after restart: applied %d term %d, want applied %d term >= %d", st.Applied, st.Term, before.Applied, before.Term)
	}
	c.waitApplied(ctx, c.maxCommit())
	state, _ := c.checkSameState()
	if len(state) != 40 {
		t.Errorf("applied %d entries, want 40", len(state))
	}
	a := c.apps[f]
	a.mu.Lock()
	defer a.mu.Unlock()
	seen := make(map[uint64]bool)
	for _, idx := range a.delivered {
		if seen[idx] {
			t.Fatalf("entry %d delivered more than once", idx)
		}
		seen[idx] = true
	}
}

// TestLeaderCrash stops the leader: the others elect a new one, nothing
// committed is lost, and the old leader rejoins and converges.
func TestLeaderCrash(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 5, nil)
	old := c.waitLeader(ctx)
	committed := make(map[uint64]string)
	for i := range 30 {
		d := fmt.Sprintf("before%d", i)
		committed[c.mustPropose(ctx, old, d)] = d
	}
	oldTerm := c.nodes[old].Status().Term
	c.stop(old)

	lead := c.waitLeader(ctx)
	if lead == old {
		t.Fatalf("stopped node %d still leads", old)
	}
	if st := c.nodes[lead].Status(); st.Term <= oldTerm {
		t.Errorf("new leader's term %d, want > %d", st.Term, oldTerm)
	}
	for i := range 30 {
		d := fmt.Sprintf("after%d", i)
		committed[c.mustPropose(ctx, lead, d)] = d
	}
	c.start(old, c.peers)
	c.waitApplied(ctx, c.maxCommit())
	state, indexes := c.checkSameState()
	at := make(map[uint64]string)
	for i, idx := range indexes {
		at[idx] = state[i]
	}
	for idx, d := range committed {
		if at[idx] != d {
			t.Errorf("committed entry %d (%q) reads %q after the crash", idx, d, at[idx])
		}
	}
}

// TestPartitionedMinority isolates two followers of five: they lose quorum
// contact, the majority keeps committing under the same leader and term, and
// when the partition heals PreVote keeps them from forcing an election.
// Then it isolates the leader: it loses quorum contact and steps down
// (CheckQuorum), and the rest elect a new leader.
func TestPartitionedMinority(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 5, nil)
	lead := c.waitLeader(ctx)
	c.mustPropose(ctx, lead, "warmup")
	c.waitApplied(ctx, c.maxCommit())
	term := c.nodes[lead].Status().Term

	var minority []uint64
	for _, id := range c.running() {
		if id != lead && len(minority) < 2 {
			minority = append(minority, id)
		}
	}
	for _, id := range minority {
		c.net.Isolate(id)
	}
	for _, id := range minority {
		if _, err := c.nodes[id].WaitFor(ctx, func(s clusterlog.Status) bool { return !s.QuorumContact }); err != nil {
			t.Fatalf("isolated node %d kept quorum contact: %v", id, err)
		}
	}
	for i := range 10 {
		c.mustPropose(ctx, lead, fmt.Sprintf("p%d", i))
	}
	if st := c.nodes[lead].Status(); !st.QuorumContact || !st.IsLeader() {
		t.Errorf("leader with 3 of 5 lost quorum contact or leadership: %+v", st)
	}
	c.net.Heal()
	c.waitApplied(ctx, c.maxCommit())
	for _, id := range c.running() {
		if st := c.nodes[id].Status(); st.Term != term || st.Leader != lead {
			t.Errorf("node %d after heal: leader %d term %d, want leader %d term %d (minority disrupted the cluster)",
				id, st.Leader, st.Term, lead, term)
		}
	}
	c.checkSameState()

	c.net.Isolate(lead)
	if _, err := c.nodes[lead].WaitFor(ctx, func(s clusterlog.Status) bool { return !s.QuorumContact && !s.IsLeader() }); err != nil {
		t.Fatalf("isolated leader did not step down: %v", err)
	}
	rest := slices.DeleteFunc(c.running(), func(id uint64) bool { return id == lead })
	newLead := c.waitLeader(ctx, rest...)
	if newLead == lead {
		t.Fatalf("isolated node %d still leads", lead)
	}
	c.mustPropose(ctx, newLead, "after")
	c.net.Heal()
	c.waitApplied(ctx, c.maxCommit())
	c.checkSameState()
}

func TestProposeAfterStop(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 1, nil)
	lead := c.waitLeader(ctx)
	n := c.nodes[lead]
	c.mustPropose(ctx, lead, "x")
	c.stop(lead)
	if _, _, err := n.Propose(ctx, []byte("y")); !errors.Is(err, clusterlog.ErrStopped) {
		t.Errorf("Propose after Stop: %v, want ErrStopped", err)
	}
	if err := n.Step(ctx, nil); err == nil {
		t.Errorf("Step(nil) succeeded")
	}
}
