package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/addrsvc"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/userspace"
)

// --shared-userspace and --shared-iface exclude each other, with an error
// that names both; the value is "shared" or an IP address.
func TestConfigSharedUserspace(t *testing.T) {
	good := func() Config {
		c := Defaults()
		c.Name, c.DataDir = "n1", "/tmp/x"
		return c
	}
	c := good()
	c.SharedIface, c.SharedUserspace = "eth0", "shared"
	err := c.Validate()
	if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "shared-iface") || !strings.Contains(err.Error(), "shared-userspace") {
		t.Fatalf("both: Validate = %v, want ErrConfig naming both settings", err)
	}
	for _, v := range []string{"vip", "0.0.0.0", "10.0.0.1:80", "fe80::1%eth0"} {
		c := good()
		c.SharedUserspace = v
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%q: Validate = %v, want ErrConfig", v, err)
		}
	}
	for _, v := range []string{"shared", "10.0.0.1", "::ffff:10.0.0.1", "2001:db8::1"} {
		c := good()
		c.SharedUserspace = v
		if err := c.Validate(); err != nil {
			t.Errorf("%q: Validate = %v", v, err)
		}
	}
	if ip, _ := userspaceBind("::ffff:10.0.0.1"); ip != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("mapped address binds %v, want it unmapped", ip)
	}
}

// The owner alone proxies, each TCP port of its table, to every node's
// own address on that port; a fence proxies nothing; a node without an
// address leaves its port out.
func TestUserspaceWants(t *testing.T) {
	st := testState(1, 1, 2, 3)
	w, skipped := userspaceWants(1, 7, st, hops(1, 2, 3), netip.Addr{}, false)
	k := usKey{testVIP, 80}
	if len(skipped) != 0 || len(w) != 1 || w[k].bind != netip.AddrPortFrom(testVIP, 80) {
		t.Fatalf("wants %+v, skipped %v: want one proxy bound to the shared address's port 80", w, skipped)
	}
	for n := uint64(1); n <= 3; n++ {
		if got, want := w[k].table.Backends[n], netip.AddrPortFrom(hops(n)[n], 80); got != want {
			t.Errorf("node %d backend %v, want %v", n, got, want)
		}
	}
	if w, _ := userspaceWants(2, 7, st, hops(1, 2, 3), netip.Addr{}, false); len(w) != 0 {
		t.Errorf("not owner: wants %+v", w)
	}
	if w, _ := userspaceWants(1, 7, st, hops(1, 2, 3), netip.Addr{}, true); len(w) != 0 {
		t.Errorf("fenced: wants %+v", w)
	}
	bind := netip.MustParseAddr("192.0.2.7")
	if w, _ := userspaceWants(1, 7, st, hops(1, 2, 3), bind, false); w[k].bind != netip.AddrPortFrom(bind, 80) {
		t.Errorf("given bind address: wants %+v", w)
	}
	if w, skipped := userspaceWants(1, 7, st, hops(1, 2), netip.Addr{}, false); len(w) != 0 || len(skipped) != 1 {
		t.Errorf("node 3 without address: wants %+v, skipped %v", w, skipped)
	}
	// Sticky-wild: the ports its listeners listen on.
	sw := testState(1, 1, 2)
	sw.Addrs[0].Policy = ctl.StickyWild
	sw.Addrs[0].Tables[0].Port = 0
	sw.Addrs[0].Listeners = append(sw.Addrs[0].Listeners, ctl.Listener{Addr: sw.Addrs[0].Addr, Proto: ctl.TCP, Port: 443, Node: 2})
	if w, _ := userspaceWants(1, 7, sw, hops(1, 2), netip.Addr{}, false); len(w) != 2 || w[usKey{testVIP, 443}].table.Policy != ctl.StickyWild {
		t.Errorf("sticky-wild: wants %+v, want ports 80 and 443", w)
	}
}

// A socket on the node's own address stands for a listener on the
// shared address; the proxy's own sockets (on the shared address or the
// bind address) and the agent's own ports are not an application's.
func TestUserspaceWalk(t *testing.T) {
	own := netip.MustParseAddr("10.251.0.2")
	bind := netip.MustParseAddr("192.0.2.7")
	socks := []sharedaddr.TCPInfo{
		{State: sharedaddr.StateListen, Local: netip.AddrPortFrom(own, 80)},
		{State: sharedaddr.StateListen, Local: netip.AddrPortFrom(testVIP, 80)},
		{State: sharedaddr.StateListen, Local: netip.AddrPortFrom(bind, 80)},
		{State: sharedaddr.StateListen, Local: netip.MustParseAddrPort("10.0.0.9:22")},
		{State: sharedaddr.StateListen, Local: netip.AddrPortFrom(own, 7946)},
		{State: sharedaddr.StateEstablished, Local: netip.AddrPortFrom(testVIP, 80), Remote: netip.MustParseAddrPort("10.0.0.4:5000")},
	}
	walk := func(_ context.Context, fn func(sharedaddr.TCPInfo) bool) error {
		for _, s := range socks {
			if !fn(s) {
				break
			}
		}
		return nil
	}
	st := testState(1, 1, 2, 3)
	w := userspaceWalk(walk, 7, bind, func() (netip.Addr, bool) { return own, true }, func() []uint16 { return []uint16{7946} }, func() *addrsvc.State { return st })
	var got []string
	w(context.Background(), func(ti sharedaddr.TCPInfo) bool {
		got = append(got, fmt.Sprintf("%d %v", ti.State, ti.Local))
		return true
	})
	want := []string{
		fmt.Sprintf("%d %v:80", sharedaddr.StateListen, testVIP),
		fmt.Sprintf("%d 10.0.0.9:22", sharedaddr.StateListen),
		fmt.Sprintf("%d %v:7946", sharedaddr.StateListen, own),
		fmt.Sprintf("%d %v:80", sharedaddr.StateEstablished, testVIP),
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("walked %q, want %q", got, want)
	}
}

// usBackends serves node n on 127.0.0.n:port behind a userspace.Listener:
// it greets with "n CLIENT\n", then echoes lines.
func usBackends(t *testing.T, port uint16, nodes ...uint64) {
	var wg sync.WaitGroup
	var lns []net.Listener
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
	})
	for _, n := range nodes {
		raw, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.%d:%d", n, port))
		if err != nil {
			t.Skipf("127.0.0.%d: %v", n, err)
		}
		ln := userspace.NewListener(raw)
		lns = append(lns, ln)
		wg.Go(func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				wg.Go(func() {
					defer c.Close()
					c.SetDeadline(time.Now().Add(10 * time.Second))
					fmt.Fprintf(c, "%d %v\n", n, c.RemoteAddr())
					r := bufio.NewReader(c)
					for {
						s, err := r.ReadString('\n')
						if err != nil {
							return
						}
						c.Write([]byte(s))
					}
				})
			}
		})
	}
}

// The loop proxies the address while it owns it, with the client's
// address through PROXY v2; when ownership moves away the port closes
// and the connection relayed goes on; stopping ends everything.
func TestUserspacePathFollowsOwner(t *testing.T) {
	probe, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(probe.Addr().(*net.TCPAddr).Port)
	probe.Close()
	usBackends(t, port, 1, 2, 3)
	state := func(owner uint64) *addrsvc.State {
		st := testState(owner, 1, 2, 3)
		st.Addrs[0].Tables[0].Port = port
		return st
	}
	src := &fakeSource{st: state(1)}
	var mu sync.Mutex // guards listening
	listening := map[usKey]string{}
	var quorate atomic.Bool
	quorate.Store(true)
	p := &userspacePath{
		self: 1, stack: 7, src: src,
		quorate: quorate.Load, caughtUp: func() bool { return true },
		members: func() []membership.Member {
			return []membership.Member{{ID: 1, Addr: "127.0.0.1:7946"}, {ID: 2, Addr: "127.0.0.2:7946"}, {ID: 3, Addr: "127.0.0.3:7946"}}
		},
		log: slog.New(slog.DiscardHandler), plog: slog.New(slog.DiscardHandler),
		// The shared address is not on this host: the proxy listens on
		// a loopback port instead, and the test dials that.
		listen: func(ctx context.Context, addr netip.AddrPort) (net.Listener, error) {
			var lc net.ListenConfig
			ln, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
			if err == nil {
				mu.Lock()
				listening[usKey{addr.Addr(), addr.Port()}] = ln.Addr().String()
				mu.Unlock()
			}
			return ln, err
		},
		stats: &usStats{live: map[*userspace.Proxy]bool{}},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	var proxy string
	usWait(t, "the owner's proxy listens", func() bool {
		mu.Lock()
		defer mu.Unlock()
		proxy = listening[usKey{testVIP, port}]
		return proxy != ""
	})
	c, err := net.DialTimeout("tcp4", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	greet, err := r.ReadString('\n')
	if f := strings.Fields(greet); err != nil || len(f) != 2 || f[1] != c.LocalAddr().String() {
		t.Fatalf("greeting %q, %v: want a node and this client's address %v", greet, err, c.LocalAddr())
	}
	if tot, serving := p.stats.total(); tot.Accepted != 1 || serving != 1 {
		t.Errorf("stats %+v, %d serving: want 1 accepted, 1 port", tot, serving)
	}

	src.set(state(2))
	usWait(t, "the port closes once owner is n2", func() bool {
		c, err := net.DialTimeout("tcp4", proxy, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if _, err := c.Write([]byte("still\n")); err != nil {
		t.Fatal(err)
	}
	if s, err := r.ReadString('\n'); err != nil || s != "still\n" {
		t.Fatalf("relayed connection after the owner moved: %q, %v", s, err)
	}
	usWait(t, "no port served once owner is n2", func() bool { _, serving := p.stats.total(); return serving == 0 })
}

func usWait(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}
