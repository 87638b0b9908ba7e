package acceptloop

import (
	"errors"
	"net"
	"net/netip"
	"sync"
)

// Errors of Gate.Enter.
var (
	// ErrBusy says the global bound of unauthenticated connections is
	// reached.
	ErrBusy = errors.New("acceptloop: too many connections handshaking")
	// ErrBusyIP says the bound for the connection's source IP is reached.
	ErrBusyIP = errors.New("acceptloop: too many connections handshaking from this address")
)

// Gate bounds the connections that are accepted but not yet
// authenticated: at most max in all and perIP from one source IP. A bound
// of 0 or less is no bound. It is safe for concurrent use.
type Gate struct {
	max, perIP int

	mu    sync.Mutex         // guards total and byIP
	total int                // connections admitted and not released
	byIP  map[netip.Addr]int // of those, by source IP; no zero entries
}

// NewGate makes a Gate with the given bounds.
func NewGate(max, perIP int) *Gate {
	return &Gate{max: max, perIP: perIP, byIP: make(map[netip.Addr]int)}
}

// Enter admits a connection from remote, or refuses it with ErrBusy or
// ErrBusyIP. An admitted connection holds its place until release is
// called, once, when it has authenticated or failed. Addresses other than
// TCP/UDP ones count only against the global bound.
func (g *Gate) Enter(remote net.Addr) (release func(), err error) {
	ip, hasIP := sourceIP(remote)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.max > 0 && g.total >= g.max {
		return nil, ErrBusy
	}
	if hasIP && g.perIP > 0 && g.byIP[ip] >= g.perIP {
		return nil, ErrBusyIP
	}
	g.total++
	if hasIP {
		g.byIP[ip]++
	}
	var once sync.Once
	return func() { once.Do(func() { g.leave(ip, hasIP) }) }, nil
}

func (g *Gate) leave(ip netip.Addr, hasIP bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if hasIP {
		if g.byIP[ip] <= 1 {
			delete(g.byIP, ip)
		} else {
			g.byIP[ip]--
		}
	}
}

// Pending returns how many connections are admitted and not released.
func (g *Gate) Pending() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.total
}

func sourceIP(a net.Addr) (netip.Addr, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	default:
		return netip.Addr{}, false
	}
	ip := ap.Addr().Unmap()
	return ip, ip.IsValid()
}
