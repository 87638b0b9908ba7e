package userspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/kernel"
)

var (
	// ErrConfig is returned by New and SetTable for a table that cannot
	// be served.
	ErrConfig = errors.New("userspace: invalid proxy configuration")
	// ErrClosed is returned by Serve on a proxy that has served already.
	ErrClosed = errors.New("userspace: proxy already served")
)

// Table is what the proxy dispatches by: the same dispatch table the
// kernel path uses, and each node's real address.
type Table struct {
	Policy ctl.Policy
	// Buckets maps each bucket to a node (ctl.Build); M = len(Buckets).
	Buckets []uint64
	// Backends are the addresses the proxy dials for each node named in
	// Buckets: the node's own address and the port its listener (which
	// expects a PROXY v2 header) serves.
	Backends map[uint64]netip.AddrPort
}

func (t Table) validate() error {
	if len(t.Buckets) == 0 {
		return fmt.Errorf("%w: empty table", ErrConfig)
	}
	if t.Policy < ctl.Weighted || t.Policy > ctl.StickyWild {
		return fmt.Errorf("%w: policy %d", ErrConfig, t.Policy)
	}
	for _, n := range t.Buckets {
		if !t.Backends[n].IsValid() {
			return fmt.Errorf("%w: node %d has no backend address", ErrConfig, n)
		}
	}
	return nil
}

// pick returns the node and backend of a flow from client, as the kernel
// path would pick it: kernel.Bucket (nft's jhash) for IPv4 clients, so a
// client lands on the same node by either path; ctl.Bucket for IPv6,
// which the kernel path does not serve.
func (t *Table) pick(client netip.AddrPort) (uint64, netip.AddrPort) {
	client = netip.AddrPortFrom(client.Addr().Unmap(), client.Port())
	var b int
	if client.Addr().Is4() {
		b = kernel.Bucket(t.Policy, client, len(t.Buckets))
	} else {
		b = ctl.Bucket(t.Policy, client, len(t.Buckets))
	}
	n := t.Buckets[b]
	return n, t.Backends[n]
}

// Config configures a Proxy.
type Config struct {
	Table Table
	// Dial opens the connection to a backend; nil: a net.Dialer. Tests
	// pass one that dials from inside a network namespace.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// DialTimeout bounds the dial and the header write; 0: 3 s.
	DialTimeout time.Duration
	// MaxConns caps the connections relayed at once; a connection
	// accepted beyond it is closed at once. 0: no cap.
	MaxConns int
	Log      *slog.Logger
}

// Stats are a proxy's counters since New.
type Stats struct {
	Accepted   uint64 // connections accepted
	Active     int64  // connections being relayed now
	Refused    uint64 // closed at accept: MaxConns reached
	DialFailed uint64 // closed because the backend could not be reached
	Aborted    uint64 // relays ended by an error or by shutdown rather than both EOFs
	BytesUp    uint64 // client → backend, header excluded
	BytesDown  uint64 // backend → client
}

// Proxy relays connections to a shared address to the nodes its table
// names, each with a PROXY v2 header. Nothing starts one unless asked:
// it is the fallback for an owner without CAP_NET_ADMIN, and the
// benchmark baseline of the kernel path.
type Proxy struct {
	dial        func(ctx context.Context, network, address string) (net.Conn, error)
	dialTimeout time.Duration
	maxConns    int64
	log         *slog.Logger
	table       atomic.Pointer[Table] // swapped whole by SetTable
	served      atomic.Bool

	accepted, refused, dialFailed, aborted, bytesUp, bytesDown atomic.Uint64
	active                                                     atomic.Int64

	mu    sync.Mutex            // guards conns, ln, draining
	conns map[net.Conn]struct{} // client and backend ends, closed by shutdown
	// ln is the listener Serve accepts on; draining is set by Drain, which
	// closes ln: Serve then lets the relays end on their own.
	ln       net.Listener
	draining bool
}

// New returns a proxy for cfg; it serves nothing until Serve.
func New(cfg Config) (*Proxy, error) {
	p := &Proxy{dial: cfg.Dial, dialTimeout: cfg.DialTimeout, maxConns: int64(cfg.MaxConns),
		log: cfg.Log, conns: map[net.Conn]struct{}{}}
	if p.dial == nil {
		var d net.Dialer
		p.dial = d.DialContext
	}
	if p.dialTimeout <= 0 {
		p.dialTimeout = 3 * time.Second
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("subsystem", "sharedaddr/userspace")
	if err := p.SetTable(cfg.Table); err != nil {
		return nil, err
	}
	return p, nil
}

// SetTable replaces the dispatch table; connections already relayed stay
// where they are, new ones follow t.
func (p *Proxy) SetTable(t Table) error {
	if err := t.validate(); err != nil {
		return err
	}
	t.Buckets = slices.Clone(t.Buckets)
	b := make(map[uint64]netip.AddrPort, len(t.Backends))
	for k, v := range t.Backends {
		b[k] = v
	}
	t.Backends = b
	p.table.Store(&t)
	return nil
}

// Stats returns the counters.
func (p *Proxy) Stats() Stats {
	return Stats{Accepted: p.accepted.Load(), Active: p.active.Load(), Refused: p.refused.Load(),
		DialFailed: p.dialFailed.Load(), Aborted: p.aborted.Load(),
		BytesUp: p.bytesUp.Load(), BytesDown: p.bytesDown.Load()}
}

// ListenAndServe listens on addr (the shared address and port, which
// the host must hold, or ip_nonlocal_bind allow) and serves it.
func (p *Proxy) ListenAndServe(ctx context.Context, addr netip.AddrPort) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr.String())
	if err != nil {
		return fmt.Errorf("userspace: listen: %w", err)
	}
	return p.Serve(ctx, ln)
}

// Serve accepts on ln until ctx ends or ln fails, then closes ln and every
// relayed connection and returns once all their goroutines have ended.
// Relayed connections die with the proxy (unlike the kernel path's, which
// survive a new owner): that is the price of the fallback. After Drain
// it waits for the relays instead. It returns nil after ctx ended or
// Drain, else the accept error.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	if p.served.Swap(true) {
		ln.Close()
		return ErrClosed
	}
	p.mu.Lock()
	p.ln = ln
	drained := p.draining
	p.mu.Unlock()
	if drained {
		ln.Close()
	}
	var wg sync.WaitGroup
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var err error
	for {
		c, aerr := ln.Accept()
		if aerr != nil {
			var ne net.Error
			if ne, _ = aerr.(net.Error); ne != nil && ne.Timeout() {
				continue
			}
			if ctx.Err() == nil && !p.isDraining() {
				err = fmt.Errorf("userspace: accept: %w", aerr)
			}
			break
		}
		p.accepted.Add(1)
		if n := p.active.Add(1); p.maxConns > 0 && n > p.maxConns {
			p.active.Add(-1)
			p.refused.Add(1)
			c.Close()
			continue
		}
		if !p.track(c) {
			p.active.Add(-1)
			c.Close()
			continue
		}
		wg.Go(func() {
			defer p.active.Add(-1)
			p.relay(ctx, c)
		})
	}
	ln.Close()
	if err == nil && ctx.Err() == nil {
		// Drained: the relays end on their own, or with ctx.
		relays := make(chan struct{})
		go func() { // owned by Serve, which waits on relays below
			wg.Wait()
			close(relays)
		}()
		select {
		case <-relays:
		case <-ctx.Done():
		}
	}
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil // track refuses from now on
	p.mu.Unlock()
	wg.Wait()
	return err
}

// Drain stops the proxy accepting: Serve closes its listener at once
// (before it starts, if called first), and returns once the connections
// it relays have ended on their own — both EOFs or an error — or ctx has
// ended. An owner that loses an address drains its proxy: the port is
// free for the new owner, and the spliced connections finish.
func (p *Proxy) Drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draining = true
	if p.ln != nil {
		p.ln.Close()
	}
}

func (p *Proxy) isDraining() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.draining
}

// track registers c for closing at shutdown; false once shut down.
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

// relay serves one client connection: dial its node, send the header,
// copy both ways. It runs one more goroutine, for the way down.
func (p *Proxy) relay(ctx context.Context, client net.Conn) {
	src := addrPort(client.RemoteAddr())
	dst := addrPort(client.LocalAddr())
	t := p.table.Load()
	node, be := t.pick(src)
	dctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	back, err := p.dial(dctx, "tcp", be.String())
	if err == nil && !p.track(back) {
		back.Close()
		err = net.ErrClosed
	}
	if err != nil {
		p.dialFailed.Add(1)
		p.log.Debug("backend unreachable", "client", src, "node", node, "backend", be, "err", err)
		p.untrack(client)
		return
	}
	defer p.untrack(client, back)
	hdr, err := Header{Command: CmdProxy, Source: src, Dest: dst}.Append(nil)
	if err == nil {
		back.SetWriteDeadline(time.Now().Add(p.dialTimeout))
		_, err = back.Write(hdr)
		back.SetWriteDeadline(time.Time{})
	}
	if err != nil {
		p.dialFailed.Add(1)
		p.log.Debug("header write", "client", src, "node", node, "err", err)
		return
	}
	// An error either way aborts both: closing unblocks the other copy.
	abort := func() { client.Close(); back.Close() }
	down := make(chan error, 1)
	go func() { // owned by relay, which waits on down
		n, err := pipe(client, back)
		p.bytesDown.Add(uint64(n))
		if err != nil {
			abort()
		}
		down <- err
	}()
	n, upErr := pipe(back, client)
	p.bytesUp.Add(uint64(n))
	if upErr != nil {
		abort()
	}
	if downErr := <-down; upErr != nil || downErr != nil {
		p.aborted.Add(1)
	}
}

// pipe copies src to dst until EOF, then half-closes dst: the other way
// goes on until its own EOF. Between two *net.TCPConn, ReadFrom splices
// (net/splice_linux.go), so the bytes never enter user space.
func pipe(dst, src net.Conn) (int64, error) {
	var n int64
	var err error
	if d, ok := dst.(*net.TCPConn); ok {
		n, err = d.ReadFrom(src)
	} else {
		n, err = io.Copy(dst, src)
	}
	if err != nil {
		return n, err
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		if err := cw.CloseWrite(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// addrPort is a's address and port, IPv4 unmapped; invalid if a is not
// an IP address.
func addrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch a := a.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	default:
		ap, _ = netip.ParseAddrPort(a.String())
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
