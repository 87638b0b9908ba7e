package agent

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/transport"
)

// Connectivity events are local: they tell what this node sees of its
// interfaces and links, so they carry no cluster-wide sequence number.

// ifaceWatch watches the local interface that carries the agent's
// address, for INTERFACE_ADDED and INTERFACE_FAILED.
type ifaceWatch struct {
	host string // the bind host; empty or unspecified means all interfaces

	mu    sync.Mutex // guards state
	state []events.Interface
}

const ifacePoll = time.Second

func newIfaceWatch(host string) *ifaceWatch { return &ifaceWatch{host: host} }

// scan returns the interfaces cluster traffic uses: the one holding the
// bind address, or every interface with an address when bound to all.
func (w *ifaceWatch) scan() []events.Interface {
	want, _ := netip.ParseAddr(w.host)
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []events.Interface
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, _ := netip.AddrFromSlice(ipn.IP)
			ip = ip.Unmap()
			ones, _ := ipn.Mask.Size()
			match := !want.IsValid() || want.IsUnspecified() || ip == want
			// 127.0.0.0/8 is all on lo: an agent bound to 127.0.0.2 uses it.
			if !match && want.IsLoopback() && ip.IsLoopback() && ip.Is4() == want.Is4() {
				match, ip = true, want
			}
			if match {
				// Up and running: administratively up with a carrier.
				up := ifc.Flags&net.FlagUp != 0 && ifc.Flags&net.FlagRunning != 0
				out = append(out, events.Interface{Name: ifc.Name, Addr: netip.PrefixFrom(ip, ones), Up: up})
			}
		}
	}
	return out
}

// list returns the interfaces as last scanned.
func (w *ifaceWatch) list() []events.Interface {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]events.Interface(nil), w.state...)
}

// run publishes INTERFACE_ADDED for each interface found and then a change
// whenever one appears, comes up, goes down or disappears.
func (w *ifaceWatch) run(ctx context.Context, publish func(events.Event)) {
	t := time.NewTicker(ifacePoll)
	defer t.Stop()
	for {
		now := w.scan()
		w.mu.Lock()
		before := w.state
		w.state = now
		w.mu.Unlock()
		for _, ev := range ifaceChanges(before, now) {
			publish(ev)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func ifaceChanges(before, now []events.Interface) []events.Event {
	find := func(l []events.Interface, x events.Interface) (events.Interface, bool) {
		for _, y := range l {
			if y.Name == x.Name && y.Addr == x.Addr {
				return y, true
			}
		}
		return events.Interface{}, false
	}
	var out []events.Event
	ev := func(d events.Descriptor, i events.Interface) {
		out = append(out, events.Event{Desc: d, Data: &events.Connectivity{Interface: i, Interfaces: now}})
	}
	for _, i := range now {
		old, ok := find(before, i)
		switch {
		case i.Up && (!ok || !old.Up):
			ev(events.CSInterfaceAdded, i)
		case !i.Up && ok && old.Up:
			ev(events.CSInterfaceFailed, i)
		}
	}
	for _, i := range before {
		if _, ok := find(now, i); !ok && i.Up {
			i.Up = false
			ev(events.CSInterfaceFailed, i)
		}
	}
	return out
}

// connectivityNow answers the on-demand query: interfaces and every known
// node with its link state.
func (a *Agent) connectivityNow() events.Connectivity {
	v := a.cluster.currentView()
	return events.Connectivity{Interfaces: a.ifaces.list(), Peers: a.peers(&v)}
}

func (a *Agent) peers(v *membership.View) []events.Peer {
	var out []events.Peer
	for _, m := range a.nodes.members(admin.Member{ID: a.cfg.ID}) {
		if m.ID == 0 || m.ID == a.cfg.ID {
			continue
		}
		ap, _ := netip.ParseAddrPort(m.Addr)
		n := events.Node{ID: m.ID, Name: m.Name, Addr: ap}
		if vm, ok := v.Member(m.ID); ok {
			n.BornOn = vm.BornOn
		}
		out = append(out, events.Peer{Node: n, Eligible: v.Has(m.ID), Connected: m.State == admin.StateUp})
	}
	return out
}

// membershipNow answers the on-demand query for the current view.
func (a *Agent) membershipNow() events.Membership {
	return *viewData(a.cluster.currentView())
}

// publishP2P publishes P2P_ESTABLISHED or P2P_LOST for a link.
func (a *Agent) publishP2P(d events.Descriptor, p transport.PeerInfo) {
	v := a.cluster.currentView()
	n := events.Node{ID: p.NodeID, Name: p.Name}
	if m, ok := v.Member(p.NodeID); ok {
		n = toNode(m)
	}
	a.publish(events.Event{Desc: d, Data: &events.Connectivity{Nodes: []events.Node{n}, Interfaces: a.ifaces.list(), Peers: a.peers(&v)}})
}

// publishEligibility publishes NODE_ELIGIBLE or NODE_INELIGIBLE for the
// node a membership change added or removed.
func (a *Agent) publishEligibility(cmd membership.Command, ch membership.Change) {
	d, nodes := events.CSNodeEligible, ch.Joined
	if cmd.Op == membership.OpLeave {
		d, nodes = events.CSNodeIneligible, ch.Left
	}
	a.publish(events.Event{Desc: d, Data: &events.Connectivity{Nodes: toNodes(nodes), Interfaces: a.ifaces.list(), Peers: a.peers(&ch.View)}})
}
