package userspace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Listener wraps a net.Listener whose connections come from a Proxy: each
// starts with a PROXY v2 header, and the Conns it returns report the
// client's real address as RemoteAddr and the shared address as
// LocalAddr, as an application sees them on the kernel path.
//
// Accept does not read the header, so a slow or silent peer cannot hold
// up the others: a Conn reads it on first use (Read, Write, RemoteAddr,
// LocalAddr, Header), within HeaderTimeout. Only the proxy should be
// able to reach the wrapped listener's address: the header is trusted.
type Listener struct {
	net.Listener
	// HeaderTimeout bounds the wait for the header; 0: 5 s.
	HeaderTimeout time.Duration
}

// NewListener wraps ln.
func NewListener(ln net.Listener) *Listener { return &Listener{Listener: ln} }

// Accept returns the next connection as a *Conn.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	t := l.HeaderTimeout
	if t <= 0 {
		t = 5 * time.Second
	}
	return &Conn{Conn: c, timeout: t}, nil
}

// Conn is a connection accepted by a Listener.
type Conn struct {
	net.Conn
	timeout time.Duration

	once sync.Once // reads the header
	hdr  Header
	err  error // of the header; every Read and Write returns it
}

// ErrNoHeader wraps the reason a connection's header could not be read.
var ErrNoHeader = errors.New("userspace: connection without a valid PROXY header")

func (c *Conn) header() error {
	c.once.Do(func() {
		// The deadline is the connection's own: a read deadline the
		// application set before first use is replaced for the header's
		// read and cleared after it.
		c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
		c.hdr, c.err = ReadHeader(c.Conn)
		c.Conn.SetReadDeadline(time.Time{})
		if c.err != nil {
			c.err = fmt.Errorf("%w: %w", ErrNoHeader, c.err)
			c.Conn.Close()
		}
	})
	return c.err
}

// Header returns the connection's PROXY header, reading it if not yet.
func (c *Conn) Header() (Header, error) {
	err := c.header()
	return c.hdr, err
}

func (c *Conn) Read(b []byte) (int, error) {
	if err := c.header(); err != nil {
		return 0, err
	}
	return c.Conn.Read(b)
}

func (c *Conn) Write(b []byte) (int, error) {
	if err := c.header(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// RemoteAddr is the client's address from the header; the peer's own (the
// proxy's) for a CmdLocal header or one that could not be read.
func (c *Conn) RemoteAddr() net.Addr {
	if c.header() == nil && c.hdr.Command == CmdProxy && c.hdr.Source.IsValid() {
		return tcpAddr(c.hdr.Source)
	}
	return c.Conn.RemoteAddr()
}

// LocalAddr is the address the client connected to, from the header.
func (c *Conn) LocalAddr() net.Addr {
	if c.header() == nil && c.hdr.Command == CmdProxy && c.hdr.Dest.IsValid() {
		return tcpAddr(c.hdr.Dest)
	}
	return c.Conn.LocalAddr()
}

// CloseWrite half-closes the connection, if the wrapped one can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("userspace: %T cannot half-close", c.Conn)
}

func tcpAddr(ap netip.AddrPort) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}
