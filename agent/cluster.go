package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	gproto "google.golang.org/protobuf/proto"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/internal/logkey"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
)

// cluster runs this node's part of the cluster log and the membership it
// carries: it applies committed entries to the view, publishes the events
// they make, and, on the leader, turns link failures into view changes.
type cluster struct {
	a   *Agent
	log *slog.Logger

	// kick wakes the membership loop: a link changed, the view changed, or
	// a join or leave is wanted.
	kick chan struct{}

	resetMu sync.Mutex // serializes evictions: one reset per life

	mu      sync.Mutex // guards the fields below
	store   *clusterlog.Storage
	node    *clusterlog.Node
	inc     uint64 // this node's incarnation: one per copy of the log
	applied uint64 // highest entry whose effect is in the state file
	// joinedAt is the view instance a JOIN of this life was committed in;
	// joinAsked is when it was asked.
	joinedAt  uint64
	joinAsked time.Time
	view      membership.View
	contact   membership.Contact
	// told records when each non-member was last sent NOTMEMBER, and for
	// which view; it is told again after notMemberEvery, since a notice
	// can be lost with a link that is replaced.
	told map[uint64]notice
	// routes maps raft ids to node ids learned from received messages.
	routes map[uint64]uint64
	// joinSeen is when each member's current life joined, as applied here:
	// a link down before it says nothing about the new life.
	joinSeen map[uint64]time.Time
	// leaderSince is when this node last became leader, zero if it is not.
	leaderSince time.Time
	leaving     bool // corral leave asked; the node goes when its LEAVE applies

	left     chan struct{} // closed when this node's graceful LEAVE is applied
	leftOnce sync.Once
}

// notice is a NOTMEMBER sent.
type notice struct {
	instance uint64
	at       time.Time
}

const notMemberEvery = time.Second

func (a *Agent) logPath() string { return filepath.Join(a.cfg.DataDir, "log.db") }

func newCluster(a *Agent) *cluster {
	return &cluster{a: a, log: logkey.WithSubsystem(a.log, "cluster"), kick: make(chan struct{}, 1), told: make(map[uint64]notice), routes: make(map[uint64]uint64), joinSeen: make(map[uint64]time.Time), left: make(chan struct{})}
}

// start opens the log and starts the raft node. A node with an empty log
// founds a cluster when told to (--bootstrap); otherwise it waits to be
// added by the leader after its JOIN.
func (c *cluster) start(found bool) error {
	state, ok, err := readState(c.a.cfg.DataDir)
	if err != nil {
		return err
	}
	if !ok {
		// A new life: no state, so any log here is of no use (a crash
		// before the first state was written) and goes.
		if err := os.Remove(c.a.logPath()); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("agent: drop cluster log: %w", err)
		}
		if state.Incarnation, err = newIncarnation(); err != nil {
			return err
		}
		if err := writeState(c.a.cfg.DataDir, &state); err != nil {
			return err
		}
	}
	st, err := clusterlog.OpenStorage(c.a.logPath(), c.log)
	if err != nil {
		return fmt.Errorf("agent: open cluster log: %w", err)
	}
	last, _ := st.LastIndex()
	c.mu.Lock()
	c.view, c.inc, c.applied = state.View, state.Incarnation, state.Applied
	c.mu.Unlock()
	var peers []uint64
	if last == 0 && found {
		peers = []uint64{state.Incarnation}
		c.log.Info("founding a new cluster")
	}
	node, err := clusterlog.NewNode(clusterlog.Config{
		// The raft id is the incarnation, not the node id: a node that lost
		// its log is a new raft member, and raft never mistakes it for the
		// old one, whose log it no longer has.
		ID:             state.Incarnation,
		Storage:        st,
		Applier:        c,
		Sender:         c,
		Logger:         logkey.WithSubsystem(c.log, "raft"),
		Peers:          peers,
		TickInterval:   c.a.cfg.Tick,
		ElectionTicks:  c.a.cfg.ElectionTicks,
		HeartbeatTicks: 1,
	})
	if err != nil {
		st.Close()
		return fmt.Errorf("agent: start cluster log: %w", err)
	}
	c.mu.Lock()
	c.store, c.node = st, node
	c.mu.Unlock()
	if peers != nil {
		// A lone founder need not wait out an election timeout.
		go node.Campaign(context.Background())
	}
	return nil
}

// stop stops the raft node and closes the log.
func (c *cluster) stop() {
	c.mu.Lock()
	node, st := c.node, c.store
	c.node, c.store = nil, nil
	c.mu.Unlock()
	if node != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		node.Stop(ctx)
		cancel()
	}
	if st != nil {
		st.Close()
	}
}

// reset drops this node's copy of the log after it was evicted, so it can
// join again as a new member.
func (c *cluster) reset() error {
	c.stop()
	if err := os.Remove(filepath.Join(c.a.cfg.DataDir, stateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("agent: drop state: %w", err)
	}
	c.mu.Lock()
	c.view, c.joinedAt, c.applied = membership.View{}, 0, 0
	c.contact = membership.Contact{}
	clear(c.told)
	clear(c.routes)
	clear(c.joinSeen)
	c.mu.Unlock()
	return c.start(false) // never found a second cluster after an eviction
}

func (c *cluster) raft() *clusterlog.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.node
}

func (c *cluster) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// currentView returns a copy of the view.
func (c *cluster) currentView() membership.View {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.view.Clone()
}

// Apply implements clusterlog.Applier. Membership changes ride on
// configuration changes, so raft's voters and the view move together.
func (c *cluster) Apply(_ *clusterlog.AppTx, e clusterlog.Entry) ([]byte, error) {
	return nil, c.apply(e)
}

func (c *cluster) apply(e clusterlog.Entry) error {
	c.mu.Lock()
	seen := e.Index <= c.applied
	c.mu.Unlock()
	if seen || e.Kind != clusterlog.KindConfChange || len(e.Change.Context) == 0 {
		return nil // redelivered after a crash, or no membership change
	}
	cmd, err := membership.ParseCommand(e.Change.Context)
	if err != nil {
		// Every node skips the same entry: the log is the same everywhere.
		c.log.Error("skipping membership entry", "index", e.Index, "err", err)
		return nil
	}
	c.mu.Lock()
	self := c.a.cfg.ID
	// Only the removal of this node's current life is its eviction; an
	// earlier life's, replayed after joining again, is history.
	inc := c.inc
	mine := cmd.ID == self && c.view.HasLife(self, inc)
	ch, ok := c.view.Apply(e.Index, cmd)
	leaving := c.leaving
	if ok && cmd.Op == membership.OpJoin {
		c.joinSeen[cmd.ID] = time.Now()
	}
	if ok || cmd.Op == membership.OpPromote {
		// The view is on disk before the entry counts as applied, so a
		// restart neither loses this change nor makes it twice.
		c.applied = e.Index
		err = writeState(c.a.cfg.DataDir, &nodeState{Applied: e.Index, Incarnation: c.inc, View: c.view})
	}
	c.mu.Unlock()
	if !ok {
		return nil
	}
	if err != nil {
		return err
	}
	c.log.Info("new view", "instance", ch.View.Instance, "members", len(ch.View.Members), "op", cmd.Op.String(), "node", cmd.ID, "cause", cmd.Cause.String())
	data := membershipData(ch)
	// Every node tells the entry as the same NEWVIEW, so the sequences of
	// cluster-wide events are identical; the node it evicts adds EVICTED,
	// a local event, after it.
	evicted := mine && cmd.Op == membership.OpLeave && cmd.Cause != membership.CauseGraceful && !leaving
	c.a.publish(events.Event{Seq: e.Index, Desc: events.MSNewView, Data: data})
	c.a.publishEligibility(cmd, ch)
	if mine && cmd.Op == membership.OpLeave {
		if evicted {
			go c.evicted("removed by the cluster", inc)
		} else {
			c.leftOnce.Do(func() { close(c.left) })
		}
	}
	c.wake()
	return nil
}

// Snapshot implements clusterlog.Applier: the state is the view.
func (c *cluster) Snapshot(_ *clusterlog.AppTx, w io.Writer) error {
	c.mu.Lock()
	b := c.view.Marshal()
	c.mu.Unlock()
	_, err := w.Write(b)
	return err
}

// Committed implements clusterlog.Applier; the state file is written in
// Apply.
func (c *cluster) Committed(uint64) {}

// Restore implements clusterlog.Applier.
func (c *cluster) Restore(_ *clusterlog.AppTx, s clusterlog.SnapshotMeta, r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return fmt.Errorf("agent: read snapshot %d: %w", s.Index, err)
	}
	v, err := membership.ParseView(data)
	if err != nil {
		return fmt.Errorf("agent: restore view from snapshot %d: %w", s.Index, err)
	}
	c.mu.Lock()
	c.view, c.applied = v, s.Index
	err = writeState(c.a.cfg.DataDir, &nodeState{Applied: s.Index, Incarnation: c.inc, View: v})
	c.mu.Unlock()
	// The events of the entries the snapshot replaced are never told
	// here: a client resuming below it hears of a gap.
	c.a.stream.Skip(s.Index)
	c.wake()
	return err
}

// Send implements clusterlog.Sender over the peer links. It must not
// block: a message that cannot be queued at once is dropped and raft told,
// and raft sends it again.
func (c *cluster) Send(msgs []*raftpb.Message) {
	for _, m := range msgs {
		to := m.GetTo()
		l := c.a.nodes.linkTo(c.nodeOf(to))
		var err error
		if l == nil {
			err = errors.New("no link")
		} else {
			var body []byte
			if body, err = gproto.Marshal(m); err == nil {
				f := proto.Frame{Header: proto.Header{Opcode: peer.OpRaft, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
				ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
				err = l.Send(ctx, &f)
				cancel()
			}
		}
		if err != nil {
			if node := c.raft(); node != nil {
				node.ReportUnreachable(to)
				if m.GetType() == raftpb.MsgSnap {
					node.ReportSnapshot(to, false)
				}
			}
		}
	}
}

// nodeOf maps a raft id (an incarnation) to the node id that has it: from
// the view, or else from where its messages came from (a joining node
// answers the leader before its view names anyone).
func (c *cluster) nodeOf(raftID uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.view.Members {
		if m.Incarnation == raftID {
			return m.ID
		}
	}
	return c.routes[raftID]
}

// onRaft steps a received raft message into the node.
func (c *cluster) onRaft(from uint64, body []byte) error {
	var m raftpb.Message
	if err := gproto.Unmarshal(body, &m); err != nil {
		return &proto.Error{Code: proto.CodeField, Detail: "RAFT: bad raft message", Err: err}
	}
	c.mu.Lock()
	node, mine := c.node, m.GetTo() == c.inc
	if mine && m.GetFrom() != 0 {
		c.routes[m.GetFrom()] = from
	}
	c.mu.Unlock()
	if node == nil || !mine {
		return nil // for an earlier life of this node: stale
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := node.Step(ctx, &m); err != nil && !errors.Is(err, clusterlog.ErrStopped) && ctx.Err() == nil {
		c.log.Debug("raft step", "err", err)
	}
	return nil
}

func toNode(m membership.Member) events.Node {
	ap, _ := netip.ParseAddrPort(m.Addr)
	return events.Node{ID: m.ID, Name: m.Name, Addr: ap, BornOn: m.BornOn}
}

func toNodes(ms []membership.Member) []events.Node {
	out := make([]events.Node, len(ms))
	for i, m := range ms {
		out[i] = toNode(m)
	}
	return out
}

func membershipData(ch membership.Change) *events.Membership {
	return &events.Membership{Instance: ch.View.Instance, Members: toNodes(ch.View.Members), Joined: toNodes(ch.Joined), Left: toNodes(ch.Left)}
}

func viewData(v membership.View) *events.Membership {
	return &events.Membership{Instance: v.Instance, Members: toNodes(v.Members)}
}

// evicted handles learning that life inc of this node is no longer a
// member: EVICTED, a fresh log and a new JOIN. Several members may say so
// at once; only the first report for a life acts.
func (c *cluster) evicted(why string, inc uint64) {
	c.resetMu.Lock()
	defer c.resetMu.Unlock()
	c.mu.Lock()
	v := c.view.Clone()
	if c.leaving || c.inc != inc {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.log.Warn("evicted from the cluster; joining again", "why", why, "view", v.Instance)
	c.a.publish(events.Event{Desc: events.MSEvicted, Data: viewData(v)})
	if err := c.reset(); err != nil {
		c.log.Error("cannot rejoin after eviction", "err", err)
		return
	}
	c.wake()
}

// onNotMember handles a member's word that this node is outside its view.
func (c *cluster) onNotMember(from uint64, n peer.NotMember) {
	c.mu.Lock()
	inc := c.inc
	member := c.view.HasLife(c.a.cfg.ID, inc)
	older := c.view.Instance < n.Instance
	c.mu.Unlock()
	if member && older {
		go c.evicted(fmt.Sprintf("node %d's view %d does not include this node", from, n.Instance), inc)
	}
}

// linksChanged re-judges quorum contact after a link went up or down.
func (c *cluster) linksChanged() {
	c.mu.Lock()
	sig := c.contact.Update(&c.view, c.a.cfg.ID, func(id uint64) bool { return c.a.nodes.linkTo(id) != nil })
	v := c.view.Clone()
	c.mu.Unlock()
	switch sig {
	case membership.SignalSuspect:
		c.log.Warn("lost contact with a quorum of voters", "view", v.Instance)
		c.a.publish(events.Event{Desc: events.MSSuspect, Data: viewData(v)})
	case membership.SignalRecovered:
		c.log.Info("contact with a quorum regained", "view", v.Instance)
		c.a.publish(events.Event{Desc: events.MSRecovered, Data: viewData(v)})
	}
	c.wake()
}

// isMember reports whether id is in the view.
func (c *cluster) isMember(id uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.view.Has(id)
}

// selfCommand is this node's JOIN.
func (c *cluster) selfCommand(voter bool) membership.Command {
	c.mu.Lock()
	inc := c.inc
	c.mu.Unlock()
	return membership.Command{Op: membership.OpJoin, ID: c.a.cfg.ID, Incarnation: inc, Name: c.a.cfg.Name, Addr: c.a.Addr().String(), Voter: voter}
}

// leaderNode returns the node id of the raft leader in st, 0 if unknown.
func (c *cluster) leaderNode(st clusterlog.Status) uint64 {
	if st.Leader == 0 {
		return 0
	}
	return c.nodeOf(st.Leader)
}

// member reports whether this node, in its current life, is in the view.
func (c *cluster) member() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.view.HasLife(c.a.cfg.ID, c.inc)
}
