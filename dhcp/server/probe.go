package server

// The ICMP probe (in.dhcpd's ICMP_VERIFY, Config.ICMPProbe): before a
// free or expired address is offered, the server pings it; an answer
// means a host squats on it, so the record is marked UNUSABLE and
// another address is offered.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

// ErrProbe: icmp_probe is set and no ICMP socket could be opened.
var ErrProbe = errors.New("dhcp/server: no ICMP socket for icmp_probe")

// DefaultICMPTimeout is Config.ICMPTimeout's default (in.dhcpd waits 1 s;
// a DHCP client retransmits its DISCOVER after about 4 s, so half a
// second keeps the first OFFER inside that).
const DefaultICMPTimeout = 500 * time.Millisecond

const (
	// probeSlots bounds the echoes in flight: a burst of DISCOVERs for
	// fresh addresses must not hold every worker on a probe. A DISCOVER
	// that finds no slot within the timeout is offered unprobed.
	probeSlots = 32
	// probeQuietTTL is how long an address that did not answer is not
	// probed again, so that a burst of DISCOVERs (or one client whose
	// offer expired) does not ping one address over and over.
	probeQuietTTL = 10 * time.Second
	// probeAttempts bounds the addresses probed for one DISCOVER: after
	// that many squatters the client gets no OFFER and retries.
	probeAttempts = 4
)

// pinger sends one echo request and waits for its reply.
type pinger interface {
	// ping reports whether a answered within timeout.
	ping(ctx context.Context, a netip.Addr, timeout time.Duration) (bool, error)
	close() error
}

// prober is the server's probe: the pinger, the slots, the addresses
// recently found quiet and the probes in flight.
type prober struct {
	p       pinger
	timeout time.Duration
	now     func() time.Time
	slots   chan struct{}

	mu        sync.Mutex               // guards quiet, inflight, lastSweep
	quiet     map[netip.Addr]time.Time // no reply: not probed again until then
	inflight  map[netip.Addr]*probeCall
	lastSweep time.Time
}

// probeCall is a probe in flight; workers probing the same address wait
// for it instead of sending their own echo.
type probeCall struct {
	done   chan struct{}
	hit    bool
	joined int // workers waiting on it; guarded by prober.mu (tests wait on it)
}

func newProber(p pinger, timeout time.Duration, now func() time.Time) *prober {
	return &prober{p: p, timeout: timeout, now: now, slots: make(chan struct{}, probeSlots),
		quiet: map[netip.Addr]time.Time{}, inflight: map[netip.Addr]*probeCall{}}
}

// startProbe opens the ICMP socket when the configuration asks for the
// probe.
func (s *Server) startProbe() error {
	if !s.cfg.ICMPProbe {
		return nil
	}
	p, err := listenICMP(s)
	if err != nil {
		return err
	}
	s.probe = newProber(p, s.cfg.ICMPTimeout.Duration, s.now)
	return nil
}

// inUse probes a: true when it answered. Errors (no route, a full
// socket buffer) count as no answer: the probe is an extra check, the
// client's own ARP check and DECLINE remain.
func (s *Server) inUse(ctx context.Context, a netip.Addr) bool {
	pr := s.probe
	now := pr.now()
	pr.mu.Lock()
	if until, ok := pr.quiet[a]; ok && now.Before(until) {
		pr.mu.Unlock()
		s.ctr.probeCached.Add(1)
		return false
	}
	if c, ok := pr.inflight[a]; ok {
		c.joined++
		pr.mu.Unlock()
		select {
		case <-c.done:
			return c.hit
		case <-ctx.Done():
			return false
		}
	}
	c := &probeCall{done: make(chan struct{})}
	pr.inflight[a] = c
	pr.mu.Unlock()

	defer func() {
		pr.mu.Lock()
		delete(pr.inflight, a)
		if !c.hit {
			pr.sweepLocked(now)
			pr.quiet[a] = now.Add(probeQuietTTL)
		} else {
			delete(pr.quiet, a)
		}
		pr.mu.Unlock()
		close(c.done)
	}()
	t := time.NewTimer(pr.timeout)
	defer t.Stop()
	select {
	case pr.slots <- struct{}{}:
	case <-t.C:
		s.ctr.probeSkipped.Add(1)
		return false
	case <-ctx.Done():
		return false
	}
	defer func() { <-pr.slots }()
	s.ctr.probes.Add(1)
	hit, err := pr.p.ping(ctx, a, pr.timeout)
	if err != nil {
		s.ctr.probeErrors.Add(1)
		s.log.Debug("icmp probe", "ip", a.String(), "err", err)
		return false
	}
	if hit {
		s.ctr.probeHits.Add(1)
	}
	c.hit = hit
	return hit
}

// sweepLocked drops the quiet entries that ran out, at most once per
// probeQuietTTL.
func (pr *prober) sweepLocked(now time.Time) {
	if now.Sub(pr.lastSweep) < probeQuietTTL {
		return
	}
	pr.lastSweep = now
	for a, until := range pr.quiet {
		if !now.Before(until) {
			delete(pr.quiet, a)
		}
	}
}

// offerNew offers rec, a free or expired record just reserved for q in
// the offer cache, after the probe when it is on: an address that
// answers is marked UNUSABLE and the next candidate is tried.
func (s *Server) offerNew(ctx context.Context, q *request, rec dsvc.DNRecord) *dhcpv4.DHCPv4 {
	if s.probe == nil {
		return s.offer(q, rec)
	}
	n := q.n
	for range probeAttempts {
		if !s.inUse(ctx, rec.CIP) {
			return s.offer(q, rec)
		}
		s.squatted(ctx, n, rec, q.now)
		var ok bool
		var err error
		rec, ok = n.offers.take(q.key, q.now)
		if !ok {
			rec, ok, err = s.refill(ctx, n, q.key, q.now)
			if err != nil {
				s.storeError("discover: free records", err)
				return nil
			}
			if !ok {
				s.ctr.noAddress.Add(1)
				s.log.Warn("no free address", "network", n.name)
				return nil
			}
		}
	}
	n.offers.drop(q.key)
	return nil
}

// squatted marks rec UNUSABLE after its address answered a probe: a
// write with the record's signature, reread after a collision, given up
// when the record is no longer free (a client took it meanwhile).
func (s *Server) squatted(ctx context.Context, n *network, rec dsvc.DNRecord, now time.Time) {
	n.offers.dropIP(rec.CIP)
	for range commitRetries {
		if !s.allocatable(&rec, now) {
			return
		}
		nr := rec
		nr.Flags |= dsvc.DNUnusable
		err := n.h.ModifyDN(ctx, &rec, &nr)
		if err == nil {
			s.log.Warn("address in use: it answered an ICMP echo; marked UNUSABLE", "ip", rec.CIP.String(), "network", n.name)
			return
		}
		if !errors.Is(err, dsvc.ErrCollision) {
			s.storeError("probe: mark unusable", err)
			return
		}
		s.ctr.collisions.Add(1)
		fresh, ok, err := n.lookupIP(ctx, rec.CIP)
		if err != nil {
			s.storeError("probe: lookup", err)
			return
		}
		if !ok {
			return
		}
		rec = fresh
	}
}

// icmpPinger pings over one ICMP socket: an unprivileged ping socket
// ("udp4", where net.ipv4.ping_group_range admits the process's group),
// else a raw one ("ip4:icmp", root or CAP_NET_RAW). One reader goroutine
// hands the replies to the waiting probes by sequence number.
type icmpPinger struct {
	conn *icmp.PacketConn
	raw  bool // raw: every ICMP message arrives, match the id; a ping socket gets only its own replies
	id   int
	seq  atomic.Uint32

	mu      sync.Mutex // guards waiters
	waiters map[uint16]pingWaiter

	done chan struct{} // closed when the reader returns
}

type pingWaiter struct {
	dst netip.Addr
	ch  chan struct{} // closed on the reply
}

func listenICMP(s *Server) (*icmpPinger, error) {
	// A random id, not the pid: a raw socket sees every echo reply of the
	// host, those of another server in this process too.
	p := &icmpPinger{id: rand.IntN(0x10000), waiters: map[uint16]pingWaiter{}, done: make(chan struct{})}
	conn, err := icmp.ListenPacket("udp4", "0.0.0.0")
	if err != nil {
		conn, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return nil, fmt.Errorf("%w: ping socket and raw socket: %v", ErrProbe, err)
		}
		p.raw = true
	}
	p.conn = conn
	s.log.Info("icmp probe on", "socket", map[bool]string{false: "ping (udp4)", true: "raw (ip4:icmp)"}[p.raw],
		"timeout", s.cfg.ICMPTimeout.Duration.String())
	go p.read()
	return p, nil
}

// read dispatches echo replies until the socket is closed.
func (p *icmpPinger) read() {
	defer close(p.done)
	buf := make([]byte, 1500)
	for {
		n, peer, err := p.conn.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		m, err := icmp.ParseMessage(1, buf[:n]) // 1: ICMPv4
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || (p.raw && echo.ID != p.id) {
			continue
		}
		var from netip.Addr
		switch a := peer.(type) {
		case *net.IPAddr:
			from = addr4(a.IP)
		case *net.UDPAddr:
			from = addr4(a.IP)
		}
		p.mu.Lock()
		w, ok := p.waiters[uint16(echo.Seq)]
		if ok && w.dst == from {
			delete(p.waiters, uint16(echo.Seq))
			close(w.ch)
		}
		p.mu.Unlock()
	}
}

func (p *icmpPinger) ping(ctx context.Context, a netip.Addr, timeout time.Duration) (bool, error) {
	seq := uint16(p.seq.Add(1))
	w := pingWaiter{dst: a, ch: make(chan struct{})}
	p.mu.Lock()
	p.waiters[seq] = w
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		if cur, ok := p.waiters[seq]; ok && cur.ch == w.ch {
			delete(p.waiters, seq)
		}
		p.mu.Unlock()
	}()
	m := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: p.id, Seq: int(seq), Data: []byte("corral dhcp probe")}}
	b, err := m.Marshal(nil)
	if err != nil {
		return false, err
	}
	var dst net.Addr = &net.UDPAddr{IP: a.AsSlice()}
	if p.raw {
		dst = &net.IPAddr{IP: a.AsSlice()}
	}
	if _, err := p.conn.WriteTo(b, dst); err != nil {
		return false, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-w.ch:
		return true, nil
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// close closes the socket and waits for the reader.
func (p *icmpPinger) close() error {
	err := p.conn.Close()
	<-p.done
	return err
}
