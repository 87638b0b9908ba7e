package userspace

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/corralhq/corral/internal/netlab"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/kernel"
)

// TestNetns: h1 owns the VIP (on eth0, without the kernel path) and runs
// the proxy; h1–h3 serve on their own addresses behind Listeners; h4 is
// the outside client. Every connection lands on the node kernel.Bucket
// picks, the node sees h4's real address and the VIP, and data and
// half-closes pass. Then h3's server stops: its clients are closed, the
// others are served. netlab skips without root.
func TestNetns(t *testing.T) {
	lab := netlab.New(t, 4)
	const vip = "10.251.0.100"
	if out, err := lab.Command(1, "ip", "addr", "add", vip+"/32", "dev", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("vip on h1: %v: %s", err, out)
	}
	backends := map[uint64]netip.AddrPort{}
	lns := map[int]net.Listener{}
	for i := 1; i <= 3; i++ {
		addr := netip.AddrPortFrom(netip.MustParseAddr(lab.Addr(i)), 8080)
		ln, err := lab.Listen(i, "tcp4", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		serveBackend(t, ln, i)
		backends[uint64(i)] = addr
	}
	tab := Table{Policy: ctl.Weighted, Backends: backends,
		Buckets: ctl.Build([]ctl.Weight{{Node: 1, Weight: 1}, {Node: 2, Weight: 1}, {Node: 3, Weight: 1}}, 251)}
	p, err := New(Config{Table: tab, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
		return lab.Dial(ctx, 1, network, address)
	}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := lab.Listen(1, "tcp4", vip+":80")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	round := func(down int) (served, closed map[int]int) {
		served, closed = map[int]int{}, map[int]int{}
		for i := range 90 {
			c, err := lab.Dial(context.Background(), 4, "tcp4", vip+":80")
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			want := int(tab.Buckets[kernel.Bucket(ctl.Weighted, local, len(tab.Buckets))])
			s, err := greet(c)
			if err != nil {
				c.Close()
				if want != down {
					t.Errorf("%v (node %d): %v", local, want, err)
				}
				closed[want]++
				continue
			}
			if s.node != want {
				t.Errorf("%v at node %d, kernel.Bucket says %d", local, s.node, want)
			}
			if s.remote != local.String() || s.to != vip+":80" {
				t.Errorf("node saw %s → %s, want %v → %s:80", s.remote, s.to, local, vip)
			}
			if err := s.exchange(fmt.Sprint("ping ", i)); err != nil {
				t.Errorf("%v: %v", local, err)
			}
			c.Close()
			served[s.node]++
		}
		return served, closed
	}
	served, _ := round(0)
	if len(served) != 3 {
		t.Fatalf("served per node %v: want all three", served)
	}
	lns[3].Close()
	served, closed := round(3)
	if served[3] != 0 || closed[3] == 0 || len(closed) != 1 || served[1] == 0 || served[2] == 0 {
		t.Fatalf("with h3 down: served %v, closed %v", served, closed)
	}
	if st := p.Stats(); st.DialFailed != uint64(closed[3]) {
		t.Errorf("DialFailed %d, want %d", st.DialFailed, closed[3])
	}
}
