package cluster

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/membership"
)

func TestFormAndSameViews(t *testing.T) {
	h := newHarness(t, 3)
	h.form()
	// Every node told the same NEWVIEWs of the entries it applied as a
	// member; the founder told them all.
	all := newViews(h.nodes[0].ev.events())
	if len(all) < 3 {
		t.Fatalf("founder told %v, want at least 3 NEWVIEWs", all)
	}
	for _, nd := range h.nodes[1:] {
		// The view is read as applied; its events follow once the entry
		// is durable.
		eventually(t, 10*time.Second, "NEWVIEWs told", func() bool { return slices.Equal(newViews(nd.ev.events()), all) })
	}
	if h.nodes[0].cl.ClusterID() == 0 {
		t.Error("no cluster id after founding")
	}
	eventually(t, 10*time.Second, "every node knows the cluster id", func() bool {
		for _, nd := range h.nodes {
			if nd.cl.ClusterID() != h.nodes[0].cl.ClusterID() {
				return false
			}
		}
		return true
	})
}

// TestEvictionStartsNewLife removes a running node's life: it tells
// EVICTED, starts a new life with a new incarnation and is a member again.
func TestEvictionStartsNewLife(t *testing.T) {
	h := newHarness(t, 3)
	h.form()
	victim := h.nodes[2]
	old := victim.cl.Incarnation()
	var l *testNode
	eventually(t, 10*time.Second, "a leader", func() bool { l = h.leader(); return l != nil && l != victim })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := l.cl.ProposeChange(ctx, membership.Command{Op: membership.OpLeave, Cause: membership.CauseRemoved, ID: victim.id, Incarnation: old}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the victim back in every view with a new life", func() bool {
		for _, nd := range h.nodes {
			v := nd.cl.View()
			m, ok := v.Member(victim.id)
			if !ok || m.Incarnation == old {
				return false
			}
		}
		return true
	})
	if victim.cl.Incarnation() == old {
		t.Error("the victim kept its incarnation")
	}
	evicted := slices.IndexFunc(victim.ev.events(), func(ev events.Event) bool { return ev.Desc == events.MSEvicted })
	if evicted < 0 {
		t.Fatal("no EVICTED event")
	}
	// Cluster-wide events keep rising across the lives: none is told twice.
	var last uint64
	for _, ev := range victim.ev.events() {
		if ev.Seq == 0 {
			continue
		}
		if ev.Seq <= last {
			t.Errorf("seq %d after %d", ev.Seq, last)
		}
		last = ev.Seq
	}
}

// TestRestartAfterRemovalRejoins stops a node until the leader removed it,
// then starts it on the same data dir: a member tells it NOTMEMBER, it
// starts a new life and joins again.
func TestRestartAfterRemovalRejoins(t *testing.T) {
	h := newHarness(t, 3)
	h.form()
	victim := h.nodes[2]
	old := victim.cl.Incarnation()
	h.stop(victim)
	for _, nd := range h.nodes[:2] {
		eventually(t, 20*time.Second, "the stopped node removed", func() bool { return viewIs(nd, 1, 2) })
	}
	h.start(victim, false, h.nodes[0], h.nodes[1])
	eventually(t, 30*time.Second, "the restarted node a member again with a new life", func() bool {
		for _, nd := range h.nodes {
			v := nd.cl.View()
			m, ok := v.Member(victim.id)
			if !ok || m.Incarnation == old {
				return false
			}
		}
		return true
	})
}

// TestTwoRestartedNodesRejoin stops two members until the leader removed
// both, then starts them together: each is linked to the other, itself
// outside the view, and to the members. They ask their peers in turn and
// both rejoin (asking only the smallest id, node 1 asked node 2 and node 2
// asked node 1, forever).
func TestTwoRestartedNodesRejoin(t *testing.T) {
	h := newHarness(t, 5)
	h.form()
	n1, n2 := h.nodes[0], h.nodes[1]
	h.stop(n1)
	h.stop(n2)
	for _, nd := range h.nodes[2:] {
		eventually(t, 20*time.Second, "nodes 1 and 2 removed", func() bool { return viewIs(nd, 3, 4, 5) })
	}
	h.start(n1, false, n2, h.nodes[2], h.nodes[3], h.nodes[4])
	h.start(n2, false, n1, h.nodes[2], h.nodes[3], h.nodes[4])
	for _, nd := range h.nodes {
		eventually(t, 30*time.Second, fmt.Sprintf("node %d sees all five", nd.id), func() bool { return viewIs(nd, 1, 2, 3, 4, 5) })
	}
}

// TestFsyncsPerMembershipEntry counts the log's fsyncs per membership
// change on every node of a 3-node cluster: the entry is persisted before
// it is acknowledged (one fsync) and its effect commits with the applied
// index (one more). The agent before the machine kept its state in the log
// paid 4: the log twice, and the state file and its directory.
func TestFsyncsPerMembershipEntry(t *testing.T) {
	h := newHarness(t, 3)
	// The ghost member below never links: the leader must not remove it
	// between its JOIN and the LEAVE the test proposes, however slowly a
	// loaded machine runs them.
	h.removeAfter = time.Hour
	h.form()
	var l *testNode
	eventually(t, 10*time.Second, "a leader that knows the cluster id", func() bool {
		l = h.leader()
		return l != nil && l.cl.ClusterID() != 0
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Let the last commits of forming settle on every node.
	settle := func() []uint64 {
		var prev []uint64
		for stable := 0; stable < 5; {
			var now []uint64
			for _, nd := range h.nodes {
				now = append(now, nd.cl.Stats().Fsyncs)
			}
			if slices.Equal(now, prev) {
				stable++
			} else {
				stable = 0
			}
			prev = now
			time.Sleep(50 * time.Millisecond)
		}
		return prev
	}
	before := settle()
	const n = 20
	for i := range n {
		// A member that never runs: a non-voter, so quorum is unchanged.
		inc := uint64(0x9000 + i/2)
		cmd := membership.Command{Op: membership.OpJoin, ID: 99, Incarnation: inc, Name: "ghost"}
		if i%2 == 1 {
			cmd = membership.Command{Op: membership.OpLeave, Cause: membership.CauseRemoved, ID: 99, Incarnation: inc}
		}
		if _, err := l.cl.ProposeChange(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	after := settle()
	for i, nd := range h.nodes {
		per := float64(after[i]-before[i]) / n
		t.Logf("node %d: %.2f fsyncs per membership entry", nd.id, per)
		if per > 2.5 {
			t.Errorf("node %d: %.2f fsyncs per membership entry, want at most 2", nd.id, per)
		}
	}
}
