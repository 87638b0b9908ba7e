package server

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/prometheus/client_golang/prometheus"
)

// fakePinger answers for the addresses in up; a ping blocks while gate
// is non-nil and open.
type fakePinger struct {
	mu    sync.Mutex // guards up, sent
	up    map[netip.Addr]bool
	sent  map[netip.Addr]int
	gate  chan struct{}
	calls atomic.Int64
}

func newFakePinger(up ...netip.Addr) *fakePinger {
	f := &fakePinger{up: map[netip.Addr]bool{}, sent: map[netip.Addr]int{}}
	for _, a := range up {
		f.up[a] = true
	}
	return f
}

func (f *fakePinger) ping(ctx context.Context, a netip.Addr, _ time.Duration) (bool, error) {
	f.calls.Add(1)
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent[a]++
	return f.up[a], nil
}

func (f *fakePinger) close() error { return nil }

func (f *fakePinger) count(a netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sent[a]
}

// A squatter on the first free address: the probe finds it, the record
// becomes UNUSABLE (still free: no client id), the client is offered and
// gets the next address; a quiet address is probed once, not again.
func TestProbeSquatter(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		e.add(10, 3, ownerA, 0)
		fp := newFakePinger(ipN(10))
		s, srv := e.startWith(nil, func(s *Server) { s.probe = newProber(fp, time.Second, e.clock) }, ownerA)
		f := e.client.fake(1)
		if _, err := f.dora(srv); err != nil {
			t.Fatal(err)
		}
		if f.ip != ipN(11) {
			t.Fatalf("leased %s, want %s (%s answers pings)", f.ip, ipN(11), ipN(10))
		}
		r := e.rec(ipN(10))
		if r.Flags&dsvc.DNUnusable == 0 || !isFree(&r) {
			t.Fatalf("squatted record %+v: want UNUSABLE and free", r)
		}
		if st := s.Stats(); st.ProbeHits != 1 || st.Probes != 2 {
			t.Fatalf("stats: %d probes, %d hits; want 2, 1", st.Probes, st.ProbeHits)
		}
		reg := prometheus.NewRegistry()
		if err := s.Register(reg); err != nil {
			t.Fatal(err)
		}
		fams := scrape(t, reg)
		if h, p := value(fams, MetricProbeHits, "", ""), value(fams, MetricProbes, "result", "sent"); h != 1 || p != 2 {
			t.Fatalf("metrics: %s %v, %s{result=sent} %v; want 1, 2", MetricProbeHits, h, MetricProbes, p)
		}
		// Its DISCOVER again: the offer cache answers, no probe.
		f2 := e.client.fake(2)
		off := f2.one(t, f2.discover(), srv)
		if addr4(off.YourIPAddr) != ipN(12) {
			t.Fatalf("second client offered %s", off.YourIPAddr)
		}
		off = f2.one(t, f2.discover(), srv)
		if addr4(off.YourIPAddr) != ipN(12) || fp.count(ipN(12)) != 1 {
			t.Fatalf("second client's repeated DISCOVER: %s, %d probes of %s", off.YourIPAddr, fp.count(ipN(12)), ipN(12))
		}
	})
}

// Every free address answers: no OFFER, each marked UNUSABLE, at most
// probeAttempts probed for one DISCOVER.
func TestProbeAllSquatted(t *testing.T) {
	e := newEnv(t, files.Name)
	e.add(10, probeAttempts+2, ownerA, 0)
	var up []netip.Addr
	for i := range probeAttempts + 2 {
		up = append(up, ipN(10+i))
	}
	fp := newFakePinger(up...)
	s, srv := e.startWith(nil, func(s *Server) { s.probe = newProber(fp, time.Second, e.clock) }, ownerA)
	f := e.client.fake(1)
	f.silent(t, f.discover(), srv)
	waitFor(t, "the probes", func() bool { return s.Stats().ProbeHits == probeAttempts })
	unusable := 0
	for _, r := range e.all() {
		if r.Flags&dsvc.DNUnusable != 0 {
			unusable++
		}
	}
	if unusable != probeAttempts || fp.calls.Load() != probeAttempts {
		t.Fatalf("%d UNUSABLE, %d pings; want %d of each", unusable, fp.calls.Load(), probeAttempts)
	}
	if s.n(t).offers.len() != 0 {
		t.Fatalf("%d offers held after no OFFER", s.n(t).offers.len())
	}
}

func (s *Server) n(t *testing.T) *network {
	t.Helper()
	if len(s.nets) != 1 {
		t.Fatalf("%d networks", len(s.nets))
	}
	return s.nets[0]
}

// The prober's own rules: a quiet address is not pinged again until
// probeQuietTTL has passed; workers probing one address share one echo;
// with every slot busy for the timeout the address goes unprobed.
func TestProberCacheAndSlots(t *testing.T) {
	e := newEnv(t, files.Name)
	s, _ := e.server(ownerA)
	defer s.Close()
	ctx := context.Background()
	a, b := ipN(50), ipN(51)

	fp := newFakePinger()
	s.probe = newProber(fp, 50*time.Millisecond, e.clock)
	if s.inUse(ctx, a) || s.inUse(ctx, a) {
		t.Fatal("a quiet address in use")
	}
	if fp.count(a) != 1 || s.Stats().ProbeCached != 1 {
		t.Fatalf("%d pings, %d cached; want 1, 1", fp.count(a), s.Stats().ProbeCached)
	}
	e.advance(probeQuietTTL + time.Second)
	s.inUse(ctx, a)
	if fp.count(a) != 2 {
		t.Fatalf("after the quiet TTL: %d pings, want 2", fp.count(a))
	}

	// One echo for two workers.
	fp = newFakePinger(b)
	fp.gate = make(chan struct{})
	s.probe = newProber(fp, time.Second, e.clock)
	var wg sync.WaitGroup
	hits := make([]bool, 2)
	for i := range hits {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hits[i] = s.inUse(ctx, b)
		}()
	}
	waitFor(t, "the first ping", func() bool { return fp.calls.Load() == 1 })
	waitFor(t, "the second worker waiting", func() bool {
		s.probe.mu.Lock()
		defer s.probe.mu.Unlock()
		c := s.probe.inflight[b]
		return c != nil && c.joined == 1
	})
	close(fp.gate)
	wg.Wait()
	if !hits[0] || !hits[1] || fp.count(b) != 1 {
		t.Fatalf("hits %v, %d pings of %s; want both hits, 1 ping", hits, fp.count(b), b)
	}

	// Slots: one slot, held by a blocked probe; another address waits the
	// timeout and is offered unprobed.
	fp = newFakePinger()
	fp.gate = make(chan struct{})
	s.probe = newProber(fp, 50*time.Millisecond, e.clock)
	s.probe.slots = make(chan struct{}, 1)
	held := make(chan bool)
	go func() { held <- s.inUse(ctx, ipN(60)) }()
	waitFor(t, "the slot taken", func() bool { return fp.calls.Load() == 1 })
	skipped := s.Stats().ProbeSkipped
	if s.inUse(ctx, ipN(61)) || s.Stats().ProbeSkipped != skipped+1 || fp.calls.Load() != 1 {
		t.Fatalf("no slot: skipped %d→%d, %d pings", skipped, s.Stats().ProbeSkipped, fp.calls.Load())
	}
	close(fp.gate)
	<-held
}

// The real pinger: loopback addresses answer (Linux replies for all of
// 127/8), so with icmp_probe every free test address is a squatter. Needs
// a ping socket or root for a raw one.
func TestProbeICMP(t *testing.T) {
	if p, err := listenICMP(&Server{log: slog.New(slog.DiscardHandler)}); err != nil {
		t.Skipf("skipped: %v (needs net.ipv4.ping_group_range to admit this group, or root)", err)
	} else {
		p.close()
	}
	e := newEnv(t, files.Name)
	e.add(10, 2, ownerA, 0)
	s, srv := e.startWith(func(c *Config) { c.ICMPProbe = true; c.ICMPTimeout.Duration = time.Second }, nil, ownerA)
	if s.probe == nil {
		t.Fatal("icmp_probe set, no prober")
	}
	ip := s.probe.p.(*icmpPinger)
	ctx := context.Background()
	if hit, err := ip.ping(ctx, netip.MustParseAddr("127.0.0.1"), time.Second); err != nil || !hit {
		t.Fatalf("ping 127.0.0.1: %v %v", hit, err)
	}
	f := e.client.fake(1)
	f.silent(t, f.discover(), srv)
	waitFor(t, "both records UNUSABLE", func() bool {
		for _, r := range e.all() {
			if r.Flags&dsvc.DNUnusable == 0 {
				return false
			}
		}
		return true
	})
	if st := s.Stats(); st.ProbeHits != 2 {
		t.Fatalf("%d probe hits, want 2", st.ProbeHits)
	}
}
