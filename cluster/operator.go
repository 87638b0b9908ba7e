package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/proto/peer"
)

// Quorum is this node's judgement of its cluster's quorum: the view's
// voters it reaches, itself included, against the majority they need. It
// is the count membership.Contact makes for SUSPECT and RECOVERED.
type Quorum struct {
	Member    bool // this life is in the view; a node outside it has no quorum
	Voters    int  // voters in the view
	Reachable int  // of them, this node and those it has a link to
}

// Need is the number of voters a quorum takes: a majority.
func (q Quorum) Need() int { return q.Voters/2 + 1 }

// Quorate reports whether this node is in the view and reaches a majority
// of its voters.
func (q Quorum) Quorate() bool { return q.Member && q.Voters > 0 && q.Reachable >= q.Need() }

// Quorum returns this node's judgement of quorum now.
func (c *Cluster) Quorum() Quorum {
	l := c.cur.Load()
	v := l.member.View()
	return quorumOf(&v, c.cfg.Self, l.inc, c.cfg.Mesh.Reachable)
}

func quorumOf(v *membership.View, self, inc uint64, up func(uint64) bool) Quorum {
	q := Quorum{Member: v.HasLife(self, inc)}
	for _, m := range v.Members {
		if !m.Voter {
			continue
		}
		q.Voters++
		if m.ID == self || up(m.ID) {
			q.Reachable++
		}
	}
	return q
}

// RaftPeer is one member of raft's configuration, named by the node that
// has it: raft ids are incarnations, which mean nothing to people.
type RaftPeer struct {
	RaftID uint64
	Node   uint64 // 0 if neither the view nor a message names its node
	Name   string // from the view; empty if it is not in the view
	Voter  bool   // else a learner
	Leader bool
	Self   bool
}

// RaftPeers returns the raft node's status and its configuration, voters
// first, each in raft id order.
func (c *Cluster) RaftPeers() (clusterlog.Status, []RaftPeer) {
	l := c.cur.Load()
	st := l.node.Status()
	v := l.member.State().View
	peer := func(id uint64, voter bool) RaftPeer {
		p := RaftPeer{RaftID: id, Voter: voter, Leader: id == st.Leader, Self: id == l.inc}
		for _, m := range v.Members {
			if m.Incarnation == id {
				p.Node, p.Name = m.ID, m.Name
				return p
			}
		}
		if p.Self {
			p.Node, p.Name = c.cfg.Self, c.cfg.Name
			return p
		}
		c.mu.Lock()
		p.Node = c.routes[id]
		c.mu.Unlock()
		return p
	}
	var out []RaftPeer
	for _, id := range st.Voters {
		out = append(out, peer(id, true))
	}
	for _, id := range st.Learners {
		out = append(out, peer(id, false))
	}
	return st, out
}

// Errors of Remove.
var (
	// ErrRemoveSelf refuses removing this node: it leaves (Leave) instead.
	ErrRemoveSelf = errors.New("cluster: a node does not remove itself; leave instead")
	// ErrNotInView is returned for a node the view does not have.
	ErrNotInView = errors.New("cluster: not in the view")
	// ErrRemoveRefused wraps the leader's reason for refusing a removal.
	ErrRemoveRefused = errors.New("cluster: removal refused")
)

// removeRetry is how long Remove waits before asking again when no leader
// is known or the one asked no longer leads.
const removeRetry = 100 * time.Millisecond

// Remove asks the leader to take node out of the view (corral members
// remove), dead or alive, and returns once the change is committed, or ctx
// is done. A live node so removed is evicted and joins again with a new
// life. It goes the way of a relayed LEAVE, with cause removed: to this
// node's own controller, which proposes it if this node leads, or else to
// the leader over the mesh.
func (c *Cluster) Remove(ctx context.Context, node uint64) error {
	if node == c.cfg.Self {
		return fmt.Errorf("%w (node %d is this node)", ErrRemoveSelf, node)
	}
	v := c.View()
	m, ok := v.Member(node)
	if !ok {
		return fmt.Errorf("cluster: node %d: %w %d", node, ErrNotInView, v.Instance)
	}
	cmd := membership.Command{Op: membership.OpLeave, Cause: membership.CauseRemoved, ID: node, Incarnation: m.Incarnation}
	for {
		if !c.running.Load() {
			return ErrStopped
		}
		r, err := c.askOwn(ctx, cmd)
		if err == nil && r.Result == peer.ResultNotLeader && r.Leader != 0 && r.Leader != c.cfg.Self {
			r, err = c.call(ctx, r.Leader, cmd, node)
		}
		switch {
		case err == nil && r.Result == peer.ResultOK:
			c.log.Warn("removed member at an operator's request", "node", node, "name", m.Name, "incarnation", fmt.Sprintf("%x", m.Incarnation))
			return nil
		case err == nil && r.Result == peer.ResultRefused:
			return fmt.Errorf("%w: %s", ErrRemoveRefused, r.Text)
		case ctx.Err() != nil:
			return fmt.Errorf("cluster: remove node %d: no leader committed it: %w", node, ctx.Err())
		}
		select {
		case <-time.After(removeRetry):
		case <-ctx.Done():
		case <-c.stopped:
		}
	}
}

// askOwn hands cmd to this node's controller as a request relayed for
// cmd.ID, and returns its answer.
func (c *Cluster) askOwn(ctx context.Context, cmd membership.Command) (peer.MemberReply, error) {
	rq := &request{local: make(chan peer.MemberReply, 1)}
	c.mu.Lock()
	c.nextID++
	ref := c.nextID
	c.refs[ref] = rq
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		delete(c.refs, ref)
		c.mu.Unlock()
	}
	select {
	case c.requests <- membership.Request{Ref: ref, From: c.cfg.Self, Source: cmd.ID, Cmd: cmd}:
		c.wake()
	case <-ctx.Done():
		forget()
		return peer.MemberReply{}, ctx.Err()
	}
	select {
	case r := <-rq.local:
		return r, nil
	case <-ctx.Done():
		forget()
		return peer.MemberReply{}, ctx.Err()
	case <-c.stopped:
		forget()
		return peer.MemberReply{}, ErrStopped
	}
}
