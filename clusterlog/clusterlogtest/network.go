// Package clusterlogtest is an in-memory network for clusterlog nodes in one
// process: every node gets a Sender (an Endpoint), messages travel through
// per-node queues as marshalled bytes (so no node ever shares a message with
// another), and a test can cut links, isolate nodes and take nodes down.
//
// Delivery to each node runs on its own goroutine, so a sender never blocks
// on a busy receiver; messages between two nodes arrive in the order sent
// unless a link is cut, in which case they are dropped, as a lossy network
// would.
package clusterlogtest

import (
	"context"
	"sync"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Peer is what the network delivers to; *clusterlog.Node implements it.
type Peer interface {
	Step(ctx context.Context, m *raftpb.Message) error
}

// Reporter is implemented by peers that want to hear about failed sends and
// delivered snapshots; *clusterlog.Node implements it.
type Reporter interface {
	ReportUnreachable(id uint64)
	ReportSnapshot(id uint64, ok bool)
}

// Stats counts messages.
type Stats struct {
	Sent      uint64 // handed to an Endpoint
	Delivered uint64 // stepped into a peer
	Dropped   uint64 // lost to a cut link, an isolated or a detached node
}

type link struct{ from, to uint64 }

// Network is the in-memory network. The zero value is not usable; call New.
type Network struct {
	mu       sync.Mutex // guards all fields below
	inboxes  map[uint64]*inbox
	cut      map[link]bool
	isolated map[uint64]bool
	stats    Stats
	closed   bool
}

// New returns an empty network.
func New() *Network {
	return &Network{
		inboxes:  make(map[uint64]*inbox),
		cut:      make(map[link]bool),
		isolated: make(map[uint64]bool),
	}
}

// Endpoint returns the Sender for node id. It can be created before the node
// is attached.
func (n *Network) Endpoint(id uint64) *Endpoint { return &Endpoint{net: n, id: id} }

// Attach delivers messages addressed to id to p from now on, replacing any
// earlier peer for id (a restarted node).
func (n *Network) Attach(id uint64, p Peer) {
	ctx, cancel := context.WithCancel(context.Background())
	b := &inbox{net: n, id: id, peer: p, wake: make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{})}
	n.mu.Lock()
	old := n.inboxes[id]
	if n.closed {
		n.mu.Unlock()
		cancel()
		return
	}
	n.inboxes[id] = b
	n.mu.Unlock()
	if old != nil {
		old.stop()
	}
	go b.run()
}

// Detach takes id off the network (a crashed or stopped node): messages to
// it are dropped until it is attached again.
func (n *Network) Detach(id uint64) {
	n.mu.Lock()
	b := n.inboxes[id]
	delete(n.inboxes, id)
	n.mu.Unlock()
	if b != nil {
		b.stop()
	}
}

// Isolate cuts every link to and from id.
func (n *Network) Isolate(id uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.isolated[id] = true
}

// Cut cuts the links between a and b in both directions.
func (n *Network) Cut(a, b uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[link{a, b}] = true
	n.cut[link{b, a}] = true
}

// Heal restores every cut link and isolated node.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
	clear(n.isolated)
}

// Stats returns the message counters.
func (n *Network) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stats
}

// Close detaches every node and waits for the delivery goroutines to exit.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	boxes := n.inboxes
	n.inboxes = make(map[uint64]*inbox)
	n.mu.Unlock()
	for _, b := range boxes {
		b.stop()
	}
}

// reachableLocked reports whether a message from → to would get through,
// and returns the destination's inbox.
func (n *Network) reachableLocked(from, to uint64) (*inbox, bool) {
	b := n.inboxes[to]
	if b == nil || n.isolated[from] || n.isolated[to] || n.cut[link{from, to}] {
		return nil, false
	}
	return b, true
}

func (n *Network) reporterLocked(id uint64) Reporter {
	if b := n.inboxes[id]; b != nil {
		if r, ok := b.peer.(Reporter); ok {
			return r
		}
	}
	return nil
}

// Endpoint is one node's Sender.
type Endpoint struct {
	net *Network
	id  uint64
}

// Send implements clusterlog.Sender. It never blocks on the receiver.
func (e *Endpoint) Send(msgs []*raftpb.Message) {
	n := e.net
	for _, m := range msgs {
		wire, err := proto.Marshal(m)
		if err != nil {
			panic("clusterlogtest: marshal raft message: " + err.Error()) // raftpb always marshals
		}
		n.mu.Lock()
		n.stats.Sent++
		dst, ok := n.reachableLocked(e.id, m.GetTo())
		rep := n.reporterLocked(e.id)
		if !ok {
			n.stats.Dropped++
		}
		n.mu.Unlock()
		if !ok {
			if rep != nil {
				rep.ReportUnreachable(m.GetTo())
				if m.GetType() == raftpb.MsgSnap {
					rep.ReportSnapshot(m.GetTo(), false)
				}
			}
			continue
		}
		dst.push(wire)
	}
}

// inbox is one node's receive queue and delivery goroutine.
type inbox struct {
	net    *Network
	id     uint64
	peer   Peer
	wake   chan struct{} // capacity 1
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex // guards q
	q  [][]byte
}

func (b *inbox) push(wire []byte) {
	b.mu.Lock()
	b.q = append(b.q, wire)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

func (b *inbox) stop() {
	b.cancel()
	<-b.done
}

func (b *inbox) run() {
	defer close(b.done)
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.wake:
		}
		b.mu.Lock()
		q := b.q
		b.q = nil
		b.mu.Unlock()
		for _, wire := range q {
			m := new(raftpb.Message)
			if err := proto.Unmarshal(wire, m); err != nil {
				panic("clusterlogtest: unmarshal raft message: " + err.Error())
			}
			err := b.peer.Step(b.ctx, m)
			n := b.net
			n.mu.Lock()
			if err != nil {
				n.stats.Dropped++
			} else {
				n.stats.Delivered++
			}
			var rep Reporter
			if m.GetType() == raftpb.MsgSnap {
				rep = n.reporterLocked(m.GetFrom())
			}
			n.mu.Unlock()
			if rep != nil {
				rep.ReportSnapshot(b.id, err == nil)
			}
			if b.ctx.Err() != nil {
				return
			}
		}
	}
}
