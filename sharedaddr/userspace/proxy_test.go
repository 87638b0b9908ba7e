package userspace

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/kernel"
)

// backend is node id's server behind a Listener: it greets with
// "ID REMOTE LOCAL\n", echoes lines until EOF, then says "bye\n" and
// closes, so a half-close is seen to pass both ways.
func backend(t *testing.T, id int) netip.AddrPort {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveBackend(t, ln, id)
}

func serveBackend(t *testing.T, ln net.Listener, id int) netip.AddrPort {
	pl := NewListener(ln)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := pl.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				fmt.Fprintf(c, "%d %s %s\n", id, c.RemoteAddr(), c.LocalAddr())
				r := bufio.NewReader(c)
				for {
					s, err := r.ReadString('\n')
					if err != nil {
						break
					}
					c.Write([]byte(s))
				}
				c.Write([]byte("bye\n"))
			})
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

type rig struct {
	t      *testing.T
	p      *Proxy
	addr   string
	table  Table
	done   chan error
	cancel context.CancelFunc
	once   sync.Once // stop runs once: a test's own call, then the cleanup's
}

func newRig(t *testing.T, backends map[uint64]netip.AddrPort) *rig {
	tab := Table{Policy: ctl.Weighted, Backends: backends,
		Buckets: ctl.Build([]ctl.Weight{{Node: 1, Weight: 1}, {Node: 2, Weight: 1}, {Node: 3, Weight: 1}}, 251)}
	p, err := New(Config{Table: tab})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, p: p, addr: ln.Addr().String(), table: tab, done: make(chan error, 1), cancel: cancel}
	go func() { r.done <- p.Serve(ctx, ln) }()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends Serve and checks it returned nil, within a deadline.
func (r *rig) stop() {
	r.once.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			r.t.Fatal("Serve did not return after cancel")
		}
	})
}

type session struct {
	c          *net.TCPConn
	r          *bufio.Reader
	node       int
	remote, to string
}

func (r *rig) dial() (*session, error) {
	c, err := net.DialTimeout("tcp4", r.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return greet(c)
}

func greet(c net.Conn) (*session, error) {
	c.SetDeadline(time.Now().Add(10 * time.Second))
	s := &session{c: c.(*net.TCPConn), r: bufio.NewReader(c)}
	line, err := s.r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	f := strings.Fields(line)
	if len(f) != 3 {
		c.Close()
		return nil, fmt.Errorf("greeting %q", line)
	}
	s.node, _ = strconv.Atoi(f[0])
	s.remote, s.to = f[1], f[2]
	return s, nil
}

func (r *rig) predict(s *session) int {
	ap := s.c.LocalAddr().(*net.TCPAddr).AddrPort()
	return int(r.table.Buckets[kernel.Bucket(ctl.Weighted, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), 251)])
}

// exchange pings, half-closes and expects the backend's "bye" and EOF.
func (s *session) exchange(msg string) error {
	if _, err := s.c.Write([]byte(msg + "\n")); err != nil {
		return err
	}
	if got, err := s.r.ReadString('\n'); err != nil || got != msg+"\n" {
		return fmt.Errorf("echo %q, %v", got, err)
	}
	if err := s.c.CloseWrite(); err != nil {
		return err
	}
	if got, err := s.r.ReadString('\n'); err != nil || got != "bye\n" {
		return fmt.Errorf("after half-close: %q, %v", got, err)
	}
	if _, err := s.r.ReadByte(); err != io.EOF {
		return fmt.Errorf("after bye: %v, want EOF", err)
	}
	return nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestProxy: many concurrent connections, each at the node kernel.Bucket
// picks, the backend sees the client's address and the proxy's, data
// goes both ways and half-closes pass through.
func TestProxy(t *testing.T) {
	r := newRig(t, map[uint64]netip.AddrPort{1: backend(t, 1), 2: backend(t, 2), 3: backend(t, 3)})
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	var mu sync.Mutex // guards per
	per := map[int]int{}
	for i := range n {
		wg.Go(func() {
			s, err := r.dial()
			if err != nil {
				errs <- err
				return
			}
			defer s.c.Close()
			if want := r.predict(s); s.node != want {
				errs <- fmt.Errorf("%v at node %d, kernel.Bucket says %d", s.c.LocalAddr(), s.node, want)
			}
			if s.remote != s.c.LocalAddr().String() || s.to != r.addr {
				errs <- fmt.Errorf("backend saw %s → %s, want %s → %s", s.remote, s.to, s.c.LocalAddr(), r.addr)
			}
			if err := s.exchange(strings.Repeat("x", i*37)); err != nil {
				errs <- err
			}
			mu.Lock()
			per[s.node]++
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(per) != 3 {
		t.Errorf("connections per node %v: not every node served", per)
	}
	waitFor(t, "no active relays", func() bool { return r.p.Stats().Active == 0 })
	st := r.p.Stats()
	var want uint64
	for i := range n {
		want += uint64(i*37 + 1)
	}
	if st.Accepted != n || st.DialFailed != 0 || st.Aborted != 0 || st.BytesUp != want {
		t.Errorf("stats %+v, want %d accepted, %d bytes up, no failures", st, n, want)
	}
}

// TestBackendDown: clients whose node is down are closed at once; the
// others are served, before and after.
func TestBackendDown(t *testing.T) {
	dead, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().(*net.TCPAddr).AddrPort()
	dead.Close() // nothing listens there now: connection refused
	r := newRig(t, map[uint64]netip.AddrPort{1: backend(t, 1), 2: deadAddr, 3: backend(t, 3)})
	ok, failed := 0, 0
	for i := range 60 {
		s, err := r.dial()
		if err != nil {
			failed++ // the proxy closed it: node 2's
			continue
		}
		if err := s.exchange(fmt.Sprint("m", i)); err != nil {
			t.Errorf("a live node's connection: %v", err)
		}
		s.c.Close()
		ok++
	}
	if ok == 0 || failed == 0 {
		t.Fatalf("%d served, %d closed: want both", ok, failed)
	}
	if st := r.p.Stats(); st.DialFailed != uint64(failed) {
		t.Errorf("DialFailed %d, want %d", st.DialFailed, failed)
	}
}

// TestShutdown: cancelling Serve closes relayed connections and returns.
func TestShutdown(t *testing.T) {
	r := newRig(t, map[uint64]netip.AddrPort{1: backend(t, 1), 2: backend(t, 2), 3: backend(t, 3)})
	s, err := r.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer s.c.Close()
	r.stop()
	if _, err := s.r.ReadString('\n'); err == nil {
		t.Fatal("relayed connection still open after shutdown")
	}
	if _, err := net.DialTimeout("tcp4", r.addr, time.Second); err == nil {
		t.Error("proxy still accepting after shutdown")
	}
	if st := r.p.Stats(); st.Active != 0 {
		t.Errorf("Active %d after shutdown", st.Active)
	}
}

// TestListenerBadHeader: a connection without a header is closed with
// ErrNoHeader, and the listener goes on.
func TestListenerBadHeader(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pl := NewListener(ln)
	pl.HeaderTimeout = 2 * time.Second
	for _, in := range []string{"GET / HTTP/1.0\r\n\r\n", ""} {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(in))
		if in == "" {
			c.(*net.TCPConn).CloseWrite()
		}
		a, err := pl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		_, err = a.Read(make([]byte, 1))
		if !errors.Is(err, ErrNoHeader) {
			t.Errorf("%q: Read %v, want ErrNoHeader", in, err)
		}
		if a.RemoteAddr().String() != c.LocalAddr().String() {
			t.Errorf("%q: RemoteAddr %v, want the peer's own %v", in, a.RemoteAddr(), c.LocalAddr())
		}
		c.Close()
		a.Close()
	}
}

func TestNewRefusesBadTable(t *testing.T) {
	for _, tab := range []Table{{}, {Buckets: []uint64{1}}, {Buckets: []uint64{1}, Policy: 9,
		Backends: map[uint64]netip.AddrPort{1: netip.MustParseAddrPort("127.0.0.1:1")}}} {
		if _, err := New(Config{Table: tab}); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: %v, want ErrConfig", tab, err)
		}
	}
}

// Drain closes the listener at once (a new connection is refused) and
// lets the relayed connection go on to its own end; only then does Serve
// return, with nil.
func TestProxyDrainLetsRelaysFinish(t *testing.T) {
	be := backend(t, 1)
	r := newRig(t, map[uint64]netip.AddrPort{1: be, 2: be, 3: be})
	s, err := r.dial()
	if err != nil {
		t.Fatal(err)
	}
	defer s.c.Close()
	r.p.Drain()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp4", r.addr, time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the proxy still accepts after Drain")
		}
	}
	select {
	case err := <-r.done:
		t.Fatalf("Serve returned (%v) with a connection still relayed", err)
	default:
	}
	if _, err := s.c.Write([]byte("after drain\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.r.ReadString('\n'); err != nil || got != "after drain\n" {
		t.Fatalf("echo after Drain: %q, %v", got, err)
	}
	s.c.CloseWrite()
	if got, err := s.r.ReadString('\n'); err != nil || got != "bye\n" {
		t.Fatalf("end after Drain: %q, %v", got, err)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Serve after Drain: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return once the drained relay ended")
	}
	r.once.Do(func() {}) // Serve returned: the cleanup has nothing to stop
	r.cancel()
}
