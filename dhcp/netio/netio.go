package netio

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/corralhq/corral/internal/attempt"
)

// Errors.
var (
	ErrClosed  = errors.New("netio: server closed")
	ErrServing = errors.New("netio: Serve already called")
	ErrTooBig  = errors.New("netio: reply larger than MaxPacket")
	ErrAddr    = errors.New("netio: reply address is not IPv4")
)

// maxReadErrors consecutive failed reads end Serve: the socket is broken.
const maxReadErrors = 1000

// MaxPacket is the size of every receive buffer and the largest reply.
// A DHCP message fits one Ethernet frame (RFC 2131 §2: clients accept
// 576 bytes at least; option 57 may raise it to the MTU); a longer
// datagram is dropped as DropTruncated.
const MaxPacket = 1536

// WriteMode says how replies reach the socket.
type WriteMode uint8

const (
	// WriteGather (the default) copies each reply to a writer goroutine
	// per socket, which sends what has gathered with one sendmmsg of up
	// to Batch. BenchmarkServe measured it faster than WriteDirect or
	// equal in every configuration (doc.go has the figures).
	WriteGather WriteMode = iota
	// WriteDirect sends each reply from the handler's goroutine with
	// one sendmsg (WriteBatch of one): no copy, no handoff.
	WriteDirect
)

// String returns "gather" or "direct".
func (m WriteMode) String() string {
	if m == WriteDirect {
		return "direct"
	}
	return "gather"
}

// Config configures Listen. Zero fields take the defaults.
type Config struct {
	Addr    string    // "0.0.0.0:67", or "127.0.0.1:0" in tests (the sockets then share the port the first got)
	Sockets int       // SO_REUSEPORT sockets, one reader each; default runtime.NumCPU()
	Batch   int       // datagrams per recvmmsg/sendmmsg; default 32
	RcvBuf  int       // receive buffer bytes per socket; default 8 MiB
	Workers int       // handler goroutines; default 4×NumCPU
	Queue   int       // packets waiting for a worker, per queue (see MaxWait); default 4096. A full queue drops (DropQueueFull), the reader never blocks
	MaxHops int       // Check's hop limit; default DefaultMaxHops; negative disables Check
	Write   WriteMode // default WriteGather (see doc.go for the measurement)
	// MaxWait bounds how long a DISCOVER or BOOTREQUEST waits in the
	// queue: one older is dropped unhandled (DropStale); default
	// DefaultMaxWait, negative: no bound. The other requests (REQUEST,
	// DECLINE, RELEASE, INFORM) queue apart and go to the workers first:
	// they finish exchanges already begun, so under overload the server
	// completes the exchanges it can instead of starting ones it cannot.
	// Needs Check (MaxHops ≥ 0); without it every packet is in one queue.
	MaxWait time.Duration
	// Timeout bounds each handler call: the handler's context ends
	// Timeout after the call starts (0: no bound but the server's).
	Timeout time.Duration
}

func (c Config) withDefaults() Config {
	n := runtime.NumCPU()
	if c.Sockets <= 0 {
		c.Sockets = n
	}
	if c.Batch <= 0 {
		c.Batch = 32
	}
	if c.RcvBuf <= 0 {
		c.RcvBuf = 8 << 20
	}
	if c.Workers <= 0 {
		c.Workers = 4 * n
	}
	if c.Queue <= 0 {
		c.Queue = 4096
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MaxHops == 0 {
		c.MaxHops = DefaultMaxHops
	}
	return c
}

// Packet is one received datagram that passed Check. It and Data belong
// to the server again when the handler returns: copy what must outlive it.
type Packet struct {
	Data     []byte
	Src      netip.AddrPort // the sender: a client (0.0.0.0:68 before it has an address) or a relay (giaddr:67)
	Dst      netip.Addr     // the datagram's destination (IP_PKTINFO): 255.255.255.255 for a broadcast
	IfIndex  int            // the ingress interface (IP_PKTINFO); pass it to Reply.Send to broadcast out of it
	Socket   int            // which of the Sockets read it
	Received time.Time      // when its batch was read

	buf   *[MaxPacket]byte
	fresh bool // a DISCOVER or BOOTREQUEST: it starts an exchange, and MaxWait applies
}

// Handler handles one packet. It runs on a worker goroutine; it may block
// (the queue absorbs bursts, then drops), and may keep r to reply later,
// after returning, until Serve returns.
type Handler func(ctx context.Context, p *Packet, r Reply)

// Reply sends datagrams on one of the server's sockets. It is a small
// value, safe to copy and to use from any goroutine.
type Reply struct {
	s    *Server
	sock int
}

// Send sends b to to. With WriteGather it queues b for the socket's
// writer and waits only while that queue is full. ifIndex, when nonzero, is the interface to send out
// of (IP_PKTINFO), as a broadcast to a client without an address must
// leave by the interface its request came in on. b may be reused when Send
// returns.
func (r Reply) Send(to netip.AddrPort, ifIndex int, b []byte) error {
	return r.s.send(r.sock, to, ifIndex, b)
}

// Stats are the server's counters since Listen.
type Stats struct {
	Received   uint64 // datagrams read
	Batches    uint64 // reads that returned at least one datagram (Received/Batches is the mean batch)
	Handled    uint64 // packets the handler returned from
	Sent       uint64 // replies the kernel accepted
	SendCalls  uint64 // send system calls made (Sent/SendCalls is the mean replies per sendmmsg)
	SendErrors uint64 // replies it refused
	Drops      [NumDropReasons]uint64
	RcvBuf     int // the first socket's receive buffer as the kernel reports it
}

// Dropped is the sum of Drops.
func (s Stats) Dropped() uint64 {
	var n uint64
	for _, d := range s.Drops {
		n += d
	}
	return n
}

// sockStats are one reader's counters, written by it alone; padded so two
// readers do not share a cache line.
type sockStats struct {
	received atomic.Uint64
	batches  atomic.Uint64
	drops    [NumDropReasons]atomic.Uint64
	_        [64]byte
}

// Server is a set of sockets on one address. Listen opens them; Serve
// reads and dispatches until its context ends, then closes them.
type Server struct {
	cfg   Config
	log   *slog.Logger
	conns []*net.UDPConn
	pcs   []*ipv4.PacketConn
	outs  []chan *outMsg // WriteGather: each socket's writer queue
	stats []sockStats

	served  atomic.Bool
	closed  atomic.Bool    // set when the sockets are closed: Send returns ErrClosed
	stopped chan struct{}  // closed when the workers have ended: writers drain and stop, Send gives up
	wg      sync.WaitGroup // readers, workers and writers of Serve

	handled    atomic.Uint64
	sent       atomic.Uint64
	sendCalls  atomic.Uint64
	sendErrors atomic.Uint64
	shutdown   atomic.Uint64
	stale      atomic.Uint64

	pktPool sync.Pool // *Packet with its buffer
	outPool sync.Pool // *outMsg (WriteGather)
}

// outMsg is one reply waiting for a writer.
type outMsg struct {
	buf     [MaxPacket]byte
	n       int
	to      netip.AddrPort
	ifIndex int
}

// Listen opens cfg.Sockets UDP sockets on cfg.Addr.
func Listen(cfg Config, log *slog.Logger) (*Server, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:     cfg,
		log:     log.With("subsystem", "dhcp/netio"),
		stats:   make([]sockStats, cfg.Sockets),
		stopped: make(chan struct{}),
	}
	s.pktPool.New = func() any { p := new(Packet); p.buf = new([MaxPacket]byte); return p }
	s.outPool.New = func() any { return new(outMsg) }
	addr := cfg.Addr
	for i := range cfg.Sockets {
		c, err := listenUDP(context.Background(), addr, cfg.RcvBuf)
		if err != nil {
			s.closeConns()
			return nil, err
		}
		if i == 0 {
			// Port 0: the others join the port the first was given.
			addr = c.LocalAddr().String()
		}
		s.conns = append(s.conns, c)
		s.pcs = append(s.pcs, ipv4.NewPacketConn(c))
	}
	if cfg.Write != WriteDirect {
		for range cfg.Sockets {
			s.outs = append(s.outs, make(chan *outMsg, 4*cfg.Batch))
		}
	}
	return s, nil
}

// Addr is the address the sockets are bound to.
func (s *Server) Addr() netip.AddrPort {
	return s.conns[0].LocalAddr().(*net.UDPAddr).AddrPort()
}

// Close closes the sockets of a server that is not serving (Serve closes
// them itself when it returns).
func (s *Server) Close() error {
	if s.served.Swap(true) {
		return ErrServing
	}
	s.closeConns()
	return nil
}

func (s *Server) closeConns() {
	s.closed.Store(true)
	for _, c := range s.conns {
		c.Close()
	}
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Handled:    s.handled.Load(),
		Sent:       s.sent.Load(),
		SendCalls:  s.sendCalls.Load(),
		SendErrors: s.sendErrors.Load(),
	}
	for i := range s.stats {
		ss := &s.stats[i]
		st.Received += ss.received.Load()
		st.Batches += ss.batches.Load()
		for r := range st.Drops {
			st.Drops[r] += ss.drops[r].Load()
		}
	}
	st.Drops[DropShutdown] += s.shutdown.Load()
	st.Drops[DropStale] += s.stale.Load()
	if len(s.conns) > 0 {
		st.RcvBuf = rcvbufOf(s.conns[0])
	}
	return st
}

// Serve reads every socket and hands the packets that pass Check to h on
// cfg.Workers goroutines, until ctx ends. It then stops the readers,
// drops what is still queued (DropShutdown), waits for the handlers,
// flushes the writers, closes the sockets and returns nil; every
// goroutine it started has ended. A socket error other than the shutdown
// also ends it, returned.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	if s.served.Swap(true) {
		return ErrServing
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	q := queues{fresh: make(chan *Packet, s.cfg.Queue), next: make(chan *Packet, s.cfg.Queue)}
	var readers, workers sync.WaitGroup
	for i := range s.pcs {
		readers.Go(func() {
			if err := s.read(ctx, i, q); err != nil {
				cancel(err)
			}
		})
	}
	for range s.cfg.Workers {
		workers.Go(func() { s.work(ctx, h, q) })
	}
	for i := range s.outs {
		s.wg.Go(func() { s.write(i) })
	}
	// The readers block in recvmmsg: a past deadline wakes them.
	stop := context.AfterFunc(ctx, func() {
		for _, c := range s.conns {
			_ = c.SetReadDeadline(time.Unix(1, 0))
		}
	})
	defer stop()

	readers.Wait()
	close(q.fresh)
	close(q.next)
	workers.Wait()
	close(s.stopped)
	s.wg.Wait()
	s.closeConns()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// queues are the packets waiting for a worker: fresh holds DISCOVERs and
// BOOTREQUESTs (and every packet when Check is off), next the requests
// that continue an exchange, which the workers take first.
type queues struct {
	fresh, next chan *Packet
}

// DefaultMaxWait is Config.MaxWait's default. A server that keeps up
// queues a packet for well under a millisecond; one 1s behind is
// overloaded, and an OFFER that late reaches a client that may have
// taken another server's offer by then, so the work goes to newer
// DISCOVERs. perfdhcp counts a reply after 1s as lost, too.
const DefaultMaxWait = time.Second

// read is socket i's reader: recvmmsg into pooled buffers, Check, queue.
func (s *Server) read(ctx context.Context, i int, q queues) error {
	pc := s.pcs[i]
	st := &s.stats[i]
	n := s.cfg.Batch
	msgs := make([]ipv4.Message, n)
	pkts := make([]*Packet, n)
	oobs := make([]byte, n*oobSize)
	bufs := make([][]byte, n) // one-element Buffers slices, kept to avoid reallocating
	for j := range msgs {
		pkts[j] = s.pktPool.Get().(*Packet)
		bufs[j] = pkts[j].buf[:]
		msgs[j].Buffers = bufs[j : j+1 : j+1]
		msgs[j].OOB = oobs[j*oobSize : (j+1)*oobSize]
	}
	defer func() {
		for _, p := range pkts {
			s.pktPool.Put(p)
		}
	}()
	errs := 0 // consecutive read errors
	for {
		got, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// ICMP errors surfacing on the socket and the like are per
			// datagram; keep reading, unless the socket is broken.
			s.log.Debug("read", "socket", i, "err", err)
			if errs++; errs > maxReadErrors {
				return fmt.Errorf("netio: socket %d: %w", i, err)
			}
			continue
		}
		errs = 0
		if got == 0 {
			continue
		}
		now := time.Now()
		st.batches.Add(1)
		st.received.Add(uint64(got))
		for j := range got {
			m := &msgs[j]
			p := pkts[j]
			r := DropNone
			queue := q.fresh
			switch {
			case m.Flags&msgTrunc != 0:
				r = DropTruncated
			case s.cfg.MaxHops >= 0:
				var mt uint8
				r, mt = check(p.buf[:m.N], s.cfg.MaxHops)
				p.fresh = mt == 0 || mt == msgDiscover
				if !p.fresh {
					queue = q.next
				}
			}
			if r == DropNone {
				p.Data = p.buf[:m.N]
				p.Src = addrPortOf(m.Addr)
				p.IfIndex, p.Dst = parsePktinfo(m.OOB[:m.NN])
				p.Socket = i
				p.Received = now
				select {
				case queue <- p:
					pkts[j] = s.pktPool.Get().(*Packet)
					bufs[j] = pkts[j].buf[:]
				default:
					r = DropQueueFull
				}
			}
			if r != DropNone {
				st.drops[r].Add(1)
			}
			m.Addr = nil // ReadBatch allocates a new one per datagram
		}
	}
}

// addrPortOf converts the address ReadBatch returned.
func addrPortOf(a net.Addr) netip.AddrPort {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// work is one worker: handle queued packets, q.next first, until the
// readers are done and both queues are empty.
func (s *Server) work(ctx context.Context, h Handler, q queues) {
	fresh, next := q.fresh, q.next
	var at *attempt.Deadlines
	if s.cfg.Timeout > 0 {
		at = attempt.New(ctx, s.cfg.Timeout)
		defer at.Close()
	}
	for fresh != nil || next != nil {
		p, ok, isNext := take(next, fresh)
		if !ok {
			if isNext {
				next = nil
			} else {
				fresh = nil
			}
			continue
		}
		switch {
		case ctx.Err() != nil:
			s.shutdown.Add(1)
		case p.fresh && s.cfg.MaxWait > 0 && time.Since(p.Received) > s.cfg.MaxWait:
			s.stale.Add(1)
		case at != nil:
			h(at.Start(), p, Reply{s: s, sock: p.Socket})
			at.Stop()
			s.handled.Add(1)
		default:
			h(ctx, p, Reply{s: s, sock: p.Socket})
			s.handled.Add(1)
		}
		p.Data = nil
		p.fresh = false
		s.pktPool.Put(p)
	}
}

// take receives from next if it holds a packet, else from fresh, else
// whichever has one first; isNext says which it received from (ok false:
// that one is closed). A busy server's queues are seldom empty, and
// trying each without blocking first spares the common case a select
// over both, which locks both channels every time.
func take(next, fresh <-chan *Packet) (p *Packet, ok, isNext bool) {
	select {
	case p, ok = <-next:
		return p, ok, true
	default:
	}
	select {
	case p, ok = <-fresh:
		return p, ok, false
	default:
	}
	select {
	case p, ok = <-next:
		return p, ok, true
	case p, ok = <-fresh:
		return p, ok, false
	}
}

func (s *Server) send(sock int, to netip.AddrPort, ifIndex int, b []byte) error {
	if len(b) > MaxPacket {
		return ErrTooBig
	}
	if !to.Addr().Unmap().Is4() {
		return ErrAddr
	}
	if s.closed.Load() {
		return ErrClosed
	}
	if s.outs == nil {
		var oob [64]byte
		ua := net.UDPAddrFromAddrPort(to)
		m := [1]ipv4.Message{{Buffers: [][]byte{b}, Addr: ua}}
		if ifIndex != 0 {
			m[0].OOB = putPktinfo(oob[:], ifIndex)
		}
		s.sendCalls.Add(1)
		if _, err := s.pcs[sock].WriteBatch(m[:], 0); err != nil {
			s.sendErrors.Add(1)
			if s.closed.Load() {
				return ErrClosed
			}
			return err
		}
		s.sent.Add(1)
		return nil
	}
	select {
	case <-s.stopped:
		// The writers are draining: a reply queued now could be
		// missed. (One racing this check may still be; UDP loses
		// datagrams anyway.)
		return ErrClosed
	default:
	}
	o := s.outPool.Get().(*outMsg)
	o.n = copy(o.buf[:], b)
	o.to, o.ifIndex = to, ifIndex
	select {
	case s.outs[sock] <- o:
		return nil
	case <-s.stopped:
		s.outPool.Put(o)
		return ErrClosed
	}
}

// write is socket i's writer (WriteGather): it sends what has gathered in
// its queue with one sendmmsg, until the workers have ended and the queue
// is empty.
func (s *Server) write(i int) {
	pc := s.pcs[i]
	out := s.outs[i]
	n := s.cfg.Batch
	msgs := make([]ipv4.Message, n)
	pend := make([]*outMsg, 0, n)
	addrs := make([]net.UDPAddr, n)
	ips := make([][4]byte, n)
	oobs := make([]byte, n*pktinfoSize)
	bufs := make([][]byte, n)
	for {
		pend = pend[:0]
		select {
		case o := <-out:
			pend = append(pend, o)
		case <-s.stopped:
			// Drain what the last handlers queued, then stop.
			select {
			case o := <-out:
				pend = append(pend, o)
			default:
				return
			}
		}
	gather:
		for len(pend) < n {
			select {
			case o := <-out:
				pend = append(pend, o)
			default:
				break gather
			}
		}
		for j, o := range pend {
			ips[j] = o.to.Addr().Unmap().As4()
			addrs[j] = net.UDPAddr{IP: ips[j][:], Port: int(o.to.Port())}
			bufs[j] = o.buf[:o.n]
			msgs[j] = ipv4.Message{Buffers: bufs[j : j+1 : j+1], Addr: &addrs[j]}
			if o.ifIndex != 0 {
				msgs[j].OOB = putPktinfo(oobs[j*pktinfoSize:], o.ifIndex)
			}
		}
		for ms := msgs[:len(pend)]; len(ms) > 0; {
			k, err := pc.WriteBatch(ms, 0)
			s.sendCalls.Add(1)
			if k > 0 {
				s.sent.Add(uint64(k))
				ms = ms[k:]
			}
			if err != nil {
				// The first unsent message failed: count it, go on.
				s.sendErrors.Add(1)
				s.log.Debug("write", "socket", i, "err", err)
				if len(ms) > 0 {
					ms = ms[1:]
				}
			}
		}
		for _, o := range pend {
			s.outPool.Put(o)
		}
	}
}
