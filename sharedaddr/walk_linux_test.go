package sharedaddr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
)

// walkStack returns a stack for the walk tests: a fresh network namespace
// when the test runs as root (so it holds only the test's sockets), the
// process's own otherwise.
func walkStack(t *testing.T) (st *Stack, fresh bool) {
	t.Helper()
	if os.Geteuid() == 0 {
		lab := netlab.New(t, 1)
		st, err := Open("/var/run/netns/"+lab.Namespace(1), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st, true
	}
	t.Log("not root: walking the process's own network namespace")
	st, err := Current(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return st, false
}

func walkAll(ctx context.Context, t *testing.T, st *Stack) []TCPInfo {
	t.Helper()
	var out []TCPInfo
	if err := st.WalkTCP(ctx, func(ti TCPInfo) bool { out = append(out, ti); return true }, nil); err != nil {
		t.Fatal(err)
	}
	return out
}

func find(infos []TCPInfo, state TCPState, local, remote netip.AddrPort) bool {
	return slices.ContainsFunc(infos, func(ti TCPInfo) bool {
		return ti.State == state && ti.Local == local && ti.Remote == remote
	})
}

func tcpAP(a net.Addr) netip.AddrPort { return addrPort(a) }

// TestWalkTCP makes a listener, an established connection and one in
// TIME_WAIT, and waits (with a deadline) for the walk to report all three.
// As root, in a fresh namespace, it also captures the sock_diag datagrams
// with -rewrite, after checking them against the sockets it made.
func TestWalkTCP(t *testing.T) {
	st, fresh := walkStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addr := "127.0.0.100:0"
	if fresh {
		addr = "127.0.0.100:8080" // the namespace is ours: fixed ports keep captures alike
	}
	ln, err := st.Listen(ctx, "tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lnAddr := tcpAP(ln.Addr())

	dialAccept := func() (net.Conn, net.Conn) {
		c, err := st.DialFrom(ctx, "tcp4", netip.MustParseAddr("127.0.0.1"), lnAddr.String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		return c, s
	}
	est, estS := dialAccept()
	defer est.Close()
	defer estS.Close()
	tw, twS := dialAccept()
	// tw closes first; once the server end closes too, tw's end enters
	// TIME_WAIT.
	tw.Close()
	if _, err := twS.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after peer close: %v", err)
	}
	twS.Close()

	want := []struct {
		state         TCPState
		local, remote netip.AddrPort
	}{
		{StateListen, lnAddr, netip.AddrPortFrom(netip.IPv4Unspecified(), 0)},
		{StateEstablished, tcpAP(est.LocalAddr()), tcpAP(est.RemoteAddr())},
		{StateEstablished, tcpAP(estS.LocalAddr()), tcpAP(estS.RemoteAddr())},
		{StateTimeWait, tcpAP(tw.LocalAddr()), tcpAP(tw.RemoteAddr())},
	}
	if fresh {
		// An IPv6 listener too, so the captures hold a 16-byte address.
		ln6, err := st.Listen(ctx, "tcp6", "[::1]:8081")
		if err != nil {
			t.Fatal(err)
		}
		defer ln6.Close()
		want = append(want, struct {
			state         TCPState
			local, remote netip.AddrPort
		}{StateListen, tcpAP(ln6.Addr()), netip.AddrPortFrom(netip.IPv6Unspecified(), 0)})
	}
	missing := func(infos []TCPInfo) string {
		for _, w := range want {
			if !find(infos, w.state, w.local, w.remote) {
				return fmt.Sprintf("%s %s %s", w.state, w.local, w.remote)
			}
		}
		return ""
	}
	var infos []TCPInfo
	deadline := time.Now().Add(10 * time.Second)
	for {
		infos = walkAll(ctx, t, st)
		missing := missing(infos)
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the walk never reported %s; it saw %v", missing, infos)
		}
		time.Sleep(10 * time.Millisecond) // poll the condition until the deadline
	}
	for _, ti := range infos {
		if ti.Stack != st.ID() || ti.Version != TCPInfoV1 {
			t.Fatalf("%v: stack %d version %d, want %d and %d", ti, ti.Stack, ti.Version, st.ID(), TCPInfoV1)
		}
	}
	if fresh {
		// Only the test's sockets live in the fresh namespace (the server
		// end of the closed one may still be in LAST_ACK).
		for _, ti := range infos {
			if ti.Local.Port() != lnAddr.Port() && ti.Remote.Port() != lnAddr.Port() && ti.Local.Port() != 8081 {
				t.Errorf("a socket the test did not make: %v", ti)
			}
		}
	}

	// The walk stops when fn says so.
	calls := 0
	if err := st.WalkTCP(ctx, func(TCPInfo) bool { calls++; return false }, nil); err != nil || calls != 1 {
		t.Fatalf("stopping walk: %d calls, %v; want 1 call", calls, err)
	}
	// By stack id, and over all stacks, the listener is found too.
	for _, id := range []StackID{st.ID(), AllStacks} {
		found := false
		err := WalkTCP(ctx, id, func(ti TCPInfo) bool {
			found = ti.Stack == st.ID() && ti.State == StateListen && ti.Local == lnAddr
			return !found
		}, nil)
		if err != nil || !found {
			t.Fatalf("WalkTCP(%d): found %v, %v", id, found, err)
		}
	}

	if *rewrite && fresh {
		capture(ctx, t, st, want[0].local, missing)
	} else if *rewrite {
		t.Log("-rewrite: captures need root; kept the old ones")
	}
}

// capture walks once more with the tap on and writes each datagram as a
// golden vector, after checking that the decoder finds in it the sockets
// the test made.
func capture(ctx context.Context, t *testing.T, st *Stack, ln netip.AddrPort, missing func([]TCPInfo) string) {
	type dg struct {
		seq  uint32
		data []byte
	}
	var dgs []dg
	st.tap = func(seq uint32, b []byte) { dgs = append(dgs, dg{seq, b}) }
	defer func() { st.tap = nil }()
	infos := walkAll(ctx, t, st)
	if m := missing(infos); m != "" {
		t.Fatalf("capture: the walk did not report %s", m)
	}
	// The walk dumps AF_INET, then AF_INET6; each dump ends with NLMSG_DONE.
	fam := "v4"
	count := map[string]int{}
	sockets := 0
	for _, d := range dgs {
		msgs, done, err := decodeDiag(d.data, d.seq)
		if err != nil {
			t.Fatalf("capture: %v", err)
		}
		sockets += len(msgs)
		count[fam]++
		name := fmt.Sprintf("capture_%s_%d", fam, count[fam])
		comment := []string{
			fmt.Sprintf("Datagram %d of a live walk of a fresh network namespace, captured by TestWalkTCP -rewrite:", count[fam]),
			fmt.Sprintf("the reply to an %s TCP dump of every state, with a listener on %s,", map[string]string{"v4": "AF_INET", "v6": "AF_INET6"}[fam], ln),
			"two ends of an established connection, a TIME_WAIT one and a listener on [::1]:8081 (little-endian host).",
		}
		checkVector(t, name, vectorText(comment, d.data, d.seq))
		if done {
			fam = "v6"
		}
	}
	if sockets != len(infos) {
		t.Fatalf("capture: %d sockets in the datagrams, the walk reported %d", sockets, len(infos))
	}
}
