package ctl

import "slices"

// Slice ports (SPEC.md, "Slice ports"). A slice is a block of the
// address's source ports, and the owner routes a packet to a port of it
// to the slice's node ahead of the dispatch, so that replies reach the
// node's own flows. A service port inside a block would be routed so too,
// and every flow to the service would reach that one node: a slice never
// holds a port the address serves. The holes follow the listeners, so a
// LISTEN inside a leased block takes the port out of the slice at once,
// on every node, and an UNLISTEN gives it back; the lease itself never
// changes.

// PortRange is the ports First … Last.
type PortRange struct{ First, Last uint16 }

// Has reports whether port is one of the lease's values: in its block
// and, for a slice, not one of its holes.
func (l Lease) Has(port uint32) bool {
	if port < l.First || port > l.Last {
		return false
	}
	_, hole := slices.BinarySearch(l.Holes, uint16(min(port, 0xffff)))
	return !hole
}

// Ports returns a slice's ports: its block without its holes, as ranges
// in order. nil for a lease of another kind.
func (l Lease) Ports() []PortRange {
	if l.Kind != Slice || l.First > l.Last || l.Last > 0xffff {
		return nil
	}
	var out []PortRange
	next := l.First
	for _, h := range l.Holes {
		if uint32(h) > next {
			out = append(out, PortRange{uint16(next), h - 1})
		}
		next = uint32(h) + 1
	}
	if next <= l.Last {
		out = append(out, PortRange{uint16(next), uint16(l.Last)})
	}
	return out
}

// served reports whether a node listens on port of the address: the
// port is a service's, never a slice's. Listeners of nodes that left the
// view are released with the view, so the members are every listener.
func (m *Machine) served(a Addr, proto uint8, port uint16) bool {
	for _, mb := range m.st.view.members {
		if _, ok := m.st.listeners[Listener{Addr: a, Proto: proto, Port: port, Node: mb.id}]; ok {
			return true
		}
	}
	return false
}

// holes returns the ports a node listens on of the address and proto in
// first … last, sorted, without duplicates.
func (m *Machine) holes(a Addr, proto uint8, first, last uint32) []uint16 {
	var out []uint16
	for l := range m.st.listeners {
		if l.Addr == a && l.Proto == proto && uint32(l.Port) >= first && uint32(l.Port) <= last {
			out = append(out, l.Port)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
