package addrsvc_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/corralhq/corral/service"
	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/addrsvc"
	"github.com/corralhq/corral/sharedaddr/addrsvc/addrsvctest"
	"github.com/corralhq/corral/sharedaddr/ctl"
)

type cluster struct {
	t    *testing.T
	log  *addrsvctest.Log
	reg  map[uint64]*prometheus.Registry
	svcs map[uint64]*addrsvc.Service
	wg   sync.WaitGroup
	// cancels stop each node's service (kill).
	cancels map[uint64]context.CancelFunc
}

// newCluster starts a service on each node (ids), all in the view.
func newCluster(t *testing.T, ids ...uint64) *cluster { return newClusterWith(t, nil, ids...) }

// newClusterWith is newCluster with each node's Config changed by edit.
func newClusterWith(t *testing.T, edit func(id uint64, cfg *addrsvc.Config), ids ...uint64) *cluster {
	ctx, cancel := context.WithCancel(context.Background())
	c := &cluster{t: t, log: addrsvctest.NewLog(), reg: map[uint64]*prometheus.Registry{},
		svcs: map[uint64]*addrsvc.Service{}, cancels: map[uint64]context.CancelFunc{}}
	t.Cleanup(func() { cancel(); c.wg.Wait() })
	for _, id := range ids {
		reg := prometheus.NewRegistry()
		cfg := addrsvc.Config{Stack: 0xf00, TableSize: 251, BackoffMin: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond}
		if edit != nil {
			edit(id, &cfg)
		}
		s, err := addrsvc.New(service.Deps{Self: id, Cluster: c.log.Proposer(id), Metrics: reg}, cfg)
		if err != nil {
			t.Fatal(err)
		}
		c.reg[id], c.svcs[id] = reg, s
		c.log.Join(id, s.Machine())
	}
	c.view()
	for _, id := range ids {
		nctx, ncancel := context.WithCancel(ctx)
		c.cancels[id] = ncancel
		s := c.svcs[id]
		c.wg.Go(func() { s.Run(nctx) })
	}
	return c
}

func (c *cluster) svc(id uint64) *addrsvc.Service { return c.svcs[id] }

func (c *cluster) view() {
	if err := c.log.View(); err != nil {
		c.t.Fatal(err)
	}
}

// kill stops a node: its service ends and the log forgets it; the
// survivors then commit a view without it.
func (c *cluster) kill(id uint64) {
	c.cancels[id]()
	c.log.Kill(id)
	c.view()
}

// eventually waits, with a deadline, until cond holds.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var vip = ctl.Addr{Stack: 0xf00, IP: netip.MustParseAddr("192.0.2.10")}

// held returns node's leases of a, by kind and proto ("slice/6" …).
func held(st *addrsvc.State, a ctl.Addr, node uint64) map[string]int {
	out := map[string]int{}
	if ai, ok := st.Addr(a); ok {
		for _, l := range ai.Leases {
			if l.Node == node {
				out[fmt.Sprintf("%v/%d", l.Kind, l.Proto)]++
			}
		}
	}
	for _, l := range st.SPI {
		if l.Node == node && l.Stack == a.Stack {
			out["spi"]++
		}
	}
	return out
}

func fullLeases(st *addrsvc.State, a ctl.Addr, node uint64) error {
	h := held(st, a, node)
	want := map[string]int{"slice/6": 1, "slice/17": 1, "ident/0": 1, "spi": 1}
	if !maps.Equal(h, want) {
		return fmt.Errorf("node %d holds %v, want %v", node, h, want)
	}
	return nil
}

// TestLeasesFollowTheState: an address added on one node makes every
// node lease exactly its blocks; a node that dies loses its blocks, the
// survivors agree on a new owner; deleting the address releases
// everything, the SPI blocks included; the data path is woken each time.
func TestLeasesFollowTheState(t *testing.T) {
	c := newCluster(t, 1, 2, 3)
	ctx := context.Background()
	changes, stop := c.svc(3).Source().Watch()
	defer stop()

	if err := c.svc(2).Add(ctx, vip, ctl.Weighted, 0, []ctl.Weight{{Node: 2, Weight: 3}}, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changes:
	case <-time.After(10 * time.Second):
		t.Fatal("no change notification after ADD")
	}
	for _, id := range []uint64{1, 2, 3} {
		if err := c.svc(id).Listen(ctx, vip, ctl.TCP, 80); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "every node holds its leases", func() error {
		for _, id := range []uint64{1, 2, 3} {
			st := c.svc(id).Source().State()
			for _, n := range []uint64{1, 2, 3} {
				if err := fullLeases(st, vip, n); err != nil {
					return fmt.Errorf("on node %d: %w", id, err)
				}
			}
		}
		return nil
	})
	// Every node's state is the same: owner, tables, leases.
	st1 := c.svc(1).Source().State()
	for _, id := range []uint64{2, 3} {
		st := c.svc(id).Source().State()
		if fmt.Sprint(st.Addrs) != fmt.Sprint(st1.Addrs) || fmt.Sprint(st.SPI) != fmt.Sprint(st1.SPI) {
			t.Fatalf("node %d's state differs from node 1's:\n%v\n%v", id, st.Addrs, st1.Addrs)
		}
	}
	a, _ := st1.Addr(vip)
	if a.Owner != 1 || len(a.Tables) != 1 {
		t.Fatalf("owner %d, %d tables; want owner 1 (chosen at ADD: ctl SPEC.md, Owner), one table", a.Owner, len(a.Tables))
	}
	shares := a.Tables[0].Shares()
	if len(shares) != 3 || shares[1].Node != 2 || shares[1].Buckets < 2*shares[0].Buckets {
		t.Fatalf("shares %v: node 2 at weight 3 should hold about 3/5 of 251", shares)
	}
	if got := gauge(t, c.reg[1], "corral_sharedaddr_owner"); got != 1 {
		t.Fatalf("corral_sharedaddr_owner on node 1 = %v, want 1", got)
	}
	if got := gauge(t, c.reg[2], "corral_sharedaddr_owner"); got != 0 {
		t.Fatalf("corral_sharedaddr_owner on node 2 = %v, want 0", got)
	}
	if got := gauge(t, c.reg[2], "corral_sharedaddr_addresses"); got != 1 {
		t.Fatalf("corral_sharedaddr_addresses on node 2 = %v, want 1", got)
	}

	// Nothing more is proposed while nothing changes: no storm.
	before := c.log.Proposals()
	time.Sleep(50 * time.Millisecond) // a quiet period, not a synchronisation
	after := c.log.Proposals()
	if after != before {
		t.Fatalf("%d proposals in a quiet cluster", after-before)
	}

	c.kill(1)
	eventually(t, "survivors agree on a new owner and node 1's leases are gone", func() error {
		var owner uint64
		for _, id := range []uint64{2, 3} {
			st := c.svc(id).Source().State()
			a, ok := st.Addr(vip)
			switch {
			case !ok || (a.Owner != 2 && a.Owner != 3) || (owner != 0 && a.Owner != owner):
				return fmt.Errorf("node %d: owner %d (node 2 or 3 says %d)", id, a.Owner, owner)
			case len(held(st, vip, 1)) != 0:
				return fmt.Errorf("node %d: node 1 still holds %v", id, held(st, vip, 1))
			}
			for _, l := range a.Listeners {
				if l.Node == 1 {
					return fmt.Errorf("node %d: node 1 still listens", id)
				}
			}
			owner = a.Owner
		}
		return fullLeases(c.svc(3).Source().State(), vip, 3)
	})

	if err := c.svc(3).Del(ctx, vip); err != nil {
		t.Fatal(err)
	}
	eventually(t, "everything released", func() error {
		for _, id := range []uint64{2, 3} {
			st := c.svc(id).Source().State()
			if len(st.Addrs) != 0 || len(st.SPI) != 0 {
				return fmt.Errorf("node %d: %d addresses, SPI %v", id, len(st.Addrs), st.SPI)
			}
		}
		return nil
	})
}

// gauge returns the sum of the values of the gauge called name.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return metricSum(t, reg, name, func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
}

// metricSum sums value over the series of the metric called name.
func metricSum(t *testing.T, reg *prometheus.Registry, name string, value func(*dto.Metric) float64) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += value(m)
			}
		}
	}
	return v
}

// TestRefusalsAreTyped: each refusal of the machine comes back as a
// *RefusedError matching its code's sentinel, with the machine's text.
func TestRefusalsAreTyped(t *testing.T) {
	c := newCluster(t, 1)
	ctx := context.Background()
	s := c.svc(1)
	if err := s.Add(ctx, vip, ctl.Sticky, time.Second, nil, false); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  error
		want error
		text string
	}{
		{"ADD again", s.Add(ctx, vip, ctl.Sticky, 0, nil, false), addrsvc.ErrExists, "exists"},
		{"ADD loopback", s.Add(ctx, ctl.Addr{IP: netip.MustParseAddr("127.0.0.1")}, ctl.Weighted, 0, nil, false), addrsvc.ErrBadField, "cannot be shared"},
		{"ADD weight", s.Add(ctx, vip, ctl.Weighted, 0, []ctl.Weight{{Node: 1, Weight: ctl.MaxWeight + 1}}, true), addrsvc.ErrBadField, "above"},
		{"ADD policy", s.Add(ctx, vip, ctl.Policy(9), 0, nil, true), addrsvc.ErrBadField, "policy 9"},
		{"DEL missing", s.Del(ctx, ctl.Addr{Stack: 0xf00, IP: netip.MustParseAddr("192.0.2.99")}), addrsvc.ErrNoAddr, "no address"},
		{"UNLISTEN", s.Unlisten(ctx, vip, ctl.TCP, 80), addrsvc.ErrNotHeld, "does not listen"},
	}
	for _, tc := range cases {
		var re *addrsvc.RefusedError
		if !errors.Is(tc.err, tc.want) || !errors.As(tc.err, &re) || !strings.Contains(re.Text, tc.text) {
			t.Errorf("%s: %v, want %v with text containing %q", tc.name, tc.err, tc.want, tc.text)
		}
	}
	// The rows ADDR_LIST sends: the address, sticky with its affinity.
	rows := s.Rows()
	if len(rows) != 1 || rows[0].Policy != uint8(ctl.Sticky) || rows[0].Affinity != 1000 || rows[0].Owner != 1 {
		t.Fatalf("rows %+v", rows)
	}
}

// TestBackoff: while the log refuses every proposal, the missing leases
// are proposed with growing waits, not in a loop; once it accepts, they
// are obtained.
func TestBackoff(t *testing.T) {
	c := newCluster(t, 1)
	c.log.Refuse(errors.New("no leader (test)"))
	start := c.log.Proposals()
	// The address comes from the log while this node's proposals fail.
	if _, err := c.log.Commit(2, ctl.AppendCmd(nil, ctl.Cmd{Op: ctl.OpAdd, Addr: vip, Policy: ctl.Weighted})); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a window to count proposals in, not a synchronisation
	n := c.log.Proposals() - start
	c.log.Refuse(nil)
	// Backoff from 10 ms doubling to 100 ms: a few passes in 300 ms,
	// each of at most four leases; a loop would make thousands.
	if n < 4 || n > 80 {
		t.Fatalf("%d proposals in 300 ms against a refusing log; want retries with backoff", n)
	}
	eventually(t, "leases once the log accepts", func() error { return fullLeases(c.svc(1).Source().State(), vip, 1) })
}

// TestWatchCoalesces: a watcher that does not read gets one wake-up for
// many changes, never blocks the log, and a State it held stays as it
// was.
func TestWatchCoalesces(t *testing.T) {
	c := newCluster(t, 1)
	src := c.svc(1).Source()
	before := src.State()
	changes, stop := src.Watch()
	// The log is held throughout, so the service's own lease proposals
	// wait: the changes below are the only ones.
	c.log.Do(func(commit func(uint64, []byte) []byte) {
		for i := range 3 {
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(20 + i)})
			commit(1, ctl.AppendCmd(nil, ctl.Cmd{Op: ctl.OpAdd, Addr: ctl.Addr{Stack: 1, IP: ip}, Policy: ctl.Weighted}))
		}
		<-changes
		select {
		case <-changes:
			t.Fatal("a second wake-up queued")
		default:
		}
		stop()
		after := src.State()
		if len(before.Addrs) != 0 || len(after.Addrs) != 3 || after.Gen <= before.Gen {
			t.Fatalf("before: gen %d, %d addresses; after: gen %d, %d addresses", before.Gen, len(before.Addrs), after.Gen, len(after.Addrs))
		}
		// After stop, changes wake nobody (and do not block).
		commit(1, ctl.AppendCmd(nil, ctl.Cmd{Op: ctl.OpDel, Addr: ctl.Addr{Stack: 1, IP: netip.MustParseAddr("192.0.2.20")}}))
		select {
		case <-changes:
			t.Fatal("woken after stop")
		default:
		}
		if got := len(src.State().Addrs); got != 2 || len(after.Addrs) != 3 {
			t.Fatalf("%d addresses after DEL (want 2); the earlier State now has %d (want 3)", got, len(after.Addrs))
		}
	})
}

// sockets is a fake stack's TCP sockets, for Config.Walk.
type sockets struct {
	mu   sync.Mutex // guards list
	list []sharedaddr.TCPInfo
}

func (k *sockets) set(list ...sharedaddr.TCPInfo) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.list = list
}

func (k *sockets) walk(_ context.Context, fn func(sharedaddr.TCPInfo) bool) error {
	k.mu.Lock()
	list := slices.Clone(k.list)
	k.mu.Unlock()
	for _, ti := range list {
		if !fn(ti) {
			break
		}
	}
	return nil
}

func listening(ap string) sharedaddr.TCPInfo {
	return sharedaddr.TCPInfo{State: sharedaddr.StateListen, Local: netip.MustParseAddrPort(ap)}
}

// TestObservedListeners: a socket listening on a shared address of the
// agent's stack becomes this node's listener, and stops being one when it
// closes; wildcard listeners, other addresses and connections do not.
func TestObservedListeners(t *testing.T) {
	socks := map[uint64]*sockets{1: {}, 2: {}}
	c := newClusterWith(t, func(id uint64, cfg *addrsvc.Config) {
		cfg.Walk, cfg.Observe = socks[id].walk, 10*time.Millisecond
	}, 1, 2)
	if err := c.svc(1).Add(context.Background(), vip, ctl.Weighted, 0, []ctl.Weight{{Node: 2, Weight: 2}}, false); err != nil {
		t.Fatal(err)
	}
	est := sharedaddr.TCPInfo{State: sharedaddr.StateEstablished, Local: netip.MustParseAddrPort("192.0.2.10:443"),
		Remote: netip.MustParseAddrPort("198.51.100.1:5000")}
	socks[1].set(listening("192.0.2.10:80"), listening("0.0.0.0:22"), listening("192.0.2.99:80"), est)
	socks[2].set(listening("[::ffff:192.0.2.10]:80"), listening("192.0.2.10:8080"))
	listeners := func() string {
		a, _ := c.svc(2).Source().State().Addr(vip)
		var out []string
		for _, l := range a.Listeners {
			out = append(out, fmt.Sprintf("%d:%d/%d", l.Node, l.Proto, l.Port))
		}
		return strings.Join(out, " ")
	}
	eventually(t, "observed listeners", func() error {
		if got := listeners(); got != "1:6/80 2:6/80 2:6/8080" {
			return fmt.Errorf("listeners %q", got)
		}
		return nil
	})
	a, _ := c.svc(1).Source().State().Addr(vip)
	if len(a.Tables) != 2 || fmt.Sprint(a.Tables[0].Shares()) != "[{1 84} {2 167}]" {
		t.Fatalf("tables %v, shares of port 80 %v: want 1:2 over 251", len(a.Tables), a.Tables[0].Shares())
	}
	socks[2].set(listening("192.0.2.10:80"))
	eventually(t, "a closed listener is withdrawn", func() error {
		if got := listeners(); got != "1:6/80 2:6/80" {
			return fmt.Errorf("listeners %q", got)
		}
		return nil
	})
}

// counter returns the sum of the values of the counter called name.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	return metricSum(t, reg, name, func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
}
