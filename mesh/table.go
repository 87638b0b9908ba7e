package mesh

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/transport"
)

// node is what the mesh knows of one other node.
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

// table is the set of known nodes. Links are registered when their
// handshake completes and unregistered when they end.
type table struct {
	self uint64
	log  *slog.Logger
	now  func() time.Time

	// forgetAfter is how long a node stays in the table once its last
	// link ended; 0 keeps it for ever.
	forgetAfter time.Duration

	mu      sync.Mutex        // guards the fields below; never held while calling out
	byID    map[uint64]*node  // every node linked within forgetAfter
	addr    map[string]bool   // configured peer addresses
	static  map[string]bool   // of them, those of the configuration (--peers): never forgotten
	dialErr map[string]string // why the last dial of a configured address failed
}

func newTable(self uint64, peers []string, now func() time.Time, log *slog.Logger) *table {
	t := &table{self: self, log: log, now: now, byID: make(map[uint64]*node), addr: make(map[string]bool),
		static: make(map[string]bool), dialErr: make(map[string]string)}
	for _, p := range peers {
		t.addr[p] = true
		t.static[p] = true
	}
	return t
}

// add registers an established link opened by initiator. It returns the
// link that stays in use for that node; when that is not l, the caller
// closes l as a duplicate. displaced is an older link l replaces, for the
// caller to close. fresh reports that the node had no link before.
func (t *table) add(l *transport.Link, initiator uint64, addr string) (kept, displaced *transport.Link, fresh bool) {
	p := l.Peer()
	t.mu.Lock()
	nd := t.byID[p.NodeID]
	if nd == nil {
		nd = &node{id: p.NodeID}
		t.byID[p.NodeID] = nd
	}
	// A configured address names the node better than the source
	// address of a link it opened, even when that link is kept.
	if nd.addr == "" || t.addr[addr] && !t.addr[nd.addr] {
		nd.addr = addr
	}
	old := nd.link
	if old != nil && !keepNew(t.self, p.NodeID, nd.initiator, initiator) {
		t.mu.Unlock()
		return old, nil, false
	}
	nd.name, nd.link, nd.initiator, nd.version = p.Name, l, initiator, p.Version
	if old == nil {
		nd.since = t.now()
	}
	t.mu.Unlock()
	if old != nil {
		t.log.Debug("replacing duplicate link", "peer", p.Name, "peer_id", p.NodeID)
	} else {
		t.log.Info("link up", "peer", p.Name, "peer_id", p.NodeID, "addr", addr, "peer_version", p.Version)
	}
	return l, old, old == nil
}

// admit is the mesh's transport.Config.Admit: it refuses a link from a
// node id whose live link came from a node naming another listen
// address. That is a second agent started with an id in use; letting it
// in would replace the real node's link, which then redials and
// replaces it back, and so on. A restart of the node names the same
// address and replaces its old link as before; a peer that names no
// address cannot be told apart and is let in.
func (t *table) admit(p transport.PeerInfo) error {
	t.mu.Lock()
	nd := t.byID[p.NodeID]
	var live *transport.Link
	if nd != nil {
		live = nd.link
	}
	t.mu.Unlock()
	if live == nil || p.ListenAddr == "" {
		return nil
	}
	held := live.Peer()
	if held.ListenAddr == "" || held.ListenAddr == p.ListenAddr {
		return nil
	}
	select {
	case <-live.Done():
		return nil // ended; remove is on its way
	default:
	}
	return proto.Errorf(proto.CodeDupNode, "node id %d is in use by %q linked from %s; refusing %q at %s",
		p.NodeID, held.Name, held.ListenAddr, p.Name, p.ListenAddr)
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
func (t *table) remove(l *transport.Link) bool {
	p := l.Peer()
	t.mu.Lock()
	nd := t.byID[p.NodeID]
	if nd == nil || nd.link != l {
		t.mu.Unlock()
		return false
	}
	nd.rtt, nd.link, nd.since = l.RTT(), nil, t.now()
	nd.replaced = errors.Is(l.Err(), proto.ErrDup)
	t.mu.Unlock()
	lvl := slog.LevelWarn
	if errors.Is(l.Err(), proto.ErrShutdown) {
		lvl = slog.LevelInfo // an orderly goodbye
	}
	t.log.Log(context.Background(), lvl, "link down", "peer", p.Name, "peer_id", p.NodeID, "err", l.Err().Error())
	return true
}

// configure adds a peer address; it reports false if it was known.
func (t *table) configure(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.addr[addr] {
		return false
	}
	t.addr[addr] = true
	return true
}

// linkTo returns the live link to id, if any.
func (t *table) linkTo(id uint64) *transport.Link {
	t.mu.Lock()
	defer t.mu.Unlock()
	if nd := t.byID[id]; nd != nil {
		return nd.link
	}
	return nil
}

// links returns every live link.
func (t *table) links() []*transport.Link {
	t.mu.Lock()
	defer t.mu.Unlock()
	var ls []*transport.Link
	for _, nd := range t.byID {
		if nd.link != nil {
			ls = append(ls, nd.link)
		}
	}
	return ls
}

// state returns what is known of node id.
func (t *table) state(id uint64) (LinkState, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	nd := t.byID[id]
	if nd == nil {
		return LinkState{}, false
	}
	return nd.stateLocked(), true
}

func (nd *node) stateLocked() LinkState {
	s := LinkState{ID: nd.id, Name: nd.name, Addr: nd.addr, Version: nd.version, Up: nd.link != nil, Since: nd.since, Replaced: nd.replaced, RTT: nd.rtt}
	if nd.link != nil {
		s.RTT = nd.link.RTT()
		s.Replaced = false
	}
	return s
}

// all returns every node ever linked, by id, then the configured addresses
// no node has answered from yet (ID 0).
func (t *table) all() []LinkState {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.forgetLocked()
	var out []LinkState
	seen := make(map[string]bool)
	for _, nd := range t.byID {
		out = append(out, nd.stateLocked())
		seen[nd.addr] = true
	}
	for a := range t.addr {
		if !seen[a] {
			out = append(out, LinkState{Addr: a})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		return a.Addr < b.Addr
	})
	return out
}

// forgetLocked drops the nodes whose last link ended more than forgetAfter
// ago, and the addresses added at run time (corral join, view members)
// that led to them: their dialers end. A configured address stays, and
// shows as a peer that has not answered.
func (t *table) forgetLocked() {
	if t.forgetAfter <= 0 {
		return
	}
	now := t.now()
	for id, nd := range t.byID {
		if nd.link != nil || nd.since.IsZero() || now.Sub(nd.since) < t.forgetAfter {
			continue
		}
		delete(t.byID, id)
		if !t.static[nd.addr] {
			delete(t.addr, nd.addr)
			delete(t.dialErr, nd.addr)
		}
		t.log.Info("forgot a node gone for long", "peer", nd.name, "peer_id", id, "addr", nd.addr, "down_since", nd.since.Format(time.RFC3339))
	}
}

// configured reports whether addr is still to be dialed.
func (t *table) configured(addr string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.addr[addr]
}

// unconfigure stops dialing addr, unless the configuration names it; its
// dialer ends at its next attempt.
func (t *table) unconfigure(addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.static[addr] {
		delete(t.addr, addr)
		delete(t.dialErr, addr)
	}
}

// dialed records the outcome of a dial of addr: nil clears the error.
func (t *table) dialed(addr string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		delete(t.dialErr, addr)
	} else if t.addr[addr] {
		// The socket's own words say it best ("connect: connection
		// refused"); a handshake's refusal is the whole error.
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Err != nil {
			t.dialErr[addr] = oe.Err.Error()
		} else {
			t.dialErr[addr] = err.Error()
		}
	}
}

// upAt reports whether a node known by addr has a link, and else why the
// last dial of addr failed.
func (t *table) upAt(addr string) (bool, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, nd := range t.byID {
		if nd.addr == addr && nd.link != nil {
			return true, ""
		}
	}
	return false, t.dialErr[addr]
}
