package sharedaddr_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/sharedaddrtest"
)

// The tests run in the process's own stack: 127.0.0.0/8 is all local on
// lo, so 127.0.0.100 serves as the shared address and 127.0.0.1 as one
// that is not shared, with no setup.
var (
	sharedIP = netip.MustParseAddr("127.0.0.100")
	plainIP  = netip.MustParseAddr("127.0.0.1")
)

func setup(t *testing.T) (*sharedaddr.Stack, *sharedaddrtest.Recorder, context.Context) {
	t.Helper()
	rec := sharedaddrtest.New(sharedIP)
	st, err := sharedaddr.Current(rec, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return st, rec, ctx
}

func ap(c net.Conn) (local, remote string) {
	return c.LocalAddr().String(), c.RemoteAddr().String()
}

func wantEvents(t *testing.T, rec *sharedaddrtest.Recorder, want ...string) {
	t.Helper()
	if got := rec.Strings(); !slices.Equal(got, want) {
		t.Fatalf("hook calls:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func checkContract(t *testing.T, rec *sharedaddrtest.Recorder) {
	t.Helper()
	if err := rec.Check(true); err != nil {
		t.Fatalf("hook contract: %v", err)
	}
}

// accept returns the next connection of ln or fails the test.
func accept(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		return r.c
	case <-time.After(10 * time.Second):
		t.Fatal("accept: nothing within 10s")
		return nil
	}
}

func TestNilHooksIsPlainNet(t *testing.T) {
	st, err := sharedaddr.Current(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ln, err := st.Listen(ctx, "tcp", "127.0.0.100:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, ok := ln.(*net.TCPListener); !ok {
		t.Errorf("Listen with nil hooks returned %T, want *net.TCPListener", ln)
	}
	c, err := st.DialFrom(ctx, "tcp", sharedIP, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, ok := c.(*net.TCPConn); !ok {
		t.Errorf("Dial with nil hooks returned %T, want *net.TCPConn", c)
	}
	pc, err := st.ListenPacket(ctx, "udp", "127.0.0.100:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if _, ok := pc.(*net.UDPConn); !ok {
		t.Errorf("ListenPacket with nil hooks returned %T, want *net.UDPConn", pc)
	}
}

// A listener on a shared address: Listen, then Connect(in) per accepted
// connection, Disconnect once at its Close, Unlisten at the listener's.
func TestListenSharedContract(t *testing.T) {
	st, rec, ctx := setup(t)
	ln, err := st.Listen(ctx, "tcp", "127.0.0.100:0")
	if err != nil {
		t.Fatal(err)
	}
	laddr := ln.Addr().String()
	wantEvents(t, rec, "listen tcp "+laddr)

	// The client leaves from 127.0.0.1, not shared: its side calls nothing.
	c, err := st.DialFrom(ctx, "tcp", plainIP, laddr)
	if err != nil {
		t.Fatal(err)
	}
	s := accept(t, ln)
	cl, cr := ap(c)
	if sl, sr := ap(s); sl != cr || sr != cl {
		t.Fatalf("server sees %s<-%s, client %s->%s", sl, sr, cl, cr)
	}
	wantEvents(t, rec, "listen tcp "+laddr, "connect tcp in "+laddr+" "+cl)

	// The client closes first, so the server's end sees EOF and does not
	// linger in TIME_WAIT.
	c.Close()
	if _, err := s.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("server read after client close: %v, want EOF", err)
	}
	s.Close()
	s.Close() // a second Close calls no second Disconnect
	ln.Close()
	ln.Close()
	wantEvents(t, rec, "listen tcp "+laddr, "connect tcp in "+laddr+" "+cl,
		"disconnect tcp "+laddr+" "+cl, "unlisten tcp "+laddr)
	checkContract(t, rec)
}

// A listener on the unspecified address calls Listen (it serves the
// shared addresses too) but Connect only for connections to a shared one.
func TestListenUnspecified(t *testing.T) {
	st, rec, ctx := setup(t)
	ln, err := st.Listen(ctx, "tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	laddr := netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(port)).String()

	toPlain, err := st.Dial(ctx, "tcp", netip.AddrPortFrom(plainIP, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	s1 := accept(t, ln)
	if _, ok := s1.(*net.TCPConn); !ok {
		t.Errorf("connection to a plain address: Accept returned %T, want the plain *net.TCPConn", s1)
	}
	toShared, err := st.Dial(ctx, "tcp", netip.AddrPortFrom(sharedIP, uint16(port)).String())
	if err != nil {
		t.Fatal(err)
	}
	s2 := accept(t, ln)
	sl, sr := ap(s2)
	// s2 closes first: its tuple lingers in TIME_WAIT, and the hook says so.
	s2.Close()
	for _, c := range []net.Conn{toPlain, toShared, s1} {
		c.Close()
	}
	ln.Close()
	wantEvents(t, rec, "listen tcp "+laddr, "connect tcp in "+sl+" "+sr,
		"disconnect tcp "+sl+" "+sr+" time-wait", "unlisten tcp "+laddr)
	checkContract(t, rec)
}

// A refused incoming connection is closed and Accept waits for the next.
func TestInboundRefused(t *testing.T) {
	st, rec, ctx := setup(t)
	ln, err := st.Listen(ctx, "tcp", "127.0.0.100:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var refused netip.AddrPort
	first, err := st.DialFrom(ctx, "tcp", plainIP, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	refused = first.LocalAddr().(*net.TCPAddr).AddrPort()
	rec.Refuse(func(e sharedaddrtest.Event) bool { return !e.Outgoing && e.Remote == refused })
	second, err := st.DialFrom(ctx, "tcp", plainIP, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	s := accept(t, ln)
	defer s.Close()
	if got, want := s.RemoteAddr().String(), second.LocalAddr().String(); got != want {
		t.Fatalf("Accept returned the connection from %s, want %s (the first was refused)", got, want)
	}
	// The refused one was closed by the server: the client reads EOF or a reset.
	first.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := first.Read(make([]byte, 1)); err == nil || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Fatalf("refused connection: client read %v, want EOF or reset", err)
	}
	if err := rec.Check(false); err != nil {
		t.Fatal(err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// An outgoing connection from a shared address binds a port of the
// node's slice, skipping one already bound, and calls Connect(out) before
// connect(2); Close calls Disconnect once, with TIME_WAIT since this end
// closed first.
func TestDialFromSharedPortSlice(t *testing.T) {
	st, rec, ctx := setup(t)
	srv, err := st.Listen(ctx, "tcp", "127.0.0.1:0") // not shared: no hooks
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	// A slice of four ports whose first is taken by another socket.
	busy, err := net.Listen("tcp", "127.0.0.100:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	lo := uint16(busy.Addr().(*net.TCPAddr).Port)
	rec.Ports(lo, lo+3)

	c, err := st.DialFrom(ctx, "tcp", sharedIP, srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := accept(t, srv)
	cl, cr := ap(c)
	port := c.LocalAddr().(*net.TCPAddr).Port
	if port < int(lo)+1 || port > int(lo)+3 {
		t.Fatalf("source port %d, want one of %d-%d", port, lo+1, lo+3)
	}
	if got := s.RemoteAddr().String(); got != cl {
		t.Fatalf("server sees the client as %s, want %s", got, cl)
	}
	c.Close()
	c.Close()
	s.Close()
	wantEvents(t, rec, "connect tcp out "+cl+" "+cr, "disconnect tcp "+cl+" "+cr+" time-wait")
	checkContract(t, rec)
}

// A refused outgoing connection fails with ErrRefused and calls no
// Disconnect; one whose connect(2) fails after Connect calls Disconnect.
func TestDialRefusedAndFailed(t *testing.T) {
	st, rec, ctx := setup(t)
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec.Refuse(func(e sharedaddrtest.Event) bool { return e.Outgoing })
	_, err = st.DialFrom(ctx, "tcp", sharedIP, srv.Addr().String())
	if !errors.Is(err, sharedaddr.ErrRefused) {
		t.Fatalf("refused dial: %v, want ErrRefused", err)
	}
	evs := rec.Events()
	if len(evs) != 1 || evs[0].Hook != "Connect" || evs[0].Err == nil {
		t.Fatalf("refused dial: hook calls %v, want one refused Connect", rec.Strings())
	}

	// No SYN left: the first connection the server accepts is the next,
	// allowed one.
	rec.Refuse(nil)
	c, err := st.DialFrom(ctx, "tcp", sharedIP, srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := accept(t, srv)
	if got, want := s.RemoteAddr().String(), c.LocalAddr().String(); got != want {
		t.Fatalf("server accepted a connection from %s first, want %s: the refused dial sent a SYN", got, want)
	}
	c.Close()
	s.Close()

	// Now a port nobody listens on: the kernel refuses the SYN.
	addr := srv.Addr().String()
	srv.Close()
	_, err = st.DialFrom(ctx, "tcp", sharedIP, addr)
	if err == nil || errors.Is(err, sharedaddr.ErrRefused) {
		t.Fatalf("dial to a closed port: %v, want the kernel's refusal", err)
	}
	evs = rec.Events()
	if len(evs) != 5 || evs[3].Hook != "Connect" || evs[3].Err != nil || evs[4].Hook != "Disconnect" || evs[4].Local != evs[3].Local {
		t.Fatalf("failed dial: hook calls %v, want ... Connect, Disconnect of its flow", rec.Strings())
	}
	checkContract(t, rec)
}

// Nothing is called for sockets on an address that is not shared.
func TestNothingForPlainAddresses(t *testing.T) {
	st, rec, ctx := setup(t)
	ln, err := st.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := st.Dial(ctx, "tcp", ln.Addr().String()) // the routes pick 127.0.0.1
	if err != nil {
		t.Fatal(err)
	}
	s := accept(t, ln)
	pc, err := st.ListenPacket(ctx, "udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo([]byte("x"), pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	u, err := st.Dial(ctx, "udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []io.Closer{u, pc, s, c, ln} {
		x.Close()
	}
	wantEvents(t, rec)
	if rec.Queries() == 0 {
		t.Fatal("IsClusterWide was never asked: the wrappers did not look")
	}
}

// UDP: Bind and Unbind pair up; WriteTo registers each new destination
// once; a refused destination gets no datagram; Dial("udp") calls
// Connect and nothing at close.
func TestUDPContract(t *testing.T) {
	st, rec, ctx := setup(t)
	pc, err := st.ListenPacket(ctx, "udp", "127.0.0.100:0")
	if err != nil {
		t.Fatal(err)
	}
	laddr := pc.LocalAddr().String()
	a, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rec.Refuse(func(e sharedaddrtest.Event) bool { return e.Remote.String() == b.LocalAddr().String() })
	for range 2 {
		if _, err := pc.WriteTo([]byte("to a"), a.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pc.WriteTo([]byte("to b"), b.LocalAddr()); !errors.Is(err, sharedaddr.ErrRefused) {
		t.Fatalf("WriteTo a refused destination: %v, want ErrRefused", err)
	}
	// a got its datagrams from the shared address.
	buf := make([]byte, 16)
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := a.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "to a" || from.String() != laddr {
		t.Fatalf("a read %q from %v (%v), want \"to a\" from %s", buf[:n], from, err, laddr)
	}
	pc.Close()
	pc.Close()

	u, err := st.DialFrom(ctx, "udp", sharedIP, a.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	ul := u.LocalAddr().String()
	u.Close()
	aa, ba := a.LocalAddr().String(), b.LocalAddr().String()
	wantEvents(t, rec, "bind udp "+laddr, "connect udp out "+laddr+" "+aa,
		"connect udp out "+laddr+" "+ba+" refused: "+sharedaddrtest.ErrRefusedByTest.Error(),
		"unbind udp "+laddr, "connect udp out "+ul+" "+aa)
	checkContract(t, rec)
}

// The recorder's check catches the breaches it is there for.
func TestContractCheckFails(t *testing.T) {
	rec := sharedaddrtest.New(sharedIP)
	s := sharedaddr.StackID(1)
	l := netip.AddrPortFrom(sharedIP, 80)
	r := netip.AddrPortFrom(plainIP, 5000)
	rec.Connect(s, sharedaddr.ProtoTCP, false, l, r, nil) // before Listen
	rec.Disconnect(s, sharedaddr.ProtoTCP, l, r, nil)
	rec.Disconnect(s, sharedaddr.ProtoTCP, l, r, nil)                         // twice
	rec.Bind(s, sharedaddr.ProtoUDP, netip.AddrPortFrom(plainIP, 53), nil)    // not shared
	rec.Unbind(s, sharedaddr.ProtoUDP, netip.AddrPortFrom(sharedIP, 53), nil) // no Bind
	rec.Listen(s, sharedaddr.ProtoTCP, l, nil)                                // never Unlisten
	err := rec.Check(true)
	for _, want := range []string{"before any Listen", "second Disconnect", "not shared", "no Bind in force", "without Unlisten", "without Unbind"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check: %v; want it to report %q", err, want)
		}
	}
}
