package agent

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/transport"
)

// node is what the agent knows of one other node.
type node struct {
	id        uint64
	name      string
	addr      string          // the address we dial, or where its link came from
	link      *transport.Link // nil while down
	initiator uint64          // node id that opened link
	version   uint8           // last agreed peer protocol version
	rtt       time.Duration   // last RTT seen before the link went down
	since     time.Time       // last change of up/down
	// replaced reports that the last link ended as a duplicate: another
	// link to the node is, or is about to be, up.
	replaced bool
}

// nodes is the table of known nodes. Links are registered when their
// handshake completes and unregistered when they end.
type nodes struct {
	self uint64
	log  *slog.Logger

	mu   sync.Mutex       // guards the fields below
	byID map[uint64]*node // every node ever linked
	addr map[string]bool  // configured peer addresses
}

func newNodes(self uint64, peers []string, log *slog.Logger) *nodes {
	n := &nodes{self: self, log: log, byID: make(map[uint64]*node), addr: make(map[string]bool)}
	for _, p := range peers {
		n.addr[p] = true
	}
	return n
}

// add registers an established link opened by initiator. It returns the
// link that stays in use for that node; when that is not l, the caller
// closes l as a duplicate. A displaced older link is closed here. fresh
// reports that the node had no link before.
func (n *nodes) add(l *transport.Link, initiator uint64, addr string) (kept *transport.Link, fresh bool) {
	p := l.Peer()
	n.mu.Lock()
	nd := n.byID[p.NodeID]
	if nd == nil {
		nd = &node{id: p.NodeID}
		n.byID[p.NodeID] = nd
	}
	// A configured address names the node better than the source
	// address of a link it opened, even when that link is kept.
	if nd.addr == "" || n.addr[addr] && !n.addr[nd.addr] {
		nd.addr = addr
	}
	old := nd.link
	if old != nil && !keepNew(n.self, p.NodeID, nd.initiator, initiator) {
		n.mu.Unlock()
		return old, false
	}
	nd.name, nd.link, nd.initiator, nd.version = p.Name, l, initiator, p.Version
	if old == nil {
		nd.since = time.Now()
	}
	n.mu.Unlock()
	if old != nil {
		n.log.Debug("replacing duplicate link", "peer", p.Name, "peer_id", p.NodeID)
		go old.Close(proto.CodeDup, "a link opened by the node with the smaller id replaces this one")
	} else {
		n.log.Info("link up", "peer", p.Name, "peer_id", p.NodeID, "addr", addr, "peer_version", p.Version)
	}
	return l, old == nil
}

// keepNew decides between an existing link and a new one to the same node:
// the link opened by the smaller of the two node ids wins; between links
// opened by the same node the newer wins, since the older is likely dead.
func keepNew(self, peer, oldInit, newInit uint64) bool {
	want := min(self, peer)
	if oldInit == newInit {
		return true
	}
	return newInit == want
}

// remove unregisters l when it ended, unless it was already replaced. It
// reports whether the node is now without a link.
func (n *nodes) remove(l *transport.Link) bool {
	p := l.Peer()
	n.mu.Lock()
	defer n.mu.Unlock()
	nd := n.byID[p.NodeID]
	if nd == nil || nd.link != l {
		return false
	}
	nd.rtt, nd.link, nd.since = l.RTT(), nil, time.Now()
	nd.replaced = errors.Is(l.Err(), proto.ErrDup)
	lvl := slog.LevelWarn
	if errors.Is(l.Err(), proto.ErrShutdown) {
		lvl = slog.LevelInfo // an orderly goodbye
	}
	n.log.Log(context.Background(), lvl, "link down", "peer", p.Name, "peer_id", p.NodeID, "err", l.Err().Error())
	return true
}

// downSince reports since when the node has had no link; a node never
// linked has had none since the zero time. When the last link ended as a
// duplicate, its replacement is on its way: the node counts as down only
// a grace period later.
func (n *nodes) downSince(id uint64, grace time.Duration) (time.Time, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	nd := n.byID[id]
	switch {
	case nd == nil:
		return time.Time{}, true
	case nd.link != nil:
		return time.Time{}, false
	case nd.replaced:
		return nd.since.Add(grace), true
	}
	return nd.since, true
}

// configure adds a peer address; it reports false if it was known.
func (n *nodes) configure(addr string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.addr[addr] {
		return false
	}
	n.addr[addr] = true
	return true
}

// linkTo returns the live link to id, if any.
func (n *nodes) linkTo(id uint64) *transport.Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	if nd := n.byID[id]; nd != nil {
		return nd.link
	}
	return nil
}

// links returns every live link, for shutdown and NOTMEMBER.
func (n *nodes) links() []*transport.Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	var ls []*transport.Link
	for _, nd := range n.byID {
		if nd.link != nil {
			ls = append(ls, nd.link)
		}
	}
	return ls
}

// members answers the admin MEMBERS request: this node, every node ever
// linked, and configured addresses no node has answered from yet.
func (n *nodes) members(self admin.Member) []admin.Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := []admin.Member{self}
	seen := make(map[string]bool)
	for _, nd := range n.byID {
		m := admin.Member{ID: nd.id, Name: nd.name, Addr: nd.addr, PeerVersion: nd.version, State: admin.StateDown, Since: nd.since.UnixNano()}
		rtt := nd.rtt
		if nd.link != nil {
			m.State = admin.StateUp
			rtt = nd.link.RTT()
		}
		m.RTT = uint32(min(rtt.Microseconds(), 1<<32-1))
		seen[nd.addr] = true
		out = append(out, m)
	}
	for a := range n.addr {
		if !seen[a] {
			out = append(out, admin.Member{Addr: a, State: admin.StateDown})
		}
	}
	sort.Slice(out[1:], func(i, j int) bool {
		a, b := out[1+i], out[1+j]
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Addr < b.Addr
	})
	return out
}
