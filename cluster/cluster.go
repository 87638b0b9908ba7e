package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/raft/v3"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/mesh"
	"github.com/corralhq/corral/rsm"
)

// Errors callers branch on.
var (
	// ErrStopped is returned once Run has returned.
	ErrStopped = errors.New("cluster: stopped")
	// ErrLeaveRefused wraps the leader's reason for refusing a leave.
	ErrLeaveRefused = errors.New("cluster: leave refused")
)

// Events is where the cluster's events go: the event stream.
type Events interface {
	// Publish hands one event on; cluster-wide events come in Seq order.
	Publish(ev events.Event) error
	// Skip says that the cluster-wide events up to seq will never be
	// published (a snapshot replaced them).
	Skip(seq uint64)
	// Latest is the highest cluster-wide Seq published or skipped.
	Latest() uint64
}

// BatchEvents is Events that takes many events at once (the event
// stream): the cluster hands it the events of the entries each commit
// applied in one call.
type BatchEvents interface {
	Events
	// PublishBatch hands evs on, in order, as Publish one by one; it
	// does not keep evs.
	PublishBatch(evs []events.Event) error
}

// Config configures a Cluster.
type Config struct {
	Self    uint64 // node id
	Name    string
	Addr    string // the peer address other nodes reach this node at
	DataDir string
	// Bootstrap founds a new cluster when the data dir holds no log.
	Bootstrap bool

	Tick          time.Duration // raft tick
	ElectionTicks int
	// Heartbeat is how often the driver steps without other cause.
	Heartbeat time.Duration
	// HeartbeatTimeout is the graces' length (membership.ControllerConfig).
	HeartbeatTimeout time.Duration
	RemoveAfter      time.Duration
	MaxVoters        int
	// SnapshotEvery and SnapshotKeep are passed to clusterlog; 0: defaults.
	SnapshotEvery, SnapshotKeep uint64

	Mesh   *mesh.Mesh
	Events Events
	// Machines are the services' machines, besides membership.
	Machines []rsm.Machine
	// Connectivity returns the data of connectivity events (interfaces and
	// peers) for the NODE_ELIGIBLE/INELIGIBLE events of view changes.
	Connectivity func(v *membership.View) events.Connectivity
	// OnFsync, if set, observes each fsynced write of the log.
	OnFsync func(time.Duration)
	Logger  *slog.Logger
	Now     func() time.Time // default time.Now
}

// Cluster is this node's part in the cluster: its current life on the log
// and the membership driver.
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	ctl  *membership.Controller
	prop *rsm.NodeProposer // follows the current life
	asm  *Reassembler

	cur atomic.Pointer[life] // replaced only by the driver (eviction)

	stepc    chan stepMsg  // received raft messages, for the stepper
	kick     chan struct{} // wakes the driver
	requests chan membership.Request
	notices  chan membership.Notice
	outcomes chan membership.Outcome
	replies  chan reqReply // answers to relayed requests
	removedc chan uint64   // a life whose JOIN a peer answered ResultRemoved

	// founding is the cluster id this node draws when it founds a cluster:
	// its HELLOs carry it from the first link on, before the log has it.
	founding atomic.Uint64

	leaving atomic.Bool
	left    chan struct{} // closed when this node's graceful leave is done
	leftMu  sync.Mutex    // guards leftOK
	leftOK  bool

	mu     sync.Mutex          // guards routes and refs; never held across I/O
	routes map[uint64]uint64   // raft id → node id, learned from messages
	refs   map[uint64]*request // requests awaiting the driver's answer
	nextID uint64              // numbers refs

	wg sync.WaitGroup // goroutines started for actions
	// untilStop is cancelled when Run ends: the goroutines in wg that do
	// not take Run's context (those the raft loop starts) stop with it.
	untilStop context.Context
	stopAll   context.CancelFunc
	running   atomic.Bool
	stopped   chan struct{} // closed when Run is done
}

// New prepares this node's part in the cluster. Add the services' machines
// (AddMachine), Open the log, Register on the mesh before the mesh runs,
// then Run.
func New(cfg Config) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Connectivity == nil {
		cfg.Connectivity = func(*membership.View) events.Connectivity { return events.Connectivity{} }
	}
	c := &Cluster{
		cfg: cfg,
		log: cfg.Logger,
		ctl: membership.NewController(membership.ControllerConfig{
			HeartbeatTimeout: cfg.HeartbeatTimeout, RemoveAfter: cfg.RemoveAfter, MaxVoters: cfg.MaxVoters,
		}),
		asm:      NewReassembler(0),
		stepc:    make(chan stepMsg, 4096),
		kick:     make(chan struct{}, 1),
		requests: make(chan membership.Request, 256),
		notices:  make(chan membership.Notice, 64),
		outcomes: make(chan membership.Outcome, 16),
		replies:  make(chan reqReply, 256),
		removedc: make(chan uint64, 1),
		left:     make(chan struct{}),
		routes:   make(map[uint64]uint64),
		refs:     make(map[uint64]*request),
		stopped:  make(chan struct{}),
	}
	c.untilStop, c.stopAll = context.WithCancel(context.Background())
	c.prop = rsm.NewProposer(cfg.Self, func() *clusterlog.Node {
		if l := c.cur.Load(); l != nil {
			return l.node
		}
		return nil
	})
	return c, nil
}

// AddMachine registers a service's machine. It must be called before Open.
func (c *Cluster) AddMachine(m rsm.Machine) {
	if c.cur.Load() != nil {
		panic("cluster: AddMachine after Open")
	}
	c.cfg.Machines = append(c.cfg.Machines, m)
}

// Open opens this node's life on the log in the data dir — migrating an
// old agent's state file, or starting a new life when there is none — and
// starts its raft node with every machine added. Call it once, before Run.
func (c *Cluster) Open() error {
	l, err := c.openLife(c.cfg.Bootstrap, false, 0)
	if err != nil {
		return err
	}
	c.cur.Store(l)
	return nil
}

// AppliedAtStart is the index up to which this node's log was applied when
// it was opened: every cluster-wide event up to it was published by an
// earlier run.
func (c *Cluster) AppliedAtStart() uint64 {
	a, _ := c.cur.Load().store.Applied()
	return a
}

// Incarnation is this node's current life.
func (c *Cluster) Incarnation() uint64 { return c.cur.Load().inc }

// View returns a copy of the current view.
func (c *Cluster) View() membership.View { return c.cur.Load().member.View() }

// ClusterID is the cluster's id: as applied from the log, or the one this
// node drew when it founded the cluster, until the log has it; 0 while this
// node knows none (it has not joined yet).
func (c *Cluster) ClusterID() uint64 {
	l := c.cur.Load()
	if l == nil {
		return 0
	}
	if id := uint64(l.member.ClusterID()); id != 0 {
		return id
	}
	return c.founding.Load()
}

// Status is the raft node's status.
func (c *Cluster) Status() clusterlog.Status { return c.cur.Load().node.Status() }

// Stats are the raft node's counters for this life.
func (c *Cluster) Stats() clusterlog.Stats { return c.cur.Load().node.Stats() }

// WaitFor waits until the raft status of the current life satisfies
// cond, or ctx is done.
func (c *Cluster) WaitFor(ctx context.Context, cond func(clusterlog.Status) bool) (clusterlog.Status, error) {
	return c.cur.Load().node.WaitFor(ctx, cond)
}

// LeaderNode is the node id of the raft leader, 0 if unknown.
func (c *Cluster) LeaderNode() uint64 {
	st := c.Status()
	if st.Leader == 0 {
		return 0
	}
	return c.nodeOf(st.Leader)
}

// Member reports whether this node, in its current life, is in the view.
func (c *Cluster) Member() bool {
	l := c.cur.Load()
	v := l.member.View()
	return v.HasLife(c.cfg.Self, l.inc)
}

// Proposer returns the proposer services use; it follows the node across
// lives.
func (c *Cluster) Proposer() *rsm.NodeProposer { return c.prop }

// Left is closed when this node's graceful leave is done.
func (c *Cluster) Left() <-chan struct{} { return c.left }

// Leave takes this node out of the view (corral leave) and returns once
// the change is committed, or ctx is done.
func (c *Cluster) Leave(ctx context.Context) error {
	if !c.running.Load() {
		return ErrStopped
	}
	c.leaving.Store(true)
	c.wake()
	select {
	case <-c.left:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: leave: %w", ctx.Err())
	case <-c.stopped:
		return ErrStopped
	}
}

func (c *Cluster) finishLeave() {
	c.leftMu.Lock()
	defer c.leftMu.Unlock()
	if !c.leftOK {
		c.leftOK = true
		close(c.left)
	}
}

func (c *Cluster) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// OnRoute is to be called for every mesh route event: reachability
// feeds the policy and quorum contact as link states do.
func (c *Cluster) OnRoute(ev mesh.RouteEvent) {
	if !ev.Up {
		c.asm.Drop(ev.ID)
	}
	c.wake()
}

// OnLink is to be called for every mesh link event: link states feed the
// policy and quorum contact.
func (c *Cluster) OnLink(ev mesh.LinkEvent) {
	if !ev.Up {
		c.asm.Drop(ev.Peer.NodeID)
	}
	c.wake()
}

// Run drives membership until ctx is done, then stops the raft node and
// closes the log. It returns once every goroutine it started has ended.
func (c *Cluster) Run(ctx context.Context) error {
	c.running.Store(true)
	defer close(c.stopped)
	// The stepper ends with the driver, also when the driver ends because
	// the raft node stopped (a failed log write) while ctx goes on.
	ctx, cancel := context.WithCancel(ctx)
	var loops sync.WaitGroup
	loops.Go(func() { c.stepper(ctx) })
	err := c.drive(ctx)
	cancel()
	c.running.Store(false)
	c.stopAll()
	loops.Wait()
	c.wg.Wait()
	c.cur.Load().close(c.log)
	return err
}

// Close stops the raft node and closes the log of a Cluster whose Run was
// never called (New succeeded, but the agent could not start).
func (c *Cluster) Close() {
	if c.running.Load() {
		return
	}
	c.stopAll()
	if l := c.cur.Load(); l != nil {
		l.close(c.log)
	}
}

// openLife opens the life recorded in the data dir, or migrates an old
// agent's state file, or starts a new life. replayed is the highest event
// an earlier life of this process published.
func (c *Cluster) openLife(found, fresh bool, replayed uint64) (*life, error) {
	dir := c.cfg.DataDir
	logPath := filepath.Join(dir, LogFile)
	inc, ok, err := readLife(dir)
	if err != nil {
		return nil, err
	}
	legacy, hasLegacy, err := readLegacy(dir)
	if err != nil {
		return nil, err
	}
	// A data dir that held a life was part of a cluster: --bootstrap
	// founds only from a data dir that never did, as etcd and Consul
	// bootstrap only an empty data dir. A node whose log was lost joins
	// again; it never founds a second cluster.
	if ok || hasLegacy {
		if found {
			c.log.Info("not founding a cluster: this data dir was a member of one; joining it again")
		}
		found = false
	}
	if fresh {
		ok, hasLegacy = false, false
	}
	if ok && !hasLegacy {
		// A life whose log is gone cannot go on: raft would take the
		// empty log for the old one, and a member that forgot its vote
		// can vote twice in a term.
		why, err := lostLog(logPath)
		if err != nil {
			return nil, err
		}
		if why != "" {
			c.log.Warn("starting a new life: the cluster log of this life "+why, "incarnation", fmt.Sprintf("%x", inc), "log", logPath)
			ok = false
		}
	}
	switch {
	case hasLegacy:
		inc = legacy.Incarnation
	case !ok:
		// A new life: any log here is of no use.
		if err := os.Remove(logPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("cluster: drop the log: %w", err)
		}
		if inc, err = newIncarnation(); err != nil {
			return nil, err
		}
		if err := writeLife(dir, inc); err != nil {
			return nil, err
		}
	}
	l := &life{inc: inc, replayed: replayed}
	if l.store, err = clusterlog.OpenStorage(logPath, c.log); err != nil {
		return nil, logError(logPath, err)
	}
	if c.cfg.OnFsync != nil {
		l.store.ObserveFsync(c.cfg.OnFsync)
	}
	if err := c.newMux(l); err != nil {
		l.store.Close()
		return nil, err
	}
	if hasLegacy {
		if err := c.importLegacy(l, legacy); err != nil {
			l.store.Close()
			return nil, err
		}
	}
	last, _ := l.store.LastIndex()
	var peers []uint64
	if last == 0 && found {
		peers = []uint64{inc}
		id, err := newIncarnation() // the same kind of number: random, never 0
		if err != nil {
			l.store.Close()
			return nil, err
		}
		c.founding.Store(id)
		c.log.Info("founding a new cluster", "cluster_id", fmt.Sprintf("%016x", id))
	}
	l.node, err = clusterlog.NewNode(clusterlog.Config{
		// The raft id is the incarnation, not the node id: a node that lost
		// its log is a new raft member, and raft never mistakes it for the
		// old one, whose log it no longer has.
		ID:             inc,
		Storage:        l.store,
		Applier:        applier{c: c, l: l},
		Sender:         &sender{c: c, l: l},
		Logger:         c.log.With("subsystem", "clusterlog.raft"),
		Peers:          peers,
		TickInterval:   c.cfg.Tick,
		ElectionTicks:  c.cfg.ElectionTicks,
		HeartbeatTicks: 1,
		SnapshotEvery:  c.cfg.SnapshotEvery,
		SnapshotKeep:   c.cfg.SnapshotKeep,
	})
	if err != nil {
		l.store.Close()
		if errors.Is(err, clusterlog.ErrCorrupt) {
			return nil, logError(logPath, err)
		}
		return nil, fmt.Errorf("cluster: start the raft node: %w", err)
	}
	if peers != nil {
		// A lone founder need not wait out an election timeout.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		l.node.Campaign(ctx)
		cancel()
	}
	return l, nil
}

// lostLog says how the log of an existing life at path is lost — missing,
// empty, or holding no raft state (no vote, no entry, no snapshot) — or ""
// if it is there.
func lostLog(path string) (string, error) {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "is missing", nil
	case err != nil:
		return "", fmt.Errorf("cluster: %w", err)
	case fi.Size() == 0:
		return "is empty", nil
	}
	st, err := clusterlog.OpenStorage(path, nil)
	if err != nil {
		return "", logError(path, err)
	}
	defer st.Close()
	hs, _, _ := st.InitialState()
	last, _ := st.LastIndex()
	snap, err := st.Snapshot()
	if err != nil {
		return "", logError(path, err)
	}
	if raft.IsEmptyHardState(hs) && last == 0 && raft.IsEmptySnap(snap) {
		return "holds no raft state (no vote, no entry)", nil
	}
	return "", nil
}

// logError is the error for a log that cannot be opened; a damaged one
// says the way out.
func logError(path string, err error) error {
	if errors.Is(err, clusterlog.ErrCorrupt) {
		return fmt.Errorf("cluster: the cluster log %s is damaged; move it away to rejoin the cluster as a new member: %w", path, err)
	}
	return fmt.Errorf("cluster: open the log: %w", err)
}

// close stops the raft node and closes the log.
func (l *life) close(log *slog.Logger) {
	l.closeOnce.Do(func() { l.doClose(log) })
}

func (l *life) doClose(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.node.Stop(ctx); err != nil && !errors.Is(err, clusterlog.ErrStopped) {
		// The loop is in a long write (a large snapshot): the log is
		// closed only once it has ended, never under it.
		log.Warn("the raft node is slow to stop; waiting for it", "err", err)
	}
	<-l.node.Done()
	l.store.Close()
}

// readLegacy reads an old agent's state file, if there is one.
func readLegacy(dir string) (membership.LegacyState, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, membership.LegacyStateFile))
	if errors.Is(err, os.ErrNotExist) {
		return membership.LegacyState{}, false, nil
	}
	if err != nil {
		return membership.LegacyState{}, false, fmt.Errorf("cluster: %w", err)
	}
	s, err := membership.ParseLegacyState(b)
	if err != nil {
		return s, false, fmt.Errorf("cluster: %s: %w", filepath.Join(dir, membership.LegacyStateFile), err)
	}
	return s, true, nil
}
