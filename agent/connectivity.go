package agent

import (
	"net/netip"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/mesh"
	"github.com/corralhq/corral/transport"
)

// Connectivity events are local: they tell what this node sees of its
// interfaces and links, so they carry no cluster-wide sequence number.

// connectivityNow answers the on-demand query: interfaces and every known
// node with its link state.
func (a *Agent) connectivityNow() events.Connectivity {
	v := a.cluster.View()
	return a.connectivityOf(&v)
}

// connectivityOf is the connectivity data as of view v.
func (a *Agent) connectivityOf(v *membership.View) events.Connectivity {
	return events.Connectivity{Interfaces: a.ifaces.List(), Peers: a.peers(v)}
}

func (a *Agent) peers(v *membership.View) []events.Peer {
	var out []events.Peer
	for _, s := range a.mesh.States() {
		if s.ID == 0 || s.ID == a.cfg.ID {
			continue
		}
		ap, _ := netip.ParseAddrPort(s.Addr)
		n := events.Node{ID: s.ID, Name: s.Name, Addr: ap}
		if vm, ok := v.Member(s.ID); ok {
			n.BornOn = vm.BornOn
		}
		out = append(out, events.Peer{Node: n, Eligible: v.Has(s.ID), Connected: s.Up})
	}
	return out
}

// membershipNow answers the on-demand query for the current view.
func (a *Agent) membershipNow() events.Membership {
	return *membership.ViewData(a.cluster.View())
}

// routeP2P publishes the P2P events of a node this one reaches through
// relays only: P2P_ESTABLISHED when a route to it appears, P2P_LOST when
// the last goes (a LINKFAIL of a path that leaves it unreachable shows
// so). A neighbour's P2P events follow its link instead (onLink): a
// node told P2P_ESTABLISHED by route is told P2P_LOST by route, once.
func (a *Agent) routeP2P(ev mesh.RouteEvent) {
	if a.cluster == nil || ev.ID == a.cfg.ID {
		return
	}
	a.routedMu.Lock()
	_, told := a.routed[ev.ID]
	switch {
	case ev.Up && !told && a.mesh.Link(ev.ID) == nil:
		if a.routed == nil {
			a.routed = map[uint64]struct{}{}
		}
		a.routed[ev.ID] = struct{}{}
	case !ev.Up && told:
		delete(a.routed, ev.ID)
	default:
		a.routedMu.Unlock()
		return
	}
	a.routedMu.Unlock()
	d := events.CSP2PLost
	if ev.Up {
		d = events.CSP2PEstablished
	}
	a.publishP2P(d, transport.PeerInfo{NodeID: ev.ID})
}

// publishP2P publishes P2P_ESTABLISHED or P2P_LOST for a link.
func (a *Agent) publishP2P(d events.Descriptor, p transport.PeerInfo) {
	v := a.cluster.View()
	n := events.Node{ID: p.NodeID, Name: p.Name}
	if m, ok := v.Member(p.NodeID); ok {
		n = membership.EventNodes([]membership.Member{m})[0]
	}
	cs := a.connectivityOf(&v)
	cs.Nodes = []events.Node{n}
	a.publish(events.Event{Desc: d, Data: &cs})
}
