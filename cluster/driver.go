package cluster

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
)

// Timeouts of the driver's actions. None of them blocks the driver's loop.
const (
	proposeTimeout = 5 * time.Second
	callTimeout    = 5 * time.Second
	noticeTimeout  = 100 * time.Millisecond
	// leftGrace is how long a node whose LEAVE the leader committed waits
	// to apply it itself: the leader may stop replicating to it.
	leftGrace = time.Second
)

// driverState is owned by the driver goroutine.
type driverState struct {
	joined      map[uint64]time.Time // when each member's current life was applied here
	leaderSince time.Time
	contact     membership.Contact
	inc         uint64 // the life the state above belongs to
	candidate   membership.ClusterID
	requesting  atomic.Bool // this node's own JOIN or LEAVE is out
}

// drive is the membership loop: on every link change, commit, request,
// outcome and heartbeat tick it steps the controller and carries out what
// it decides.
func (c *Cluster) drive(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Heartbeat)
	defer t.Stop()
	d := &driverState{joined: make(map[uint64]time.Time)}
	d.candidate = membership.ClusterID(c.founding.Load())
	if d.candidate.IsZero() {
		var cand [8]byte
		rand.Read(cand[:])
		d.candidate = membership.ClusterID(binary.LittleEndian.Uint64(cand[:]) | 1)
	}
	for {
		l := c.cur.Load()
		if d.inc != l.inc {
			d.joined = make(map[uint64]time.Time)
			d.leaderSince, d.contact, d.inc = time.Time{}, membership.Contact{}, l.inc
		}
		_, changed := l.node.Watch()
		var in membership.Input
		select {
		case <-ctx.Done():
			return nil
		case <-l.node.Done():
			if ctx.Err() == nil {
				return fmt.Errorf("cluster: the raft node stopped: %w", l.node.Err())
			}
			return nil
		case <-c.kick:
		case <-changed:
		case <-t.C:
		case o := <-c.outcomes:
			in.Outcome = &o
		case r := <-c.replies:
			c.answer(r.ref, r.reply)
			continue
		}
		c.fill(&in, d, l)
		for _, a := range c.ctl.Step(in) {
			if err := c.exec(ctx, d, l, a); err != nil {
				return err
			}
		}
		c.judgeContact(d, l)
		c.keepLinks(l)
	}
}

// fill builds the controller's input.
func (c *Cluster) fill(in *membership.Input, d *driverState, l *life) {
	now := c.cfg.Now()
	for _, ch := range l.member.take() {
		for _, m := range ch.Joined {
			d.joined[m.ID] = now
		}
		if ch.ConfMismatch {
			c.log.Error("raft's voters and the view disagree after this entry; the log was written before membership checked changes", "index", ch.Index)
		}
	}
	st := l.node.Status()
	switch {
	case st.IsLeader() && d.leaderSince.IsZero():
		d.leaderSince = now
	case !st.IsLeader():
		d.leaderSince = time.Time{}
	}
	in.Now, in.Self, in.Incarnation = now, c.cfg.Self, l.inc
	in.Name, in.Addr = c.cfg.Name, c.cfg.Addr
	in.Leaving = c.leaving.Load()
	in.State = l.member.State()
	in.Raft = membership.RaftStatus{Leader: st.IsLeader(), LeaderSince: d.leaderSince}
	if st.Leader != 0 {
		in.Raft.LeaderID = c.nodeOf(st.Leader)
	}
	// A member is linked when frames reach it: over a direct link or a
	// route through others (the mesh need not be full).
	in.Links = make(map[uint64]membership.LinkState)
	for _, r := range c.cfg.Mesh.Reachability() {
		if r.ID == c.cfg.Self {
			continue
		}
		ls := membership.LinkState{Up: r.Up}
		if !r.Up {
			ls.DownSince, ls.Duplicate = r.Since, r.Replaced
		}
		in.Links[r.ID] = ls
	}
	in.Joined = d.joined
	in.ClusterIDCandidate = d.candidate
	for {
		select {
		case r := <-c.requests:
			in.Requests = append(in.Requests, r)
			continue
		case n := <-c.notices:
			in.Notices = append(in.Notices, n)
			continue
		case inc := <-c.removedc:
			in.Removed = in.Removed || inc == l.inc
			continue
		default:
		}
		break
	}
}

// exec carries out one action without blocking the loop. Only an eviction
// that cannot open a new life is an error: the node cannot go on.
func (c *Cluster) exec(ctx context.Context, d *driverState, l *life, a membership.Action) error {
	switch a.Kind {
	case membership.ActPropose:
		c.wg.Go(func() {
			o := c.propose(ctx, l, a)
			select {
			case c.outcomes <- o:
			case <-ctx.Done():
			}
		})
	case membership.ActReply:
		c.answer(a.Ref, a.Reply)
	case membership.ActRelay:
		c.wg.Go(func() {
			r, err := c.call(ctx, a.To, a.Cmd, a.Cmd.ID)
			if err != nil {
				r = peer.MemberReply{Result: peer.ResultNotLeader, Leader: a.To}
			}
			select {
			case c.replies <- reqReply{ref: a.Ref, reply: r}:
			case <-ctx.Done():
			}
		})
	case membership.ActRequest:
		if !d.requesting.CompareAndSwap(false, true) {
			return nil // the last one is still out; the controller asks again
		}
		c.wg.Go(func() {
			defer d.requesting.Store(false)
			c.request(ctx, a)
		})
	case membership.ActNotMember:
		f := proto.Frame{Header: proto.Header{Opcode: peer.OpNotMember, Flags: proto.FlagCreate | proto.FlagDelete}, Body: peer.AppendNotMember(nil, peer.NotMember{Instance: a.Instance})}
		sctx, cancel := context.WithTimeout(ctx, noticeTimeout)
		c.cfg.Mesh.Send(sctx, a.To, &f)
		cancel()
	case membership.ActEvicted:
		return c.evict(ctx, l, a.Why)
	case membership.ActLeft:
		c.finishLeave()
	}
	return nil
}

// ProposeChange proposes one membership command on this node, which must
// lead, and returns its index once it is applied here. The policy proposes
// its own changes; this is for tools and tests that make one by hand.
func (c *Cluster) ProposeChange(ctx context.Context, cmd membership.Command) (uint64, error) {
	return c.proposeChange(ctx, c.cur.Load(), cmd)
}

func (c *Cluster) proposeChange(ctx context.Context, l *life, cmd membership.Command) (uint64, error) {
	typ, id := cmd.Raft()
	if typ == membership.RaftNone {
		idx, _, err := c.proposeOn(ctx, l, membershipID, cmd.Marshal())
		return idx, err
	}
	cc := clusterlog.ConfChange{NodeID: id, Context: cmd.Marshal()}
	switch typ {
	case membership.RaftAddVoter:
		cc.Type = clusterlog.AddVoter
	case membership.RaftAddLearner:
		cc.Type = clusterlog.AddLearner
	case membership.RaftRemove:
		cc.Type = clusterlog.RemoveNode
	}
	return l.node.ProposeConfChange(ctx, cc)
}

// propose carries out ActPropose on life l.
func (c *Cluster) propose(ctx context.Context, l *life, a membership.Action) membership.Outcome {
	ctx, cancel := context.WithTimeout(ctx, proposeTimeout)
	defer cancel()
	idx, err := c.proposeChange(ctx, l, a.Cmd)
	o := membership.Outcome{Seq: a.Seq, Index: idx}
	if err != nil {
		o.Index, o.Err, o.NotLeader = 0, err.Error(), errors.Is(err, clusterlog.ErrNotLeader)
		if ctx.Err() == nil || !errors.Is(err, context.Canceled) {
			c.log.Warn("membership change failed", "change", a.Cmd.String(), "err", err)
		}
	} else if a.Cmd.Op == membership.OpLeave && a.Cmd.ID != c.cfg.Self {
		c.log.Warn("removed member", "node", a.Cmd.ID, "cause", a.Cmd.Cause.String(), "index", idx)
	}
	return o
}

// call sends a JOIN or LEAVE to node to and returns its answer; source is
// the node it is relayed for, 0 for this node's own.
func (c *Cluster) call(ctx context.Context, to uint64, cmd membership.Command, source uint64) (peer.MemberReply, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	op := peer.OpJoin
	if cmd.Op == membership.OpLeave {
		op = peer.OpLeave
	}
	f := proto.Frame{Header: proto.Header{Opcode: op, Source: source, Flags: proto.FlagCreate | proto.FlagDelete}, Body: cmd.Marshal()}
	r, err := c.cfg.Mesh.Call(ctx, to, &f)
	if err != nil {
		return peer.MemberReply{}, err
	}
	return peer.ParseMemberReply(r.Body)
}

// request sends this node's own JOIN or LEAVE (ActRequest).
func (c *Cluster) request(ctx context.Context, a membership.Action) {
	r, err := c.call(ctx, a.To, a.Cmd, 0)
	switch {
	case err != nil:
		c.log.Debug("membership request failed", "to", a.To, "change", a.Cmd.String(), "err", err)
	case r.Result == peer.ResultOK && a.Cmd.Op == membership.OpJoin:
		c.log.Info("joined the cluster", "via", a.To, "view", r.Instance)
	case r.Result == peer.ResultOK:
		// The LEAVE committed. The leader may stop replicating to a node
		// it removed, so this node need not apply its own LEAVE.
		t := time.NewTimer(leftGrace)
		defer t.Stop()
		select {
		case <-c.left:
		case <-t.C:
		case <-ctx.Done():
		}
		c.finishLeave()
	case r.Result == peer.ResultRemoved:
		c.log.Warn("the cluster removed this life while this node was cut off", "by", a.To, "change", a.Cmd.String())
		select {
		case c.removedc <- a.Cmd.Incarnation:
		default:
		}
	case r.Result == peer.ResultRefused:
		c.log.Warn("membership request refused", "by", a.To, "change", a.Cmd.String(), "reason", r.Text)
	}
	c.wake()
}

// evict ends life l, which is no longer a member: EVICTED, a fresh log, a
// new incarnation; the controller then asks to join again.
func (c *Cluster) evict(ctx context.Context, l *life, why string) error {
	if ctx.Err() != nil {
		return nil // shutting down: no new life after Run
	}
	v := l.member.View()
	c.log.Warn("evicted from the cluster; joining again", "why", why, "view", v.Instance)
	c.cfg.Events.Publish(events.Event{Desc: events.MSEvicted, Data: membership.ViewData(v)})
	l.close(c.log)
	nl, err := c.openLife(false, true, c.cfg.Events.Latest())
	if err != nil {
		return fmt.Errorf("cluster: cannot start a new life after eviction: %w", err)
	}
	c.cur.Store(nl)
	c.wake()
	return nil
}

// judgeContact tells SUSPECT and RECOVERED: lost or regained contact with
// a quorum of voters.
func (c *Cluster) judgeContact(d *driverState, l *life) {
	v := l.member.View()
	switch d.contact.Update(&v, c.cfg.Self, c.cfg.Mesh.Reachable) {
	case membership.SignalSuspect:
		c.log.Warn("lost contact with a quorum of voters", "view", v.Instance)
		c.cfg.Events.Publish(events.Event{Desc: events.MSSuspect, Data: membership.ViewData(v)})
	case membership.SignalRecovered:
		c.log.Info("contact with a quorum regained", "view", v.Instance)
		c.cfg.Events.Publish(events.Event{Desc: events.MSRecovered, Data: membership.ViewData(v)})
	}
}

// keepLinks keeps a link to every member, also those no configuration
// names, and none to another cluster. Where the network lets a member be
// reached only through others, its dialer keeps failing and the mesh
// routes through the links there are.
func (c *Cluster) keepLinks(l *life) {
	for _, m := range l.member.State().View.Members {
		if m.ID != c.cfg.Self && m.Addr != "" {
			c.cfg.Mesh.AddPeer(m.Addr)
		}
	}
	// The handshake lets a link up while this node's cluster id is not
	// known yet (a founder before its SET-CLUSTER-ID applies). Once it is,
	// a link to a peer of another cluster goes: the redial's handshake
	// refuses it, and both ends log both ids.
	if own := uint64(l.member.ClusterID()); own != 0 {
		for _, lk := range c.cfg.Mesh.Links() {
			if p := lk.Peer(); p.ClusterID != 0 && p.ClusterID != own {
				c.log.Warn("closing a link to another cluster", "peer", p.Name, "peer_id", p.NodeID,
					"cluster_id", fmt.Sprintf("%016x", own), "peer_cluster_id", fmt.Sprintf("%016x", p.ClusterID))
				c.wg.Go(func() {
					lk.Close(proto.CodeClusterID, fmt.Sprintf("peer %q is of cluster %016x, this node of cluster %016x", p.Name, p.ClusterID, own))
				})
			}
		}
	}
}
