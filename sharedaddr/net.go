package sharedaddr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
)

// Listen is net.Listen on the process's own stack with hooks h (nil: not
// clustered). See Stack.Listen.
func Listen(ctx context.Context, h Hooks, network, address string) (net.Listener, error) {
	s, err := Current(h, nil)
	if err != nil {
		return nil, err
	}
	return s.Listen(ctx, network, address)
}

// Dial is net.Dial on the process's own stack with hooks h. See Stack.Dial.
func Dial(ctx context.Context, h Hooks, network, address string) (net.Conn, error) {
	s, err := Current(h, nil)
	if err != nil {
		return nil, err
	}
	return s.Dial(ctx, network, address)
}

// ListenPacket is net.ListenPacket on the process's own stack with hooks
// h. See Stack.ListenPacket.
func ListenPacket(ctx context.Context, h Hooks, network, address string) (net.PacketConn, error) {
	s, err := Current(h, nil)
	if err != nil {
		return nil, err
	}
	return s.ListenPacket(ctx, network, address)
}

// maxPortTries bounds how often Dial asks a PortChooser again after the
// port it offered was already bound.
const maxPortTries = 64

// maxUDPDests bounds a packet socket's set of registered destinations;
// past it the set starts afresh, and each destination is registered again
// on its next datagram (a registration the cluster already has is a
// no-op for it).
const maxUDPDests = 4096

// watched reports whether a socket bound to a may serve a shared address:
// a shared address itself, or the unspecified address, which receives for
// all of them (as INADDR_ANY does for cl_inet_listen).
func (s *Stack) watched(p Proto, a netip.Addr) bool {
	return s.hooks != nil && (a.IsUnspecified() || s.hooks.IsClusterWide(s.id, p, a, nil))
}

func (s *Stack) shared(p Proto, a netip.Addr) bool {
	return s.hooks != nil && s.hooks.IsClusterWide(s.id, p, a, nil)
}

// Listen announces on the stack's address like net.Listen ("tcp", "tcp4"
// or "tcp6"; a literal IP or none, since name lookups would run outside
// the namespace). When the address is shared or unspecified it calls the
// Listen hook once the socket listens, Connect (incoming) for every
// accepted connection to a shared address before Accept returns it (a
// refused one is closed and Accept waits for the next), Disconnect when
// that connection closes, and Unlisten when the listener closes.
func (s *Stack) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	if err := literal(network, address, ProtoTCP); err != nil {
		return nil, err
	}
	var ln net.Listener
	err := s.in(func() error {
		var lc net.ListenConfig
		var err error
		ln, err = lc.Listen(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, err
	}
	laddr := addrPort(ln.Addr())
	if !s.watched(ProtoTCP, laddr.Addr()) {
		return ln, nil
	}
	s.hooks.Listen(s.id, ProtoTCP, laddr, nil)
	return &listener{Listener: ln, s: s, laddr: laddr}, nil
}

type listener struct {
	net.Listener
	s     *Stack
	laddr netip.AddrPort
	once  sync.Once // Unlisten once, however often Close is called
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		la, ra := addrPort(c.LocalAddr()), addrPort(c.RemoteAddr())
		if !l.s.shared(ProtoTCP, la.Addr()) {
			return c, nil
		}
		if err := l.s.hooks.Connect(l.s.id, ProtoTCP, false, la, ra, nil); err != nil {
			l.s.log.Debug("incoming connection refused by the cluster", "local", la, "remote", ra, "err", err)
			c.Close()
			continue
		}
		return newConn(c, l.s, la, ra), nil
	}
}

func (l *listener) Close() error {
	err := l.Listener.Close()
	l.once.Do(func() { l.s.hooks.Unlisten(l.s.id, ProtoTCP, l.laddr, nil) })
	return err
}

// conn is a TCP connection to or from a shared address whose Connect was
// accepted: its Close calls Disconnect once.
type conn struct {
	net.Conn
	s             *Stack
	local, remote netip.AddrPort
	peerFIN       atomic.Bool // the peer closed its side first (Read saw EOF)
	ourFIN        atomic.Bool // we closed our side first (CloseWrite)
	once          sync.Once   // Disconnect once
}

func newConn(c net.Conn, s *Stack, local, remote netip.AddrPort) *conn {
	return &conn{Conn: c, s: s, local: local, remote: remote}
}

func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if errors.Is(err, io.EOF) {
		c.peerFIN.Store(true)
	}
	return n, err
}

// CloseWrite shuts down the writing side, as net.TCPConn's does.
func (c *conn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return fmt.Errorf("sharedaddr: %T has no CloseWrite", c.Conn)
	}
	if !c.peerFIN.Load() {
		c.ourFIN.Store(true)
	}
	return cw.CloseWrite()
}

// NetConn returns the underlying connection (a *net.TCPConn).
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		tw := c.ourFIN.Load() || !c.peerFIN.Load()
		c.s.hooks.Disconnect(c.s.id, ProtoTCP, c.local, c.remote, &Args{TimeWait: tw})
	})
	return err
}

// Dial connects like net.Dial ("tcp", "tcp4", "tcp6", "udp", "udp4" or
// "udp6", to a literal IP and port) from the source address the stack's
// routes choose; see DialFrom.
func (s *Stack) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return s.DialFrom(ctx, network, netip.Addr{}, address)
}

// DialFrom connects from laddr (the routes' choice when laddr is the zero
// Addr). When the source is shared, it binds the source port the hooks'
// PortChooser offers (the kernel's choice without one, or when it offers
// 0), then calls Connect (outgoing) with the whole 4-tuple before
// connect(2): a refusal fails the dial with ErrRefused and no SYN leaves.
// A TCP connection calls Disconnect once when it closes, or at once when
// the connect itself fails. UDP has no Disconnect, as in the seed.
func (s *Stack) DialFrom(ctx context.Context, network string, laddr netip.Addr, address string) (net.Conn, error) {
	proto, err := protoOf(network)
	if err != nil {
		return nil, err
	}
	raddr, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("sharedaddr: dial %s %q: want a literal IP and port: %w", network, address, err)
	}
	raddr = netip.AddrPortFrom(raddr.Addr().Unmap(), raddr.Port())
	var c net.Conn
	err = s.in(func() error {
		src := laddr.Unmap()
		if s.hooks != nil && !src.IsValid() {
			if src, err = sourceFor(raddr); err != nil {
				return err
			}
		}
		if !s.shared(proto, src) {
			var d net.Dialer
			if laddr.IsValid() {
				d.LocalAddr = netAddr(proto, netip.AddrPortFrom(laddr, 0))
			}
			c, err = d.DialContext(ctx, network, raddr.String())
			return err
		}
		var local netip.AddrPort
		registered := false
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var cerr error
			if err := rc.Control(func(fd uintptr) {
				local, cerr = s.bindSource(int(fd), proto, src, raddr)
			}); err != nil {
				return err
			}
			if cerr != nil {
				return cerr
			}
			if err := s.hooks.Connect(s.id, proto, true, local, raddr, nil); err != nil {
				return fmt.Errorf("%w: %w", ErrRefused, err)
			}
			registered = true
			return nil
		}}
		c, err = d.DialContext(ctx, network, raddr.String())
		if err != nil {
			if registered && proto == ProtoTCP {
				s.hooks.Disconnect(s.id, proto, local, raddr, nil)
			}
			return err
		}
		if proto == ProtoTCP {
			c = newConn(c, s, local, raddr)
		}
		return nil
	})
	return c, err
}

// bindSource binds fd to src and a source port from the PortChooser, or
// from the kernel, and returns the bound address.
func (s *Stack) bindSource(fd int, proto Proto, src netip.Addr, raddr netip.AddrPort) (netip.AddrPort, error) {
	pc, _ := s.hooks.(PortChooser)
	for try := 0; ; try++ {
		var port uint16
		if pc != nil {
			var err error
			if port, err = pc.SourcePort(s.id, proto, src, raddr, try, nil); err != nil {
				return netip.AddrPort{}, fmt.Errorf("%w: %w", ErrNoSourcePort, err)
			}
		}
		err := bindFD(fd, netip.AddrPortFrom(src, port))
		if err == nil {
			break
		}
		if errors.Is(err, syscall.EADDRINUSE) && port != 0 {
			if try+1 < maxPortTries {
				continue
			}
			return netip.AddrPort{}, fmt.Errorf("%w: %d ports tried", ErrNoSourcePort, maxPortTries)
		}
		return netip.AddrPort{}, fmt.Errorf("sharedaddr: bind %s: %w", netip.AddrPortFrom(src, port), err)
	}
	local, err := sockName(fd)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return local, nil
}

// ListenPacket opens a packet socket like net.ListenPacket ("udp", "udp4"
// or "udp6", a literal IP or none). When the address is shared or
// unspecified it calls Bind, and Unbind at Close. A socket bound to a
// shared address calls Connect (outgoing) before its first WriteTo to
// each destination, as Solaris does on sendto to a new destination; a
// refusal fails that WriteTo with ErrRefused and the datagram is not sent.
// A socket bound to the unspecified address registers nothing on send,
// since its source is chosen per datagram (the seed's hook needs one).
// Only WriteTo is watched: the socket is returned as a net.PacketConn.
func (s *Stack) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	if err := literal(network, address, ProtoUDP); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err := s.in(func() error {
		var lc net.ListenConfig
		var err error
		pc, err = lc.ListenPacket(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, err
	}
	laddr := addrPort(pc.LocalAddr())
	if !s.watched(ProtoUDP, laddr.Addr()) {
		return pc, nil
	}
	s.hooks.Bind(s.id, ProtoUDP, laddr, nil)
	return &packetConn{PacketConn: pc, s: s, laddr: laddr, dests: make(map[netip.AddrPort]struct{})}, nil
}

type packetConn struct {
	net.PacketConn
	s     *Stack
	laddr netip.AddrPort
	once  sync.Once // Unbind once

	mu    sync.Mutex                  // guards dests
	dests map[netip.AddrPort]struct{} // destinations Connect accepted
}

func (p *packetConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if !p.laddr.Addr().IsUnspecified() {
		ra := addrPort(addr)
		p.mu.Lock()
		_, known := p.dests[ra]
		p.mu.Unlock()
		if !known {
			if err := p.s.hooks.Connect(p.s.id, ProtoUDP, true, p.laddr, ra, nil); err != nil {
				return 0, &net.OpError{Op: "write", Net: "udp", Source: p.LocalAddr(), Addr: addr, Err: fmt.Errorf("%w: %w", ErrRefused, err)}
			}
			p.mu.Lock()
			if len(p.dests) >= maxUDPDests {
				clear(p.dests)
			}
			p.dests[ra] = struct{}{}
			p.mu.Unlock()
		}
	}
	return p.PacketConn.WriteTo(b, addr)
}

func (p *packetConn) Close() error {
	err := p.PacketConn.Close()
	p.once.Do(func() { p.s.hooks.Unbind(p.s.id, ProtoUDP, p.laddr, nil) })
	return err
}

func protoOf(network string) (Proto, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return ProtoTCP, nil
	case "udp", "udp4", "udp6":
		return ProtoUDP, nil
	}
	return 0, fmt.Errorf("sharedaddr: network %q: want tcp, tcp4, tcp6, udp, udp4 or udp6", network)
}

// literal checks that address names no host to look up.
func literal(network, address string, want Proto) error {
	p, err := protoOf(network)
	if err != nil {
		return err
	}
	if p != want {
		return fmt.Errorf("sharedaddr: network %q: want %s", network, want)
	}
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("sharedaddr: address %q: %w", address, err)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("sharedaddr: address %q: want a literal IP: %w", address, err)
	}
	return nil
}

// addrPort returns a TCP or UDP address as an unmapped netip.AddrPort.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

func netAddr(p Proto, ap netip.AddrPort) net.Addr {
	if p == ProtoUDP {
		return net.UDPAddrFromAddrPort(ap)
	}
	return net.TCPAddrFromAddrPort(ap)
}

// sourceFor returns the source address the stack's routes choose for
// raddr: a connected UDP socket learns it without sending anything.
func sourceFor(raddr netip.AddrPort) (netip.Addr, error) {
	probe := netip.AddrPortFrom(raddr.Addr(), max(raddr.Port(), 9))
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(probe))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("sharedaddr: source address for %s: %w", raddr, err)
	}
	defer c.Close()
	return addrPort(c.LocalAddr()).Addr(), nil
}
