package clusterlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/confchange"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"

	"github.com/corralhq/corral/internal/logkey"
)

// Sender hands raft messages to the transport. Node calls Send from its
// owning goroutine, only after everything the messages acknowledge is on
// disk. Send must not block for long and must not modify the messages; it
// may drop any of them (raft retransmits), and should then call
// Node.ReportUnreachable (and Node.ReportSnapshot for a MsgSnap).
type Sender interface {
	Send(msgs []*raftpb.Message)
}

// Applier is the application's state machine. Node calls it from its owning
// goroutine, one call at a time, in log order; it must not call back into a
// blocking Node method (Propose, ProposeConfChange, Step, Campaign, Stop).
//
// Apply, Restore and Snapshot run inside the bbolt transaction that records
// the applied index, and get the application's key space in it (AppTx). An
// application that keeps its state there sees every entry exactly once,
// across crashes too: its state and the applied index commit together or
// not at all. Effects outside the file (events, replies to clients) belong
// in Committed, which runs once that transaction is durable. An error from
// Apply, Snapshot or Restore stops the node and rolls the transaction back,
// except an Apply error matching ErrRejected (see there).
type Applier interface {
	// Apply applies one committed entry and returns the reply for the
	// proposer (Propose returns it on the proposing node).
	Apply(tx *AppTx, e Entry) (reply []byte, err error)
	// Snapshot writes the whole application state, as of the last entry
	// applied, to w.
	Snapshot(tx *AppTx, w io.Writer) error
	// Restore replaces the application state with a snapshot written by
	// Snapshot (on this node or another), read from r. The key space is
	// empty when Restore is called.
	Restore(tx *AppTx, s SnapshotMeta, r io.Reader) error
	// Committed is called after the transaction that recorded every entry
	// up to applied (or the snapshot at applied) has committed.
	Committed(applied uint64)
}

// ConfChecker is an optional interface of an Applier. A configuration
// change that passes the node's own checks is handed to CheckConfChange
// before raft applies it; Entry carries the change and, in Voters and
// Learners, the configuration it would result in. A non-nil error refuses
// the change: raft applies it as a no-op (its voters stay as they were),
// Apply is not called, and the proposer's ProposeConfChange fails with
// ErrConfChangeRefused wrapping the error. The decision must depend only on
// the state in tx, so that every node makes the same one. The founding
// members' entries (written by raft's bootstrap) are not checked.
type ConfChecker interface {
	CheckConfChange(tx *AppTx, e Entry) error
}

// EntryKind says what an Entry carries.
type EntryKind uint8

const (
	KindData       EntryKind = iota + 1 // a payload passed to Propose
	KindConfChange                      // a membership change
)

func (k EntryKind) String() string {
	switch k {
	case KindData:
		return "data"
	case KindConfChange:
		return "confchange"
	}
	return fmt.Sprintf("EntryKind(%d)", uint8(k))
}

// Entry is one committed entry of the cluster log as the Applier sees it.
type Entry struct {
	// Index is the entry's position in the log: the cluster-wide sequence
	// number, the same on every node, strictly increasing.
	Index uint64
	Term  uint64
	Kind  EntryKind
	// Proposer is the raft ID of the node that proposed the entry, from the
	// entry's envelope; 0 for the founding members' entries.
	Proposer uint64
	// Data is the payload passed to Propose (KindData). It aliases the log;
	// do not modify it.
	Data []byte
	// Change is the applied membership change (KindConfChange), and Voters
	// and Learners the configuration that results from it.
	Change   ConfChange
	Voters   []uint64
	Learners []uint64
}

// SnapshotMeta describes the snapshot handed to Applier.Restore: the
// application state as of entry Index, and the configuration then.
type SnapshotMeta struct {
	Index    uint64
	Term     uint64
	Voters   []uint64
	Learners []uint64
}

// Config configures a Node. ID, Storage, Applier and Sender are required.
type Config struct {
	// ID is this node's raft ID, not 0, unique in the cluster forever.
	ID      uint64
	Storage *Storage
	Applier Applier
	Sender  Sender
	Logger  *slog.Logger // default: discard

	// Peers are the founding voters, used only when Storage is empty: every
	// founding member gets the same list. A node joining an existing cluster
	// leaves Peers empty and is added with ProposeConfChange on the leader.
	Peers []uint64

	TickInterval   time.Duration // default 100ms
	ElectionTicks  int           // default 10
	HeartbeatTicks int           // default 1

	// SnapshotEvery takes a snapshot (Applier.Snapshot) after this many
	// applied entries; default 10000. After a snapshot the log is compacted,
	// keeping the SnapshotKeep entries before the snapshot index for slow
	// followers (0 keeps none; a follower that needs a dropped entry is sent
	// the snapshot, a fresh one if it was added after the stored one).
	SnapshotEvery uint64
	SnapshotKeep  uint64
	// SnapshotBytes takes a snapshot also once the entries applied since
	// the last one hold this many bytes; default 64 MiB. Entries can be
	// large (a batch of group messages is up to megabytes), and a log
	// bounded only by its count would grow to gigabytes.
	SnapshotBytes uint64

	// MaxBatch caps how many proposals (and, separately, received messages)
	// are folded into one Ready cycle; default 4096.
	MaxBatch int
	// Raft flow control; defaults 1 MiB, 256 and 64 MiB.
	MaxSizePerMsg       uint64
	MaxInflightMsgs     int
	MaxUncommittedBytes uint64
}

func (c *Config) setDefaults() error {
	switch {
	case c.ID == 0:
		return errors.New("clusterlog: Config.ID must not be 0")
	case c.Storage == nil:
		return errors.New("clusterlog: Config.Storage is required")
	case c.Applier == nil:
		return errors.New("clusterlog: Config.Applier is required")
	case c.Sender == nil:
		return errors.New("clusterlog: Config.Sender is required")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.HeartbeatTicks <= 0 {
		c.HeartbeatTicks = 1
	}
	if c.ElectionTicks <= 0 {
		c.ElectionTicks = 10
	}
	if c.ElectionTicks <= c.HeartbeatTicks {
		return fmt.Errorf("clusterlog: ElectionTicks (%d) must exceed HeartbeatTicks (%d)", c.ElectionTicks, c.HeartbeatTicks)
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = 10000
	}
	if c.SnapshotBytes == 0 {
		c.SnapshotBytes = 64 << 20
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 4096
	}
	if c.MaxSizePerMsg == 0 {
		c.MaxSizePerMsg = 1 << 20
	}
	if c.MaxInflightMsgs <= 0 {
		c.MaxInflightMsgs = 256
	}
	if c.MaxUncommittedBytes == 0 {
		c.MaxUncommittedBytes = 64 << 20
	}
	if slices.Contains(c.Peers, 0) {
		return errors.New("clusterlog: Config.Peers must not contain 0")
	}
	return nil
}

// Node drives one raft.RawNode: it owns it from a single goroutine, persists
// each Ready before sending its messages, and applies committed entries in
// log order. See the package documentation for the ordering rules.
type Node struct {
	id  uint64
	cfg Config
	log *slog.Logger
	st  *Storage

	propc     chan *proposal        // Propose → loop
	confc     chan *proposal        // ProposeConfChange → loop
	cancelc   chan *proposal        // a waiter gave up
	recvc     chan *raftpb.Message  // Step → loop
	reportc   chan report           // ReportUnreachable / ReportSnapshot
	campaignc chan chan error       // Campaign
	readc     chan *readRequest     // ReadIndex
	snapc     chan struct{}         // Storage.Snapshot refused a stale snapshot; capacity 1
	stopc     chan struct{}         // closed by Stop
	done      chan struct{}         // closed when the loop has exited
	stopOnce  sync.Once             //
	err       error                 // why the loop exited; written before done is closed
	status    atomic.Pointer[watch] // published by the loop
	stats     nodeStats             // counters, written by the loop

	loop loopState // owned by the loop goroutine
}

// proposal is one Propose or ProposeConfChange call in flight.
type proposal struct {
	buf  []byte               // envelope header (filled by the loop) + payload
	cc   *raftpb.ConfChangeV2 // set for a conf change
	id   proposalID           // assigned by the loop
	done chan proposeResult   // capacity 1; the loop never blocks on it

	// abandoned is set by the caller when its context ends first; the loop
	// then no longer proposes it if it has not yet.
	abandoned atomic.Bool
}

type proposeResult struct {
	index uint64
	reply []byte
	err   error
}

type report struct {
	id       uint64
	snapshot bool // a ReportSnapshot; otherwise ReportUnreachable
	ok       bool
}

// NewNode starts a node on cfg.Storage. If the stored snapshot is newer than
// the stored applied index (a crash between receiving a snapshot and handing
// it to the application), it is passed to Applier.Restore before NewNode
// returns. With empty storage and cfg.Peers set, it bootstraps a new cluster.
func NewNode(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	st := cfg.Storage
	applied, cs := st.Applied()
	snap, err := st.Snapshot()
	if err != nil {
		return nil, err
	}
	log := logkey.WithSubsystem(cfg.Logger, "clusterlog").With(logkey.RaftID, raftID(cfg.ID))
	if md := snap.GetMetadata(); md.GetIndex() > applied {
		// Only a file upgraded from version 1 gets here: since version 2
		// a received snapshot is restored in the transaction that stores
		// it.
		log.Info("restoring snapshot newer than the applied index", "snapshot", md.GetIndex(), "applied", applied)
		err := st.Update(func(b *Batch) error {
			if err := restoreInto(b, cfg.Applier, snap); err != nil {
				return err
			}
			return b.SetApplied(md.GetIndex(), md.GetConfState())
		})
		if err != nil {
			return nil, err
		}
		applied, cs = st.Applied()
		cfg.Applier.Committed(applied)
	}
	last, _ := st.LastIndex()
	if _, _, err := confchange.Restore(confchange.Changer{
		Tracker: tracker.MakeProgressTracker(1, 0), LastIndex: last,
	}, cs); err != nil {
		return nil, &CorruptError{Record: recordName(bucketMeta, keyConfState), Reason: "inconsistent configuration", Err: err}
	}
	hs, _, _ := st.InitialState()
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        cfg.ID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   st,
		Applied:                   applied,
		MaxSizePerMsg:             cfg.MaxSizePerMsg,
		MaxInflightMsgs:           cfg.MaxInflightMsgs,
		MaxUncommittedEntriesSize: cfg.MaxUncommittedBytes,
		CheckQuorum:               true,
		PreVote:                   true,
		StepDownOnRemoval:         true,
		Logger:                    raftLogger{logkey.WithSubsystem(cfg.Logger, "clusterlog.raft").With(logkey.RaftID, raftID(cfg.ID))},
	})
	if err != nil {
		return nil, fmt.Errorf("clusterlog: new raft node: %w", err)
	}
	if last == 0 && snap.GetMetadata().GetIndex() == 0 && raft.IsEmptyHardState(hs) && len(cfg.Peers) > 0 {
		peers := make([]raft.Peer, len(cfg.Peers))
		for i, id := range cfg.Peers {
			peers[i] = raft.Peer{ID: id}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return nil, fmt.Errorf("clusterlog: bootstrap: %w", err)
		}
		log.Info("bootstrapping a new cluster", "peers", cfg.Peers)
	}
	n := &Node{
		id:        cfg.ID,
		cfg:       cfg,
		log:       log,
		st:        st,
		propc:     make(chan *proposal, cfg.MaxBatch),
		confc:     make(chan *proposal, 16),
		cancelc:   make(chan *proposal, 64),
		recvc:     make(chan *raftpb.Message, cfg.MaxBatch),
		reportc:   make(chan report, 256),
		campaignc: make(chan chan error),
		readc:     make(chan *readRequest, 64),
		snapc:     make(chan struct{}, 1),
		stopc:     make(chan struct{}),
		done:      make(chan struct{}),
	}
	n.loop = loopState{
		rn:        rn,
		opens:     st.Opens(),
		applied:   applied,
		confState: cs,
		snapIndex: snap.GetMetadata().GetIndex(),
		waiters:   make(map[uint64]*proposal),
		reads:     make(map[uint64]*readRequest),
		heard:     make(map[uint64]uint64),
	}
	n.status.Store(&watch{changed: make(chan struct{})})
	n.publishStatus()
	log.Info("started", "applied", applied, "last", last, "opens", n.loop.opens)
	st.requestSnapshots(n.snapc)
	go n.run()
	return n, nil
}

// restoreInto empties the application's key space in b and restores snap
// into it.
func restoreInto(b *Batch, a Applier, snap *raftpb.Snapshot) error {
	md := snap.GetMetadata()
	cs := md.GetConfState()
	meta := SnapshotMeta{
		Index:    md.GetIndex(),
		Term:     md.GetTerm(),
		Voters:   slices.Clone(cs.GetVoters()),
		Learners: slices.Clone(cs.GetLearners()),
	}
	if err := b.resetApp(); err != nil {
		return err
	}
	if err := a.Restore(b.App(), meta, bytes.NewReader(snap.GetData())); err != nil {
		return fmt.Errorf("clusterlog: restore snapshot %d: %w", md.GetIndex(), err)
	}
	return nil
}

// ID returns the node's raft ID.
func (n *Node) ID() uint64 { return n.id }

// Propose appends data to the cluster log and returns once the entry is
// committed and applied on this node, with its index (by then Status().Applied
// is at least that index) and the reply Applier.Apply returned for it; an
// Apply error matching ErrRejected is returned as the error. It returns
// ErrProposalDropped if raft refused the proposal (no leader known yet),
// ErrStopped if the node stops first, or the context's error. After a
// context error or a leader change the entry may or may not be in the log:
// a proposal forwarded to a leader that is lost is silently dropped, so use
// a deadline. data is copied before Propose returns.
func (n *Node) Propose(ctx context.Context, data []byte) (index uint64, reply []byte, err error) {
	buf := make([]byte, ProposeHeadroom+len(data))
	copy(buf[ProposeHeadroom:], data)
	return n.ProposeOwned(ctx, buf)
}

// ProposeHeadroom is how many bytes ProposeOwned needs free in front of
// the data: the node writes its envelope there.
const ProposeHeadroom = envelopeHeaderLen

// ProposeOwned is Propose for data in buf[ProposeHeadroom:], without
// copying it: the node owns buf from the call on (it writes its envelope
// into buf[:ProposeHeadroom], and the log keeps the rest); the caller
// must not use buf again.
func (n *Node) ProposeOwned(ctx context.Context, buf []byte) (index uint64, reply []byte, err error) {
	if len(buf) < ProposeHeadroom {
		return 0, nil, fmt.Errorf("clusterlog: propose: %d bytes, less than the %d of headroom", len(buf), ProposeHeadroom)
	}
	p := &proposal{buf: buf, done: make(chan proposeResult, 1)}
	r := n.submit(ctx, n.propc, p)
	return r.index, r.reply, r.err
}

func (n *Node) submit(ctx context.Context, c chan *proposal, p *proposal) proposeResult {
	select {
	case c <- p:
	case <-ctx.Done():
		return proposeResult{err: fmt.Errorf("clusterlog: propose: %w", ctx.Err())}
	case <-n.done:
		return proposeResult{err: n.stoppedErr()}
	}
	select {
	case r := <-p.done:
		return r
	case <-ctx.Done():
		p.abandoned.Store(true)
		select {
		case n.cancelc <- p:
		case <-n.done:
		}
		return proposeResult{err: fmt.Errorf("clusterlog: propose: %w", ctx.Err())}
	case <-n.done:
		select {
		case r := <-p.done:
			return r
		default:
			return proposeResult{err: n.stoppedErr()}
		}
	}
}

// Step hands the node a message received from a peer. The node takes
// ownership of m. It blocks only while the node's inbound queue is full.
func (n *Node) Step(ctx context.Context, m *raftpb.Message) error {
	if m == nil {
		return errors.New("clusterlog: step: nil message")
	}
	if raft.IsLocalMsg(m.GetType()) {
		return fmt.Errorf("clusterlog: step: %v is a local message type, not accepted from a peer", m.GetType())
	}
	if m.GetTo() != n.id {
		return fmt.Errorf("clusterlog: step: message for node %d delivered to node %d", m.GetTo(), n.id)
	}
	select {
	case n.recvc <- m:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("clusterlog: step: %w", ctx.Err())
	case <-n.done:
		return n.stoppedErr()
	}
}

// ReportUnreachable tells raft that the last send to id failed, so the
// leader stops pipelining to it. It never blocks; a report that does not fit
// the queue is dropped (it is only a hint).
func (n *Node) ReportUnreachable(id uint64) {
	select {
	case n.reportc <- report{id: id}:
	default:
	}
}

// ReportSnapshot tells raft whether the MsgSnap last sent to id arrived. A
// Sender that drops a MsgSnap must report it failed. It never blocks.
func (n *Node) ReportSnapshot(id uint64, ok bool) {
	select {
	case n.reportc <- report{id: id, snapshot: true, ok: ok}:
	default:
	}
}

// Campaign makes this node start an election now instead of waiting for its
// election timeout (raft still refuses it for a learner or removed node).
func (n *Node) Campaign(ctx context.Context) error {
	errc := make(chan error, 1)
	select {
	case n.campaignc <- errc:
	case <-ctx.Done():
		return fmt.Errorf("clusterlog: campaign: %w", ctx.Err())
	case <-n.done:
		return n.stoppedErr()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return fmt.Errorf("clusterlog: campaign: %w", ctx.Err())
	}
}

// Stop stops the node and waits, until ctx is done, for its goroutine to
// exit. Pending proposals fail with ErrStopped. It does not close the
// Storage. Stop may be called more than once.
func (n *Node) Stop(ctx context.Context) error {
	n.stopOnce.Do(func() { close(n.stopc) })
	select {
	case <-n.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("clusterlog: stop: %w", ctx.Err())
	}
}

// Done is closed when the node has stopped, by Stop or by a fatal error.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns the fatal error that stopped the node: nil while it runs and
// after a plain Stop.
func (n *Node) Err() error {
	select {
	case <-n.done:
		if errors.Is(n.err, ErrStopped) {
			return nil
		}
		return n.err
	default:
		return nil
	}
}

func (n *Node) stoppedErr() error {
	<-n.done
	if n.err == nil || errors.Is(n.err, ErrStopped) {
		return ErrStopped
	}
	return fmt.Errorf("%w: %w", ErrStopped, n.err)
}
