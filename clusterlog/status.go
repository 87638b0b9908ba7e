package clusterlog

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"

	"go.etcd.io/raft/v3"
)

// Role is a node's raft role.
type Role uint8

const (
	Follower Role = iota
	PreCandidate
	Candidate
	Leader
)

func (r Role) String() string {
	switch r {
	case Follower:
		return "follower"
	case PreCandidate:
		return "pre-candidate"
	case Candidate:
		return "candidate"
	case Leader:
		return "leader"
	}
	return fmt.Sprintf("Role(%d)", uint8(r))
}

func roleOf(s raft.StateType) Role {
	switch s {
	case raft.StateLeader:
		return Leader
	case raft.StateCandidate:
		return Candidate
	case raft.StatePreCandidate:
		return PreCandidate
	}
	return Follower
}

// Status is a snapshot of a node's view of the cluster. The slices are
// sorted and never modified after publication.
type Status struct {
	ID      uint64
	Role    Role
	Leader  uint64 // 0 when no leader is known
	Term    uint64
	Commit  uint64 // highest index known committed
	Applied uint64 // highest index applied (and so delivered to the Applier)

	Voters   []uint64 // configuration as of Applied
	Learners []uint64

	// QuorumContact reports whether this node is currently in touch with a
	// quorum: as leader, it heard from a majority of voters (itself
	// included) within the last election timeout; otherwise, a leader is
	// known and it heard from that leader within the last election timeout.
	// With CheckQuorum and PreVote (always on), a node cut off with a
	// minority loses QuorumContact within about one election timeout and
	// cannot disrupt the majority when it returns.
	QuorumContact bool
}

// IsLeader reports whether the node is the leader.
func (s Status) IsLeader() bool { return s.Role == Leader }

func (s Status) equal(o Status) bool {
	return s.ID == o.ID && s.Role == o.Role && s.Leader == o.Leader && s.Term == o.Term &&
		s.Commit == o.Commit && s.Applied == o.Applied && s.QuorumContact == o.QuorumContact &&
		slices.Equal(s.Voters, o.Voters) && slices.Equal(s.Learners, o.Learners)
}

// watch is one published Status; changed is closed when it is superseded.
type watch struct {
	st      Status
	changed chan struct{}
}

// Status returns the node's latest published status. It never blocks.
func (n *Node) Status() Status { return n.status.Load().st }

// Watch returns the latest status and a channel closed when a newer one is
// published, or when the node stops (check Done). It never blocks.
func (n *Node) Watch() (Status, <-chan struct{}) {
	w := n.status.Load()
	return w.st, w.changed
}

// WaitFor blocks until cond holds for the node's status and returns that
// status. It fails with the context's error, or ErrStopped if the node stops
// while cond does not hold.
func (n *Node) WaitFor(ctx context.Context, cond func(Status) bool) (Status, error) {
	for {
		st, changed := n.Watch()
		if cond(st) {
			return st, nil
		}
		select {
		case <-changed:
			select {
			case <-n.done:
				if st := n.Status(); cond(st) {
					return st, nil
				}
				return n.Status(), ErrStopped
			default:
			}
		case <-ctx.Done():
			return st, fmt.Errorf("clusterlog: wait: %w", ctx.Err())
		}
	}
}

// publishStatus publishes the loop's current view if it changed. Loop only
// (and NewNode, before the loop starts).
func (n *Node) publishStatus() {
	l := &n.loop
	bs := l.rn.BasicStatus()
	st := Status{
		ID:       n.id,
		Role:     roleOf(bs.RaftState),
		Leader:   bs.Lead,
		Term:     bs.GetTerm(),
		Commit:   bs.GetCommit(),
		Applied:  l.applied,
		Voters:   slices.Clone(l.confState.GetVoters()),
		Learners: slices.Clone(l.confState.GetLearners()),
	}
	slices.Sort(st.Voters)
	slices.Sort(st.Learners)
	st.QuorumContact = n.quorumContact(st)
	old := n.status.Load()
	if old.st.equal(st) {
		return
	}
	n.status.Store(&watch{st: st, changed: make(chan struct{})})
	close(old.changed)
}

func (n *Node) quorumContact(st Status) bool {
	l := &n.loop
	recent := func(id uint64) bool {
		t, ok := l.heard[id]
		return ok && l.ticks-t < uint64(n.cfg.ElectionTicks)
	}
	switch {
	case st.Leader == 0:
		return false
	case st.Role == Leader:
		count := 0
		for _, v := range st.Voters {
			if v == n.id || recent(v) {
				count++
			}
		}
		return count > len(st.Voters)/2
	default:
		return recent(st.Leader)
	}
}

// Stats are a node's counters since it started, for metrics.
type Stats struct {
	Proposals   uint64 // data entries this node proposed (handed to raft)
	ConfChanges uint64 // configuration changes this node proposed
	ReadIndexes uint64 // ReadIndex calls answered
	Applied     uint64 // entries applied on this node
	Restores    uint64 // snapshots restored
	Snapshots   uint64 // snapshots taken, periodic and on demand
	// Fsyncs counts the Storage's committed write transactions, each one
	// fsync, since it was opened (Storage.WriteTxns).
	Fsyncs uint64
}

// nodeStats are the counters behind Stats; the loop writes them.
type nodeStats struct {
	proposals, confChanges, reads, entries, restores, snapshots atomic.Uint64
}

// Stats returns the node's counters. It never blocks.
func (n *Node) Stats() Stats {
	return Stats{
		Proposals:   n.stats.proposals.Load(),
		ConfChanges: n.stats.confChanges.Load(),
		ReadIndexes: n.stats.reads.Load(),
		Applied:     n.stats.entries.Load(),
		Restores:    n.stats.restores.Load(),
		Snapshots:   n.stats.snapshots.Load(),
		Fsyncs:      n.st.WriteTxns(),
	}
}
