package transport

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/protos"
)

// cutProxy forwards TCP connections to a target and can cut them (close
// both sides: the peers see a reset or EOF) or stall them (stop
// forwarding: the peers hear nothing until their heartbeats time out).
type cutProxy struct {
	ln     net.Listener
	target string

	mu      sync.Mutex // guards conns and stall
	conns   []net.Conn
	stalled chan struct{} // non-nil while stalled: closed to go on
	wg      sync.WaitGroup
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() { ln.Close(); p.cut(); p.wg.Wait() })
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(u, c) })
		p.wg.Go(func() { p.pipe(c, u) })
	}
}

func (p *cutProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			st := p.stalled
			p.mu.Unlock()
			if st != nil {
				<-st // silently hold what was read
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// cut closes every connection through the proxy.
func (p *cutProxy) cut() {
	p.mu.Lock()
	cs := p.conns
	p.conns = nil
	st := p.stalled
	p.stalled = nil
	p.mu.Unlock()
	if st != nil {
		close(st)
	}
	for _, c := range cs {
		c.Close()
	}
}

// stall stops forwarding until cut.
func (p *cutProxy) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

// sessEnd is one agent of a session test: its config, its current link
// and what it received.
type sessEnd struct {
	cfg  *Config
	log  *logBuf
	id   uint64
	peer uint64

	mu    sync.Mutex // guards link, links, got, bad
	link  *Link
	links []*Link
	got   uint64 // frames received, in order
	bad   error  // first out-of-order or duplicate frame
	// resumed and fresh count the links that resumed or started fresh.
	resumed, fresh atomic.Int64
	onFirst        func() // called for the first frame received on a new link
	// firsts gets, for each link, when it was served and when its first
	// frame arrived (TestSessionResumeTime).
	firsts chan [2]time.Time
	// handler, if set, serves the links instead of recording TEST frames.
	handler Handler
}

func newSessEnd(t *testing.T, id, peerID uint64, queue int) *sessEnd {
	cfg, lb := testConfig(id, "n"+strconv.FormatUint(id, 10))
	cfg.Protocols = slices.Clone(protos.All())
	for i, s := range cfg.Protocols {
		if s.Proto() == proto.ProtoPeer {
			cfg.Protocols[i] = testOps
		}
	}
	cfg.QueueBytes = queue
	cfg.Sessions = NewSessions(queue)
	e := &sessEnd{cfg: cfg, id: id, peer: peerID, log: lb}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node %d: %+v\n%s", id, cfg.Sessions.Stats(), lb.String())
		}
	})
	cfg.Sessions.OnSession = func(_ uint64, resumed bool) {
		if resumed {
			e.resumed.Add(1)
		} else {
			e.fresh.Add(1)
		}
	}
	return e
}

// serve starts l and records what it delivers: every TEST frame carries
// its sequence number in the session of the test.
func (e *sessEnd) serve(l *Link) {
	e.mu.Lock()
	e.link = l
	e.links = append(e.links, l)
	e.mu.Unlock()
	if e.handler != nil {
		l.Start(e.handler)
		return
	}
	first, up := true, time.Now()
	l.Start(func(_ *Link, f *proto.Frame) error {
		n := binary.LittleEndian.Uint64(f.Body)
		e.mu.Lock()
		if n != e.got+1 && e.bad == nil {
			e.bad = fmt.Errorf("node %d: frame %d after %d", e.id, n, e.got)
		}
		e.got = n
		e.mu.Unlock()
		if first {
			first = false
			if e.onFirst != nil {
				e.onFirst()
			}
			if e.firsts != nil {
				select {
				case e.firsts <- [2]time.Time{up, time.Now()}:
				default:
				}
			}
		}
		return nil
	})
}

func (e *sessEnd) received() (uint64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.got, e.bad
}

func (e *sessEnd) close() {
	e.mu.Lock()
	ls := e.links
	e.mu.Unlock()
	for _, l := range ls {
		l.Close(proto.CodeShutdown, "test over")
	}
}

// sessPair links a (dialing through a cut proxy) and b (accepting), and
// redials whenever the link ends, until the test ends.
func sessPair(t *testing.T, queue int) (a, b *sessEnd, px *cutProxy) {
	a, b = newSessEnd(t, 1, 2, queue), newSessEnd(t, 2, 1, queue)
	return a, b, sessPairWith(t, a, b)
}

// sessPairWith is sessPair for ends the caller made.
func sessPairWith(t *testing.T, a, b *sessEnd) (px *cutProxy) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px = newCutProxy(t, ln.Addr().String())
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				l, err := Accept(ctx, c, b.cfg)
				if err == nil {
					b.serve(l)
				}
			})
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			l, err := Dial(ctx, px.ln.Addr().String(), a.cfg, proto.ReasonJoin)
			if err != nil {
				sleepCtx(ctx, 10*time.Millisecond)
				continue
			}
			a.serve(l)
			select {
			case <-l.Done():
			case <-ctx.Done():
			}
		}
	})
	t.Cleanup(func() {
		cancel()
		ln.Close()
		a.close()
		b.close()
		wg.Wait()
	})
	return px
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func waitCond(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sender sends frames 1..total on e's session with the peer.
func (e *sessEnd) sender(ctx context.Context, total uint64, sent *atomic.Uint64) error {
	s := e.cfg.Sessions.Session(e.peer)
	body := make([]byte, 8+40)
	for i := uint64(1); i <= total; i++ {
		binary.LittleEndian.PutUint64(body, i)
		f := proto.Frame{Header: proto.Header{Opcode: opTest, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
		if err := s.Send(ctx, &f); err != nil {
			return fmt.Errorf("node %d: send %d: %w", e.id, i, err)
		}
		sent.Store(i)
	}
	return nil
}

func waitActive(t *testing.T, ends ...*sessEnd) {
	t.Helper()
	waitCond(t, "sessions active", 10*time.Second, func() bool {
		for _, e := range ends {
			if s := e.cfg.Sessions.Lookup(e.peer); s == nil || !s.Active() {
				return false
			}
		}
		return true
	})
}

// TestSessionResume streams thousands of frames both ways and cuts the
// link under them twice, once by closing the TCP connections and once
// by a silent stall past the heartbeat timeout: every frame arrives once,
// in order, and both links resumed (no fresh session).
func TestSessionResume(t *testing.T) {
	a, b, px := sessPair(t, 0)
	waitActive(t, a, b)
	const total = 30000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sa, sb atomic.Uint64
	errc := make(chan error, 2)
	go func() { errc <- a.sender(ctx, total, &sa) }()
	go func() { errc <- b.sender(ctx, total, &sb) }()

	got := func(e *sessEnd) uint64 { n, _ := e.received(); return n }
	waitCond(t, "a third delivered", 20*time.Second, func() bool { return got(a) > total/3 && got(b) > total/3 })
	px.cut()
	waitCond(t, "resume after the cut", 10*time.Second, func() bool { return a.resumed.Load() >= 1 && b.resumed.Load() >= 1 })
	waitCond(t, "two thirds delivered", 20*time.Second, func() bool { return got(a) > 2*total/3 && got(b) > 2*total/3 })
	px.stall()
	waitCond(t, "both links time out", 10*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		select {
		case <-a.link.Done():
			return true
		default:
			return false
		}
	})
	px.cut() // unblocks the stalled pipes; the redial goes through anew
	waitCond(t, "resume after the stall", 10*time.Second, func() bool { return a.resumed.Load() >= 2 && b.resumed.Load() >= 2 })
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	waitCond(t, "everything delivered", 20*time.Second, func() bool { return got(a) == total && got(b) == total })
	for _, e := range []*sessEnd{a, b} {
		if _, err := e.received(); err != nil {
			t.Fatal(err)
		}
		if n := e.fresh.Load(); n != 1 { // the first link only
			t.Fatalf("node %d: %d fresh sessions, want 1", e.id, n)
		}
		st := e.cfg.Sessions.Stats()
		if st.Resumes < 2 || st.Fresh != 0 || st.Lost != 0 {
			t.Fatalf("node %d: stats %+v", e.id, st)
		}
		t.Logf("node %d: %+v", e.id, st)
	}
}

// TestSessionExpired: a session the owner gave up (its window ran out)
// is not resumed: the next link starts a fresh session at both ends and
// the frames of the old one are not delivered on it.
func TestSessionExpired(t *testing.T) {
	a, b, px := sessPair(t, 0)
	waitActive(t, a, b)
	var sa atomic.Uint64
	ctx := context.Background()
	if err := a.sender(ctx, 100, &sa); err != nil {
		t.Fatal(err)
	}
	waitCond(t, "100 delivered", 10*time.Second, func() bool { n, _ := b.received(); return n == 100 })
	px.stall() // nothing gets through any more
	s := a.cfg.Sessions.Session(2)
	for i := uint64(101); i <= 200; i++ {
		f := proto.Frame{Header: proto.Header{Opcode: opTest, Flags: proto.FlagCreate | proto.FlagDelete}, Body: binary.LittleEndian.AppendUint64(nil, i)}
		if err := s.Send(ctx, &f); err != nil {
			t.Fatal(err)
		}
	}
	waitCond(t, "a's link ends", 10*time.Second, func() bool { return !s.Active() })
	if !s.Expire() {
		t.Fatal("Expire of a session no link carries reported false")
	}
	if err := s.Send(ctx, &proto.Frame{Header: proto.Header{Opcode: opTest}, Body: make([]byte, 8)}); !errors.Is(err, ErrSessionLost) {
		t.Fatalf("Send on an expired session: %v, want ErrSessionLost", err)
	}
	px.cut()
	waitCond(t, "fresh sessions", 10*time.Second, func() bool { return a.fresh.Load() == 2 && b.fresh.Load() == 2 })
	if a.resumed.Load() != 0 || b.resumed.Load() != 0 {
		t.Fatal("an expired session resumed")
	}
	if n, _ := b.received(); n != 100 {
		t.Fatalf("b received %d frames, want the 100 before the stall", n)
	}
	if st := a.cfg.Sessions.Stats(); st.Lost != 1 || st.Fresh != 1 {
		t.Fatalf("a: %+v", st)
	}
}

// TestSessionOverflow: more than the replay budget sent while
// disconnected gives the session up (ErrSessionLost), and the next link
// is fresh.
func TestSessionOverflow(t *testing.T) {
	const budget = 64 << 10
	a, b, px := sessPair(t, budget)
	waitActive(t, a, b)
	s := a.cfg.Sessions.Session(2)
	px.stall()
	waitCond(t, "a's link ends", 10*time.Second, func() bool { return !s.Active() })
	ctx := context.Background()
	var err error
	sent := 0
	for sent = 0; sent < 10*budget && err == nil; sent += 1024 {
		f := proto.Frame{Header: proto.Header{Opcode: opTest, Flags: proto.FlagCreate | proto.FlagDelete}, Body: make([]byte, 1024)}
		err = s.Send(ctx, &f)
	}
	if !errors.Is(err, ErrSessionLost) || sent > budget+2048 {
		t.Fatalf("after %d bytes while disconnected: %v, want ErrSessionLost at the %d byte budget", sent, err, budget)
	}
	if s.Resumable() {
		t.Fatal("an overflowed session is still resumable")
	}
	px.cut()
	waitCond(t, "fresh sessions", 10*time.Second, func() bool { return a.fresh.Load() == 2 && b.fresh.Load() == 2 })
	if a.resumed.Load() != 0 || b.resumed.Load() != 0 {
		t.Fatal("an overflowed session resumed")
	}
}

// TestSessionNoStore: an end without a Sessions store offers none; the
// link works unsequenced, as before sessions.
func TestSessionNoStore(t *testing.T) {
	a := newSessEnd(t, 1, 2, 0)
	b := newSessEnd(t, 2, 1, 0)
	b.cfg.Sessions = nil
	c, s := pair(t, a.cfg, b.cfg, proto.ReasonJoin)
	if c.err != nil || s.err != nil {
		t.Fatal(c.err, s.err)
	}
	defer a.close()
	defer b.close()
	a.serve(c.link)
	b.serve(s.link)
	for i := uint64(1); i <= 10; i++ {
		f := proto.Frame{Header: proto.Header{Opcode: opTest, Flags: proto.FlagCreate | proto.FlagDelete}, Body: binary.LittleEndian.AppendUint64(nil, i)}
		if err := c.link.Send(context.Background(), &f); err != nil {
			t.Fatal(err)
		}
	}
	waitCond(t, "10 delivered", 10*time.Second, func() bool { n, _ := b.received(); return n == 10 })
	if s.link.Session() != nil || a.fresh.Load() != 1 {
		t.Fatalf("session of a storeless end %v, fresh %d", s.link.Session(), a.fresh.Load())
	}
	if c.link.ses.state.Load() != lsUnsequenced {
		t.Fatal("link with a storeless end is sequenced")
	}
}

// TestSessionResumeTime measures, over CORRAL_BENCH_RESUME=N resets of a
// link under a stream, the time from the new connection's handshake to
// the first resent frame delivered, and from the reset to it.
func TestSessionResumeTime(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CORRAL_BENCH_RESUME"))
	if n <= 0 {
		t.Skip("set CORRAL_BENCH_RESUME=N to measure N resets")
	}
	a, b, px := sessPair(t, 0)
	b.firsts = make(chan [2]time.Time, 4)
	waitActive(t, a, b)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		s := a.cfg.Sessions.Session(2)
		body := make([]byte, 64)
		for i := uint64(1); ctx.Err() == nil; i++ {
			binary.LittleEndian.PutUint64(body, i)
			f := proto.Frame{Header: proto.Header{Opcode: opTest, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
			if err := s.Send(ctx, &f); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
			if got, _ := b.received(); i > got+2000 {
				time.Sleep(100 * time.Microsecond) // pace: a stream, not a flood into the replay buffer
			}
		}
		done <- nil
	}()
	<-b.firsts // the first link's
	var reconnect, total []time.Duration
	for range n {
		before, _ := b.received()
		waitCond(t, "frames in flight", 10*time.Second, func() bool { got, _ := b.received(); return got > before+100 })
		cut := time.Now()
		px.cut()
		for {
			select {
			case ts := <-b.firsts:
				if ts[0].Before(cut) {
					continue // a frame of the old link
				}
				reconnect = append(reconnect, ts[1].Sub(ts[0]))
				total = append(total, ts[1].Sub(cut))
			case err := <-done:
				t.Fatal(err)
			case <-time.After(10 * time.Second):
				t.Fatal("no frame after a reset")
			}
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := b.received(); err != nil {
		t.Fatal(err)
	}
	pct := func(ds []time.Duration, p int) time.Duration {
		ds = slices.Clone(ds)
		slices.SortFunc(ds, func(x, y time.Duration) int { return cmp.Compare(x, y) })
		return ds[min(len(ds)-1, len(ds)*p/100)]
	}
	st := a.cfg.Sessions.Stats()
	t.Logf("%d resets (resumes %d, fresh %d): handshake done -> first resent frame delivered p50 %v p99 %v; reset -> first frame p50 %v p99 %v",
		n, st.Resumes, st.Fresh, pct(reconnect, 50), pct(reconnect, 99), pct(total, 50), pct(total, 99))
	if st.Fresh != 0 || st.Lost != 0 {
		t.Fatalf("a session did not resume: %+v", st)
	}
}

// A call in flight when its link is cut completes when the session
// resumes: the reply, sent on the ended link by a handler still at work,
// goes in the session and reaches the caller on the new link. A call
// whose session is given up instead (the owner's window ran out) fails
// with ErrSessionLost.
func TestSessionCallResumes(t *testing.T) {
	a, b := newSessEnd(t, 1, 2, 0), newSessEnd(t, 2, 1, 0)
	release := make(chan struct{})
	served := make(chan *Link, 4)
	b.handler = func(l *Link, f *proto.Frame) error {
		if f.Opcode != opTest || f.Flags&proto.FlagReply != 0 {
			return nil
		}
		served <- l
		go func() {
			<-release
			l.Reply(context.Background(), f, append([]byte("re: "), f.Body...))
		}()
		return nil
	}
	a.handler = func(*Link, *proto.Frame) error { return nil }
	px := sessPairWith(t, a, b)
	waitActive(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		f   *proto.Frame
		err error
	}
	call := func(body string) chan result {
		a.mu.Lock()
		l := a.link
		a.mu.Unlock()
		done := make(chan result, 1)
		go func() {
			f, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: opTest}, Body: []byte(body)})
			done <- result{f, err}
		}()
		return done
	}
	done := call("q")
	var first *Link
	select {
	case first = <-served:
	case <-ctx.Done():
		t.Fatal("the request never reached b")
	}
	px.cut()
	<-first.Done()
	waitCond(t, "resume after the cut", 10*time.Second, func() bool { return a.resumed.Load() >= 1 && b.resumed.Load() >= 1 })
	select {
	case r := <-done:
		t.Fatalf("the call ended before its reply: %v %v", r.f, r.err)
	default:
	}
	close(release) // b replies on the link that ended
	if r := <-done; r.err != nil || string(r.f.Body) != "re: q" {
		t.Fatalf("call across a resume: %v %v", r.f, r.err)
	}

	waitActive(t, a, b)
	release = make(chan struct{}) // b holds this one's reply
	done = call("q2")
	<-served
	px.stall()
	s := a.cfg.Sessions.Session(2)
	waitCond(t, "a's link ends", 10*time.Second, func() bool { return !s.Active() })
	s.Expire()
	select {
	case r := <-done:
		if !errors.Is(r.err, ErrSessionLost) {
			t.Fatalf("call of a session given up: %v %v, want ErrSessionLost", r.f, r.err)
		}
	case <-ctx.Done():
		t.Fatal("the call of a session given up never ended")
	}
	close(release)
	px.cut()
}
