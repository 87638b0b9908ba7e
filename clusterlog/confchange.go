package clusterlog

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// ConfChangeType is the kind of a membership change.
type ConfChangeType uint8

const (
	// AddVoter adds a voting member, or promotes a learner to voter.
	AddVoter ConfChangeType = iota + 1
	// AddLearner adds a non-voting member that receives the log, or demotes
	// a voter.
	AddLearner
	// RemoveNode removes a voter or learner.
	RemoveNode
)

func (t ConfChangeType) String() string {
	switch t {
	case AddVoter:
		return "AddVoter"
	case AddLearner:
		return "AddLearner"
	case RemoveNode:
		return "RemoveNode"
	}
	return fmt.Sprintf("ConfChangeType(%d)", uint8(t))
}

// ConfChange is one membership change.
type ConfChange struct {
	Type   ConfChangeType
	NodeID uint64
	// Context is opaque application data carried with the change (for
	// example the new member's address); it is delivered in Entry.Change.
	Context []byte
}

func (c ConfChange) raftType() (raftpb.ConfChangeType, bool) {
	switch c.Type {
	case AddVoter:
		return raftpb.ConfChangeAddNode, true
	case AddLearner:
		return raftpb.ConfChangeAddLearnerNode, true
	case RemoveNode:
		return raftpb.ConfChangeRemoveNode, true
	}
	return 0, false
}

// ProposeConfChange proposes a membership change and returns, with its
// index, once it is committed and applied on this node. It must be called on
// the leader (ErrNotLeader otherwise); the node holds the change back until
// the leader has applied an entry of its own term and no earlier change of
// its own is pending, so raft never silently drops it. One change at a time
// is applied (no joint consensus); a change that would leave no voter is
// refused with ErrInvalidConfChange, and one the Applier refuses
// (ConfChecker) fails with ErrConfChangeRefused.
func (n *Node) ProposeConfChange(ctx context.Context, cc ConfChange) (uint64, error) {
	index, _, err := n.ProposeConfChangeReply(ctx, cc)
	return index, err
}

// ProposeConfChangeReply is ProposeConfChange that also returns the reply
// Applier.Apply returned for the change.
func (n *Node) ProposeConfChangeReply(ctx context.Context, cc ConfChange) (index uint64, reply []byte, err error) {
	typ, ok := cc.raftType()
	if !ok {
		return 0, nil, fmt.Errorf("%w: unknown type %v", ErrInvalidConfChange, cc.Type)
	}
	if cc.NodeID == 0 {
		return 0, nil, fmt.Errorf("%w: node ID 0", ErrInvalidConfChange)
	}
	p := &proposal{
		cc: &raftpb.ConfChangeV2{
			Changes: []*raftpb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(cc.NodeID)}},
			Context: append(make([]byte, envelopeHeaderLen, envelopeHeaderLen+len(cc.Context)), cc.Context...),
		},
		done: make(chan proposeResult, 1),
	}
	r := n.submit(ctx, n.confc, p)
	return r.index, r.reply, r.err
}

// AddVoter is ProposeConfChange(ctx, ConfChange{Type: AddVoter, NodeID: id}).
func (n *Node) AddVoter(ctx context.Context, id uint64) (uint64, error) {
	return n.ProposeConfChange(ctx, ConfChange{Type: AddVoter, NodeID: id})
}

// AddLearner is ProposeConfChange(ctx, ConfChange{Type: AddLearner, NodeID: id}).
func (n *Node) AddLearner(ctx context.Context, id uint64) (uint64, error) {
	return n.ProposeConfChange(ctx, ConfChange{Type: AddLearner, NodeID: id})
}

// RemoveNode is ProposeConfChange(ctx, ConfChange{Type: RemoveNode, NodeID: id}).
func (n *Node) RemoveNode(ctx context.Context, id uint64) (uint64, error) {
	return n.ProposeConfChange(ctx, ConfChange{Type: RemoveNode, NodeID: id})
}

// checkConfChange decides whether cc may be applied to configuration cs.
// Every node runs it on the same log, so every node decides the same way; a
// refused change is skipped (raft allows the application to reject one).
func checkConfChange(cs *raftpb.ConfState, cc *raftpb.ConfChangeV2) error {
	if len(cs.GetVotersOutgoing()) > 0 || len(cs.GetLearnersNext()) > 0 {
		return fmt.Errorf("%w: configuration is joint", ErrInvalidConfChange)
	}
	if cc.GetTransition() != raftpb.ConfChangeTransitionAuto || len(cc.GetChanges()) != 1 {
		return fmt.Errorf("%w: only single changes are supported", ErrInvalidConfChange)
	}
	ch := cc.GetChanges()[0]
	id := ch.GetNodeId()
	if id == 0 {
		return fmt.Errorf("%w: node ID 0", ErrInvalidConfChange)
	}
	onlyVoter := len(cs.GetVoters()) == 1 && cs.GetVoters()[0] == id
	switch ch.GetType() {
	case raftpb.ConfChangeAddNode:
	case raftpb.ConfChangeAddLearnerNode, raftpb.ConfChangeRemoveNode:
		if onlyVoter {
			return fmt.Errorf("%w: node %d is the only voter", ErrInvalidConfChange, id)
		}
	default:
		return fmt.Errorf("%w: unsupported type %v", ErrInvalidConfChange, ch.GetType())
	}
	return nil
}

// changeOf describes a single change for the Applier.
func changeOf(cc *raftpb.ConfChangeV2, userCtx []byte) ConfChange {
	ch := cc.GetChanges()[0]
	c := ConfChange{NodeID: ch.GetNodeId(), Context: userCtx}
	switch ch.GetType() {
	case raftpb.ConfChangeAddNode:
		c.Type = AddVoter
	case raftpb.ConfChangeAddLearnerNode:
		c.Type = AddLearner
	case raftpb.ConfChangeRemoveNode:
		c.Type = RemoveNode
	}
	return c
}

// changeAttrs describes a conf change for a log line: its type, the raft
// id it changes (in hex, as raft prints ids) and the length of its
// application context, whose bytes are binary and would be dumped as
// escapes.
func changeAttrs(cc *raftpb.ConfChangeV2, ctxLen int, index uint64) []any {
	attrs := []any{"index", index}
	for _, ch := range cc.GetChanges() {
		attrs = append(attrs, "change", changeOf(&raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{ch}}, nil).Type.String(),
			"node_raft_id", raftID(ch.GetNodeId()))
	}
	return append(attrs, "context_bytes", ctxLen)
}

// acceptConfProposal queues a conf change from ProposeConfChange. Loop only.
func (n *Node) acceptConfProposal(p *proposal) {
	l := &n.loop
	if l.raftState != raft.StateLeader {
		p.done <- proposeResult{err: ErrNotLeader}
		return
	}
	l.confQueue = append(l.confQueue, p)
}

// maybeStepConfChange hands the next queued conf change to raft when raft is
// sure to accept it: this node leads, it has applied an entry of its own
// term (so every change of earlier terms is applied), and its own previous
// change is applied. It reports whether it stepped one. Loop only.
func (n *Node) maybeStepConfChange() bool {
	l := &n.loop
	if len(l.confQueue) == 0 || l.confPending != 0 {
		return false
	}
	if l.raftState != raft.StateLeader {
		l.failConfQueue(ErrNotLeader)
		return false
	}
	if t, err := n.st.Term(l.applied); err != nil || t != l.rn.BasicStatus().GetTerm() {
		return false
	}
	p := l.confQueue[0]
	l.confQueue = slices.Delete(l.confQueue, 0, 1)
	if err := checkConfChange(l.confState, p.cc); err != nil {
		p.done <- proposeResult{err: err}
		return false
	}
	l.nextSeq++
	p.id = proposalID{node: n.id, opens: l.opens, seq: l.nextSeq}
	putEnvelope(p.cc.Context, p.id)
	if err := l.rn.ProposeConfChange(p.cc); err != nil {
		p.done <- proposeResult{err: fmt.Errorf("%w: %w", ErrProposalDropped, err)}
		return false
	}
	l.waiters[p.id.seq] = p
	l.confPending = p.id.seq
	n.stats.confChanges.Add(1)
	return true
}

func (l *loopState) failConfQueue(err error) {
	for _, p := range l.confQueue {
		p.done <- proposeResult{err: err}
	}
	l.confQueue = nil
}

// prospective returns the configuration cs would be after the single
// change ch (checked by checkConfChange).
func prospective(cs *raftpb.ConfState, ch *raftpb.ConfChangeSingle) (voters, learners []uint64) {
	id := ch.GetNodeId()
	voters = slices.DeleteFunc(slices.Clone(cs.GetVoters()), func(v uint64) bool { return v == id })
	learners = slices.DeleteFunc(slices.Clone(cs.GetLearners()), func(v uint64) bool { return v == id })
	switch ch.GetType() {
	case raftpb.ConfChangeAddNode:
		voters = append(voters, id)
	case raftpb.ConfChangeAddLearnerNode:
		learners = append(learners, id)
	}
	slices.Sort(voters)
	slices.Sort(learners)
	return voters, learners
}

// noopConfChange is what raft is given in place of a refused change: a
// change of node raft.None, which raft's changer skips (etcd's way of
// rejecting a change downstream of raft).
var noopConfChange = &raftpb.ConfChangeV2{
	Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(uint64(raft.None))}},
}

// applyConfEntry applies a committed conf change entry inside the record
// transaction b. Loop only.
func (n *Node) applyConfEntry(b *Batch, e *raftpb.Entry) error {
	l := &n.loop
	var cc *raftpb.ConfChangeV2
	var id proposalID
	var userCtx []byte
	bootstrap := false
	switch e.GetType() {
	case raftpb.EntryConfChange: // written by raft's Bootstrap only
		v1 := new(raftpb.ConfChange)
		if err := unmarshalEntry(e, v1); err != nil {
			return err
		}
		cc = v1.AsV2()
		userCtx = v1.GetContext()
		bootstrap = true
	default:
		cc = new(raftpb.ConfChangeV2)
		if err := unmarshalEntry(e, cc); err != nil {
			return err
		}
		var err error
		if id, userCtx, err = decodeEnvelope(e.GetIndex(), cc.GetContext()); err != nil {
			return err
		}
	}
	var result error
	var reply []byte
	if err := checkConfChange(l.confState, cc); err != nil {
		n.log.Warn("skipping configuration change", append(changeAttrs(cc, len(userCtx), e.GetIndex()), "err", err)...)
		result = err
	} else {
		ent := Entry{
			Index:    e.GetIndex(),
			Term:     e.GetTerm(),
			Kind:     KindConfChange,
			Proposer: id.node,
			Change:   changeOf(cc, userCtx),
		}
		if ck, ok := n.cfg.Applier.(ConfChecker); ok && !bootstrap {
			ent.Voters, ent.Learners = prospective(l.confState, cc.GetChanges()[0])
			if err := ck.CheckConfChange(b.App(), ent); err != nil {
				n.log.Warn("configuration change refused by the application", append(changeAttrs(cc, len(userCtx), e.GetIndex()), "err", err)...)
				result = fmt.Errorf("%w: %w", ErrConfChangeRefused, err)
			}
		}
		if result == nil {
			l.confState = l.rn.ApplyConfChange(cc)
			n.log.Info("applied configuration change", append(changeAttrs(cc, len(userCtx), e.GetIndex()),
				"voters", l.confState.GetVoters(), "learners", l.confState.GetLearners())...)
			ent.Voters = slices.Clone(l.confState.GetVoters())
			ent.Learners = slices.Clone(l.confState.GetLearners())
			var err error
			if reply, err = n.cfg.Applier.Apply(b.App(), ent); err != nil {
				if !errors.Is(err, ErrRejected) {
					return fmt.Errorf("clusterlog: apply entry %d: %w", e.GetIndex(), err)
				}
				result, reply = err, nil
			}
		}
	}
	if result != nil && len(l.confState.GetVotersOutgoing()) == 0 {
		// Raft is told of every conf change entry; a refused one changes
		// nothing. (In a joint configuration, which this package never
		// enters, raft would refuse even the no-op.)
		l.confState = l.rn.ApplyConfChange(noopConfChange)
	}
	l.applied = e.GetIndex()
	if !bootstrap && id.node == n.id && id.opens == l.opens {
		if id.seq == l.confPending {
			l.confPending = 0
		}
		l.resolve(id.seq, e.GetIndex(), reply, result)
	}
	return nil
}
