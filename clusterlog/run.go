package clusterlog

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// loopState is everything the owning goroutine (run) owns. No other goroutine
// touches it after NewNode has started the loop.
type loopState struct {
	rn      *raft.RawNode
	opens   uint64 // this run's storage open count, part of proposal IDs
	nextSeq uint64 // last proposal sequence number handed out

	applied   uint64            // last entry applied to the Applier
	confState *raftpb.ConfState // configuration as of applied
	snapIndex uint64            // index of the stored snapshot
	snapBytes uint64            // bytes of the entries applied since it
	// snapWanted: Storage.Snapshot refused raft the stored snapshot as
	// stale (snapc); take a fresh one at the next chance.
	snapWanted bool

	lead      uint64 // from the last SoftState
	raftState raft.StateType

	waiters     map[uint64]*proposal // own proposals in the log, by sequence number
	confQueue   []*proposal          // conf changes waiting for raft to be ready for them
	confPending uint64               // sequence number of the stepped, unapplied conf change
	resolved    []resolution         // waiters to answer once the current Ready is done

	reads    map[uint64]*readRequest // ReadIndex calls waiting for raft, by id
	nextRead uint64                  // last read id handed out

	ticks uint64            // ticks since start
	heard map[uint64]uint64 // peer → tick at which a message from it last arrived
}

type resolution struct {
	p   *proposal
	res proposeResult
}

// resolve marks the waiter for seq as done with the result. The answer is
// sent at the end of the Ready, after the applied index is on disk.
func (l *loopState) resolve(seq, index uint64, reply []byte, err error) {
	p, ok := l.waiters[seq]
	if !ok {
		return
	}
	delete(l.waiters, seq)
	l.resolved = append(l.resolved, resolution{p, proposeResult{index: index, reply: reply, err: err}})
}

// run is the owning goroutine. Each iteration waits for one event, folds in
// every message and proposal already queued (this is the batching), then
// processes every Ready raft has.
func (n *Node) run() {
	err := n.loopBody()
	n.finish(err)
}

func (n *Node) loopBody() error {
	l := &n.loop
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-n.stopc:
			return ErrStopped
		case <-ticker.C:
			l.ticks++
			l.rn.Tick()
			if len(l.reads) > 0 && l.ticks%uint64(n.cfg.ElectionTicks) == 0 {
				n.retryReads()
			}
		case r := <-n.readc:
			n.acceptRead(r)
		case p := <-n.propc:
			n.stepProposals(p)
		case p := <-n.confc:
			n.acceptConfProposal(p)
		case m := <-n.recvc:
			n.stepMessage(m)
		case p := <-n.cancelc:
			n.cancel(p)
		case r := <-n.reportc:
			if r.snapshot {
				status := raft.SnapshotFinish
				if !r.ok {
					status = raft.SnapshotFailure
				}
				l.rn.ReportSnapshot(r.id, status)
			} else {
				l.rn.ReportUnreachable(r.id)
			}
		case <-n.snapc:
			l.snapWanted = true
		case errc := <-n.campaignc:
			if err := l.rn.Campaign(); err != nil {
				errc <- fmt.Errorf("clusterlog: campaign: %w", err)
			} else {
				errc <- nil
			}
		}
		n.drain()
		if err := n.processReady(); err != nil {
			return err
		}
		if n.maybeStepConfChange() {
			if err := n.processReady(); err != nil {
				return err
			}
		}
		if err := n.snapshotOnDemand(); err != nil {
			return err
		}
		n.publishStatus()
	}
}

// finish fails every outstanding waiter and publishes the final status.
func (n *Node) finish(err error) {
	l := &n.loop
	if !errors.Is(err, ErrStopped) {
		n.log.Error("node stopped by a fatal error", "err", err)
	} else {
		n.log.Info("stopped")
	}
	n.err = err
	n.st.requestSnapshots(nil)
	werr := ErrStopped
	if !errors.Is(err, ErrStopped) {
		werr = fmt.Errorf("%w: %w", ErrStopped, err)
	}
	n.answer()
	for seq, p := range l.waiters {
		delete(l.waiters, seq)
		p.done <- proposeResult{err: werr}
	}
	l.failConfQueue(werr)
	n.publishStatus()
	close(n.done)
	// Wake watchers for the last time; from now on Watch returns a closed
	// channel.
	old := n.status.Swap(&watch{st: n.status.Load().st, changed: closedChan})
	close(old.changed)
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// drain steps whatever messages and proposals are already queued (up to
// MaxBatch of each), so that the next Ready — one fsync — covers them all.
func (n *Node) drain() {
	for range n.cfg.MaxBatch {
		select {
		case m := <-n.recvc:
			n.stepMessage(m)
			continue
		default:
		}
		break
	}
	select {
	case p := <-n.propc:
		n.stepProposals(p)
	default:
	}
}

// stepProposals proposes first and every proposal already queued behind it,
// up to MaxBatch, as one raft message: one log append, one fsync, one
// MsgApp per follower.
func (n *Node) stepProposals(first *proposal) {
	l := &n.loop
	batch := []*proposal{first}
	for len(batch) < n.cfg.MaxBatch {
		select {
		case p := <-n.propc:
			batch = append(batch, p)
			continue
		default:
		}
		break
	}
	batch = slices.DeleteFunc(batch, func(p *proposal) bool { return p.abandoned.Load() })
	if len(batch) == 0 {
		return
	}
	ents := make([]*raftpb.Entry, len(batch))
	n.stats.proposals.Add(uint64(len(batch)))
	for i, p := range batch {
		l.nextSeq++
		p.id = proposalID{node: n.id, opens: l.opens, seq: l.nextSeq}
		putEnvelope(p.buf, p.id)
		ents[i] = &raftpb.Entry{Data: p.buf}
		l.waiters[p.id.seq] = p
	}
	err := l.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(n.id), Entries: ents})
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrProposalDropped, err)
		for _, p := range batch {
			delete(l.waiters, p.id.seq)
			p.done <- proposeResult{err: err}
		}
	}
}

func (n *Node) stepMessage(m *raftpb.Message) {
	l := &n.loop
	l.heard[m.GetFrom()] = l.ticks
	if err := l.rn.Step(m); err != nil {
		n.log.Debug("dropped message", "type", m.GetType(), "from", m.GetFrom(), "err", err)
	}
}

// cancel forgets a proposal whose caller gave up. If it is in the log it
// will still be applied; nobody is told.
func (n *Node) cancel(p *proposal) {
	l := &n.loop
	if w, ok := l.waiters[p.id.seq]; ok && w == p {
		delete(l.waiters, p.id.seq)
	}
	l.confQueue = slices.DeleteFunc(l.confQueue, func(q *proposal) bool { return q == p })
}

// processReady handles every Ready raft has, in order.
func (n *Node) processReady() error {
	for n.loop.rn.HasReady() {
		rd := n.loop.rn.Ready()
		if err := n.handleReady(rd); err != nil {
			return err
		}
		n.loop.rn.Advance(rd)
	}
	return nil
}

// handleReady carries out steps 2 to 6 of the cycle described in doc.go for
// one Ready: persist (one fsync; a received snapshot is restored in the same
// transaction), send, apply and record (one transaction, a second fsync),
// answer. The caller then calls Advance.
func (n *Node) handleReady(rd raft.Ready) error {
	l := &n.loop
	if rd.SoftState != nil {
		n.onSoftState(*rd.SoftState)
	}
	hasSnap := !raft.IsEmptySnap(rd.Snapshot)
	hasHS := !raft.IsEmptyHardState(rd.HardState)

	// A leader sends before it persists, so its own fsync and its
	// followers' overlap (raft thesis §10.2.1, as etcd does): its messages
	// are appends and heartbeats, never an acknowledgement of entries it
	// has not written, and raft counts the leader's own copy of an entry
	// only once Advance says it is stable. A follower acknowledges what it
	// receives, so it sends after the fsync.
	sentEarly := l.raftState == raft.StateLeader && !hasSnap
	if sentEarly && len(rd.Messages) > 0 {
		n.cfg.Sender.Send(rd.Messages)
	}

	// Persist. A hard state that only moves the commit index does not
	// need to be durable before sending (raft's MustSync); it rides along
	// with the applied index in the record transaction.
	persist := hasSnap || len(rd.Entries) > 0 || rd.MustSync
	if persist && !hasSnap {
		if toApply := n.unapplied(rd.CommittedEntries); len(toApply) > 0 {
			return n.persistAndApply(rd, toApply, sentEarly)
		}
	}
	var deferredHS *raftpb.HardState
	if persist {
		err := n.st.Update(func(b *Batch) error {
			if hasSnap {
				md := rd.Snapshot.GetMetadata()
				if err := b.ApplySnapshot(rd.Snapshot); err != nil {
					return fmt.Errorf("clusterlog: store snapshot %d: %w", md.GetIndex(), err)
				}
				n.log.Info("restoring snapshot from leader", "index", md.GetIndex(), "term", md.GetTerm())
				if err := restoreInto(b, n.cfg.Applier, rd.Snapshot); err != nil {
					return err
				}
			}
			if err := b.Append(rd.Entries); err != nil {
				return err
			}
			if hasHS {
				if err := b.SetHardState(rd.HardState); err != nil {
					return err
				}
			}
			if hasSnap {
				md := rd.Snapshot.GetMetadata()
				return b.SetApplied(md.GetIndex(), md.GetConfState())
			}
			return nil
		})
		if err != nil {
			return err
		}
		if hasSnap {
			md := rd.Snapshot.GetMetadata()
			l.applied = md.GetIndex()
			l.snapIndex = md.GetIndex()
			l.snapBytes = 0
			l.confState = proto.Clone(raftpb.EnsureConfState(md.GetConfState())).(*raftpb.ConfState)
			n.stats.restores.Add(1)
			n.cfg.Applier.Committed(l.applied)
		}
	} else if hasHS {
		deferredHS = rd.HardState
	}

	// Send.
	if !sentEarly && len(rd.Messages) > 0 {
		n.cfg.Sender.Send(rd.Messages)
	}
	n.readStates(rd.ReadStates)

	// Apply and record, in one transaction: the application's writes and
	// the applied index become durable together.
	toApply := n.unapplied(rd.CommittedEntries)
	if len(toApply) == 0 && deferredHS == nil {
		n.publishStatus()
		n.answer()
		return nil
	}
	applied := l.applied
	snapDue := false
	err := n.st.Update(func(b *Batch) (err error) {
		if deferredHS != nil {
			if err := b.SetHardState(deferredHS); err != nil {
				return err
			}
		}
		snapDue, err = n.applyIn(b, toApply)
		return err
	})
	if err != nil {
		return err
	}
	n.applied(applied, snapDue)
	return nil
}

// unapplied is ents without those at or below the applied index (covered
// by a snapshot just restored).
func (n *Node) unapplied(ents []*raftpb.Entry) []*raftpb.Entry {
	for len(ents) > 0 && ents[0].GetIndex() <= n.loop.applied {
		ents = ents[1:]
	}
	return ents
}

// persistAndApply is steps 2 to 6 for a Ready without a snapshot that has
// entries to apply: the new entries, the hard state and the applied ones
// go in one transaction, so a busy node fsyncs once per Ready, not twice.
// Applying first is safe: the entries applied are committed, so on a
// majority's disks already. A follower's acknowledgements still go only
// after the commit (they are sent after this transaction). Loop only.
func (n *Node) persistAndApply(rd raft.Ready, toApply []*raftpb.Entry, sentEarly bool) error {
	applied := n.loop.applied
	snapDue := false
	err := n.st.Update(func(b *Batch) (err error) {
		if err := b.Append(rd.Entries); err != nil {
			return err
		}
		if !raft.IsEmptyHardState(rd.HardState) {
			if err := b.SetHardState(rd.HardState); err != nil {
				return err
			}
		}
		snapDue, err = n.applyIn(b, toApply)
		return err
	})
	if err != nil {
		return err
	}
	if !sentEarly && len(rd.Messages) > 0 {
		n.cfg.Sender.Send(rd.Messages)
	}
	n.readStates(rd.ReadStates)
	n.applied(applied, snapDue)
	return nil
}

// applyIn is steps 4 and 5 inside the transaction b: apply toApply, record
// the applied index and configuration, and take a snapshot when one is
// due (snapDue). Loop only.
func (n *Node) applyIn(b *Batch, toApply []*raftpb.Entry) (snapDue bool, err error) {
	l := &n.loop
	for _, e := range toApply {
		if err := n.applyEntry(b, e); err != nil {
			return false, err
		}
	}
	if err := b.SetApplied(l.applied, l.confState); err != nil {
		return false, err
	}
	// Raft may have been refused a stale snapshot while the entries
	// were applied (ApplyConfChange sends); this snapshot serves it.
	n.pollSnapRequest()
	if snapDue = l.applied-l.snapIndex >= n.cfg.SnapshotEvery || l.snapBytes >= n.cfg.SnapshotBytes || (l.snapWanted && l.applied > l.snapIndex); !snapDue {
		return false, nil
	}
	return true, n.snapshotIn(b)
}

// applied is step 6 after the record transaction has committed: note the
// snapshot taken, tell the Applier, publish the status and answer the
// proposers (after publishing, so that a caller whose Propose returned
// index i sees Status().Applied >= i). before is the applied index before
// the transaction. Loop only.
func (n *Node) applied(before uint64, snapDue bool) {
	l := &n.loop
	if snapDue {
		n.tookSnapshot()
	}
	if l.applied != before {
		n.cfg.Applier.Committed(l.applied)
	}
	n.publishStatus()
	n.answer()
}

// snapshotIn writes a snapshot of the application as of l.applied (the
// state in b) and compacts the log, keeping SnapshotKeep entries. Loop only.
func (n *Node) snapshotIn(b *Batch) error {
	l := &n.loop
	var buf bytes.Buffer
	if err := n.cfg.Applier.Snapshot(b.App(), &buf); err != nil {
		return fmt.Errorf("clusterlog: snapshot at %d: %w", l.applied, err)
	}
	if _, err := b.CreateSnapshot(l.applied, l.confState, buf.Bytes()); err != nil {
		return err
	}
	if l.applied > n.cfg.SnapshotKeep {
		if c := l.applied - n.cfg.SnapshotKeep; c >= b.FirstIndex() {
			return b.Compact(c)
		}
	}
	return nil
}

// tookSnapshot notes that the snapshot at l.applied has committed. Loop
// only.
func (n *Node) tookSnapshot() {
	l := &n.loop
	n.log.Debug("took snapshot", "index", l.applied, "on_demand", l.snapWanted)
	l.snapIndex = l.applied
	l.snapBytes = 0
	l.snapWanted = false
	n.stats.snapshots.Add(1)
}

// pollSnapRequest notes a request from Storage.Snapshot, which raft calls
// on this goroutine, without waiting for one. Loop only.
func (n *Node) pollSnapRequest() {
	select {
	case <-n.snapc:
		n.loop.snapWanted = true
	default:
	}
}

// snapshotOnDemand takes the snapshot Storage.Snapshot asked for, if no
// record transaction has taken it, in a transaction of its own: at most one
// per turn of the loop, and only once per configuration change, since the
// fresh snapshot has the applied configuration. Raft gets it at its next
// attempt (the follower's next heartbeat response). Loop only.
func (n *Node) snapshotOnDemand() error {
	l := &n.loop
	n.pollSnapRequest()
	if !l.snapWanted {
		return nil
	}
	if l.applied <= l.snapIndex {
		// Nothing newer to snapshot; the stored snapshot is as of the
		// applied index and so has its configuration.
		l.snapWanted = false
		return nil
	}
	if err := n.st.Update(n.snapshotIn); err != nil {
		return err
	}
	n.tookSnapshot()
	return nil
}

func (n *Node) answer() {
	l := &n.loop
	for i, r := range l.resolved {
		r.p.done <- r.res
		l.resolved[i] = resolution{}
	}
	l.resolved = l.resolved[:0]
}

func (n *Node) onSoftState(ss raft.SoftState) {
	l := &n.loop
	if ss.Lead != l.lead {
		n.log.Info("leader changed", "leader", ss.Lead, "role", ss.RaftState.String())
	}
	wasLeader := l.raftState == raft.StateLeader
	newLeader := ss.Lead != l.lead
	l.lead, l.raftState = ss.Lead, ss.RaftState
	if newLeader {
		n.retryReads()
	}
	if wasLeader && ss.RaftState != raft.StateLeader {
		// A stepped change may still commit under the next leader; its
		// waiter stays. The queued ones cannot be proposed here any more.
		l.confPending = 0
		l.failConfQueue(ErrNotLeader)
	}
}

// applyEntry applies one committed entry inside the record transaction b.
// Loop only.
func (n *Node) applyEntry(b *Batch, e *raftpb.Entry) error {
	l := &n.loop
	n.stats.entries.Add(1)
	l.snapBytes += uint64(len(e.GetData()))
	switch e.GetType() {
	case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
		return n.applyConfEntry(b, e)
	}
	if len(e.GetData()) == 0 {
		// raft's own empty entry, appended by each new leader.
		l.applied = e.GetIndex()
		return nil
	}
	id, payload, err := decodeEnvelope(e.GetIndex(), e.GetData())
	if err != nil {
		return err
	}
	reply, err := n.cfg.Applier.Apply(b.App(), Entry{Index: e.GetIndex(), Term: e.GetTerm(), Kind: KindData, Proposer: id.node, Data: payload})
	if err != nil {
		if !errors.Is(err, ErrRejected) {
			return fmt.Errorf("clusterlog: apply entry %d: %w", e.GetIndex(), err)
		}
		reply = nil
	}
	l.applied = e.GetIndex()
	if id.node == n.id && id.opens == l.opens {
		l.resolve(id.seq, e.GetIndex(), reply, err)
	}
	return nil
}

func unmarshalEntry(e *raftpb.Entry, m proto.Message) error {
	if err := proto.Unmarshal(e.GetData(), m); err != nil {
		return &CorruptError{Record: fmt.Sprintf("entry %d", e.GetIndex()), Reason: fmt.Sprintf("cannot decode %T", m), Err: err}
	}
	return nil
}
