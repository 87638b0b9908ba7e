package server

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/corralhq/corral/dsvc"
)

// Cluster is the failover configuration of servers that share a store
// on the cluster module, one per node: which node's server allocates
// which owner addresses. With it, the server follows the cluster's
// membership views (SetView) and takes over a share of the addresses of
// every peer that has left the view.
type Cluster struct {
	// Agent is the local agent's data directory or client socket, whose
	// views the server follows (corral dhcp serve). Default: the
	// datastore's socket= or data-dir= setting.
	Agent string `toml:"agent"`
	// Peers are the cluster's servers; one of them is this server (the
	// peer whose owners are this server's).
	Peers []Peer `toml:"peer"`
}

// Peer is one node's server: the node id its agent runs with (corral
// agent --id) and the owner addresses its records' SIP name.
type Peer struct {
	Node   uint64   `toml:"node"`
	Owners []string `toml:"owners"`
}

// validate checks the peers against each other.
func (c Cluster) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: cluster: "+format, append([]any{ErrConfig}, args...)...)
	}
	nodes := map[uint64]bool{}
	owner := map[netip.Addr]uint64{}
	for i, p := range c.Peers {
		if p.Node == 0 {
			return bad("peer %d: node is required (the agent's --id)", i)
		}
		if nodes[p.Node] {
			return bad("node %d twice", p.Node)
		}
		nodes[p.Node] = true
		if len(p.Owners) == 0 {
			return bad("node %d: no owners", p.Node)
		}
		for _, o := range p.Owners {
			a, err := netip.ParseAddr(o)
			if err != nil || !a.Is4() {
				return bad("node %d: owner %q: not an IPv4 address", p.Node, o)
			}
			if n, ok := owner[a]; ok {
				return bad("owner %s on nodes %d and %d", a, n, p.Node)
			}
			owner[a] = p.Node
		}
	}
	return nil
}

// AgentPath is where corral dhcp serve finds the agent: Agent, else the
// datastore's socket= or data-dir= setting, else "".
func (c Config) AgentPath() string {
	if c.Cluster.Agent != "" {
		return c.Cluster.Agent
	}
	for kv := range strings.SplitSeq(c.Datastore.Config, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		if (k == "socket" || k == "data-dir") && v != "" {
			return v
		}
	}
	return ""
}

// ownership is who allocates what in one membership view. It is
// immutable and swapped whole by SetView, so Handle reads it without a
// lock.
//
// The rule, the same on every server for the same view: a record whose
// SIP is a live peer's belongs to that peer; a record whose SIP is a
// departed peer's belongs to the live peer at index (address mod the
// number of live peers) in node id order. Records are never rewritten
// to move them: the view, decided by the cluster log, moves them, and
// every lease is still a signed write on a majority. So a returning
// peer owns its addresses again as soon as its server sees the view
// with it, and its clients' leases taken over meanwhile stay valid: the
// survivor that extended one answers its renewals until the owner is
// back, then the client rebinds to the owner with the same address.
type ownership struct {
	instance uint64
	adopted  map[netip.Addr]bool // departed peers' owner addresses
	list     []netip.Addr        // adopted, sorted: the SIPs refill scans
	live     uint32              // live peers
	index    uint32              // this server's index among them
}

// mine reports whether an adopted record at ip is this server's share.
func (o *ownership) mine(ip netip.Addr) bool {
	if !ip.Is4() || o.live == 0 {
		return false
	}
	a := ip.As4()
	return binary.BigEndian.Uint32(a[:])%o.live == o.index
}

// owns reports whether this server allocates and answers for r: its SIP
// is one of the server's owners, or a departed peer's and r is this
// server's share.
func (s *Server) owns(r *dsvc.DNRecord) bool {
	if s.owners[r.SIP] {
		return true
	}
	o := s.view.Load()
	return o != nil && o.adopted[r.SIP] && o.mine(r.CIP)
}

// adoptedFrom reports whether r is this server's only by takeover.
func (s *Server) adoptedFrom(r *dsvc.DNRecord) bool {
	return !s.owners[r.SIP] && s.owns(r)
}

// scanOwners are the SIPs whose free records refill reads for n: n's
// own, then the departed peers' (of which refill keeps this server's
// share).
func (s *Server) scanOwners(n *network) []netip.Addr {
	o := s.view.Load()
	if o == nil || len(o.list) == 0 {
		return n.owners
	}
	return append(slices.Clip(n.owners), o.list...)
}

// self is the node id of this server's peer entry, 0 without one.
func (s *Server) self() uint64 {
	for _, p := range s.cfg.Cluster.Peers {
		for _, o := range p.Owners {
			if s.owners[netip.MustParseAddr(o)] {
				return p.Node
			}
		}
	}
	return 0
}

// View is what SetView last applied (Report, corral dhcp stats).
type View struct {
	Instance uint64   `json:"instance"`
	Adopted  []string `json:"adopted,omitempty"` // departed peers' owner addresses this server shares in
	Live     int      `json:"live"`              // live peers
	Index    int      `json:"index"`             // this server's share among them
}

// SetView applies a membership view: members are the node ids of the
// view numbered instance. A view older than the one applied is ignored.
// Without this server's node in members (it was evicted, or cut off and
// told so) it takes nothing over. It flushes the offer caches when the
// adopted owners change, so no candidate of a returned peer is offered
// again. A server without [cluster] peers ignores views.
func (s *Server) SetView(instance uint64, members []uint64) {
	if len(s.cfg.Cluster.Peers) == 0 {
		return
	}
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	old := s.view.Load()
	if old != nil && instance < old.instance {
		return
	}
	in := map[uint64]bool{}
	for _, m := range members {
		in[m] = true
	}
	self := s.self()
	o := &ownership{instance: instance, adopted: map[netip.Addr]bool{}}
	var live []uint64
	for _, p := range s.cfg.Cluster.Peers {
		if in[p.Node] {
			live = append(live, p.Node)
			continue
		}
		for _, a := range p.Owners {
			o.adopted[netip.MustParseAddr(a)] = true
		}
	}
	slices.Sort(live)
	if i := slices.Index(live, self); i >= 0 && self != 0 {
		o.live, o.index = uint32(len(live)), uint32(i)
	} else {
		clear(o.adopted) // not in the view: nothing is ours but our own
	}
	for a := range o.adopted {
		o.list = append(o.list, a)
	}
	slices.SortFunc(o.list, netip.Addr.Compare)
	s.view.Store(o)
	changed := old == nil || !slices.Equal(old.list, o.list) || old.live != o.live || old.index != o.index
	if !changed {
		return
	}
	for _, n := range s.nets {
		n.offers.flush()
	}
	if len(o.list) > 0 {
		s.log.Warn("taking over a share of departed peers' addresses", "view", instance, "owners", fmt.Sprint(o.list),
			"share", fmt.Sprintf("%d of %d", o.index+1, o.live))
	} else if old != nil && len(old.list) > 0 {
		s.log.Info("every peer is back: serving only our own addresses", "view", instance)
	}
}

// ClearView forgets the view: the server serves only its own addresses
// until the next SetView (the agent said it shut down or evicted this
// node).
func (s *Server) ClearView() {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	if old := s.view.Swap(nil); old != nil && len(old.list) > 0 {
		for _, n := range s.nets {
			n.offers.flush()
		}
		s.log.Warn("no view: serving only our own addresses")
	}
}

// CurrentView is the view applied, zero without one.
func (s *Server) CurrentView() View {
	o := s.view.Load()
	if o == nil {
		return View{}
	}
	v := View{Instance: o.instance, Live: int(o.live), Index: int(o.index)}
	for _, a := range o.list {
		v.Adopted = append(v.Adopted, a.String())
	}
	return v
}
