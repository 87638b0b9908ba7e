package netlab_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
)

// checkMatrix dials every host from every other, in-process from inside
// the source host, and wants a connection exactly between neighbours. A
// non-neighbour must fail at once with "network is unreachable", not by a
// timeout: the lab has no route there, it does not merely drop.
func checkMatrix(t *testing.T, lab *netlab.Lab, neighbours func(a, b int) bool) {
	t.Helper()
	for b := 1; b <= lab.N(); b++ {
		ln, err := lab.Listen(b, "tcp4", net.JoinHostPort(lab.Addr(b), "7002"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go acceptAndClose(ln)
	}
	for a := 1; a <= lab.N(); a++ {
		for b := 1; b <= lab.N(); b++ {
			if a == b {
				continue
			}
			ok, err := dialOnce(lab, a, net.JoinHostPort(lab.Addr(b), "7002"), 3*time.Second)
			want := neighbours(a, b)
			switch {
			case want && !ok:
				t.Errorf("host %d does not reach neighbour %d: %v", a, b, err)
			case !want && ok:
				t.Errorf("host %d reaches non-neighbour %d", a, b)
			case !want && !errors.Is(err, syscall.ENETUNREACH):
				t.Errorf("host %d to non-neighbour %d: %v; want network is unreachable", a, b, err)
			}
		}
	}
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

func dialOnce(lab *netlab.Lab, from int, addr string, timeout time.Duration) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := lab.Dial(ctx, from, "tcp4", addr)
	if err != nil {
		return false, err
	}
	c.Close()
	return true, nil
}

func TestLineReachability(t *testing.T) {
	lab := netlab.Line(t, 5)
	checkMatrix(t, lab, func(a, b int) bool { return a-b == 1 || b-a == 1 })
	if got := lab.Neighbours(3); len(got) != 2 || got[0] != 2 || got[1] != 4 {
		t.Errorf("Neighbours(3) = %v; want [2 4]", got)
	}
	if got := lab.Neighbours(5); len(got) != 1 || got[0] != 4 {
		t.Errorf("Neighbours(5) = %v; want [4]", got)
	}
}

func TestRingReachability(t *testing.T) {
	lab := netlab.Ring(t, 5)
	checkMatrix(t, lab, func(a, b int) bool { d := (a - b + 5) % 5; return d == 1 || d == 4 })
}

// TestAddressesGraph checks where a graph lab puts its addresses: the node
// address on lo, one edge address per edge on eth0, and no default route.
func TestAddressesGraph(t *testing.T) {
	lab := netlab.Line(t, 3)
	out, err := lab.Command(2, "ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	s := string(out)
	for _, want := range []string{
		" lo    inet 10.251.0.2/32 ",
		"eth0    inet " + lab.EdgeAddr(2, 1) + "/30 ",
		"eth0    inet " + lab.EdgeAddr(2, 3) + "/30 ",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("host 2 addresses:\n%s\nwant a line with %q", s, want)
		}
	}
	if lab.EdgeAddr(1, 2) != "10.252.0.1" || lab.EdgeAddr(2, 1) != "10.252.0.2" || lab.EdgeAddr(3, 2) != "10.252.0.6" {
		t.Errorf("edge addresses %s %s %s", lab.EdgeAddr(1, 2), lab.EdgeAddr(2, 1), lab.EdgeAddr(3, 2))
	}
	for file, want := range map[string]string{"ip_forward": "0", "conf/all/arp_ignore": "1", "conf/all/arp_announce": "2"} {
		out, err := lab.Command(2, "cat", "/proc/sys/net/ipv4/"+file).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("host 2 %s = %q %v; want %s", file, out, err, want)
		}
	}
	out, err = lab.Command(2, "ip", "-4", "route", "show", "default").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("host 2 default route: %q %v; want none", out, err)
	}
}

// pair is one TCP connection between two hosts of a lab, both ends held by
// the test.
type pair struct{ a, b net.Conn }

func connect(t *testing.T, lab *netlab.Lab, a, b int, port string) pair {
	t.Helper()
	ln, err := lab.Listen(b, "tcp4", net.JoinHostPort(lab.Addr(b), port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := lab.Dial(ctx, a, "tcp4", net.JoinHostPort(lab.Addr(b), port))
	if err != nil {
		t.Fatal(err)
	}
	cb, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ca.Close(); cb.Close() })
	return pair{ca, cb}
}

// send writes one byte on from and wants it on to within d.
func send(t *testing.T, from, to net.Conn, c byte, d time.Duration) {
	t.Helper()
	if _, err := from.Write([]byte{c}); err != nil {
		t.Fatalf("write %q: %v", c, err)
	}
	recv(t, to, c, d)
}

func recv(t *testing.T, to net.Conn, c byte, d time.Duration) {
	t.Helper()
	to.SetReadDeadline(time.Now().Add(d))
	var buf [1]byte
	if _, err := io.ReadFull(to, buf[:]); err != nil {
		t.Fatalf("read, want %q: %v", c, err)
	}
	if buf[0] != c {
		t.Fatalf("read %q, want %q", buf[0], c)
	}
}

// stalled wants no byte on c for d: the read times out, with no error of
// the connection.
func stalled(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	var buf [1]byte
	n, err := c.Read(buf[:])
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read during a cut: %d bytes, %v; want a timeout", n, err)
	}
}

// TestCutEdgeStallsAndResumes checks that a cut is silent: the connection
// across it stalls in both directions with no error at either end, a new
// connection times out rather than failing, other edges carry on, and
// after RestoreEdge the same connection delivers what was written during
// the cut and carries on.
func TestCutEdgeStallsAndResumes(t *testing.T) {
	lab := netlab.Line(t, 3)
	p := connect(t, lab, 1, 2, "7003")
	q := connect(t, lab, 2, 3, "7004")
	send(t, p.a, p.b, 'a', 5*time.Second)
	send(t, p.b, p.a, 'b', 5*time.Second)

	lab.CutEdge(2, 1)
	if _, err := p.a.Write([]byte{'c'}); err != nil {
		t.Fatalf("write from 1 during the cut: %v", err)
	}
	if _, err := p.b.Write([]byte{'d'}); err != nil {
		t.Fatalf("write from 2 during the cut: %v", err)
	}
	stalled(t, p.b, time.Second)
	stalled(t, p.a, time.Second)
	start := time.Now()
	ok, err := dialOnce(lab, 1, net.JoinHostPort(lab.Addr(2), "7003"), time.Second)
	var ne net.Error
	if ok || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial across the cut: ok=%v after %v: %v; want a timeout", ok, time.Since(start), err)
	}
	send(t, q.a, q.b, 'e', 5*time.Second) // the edge 2-3 is not cut
	send(t, q.b, q.a, 'f', 5*time.Second)
	// Each end is still a healthy socket: more writes are taken.
	if _, err := p.a.Write([]byte{'g'}); err != nil {
		t.Fatalf("second write from 1 during the cut: %v", err)
	}

	lab.RestoreEdge(1, 2)
	start = time.Now()
	// Bounded by the retransmission timeout after ~3 s of losses (a few
	// seconds); 30 s leaves room on a loaded machine.
	recv(t, p.b, 'c', 30*time.Second)
	recv(t, p.b, 'g', 30*time.Second)
	recv(t, p.a, 'd', 30*time.Second)
	t.Logf("the connection resumed %v after RestoreEdge", time.Since(start).Round(time.Millisecond))
	send(t, p.a, p.b, 'h', 5*time.Second)
	send(t, p.b, p.a, 'i', 5*time.Second)
}

// TestResetEdge checks that ResetEdge ends a connection at both ends at
// once and leaves the edge up, and that after CutEdge it still ends both.
func TestResetEdge(t *testing.T) {
	if _, err := os.Stat("/usr/bin/ss"); err != nil {
		if _, err := os.Stat("/bin/ss"); err != nil {
			t.Skip("ss (iproute2) is not installed")
		}
	}
	lab := netlab.Line(t, 3)
	p := connect(t, lab, 1, 2, "7005")
	q := connect(t, lab, 2, 3, "7006")
	send(t, p.a, p.b, 'a', 5*time.Second)
	if n := lab.ResetEdge(1, 2); n < 1 {
		t.Fatalf("ResetEdge closed %d sockets; want at least 1 (does the kernel have SOCK_DESTROY?)", n)
	}
	broken(t, p.a, "host 1")
	broken(t, p.b, "host 2")
	send(t, q.a, q.b, 'b', 5*time.Second) // the edge 2-3 is not reset

	// The edge is up: a new connection works.
	p = connect(t, lab, 1, 2, "7007")
	send(t, p.a, p.b, 'c', 5*time.Second)

	// Cut, then reset: the reset reaches neither end over the wire, yet
	// both ends see their connection end.
	lab.CutEdge(1, 2)
	if n := lab.ResetEdge(1, 2); n != 2 {
		t.Errorf("ResetEdge of a cut edge closed %d sockets; want 2, one at each end", n)
	}
	broken(t, p.a, "host 1")
	broken(t, p.b, "host 2")
	lab.RestoreEdge(1, 2)
	p = connect(t, lab, 1, 2, "7008")
	send(t, p.b, p.a, 'd', 5*time.Second)
}

// broken wants c to fail at once with an abort or a reset.
func broken(t *testing.T, c net.Conn, who string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var buf [1]byte
	_, err := c.Read(buf[:])
	if !errors.Is(err, syscall.ECONNABORTED) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("%s: read after ResetEdge: %v; want ECONNABORTED or ECONNRESET", who, err)
	}
}

// TestPartitionGraph checks that Partition still splits a graph lab: edges
// inside a group carry on, edges across groups are gone.
func TestPartitionGraph(t *testing.T) {
	lab := netlab.Ring(t, 4)
	p := connect(t, lab, 1, 2, "7009")
	q := connect(t, lab, 2, 3, "7010")
	lab.Partition([]int{1, 2}, []int{3, 4})
	send(t, p.a, p.b, 'a', 5*time.Second)
	if _, err := q.a.Write([]byte{'b'}); err != nil {
		t.Fatal(err)
	}
	stalled(t, q.b, time.Second)
	lab.Heal()
	recv(t, q.b, 'b', 30*time.Second)
}

func TestNewGraphChecksEdges(t *testing.T) {
	for _, edges := range [][][2]int{{{1, 1}}, {{1, 2}, {2, 1}}, {{0, 1}}, {{1, 4}}} {
		ft := &fatalT{TB: t}
		func() {
			defer func() { recover() }()
			netlab.NewGraph(ft, 3, edges)
		}()
		if !strings.Contains(ft.msg, "NewGraph: edge") {
			t.Errorf("NewGraph(3, %v): %q; want an edge error", edges, ft.msg)
		}
	}
}

// fatalT records a Fatalf and stops the caller with a panic.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Helper() {}

func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = strings.TrimSpace(fmt.Sprintf(format, args...))
	panic(f)
}

// TestCutHostGraph checks what Cut does on a graph lab: the host loses its
// carrier, so every edge of it stalls (no error, dials time out) until
// Restore, and the connection across it then resumes.
func TestCutHostGraph(t *testing.T) {
	lab := netlab.Line(t, 3)
	p := connect(t, lab, 1, 2, "7011")
	q := connect(t, lab, 3, 2, "7012")
	lab.Cut(2)
	for _, c := range []net.Conn{p.a, q.a} {
		if _, err := c.Write([]byte{'x'}); err != nil {
			t.Fatalf("write to a cut host: %v", err)
		}
	}
	for _, from := range []int{1, 3} {
		ok, err := dialOnce(lab, from, net.JoinHostPort(lab.Addr(2), "7011"), time.Second)
		var ne net.Error
		if ok || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("dial %d -> 2 across Cut(2): ok=%v %v; want a timeout", from, ok, err)
		}
	}
	stalled(t, p.b, 500*time.Millisecond)
	lab.Restore(2)
	recv(t, p.b, 'x', 30*time.Second)
	recv(t, q.b, 'x', 30*time.Second)
}
