package agent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/transport"
)

// run is the membership loop: on every link or view change, and every
// heartbeat interval, it does what this node's role calls for. The leader
// founds the view, removes members whose links are down and answers JOINs;
// a node outside the view asks to join; members tell nodes outside their
// view that they are (NOTMEMBER).
func (c *cluster) run(ctx context.Context) {
	t := time.NewTicker(c.a.cfg.Heartbeat)
	defer t.Stop()
	var changed <-chan struct{} // the raft status changed: a new leader acts at once
	for {
		if node := c.raft(); node != nil {
			_, changed = node.Watch()
		}
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-changed:
		case <-t.C:
		}
		c.step(ctx)
	}
}

func (c *cluster) step(ctx context.Context) {
	node := c.raft()
	if node == nil {
		return
	}
	st := node.Status()
	self := c.a.cfg.ID
	v := c.currentView()
	c.mu.Lock()
	leaving := c.leaving
	if st.IsLeader() && c.leaderSince.IsZero() {
		c.leaderSince = time.Now()
	} else if !st.IsLeader() {
		c.leaderSince = time.Time{}
	}
	since := c.leaderSince
	c.mu.Unlock()

	member := c.member()
	if st.IsLeader() {
		if !member && !leaving {
			// The founder puts itself in the first view.
			c.propose(ctx, node, clusterlog.AddVoter, c.selfCommand(true))
			return
		}
		failed := membership.Failed(&v, self, time.Now(), c.a.cfg.RemoveAfter, func(id uint64) (time.Time, bool) {
			t, down := c.a.nodes.downSince(id, c.a.cfg.DeadAfter)
			// A node gets a heartbeat timeout to link up after this
			// leader took over (a restart of the whole cluster) and after
			// its current life joined (a link down before that was its
			// previous life's).
			c.mu.Lock()
			joined := c.joinSeen[id]
			c.mu.Unlock()
			switch {
			case down && t.IsZero():
				t = since.Add(c.a.cfg.DeadAfter) // never linked to this leader
			case down && t.Before(joined):
				t = joined.Add(c.a.cfg.DeadAfter) // the down link was an earlier life's
			}
			return t, down
		})
		// Keep the voters at their number: promote the oldest reachable
		// non-voter when a voter is gone.
		if len(failed) == 0 && len(v.Voters()) < c.a.cfg.MaxVoters {
			for _, m := range v.Members {
				if !m.Voter && c.a.nodes.linkTo(m.ID) != nil {
					c.log.Info("promoting non-voting member", "node", m.ID)
					c.propose(ctx, node, clusterlog.AddVoter, membership.Command{Op: membership.OpPromote, ID: m.ID, Incarnation: m.Incarnation, Voter: true})
					break
				}
			}
		}
		for _, id := range failed {
			m, _ := v.Member(id)
			cmd := membership.Command{Op: membership.OpLeave, Cause: membership.CauseFailed, ID: id, Incarnation: m.Incarnation}
			c.log.Warn("removing unreachable member", "node", id)
			c.propose(ctx, node, clusterlog.RemoveNode, cmd)
		}
	}
	c.mu.Lock()
	catchingUp := c.joinedAt != 0 && c.applied < c.joinedAt && time.Since(c.joinAsked) < 10*time.Second
	c.mu.Unlock()
	if !member && !leaving && !catchingUp {
		c.mu.Lock()
		c.joinAsked = time.Now()
		c.mu.Unlock()
		c.requestJoin(ctx, c.leaderNode(st))
	}
	if member {
		c.tellNonMembers(v)
	}
	// Keep a link to every member, also those no configuration names.
	for _, m := range v.Members {
		if m.ID != self && m.Addr != "" {
			c.a.addPeer(m.Addr)
		}
	}
}

// propose proposes one membership change on the leader and waits for it.
func (c *cluster) propose(ctx context.Context, node *clusterlog.Node, typ clusterlog.ConfChangeType, cmd membership.Command) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Raft knows each life of a node by its incarnation.
	idx, err := node.ProposeConfChange(ctx, clusterlog.ConfChange{Type: typ, NodeID: cmd.Incarnation, Context: cmd.Marshal()})
	if err != nil && ctx.Err() == nil {
		c.log.Warn("membership change failed", "op", cmd.Op.String(), "node", cmd.ID, "err", err)
	}
	return idx, err
}

// tellNonMembers sends NOTMEMBER to each linked node outside the view:
// at once for a new view, and again every notMemberEvery while it stays out.
func (c *cluster) tellNonMembers(v membership.View) {
	for _, l := range c.a.nodes.links() {
		id := l.Peer().NodeID
		if v.Has(id) {
			continue
		}
		now := time.Now()
		c.mu.Lock()
		last := c.told[id]
		done := last.instance == v.Instance && now.Sub(last.at) < notMemberEvery
		if !done {
			c.told[id] = notice{v.Instance, now}
		}
		c.mu.Unlock()
		if done {
			continue
		}
		f := proto.Frame{Header: proto.Header{Opcode: peer.OpNotMember, Flags: proto.FlagCreate | proto.FlagDelete}, Body: peer.AppendNotMember(nil, peer.NotMember{Instance: v.Instance})}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		l.Send(ctx, &f)
		cancel()
	}
}

// pending holds the requests this node sent and awaits answers to.
type pending struct {
	mu sync.Mutex // guards m
	m  map[uint64]chan peer.MemberReply
	id atomic.Uint64
}

func (p *pending) add() (uint64, chan peer.MemberReply) {
	id := p.id.Add(1)
	ch := make(chan peer.MemberReply, 1)
	p.mu.Lock()
	if p.m == nil {
		p.m = make(map[uint64]chan peer.MemberReply)
	}
	p.m[id] = ch
	p.mu.Unlock()
	return id, ch
}

func (p *pending) done(id uint64, r peer.MemberReply) {
	p.mu.Lock()
	ch := p.m[id]
	delete(p.m, id)
	p.mu.Unlock()
	if ch != nil {
		ch <- r
	}
}

func (p *pending) forget(id uint64) {
	p.mu.Lock()
	delete(p.m, id)
	p.mu.Unlock()
}

// ask sends a JOIN or LEAVE to the node at l and waits for the answer.
// A relayed request names the asking node as Source.
func (c *cluster) ask(ctx context.Context, l *transport.Link, op uint16, cmd membership.Command, source uint64) (peer.MemberReply, error) {
	id, ch := c.a.pending.add()
	defer c.a.pending.forget(id)
	f := proto.Frame{Header: proto.Header{Opcode: op, MsgID: id, Source: source, Flags: proto.FlagCreate | proto.FlagDelete}, Body: cmd.Marshal()}
	if err := l.Send(ctx, &f); err != nil {
		return peer.MemberReply{}, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-l.Done():
		return peer.MemberReply{}, l.Err()
	case <-ctx.Done():
		return peer.MemberReply{}, ctx.Err()
	}
}

// requestJoin asks the leader (or, not knowing it, any linked peer) to
// add this node.
func (c *cluster) requestJoin(ctx context.Context, leader uint64) {
	l := c.a.nodes.linkTo(leader)
	if l == nil {
		ls := c.a.nodes.links()
		if len(ls) == 0 {
			return
		}
		l = ls[0]
	}
	for hop := 0; hop < 3 && l != nil; hop++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := c.ask(actx, l, peer.OpJoin, c.selfCommand(true), 0)
		cancel()
		if err != nil {
			return
		}
		switch r.Result {
		case peer.ResultOK:
			c.log.Info("joined the cluster", "via", l.Peer().Name, "view", r.Instance)
			c.mu.Lock()
			c.joinedAt = r.Instance // asked no more while the log catches up
			c.mu.Unlock()
			return
		case peer.ResultNotLeader:
			l = c.a.nodes.linkTo(r.Leader)
		default:
			c.log.Warn("join refused", "by", l.Peer().Name, "reason", r.Text)
			return
		}
	}
}

// onMemberRequest answers a JOIN or LEAVE from a peer. It runs in its own
// goroutine: the proposal waits for the commit.
func (c *cluster) onMemberRequest(l *transport.Link, f *proto.Frame) {
	cmd, err := membership.ParseCommand(f.Body)
	var r peer.MemberReply
	switch {
	case err != nil:
		r = peer.MemberReply{Result: peer.ResultRefused, Text: err.Error()}
	case f.Source == 0 && cmd.ID != l.Peer().NodeID:
		r = peer.MemberReply{Result: peer.ResultRefused, Text: fmt.Sprintf("node %d cannot ask for node %d", l.Peer().NodeID, cmd.ID)}
	case f.Source != 0 && (f.Source != cmd.ID || !c.isMember(l.Peer().NodeID)):
		r = peer.MemberReply{Result: peer.ResultRefused, Text: fmt.Sprintf("node %d may not relay for node %d", l.Peer().NodeID, f.Source)}
	case (f.Opcode == peer.OpJoin) != (cmd.Op == membership.OpJoin):
		r = peer.MemberReply{Result: peer.ResultRefused, Text: "command does not match the opcode"}
	default:
		// Relay once: a request relayed to a node that lost the
		// leadership meanwhile is answered, not relayed again.
		r = c.decide(cmd, f.Source == 0)
	}
	reply := proto.Frame{Header: proto.Header{Opcode: f.Opcode, MsgID: f.MsgID, Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply}, Body: peer.AppendMemberReply(nil, &r)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	l.Send(ctx, &reply)
	cancel()
}

// decide proposes cmd if this node leads, or names the leader.
func (c *cluster) decide(cmd membership.Command, relay bool) peer.MemberReply {
	node := c.raft()
	if node == nil {
		return peer.MemberReply{Result: peer.ResultNotLeader}
	}
	st := node.Status()
	if !st.IsLeader() {
		// Relay to the leader: the asking node may have no link to it.
		leader := c.leaderNode(st)
		if l := c.a.nodes.linkTo(leader); l != nil && relay {
			op := peer.OpJoin
			if cmd.Op == membership.OpLeave {
				op = peer.OpLeave
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if r, err := c.ask(ctx, l, op, cmd, cmd.ID); err == nil {
				return r
			}
		}
		return peer.MemberReply{Result: peer.ResultNotLeader, Leader: leader}
	}
	if !c.member() {
		// The founder comes first in the view, whoever asks first.
		if _, err := c.propose(context.Background(), node, clusterlog.AddVoter, c.selfCommand(true)); err != nil {
			return peer.MemberReply{Result: peer.ResultNotLeader, Leader: c.a.cfg.ID}
		}
	}
	v := c.currentView()
	if m, ok := v.Member(cmd.ID); ok && cmd.Op == membership.OpLeave && cmd.Incarnation == 0 {
		cmd.Incarnation = m.Incarnation // raft needs the life to remove
	}
	if old, ok := v.Member(cmd.ID); ok && cmd.Op == membership.OpJoin && old.Incarnation != cmd.Incarnation {
		// A new life of a member (it lost its log): remove the old one
		// first, so raft does not take the empty node for the old one.
		leave := membership.Command{Op: membership.OpLeave, Cause: membership.CauseRemoved, ID: cmd.ID, Incarnation: old.Incarnation}
		if _, err := c.propose(context.Background(), node, clusterlog.RemoveNode, leave); err != nil {
			return peer.MemberReply{Result: peer.ResultRefused, Text: err.Error()}
		}
		v = c.currentView()
	}
	if (cmd.Op == membership.OpJoin) == v.Has(cmd.ID) {
		return peer.MemberReply{Result: peer.ResultOK, Instance: v.Instance}
	}
	typ := clusterlog.RemoveNode
	if cmd.Op == membership.OpJoin {
		cmd.Voter = len(v.Voters()) < c.a.cfg.MaxVoters
		typ = clusterlog.AddLearner
		if cmd.Voter {
			typ = clusterlog.AddVoter
		}
	}
	idx, err := c.propose(context.Background(), node, typ, cmd)
	switch {
	case err == nil:
		return peer.MemberReply{Result: peer.ResultOK, Instance: idx}
	case errors.Is(err, clusterlog.ErrNotLeader):
		return peer.MemberReply{Result: peer.ResultNotLeader, Leader: c.leaderNode(node.Status())}
	}
	return peer.MemberReply{Result: peer.ResultRefused, Text: err.Error()}
}

// leave takes this node out of the view (corral leave) and waits until
// the change is applied here.
func (c *cluster) leave(ctx context.Context) error {
	if !c.member() {
		c.leftOnce.Do(func() { close(c.left) })
		return nil
	}
	c.mu.Lock()
	c.leaving = true
	inc := c.inc
	c.mu.Unlock()
	cmd := membership.Command{Op: membership.OpLeave, Cause: membership.CauseGraceful, ID: c.a.cfg.ID, Incarnation: inc}
	for ctx.Err() == nil {
		node := c.raft()
		if node == nil {
			return clusterlog.ErrStopped
		}
		st := node.Status()
		var r peer.MemberReply
		if st.IsLeader() {
			r = c.decide(cmd, false)
		} else if l := c.a.nodes.linkTo(c.leaderNode(st)); l != nil {
			var err error
			if r, err = c.ask(ctx, l, peer.OpLeave, cmd, 0); err != nil {
				r = peer.MemberReply{Result: peer.ResultNotLeader}
			}
		} else {
			r = peer.MemberReply{Result: peer.ResultNotLeader}
		}
		if r.Result == peer.ResultRefused {
			return fmt.Errorf("agent: leave refused: %s", r.Text)
		}
		if r.Result == peer.ResultOK {
			// Committed. The leader may stop replicating to a node it
			// removed, so this node need not apply its own LEAVE.
			t := time.NewTimer(time.Second)
			defer t.Stop()
			select {
			case <-c.left:
			case <-t.C:
			case <-ctx.Done():
			}
			return nil
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return ctx.Err()
}
