package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/sharedaddr/addrsvc"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/kernel"
)

var testVIP = netip.MustParseAddr("10.251.0.100")

// testState: the address owned by owner, listeners on nodes 1–3, a table
// over them, one TCP slice each.
func testState(owner uint64, nodes ...uint64) *addrsvc.State {
	a := addrsvc.Addr{AddrInfo: ctl.AddrInfo{Addr: ctl.Addr{Stack: 7, IP: testVIP}, Policy: ctl.Weighted, Owner: owner}}
	var table []uint64
	for i, n := range nodes {
		a.Listeners = append(a.Listeners, ctl.Listener{Addr: a.Addr, Proto: ctl.TCP, Port: 80, Node: n})
		a.Leases = append(a.Leases, ctl.Lease{Kind: ctl.Slice, Stack: 7, Proto: ctl.TCP, Index: uint16(i),
			First: uint32(10000 + 1000*i), Last: uint32(10999 + 1000*i), Node: n})
		a.Leases = append(a.Leases, ctl.Lease{Kind: ctl.Ident, Stack: 7, Index: uint16(i),
			First: uint32(ctl.IdentSize * i), Last: uint32(ctl.IdentSize*(i+1) - 1), Node: n})
		table = append(table, n)
	}
	a.Tables = []addrsvc.Table{{Proto: ctl.TCP, Port: 80, Buckets: table}}
	other := addrsvc.Addr{AddrInfo: ctl.AddrInfo{Addr: ctl.Addr{Stack: 8, IP: netip.MustParseAddr("10.9.9.9")}, Owner: owner}}
	return &addrsvc.State{Members: nodes, Addrs: []addrsvc.Addr{a, other}}
}

func hops(ids ...uint64) map[uint64]netip.Addr {
	m := map[uint64]netip.Addr{}
	for _, id := range ids {
		m[id] = netip.AddrFrom4([4]byte{10, 251, 0, byte(id)})
	}
	return m
}

func TestBuildPlan(t *testing.T) {
	p, skipped := buildPlan(2, 7, testState(1, 1, 2, 3), hops(1, 2, 3), false)
	if len(skipped) != 0 || len(p.Addrs) != 1 || len(p.Nodes) != 3 {
		t.Fatalf("plan %+v, skipped %v: want the stack's one address and three nodes", p, skipped)
	}
	a := p.Addrs[0]
	if a.VIP != testVIP || a.Owner || !a.Serve || len(a.Services) != 1 || len(a.Slices) != 3 {
		t.Fatalf("address %+v: want not owner, serving, one service, three slices", a)
	}
	// Node 2 holds ident block 1: the kernel rule numbers from its lower
	// seven eighths, IPIdent keeps the top eighth.
	if want := (kernel.Ident{Base: ctl.IdentSize, Len: ctl.IdentSize * 7 / 8}); a.Ident != want {
		t.Fatalf("ident %+v, want %+v", a.Ident, want)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	if p, _ := buildPlan(1, 7, testState(1, 1, 2, 3), hops(1, 2, 3), false); !p.Addrs[0].Owner {
		t.Fatal("the state's owner does not own in its plan")
	}
	if p, _ := buildPlan(1, 7, testState(1, 1, 2, 3), hops(1, 2, 3), true); p.Addrs[0].Owner {
		t.Fatal("a fenced owner owns in its plan")
	}
	// Node 3 has no next hop: its table and slice are left out, said so,
	// and the plan still validates.
	p, skipped = buildPlan(1, 7, testState(1, 1, 2, 3), hops(1, 2), false)
	if len(skipped) != 2 || len(p.Addrs[0].Services) != 0 || len(p.Addrs[0].Slices) != 2 {
		t.Fatalf("plan %+v, skipped %v", p.Addrs[0], skipped)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	// Nothing of this node: no Serve, not owner.
	if p, _ := buildPlan(4, 7, testState(1, 1, 2, 3), hops(1, 2, 3), false); p.Addrs[0].Serve || p.Addrs[0].Owner {
		t.Fatalf("node 4's plan %+v", p.Addrs[0])
	}
}

func TestNodeIPs(t *testing.T) {
	got := nodeIPs([]membership.Member{{ID: 1, Addr: "10.0.0.1:7946"}, {ID: 2, Addr: "host:7946"}, {ID: 3, Addr: "[::ffff:10.0.0.3]:1"}, {ID: 4, Addr: "[fe80::1]:1"}})
	if fmt.Sprint(got) != "map[1:10.0.0.1 3:10.0.0.3]" {
		t.Fatalf("next hops %v", got)
	}
}

func TestTakeoverStep(t *testing.T) {
	before, _ := buildPlan(2, 7, testState(1, 1, 2, 3), hops(1, 2, 3), false)
	after, _ := buildPlan(2, 7, testState(2, 2, 3), hops(2, 3), false)
	step, ok := takeoverStep(&before, after, map[netip.Addr]bool{})
	if !ok {
		t.Fatal("no step for a takeover with a new table")
	}
	if !step.Addrs[0].Owner || fmt.Sprint(step.Addrs[0].Services) != fmt.Sprint(before.Addrs[0].Services) || len(step.Nodes) != 3 {
		t.Fatalf("step %+v: want the old table, its three next hops, owned", step)
	}
	if err := step.Validate(); err != nil {
		t.Fatal(err)
	}
	if _, ok := takeoverStep(&after, after, map[netip.Addr]bool{testVIP: true}); ok {
		t.Fatal("a step for an address already owned")
	}
	if _, ok := takeoverStep(nil, after, nil); ok {
		t.Fatal("a step with nothing applied before")
	}
}

// fakeSource is an addrsvc.Source whose state a test sets.
type fakeSource struct {
	mu sync.Mutex // guards st, ch
	st *addrsvc.State
	ch chan struct{}
}

func (f *fakeSource) State() *addrsvc.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeSource) Watch() (<-chan struct{}, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ch = make(chan struct{}, 1)
	return f.ch, func() {}
}

func (f *fakeSource) set(st *addrsvc.State) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	if f.ch != nil {
		select {
		case f.ch <- struct{}{}:
		default:
		}
	}
}

// fakeDP records what the loop does, as lines.
type fakeDP struct {
	mu  sync.Mutex // guards ops
	ops []string
}

func (d *fakeDP) add(s string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ops = append(d.ops, s)
}

func (d *fakeDP) Apply(_ context.Context, p kernel.Plan) error {
	owner := false
	for _, a := range p.Addrs {
		owner = owner || a.Owner
	}
	d.add(fmt.Sprintf("apply owner=%v", owner))
	return p.Validate()
}
func (d *fakeDP) Drop(context.Context) error { d.add("drop"); return nil }
func (d *fakeDP) Announce(_ context.Context, vip netip.Addr) error {
	d.add("announce " + vip.String())
	return nil
}
func (d *fakeDP) Close() error { return nil }

func (d *fakeDP) wait(t *testing.T, what string, cond func(ops []string) bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d.mu.Lock()
		ok := cond(d.ops)
		ops := append([]string(nil), d.ops...)
		d.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s; ops %q", what, ops)
		}
		time.Sleep(time.Millisecond) // polling the fake's record
	}
}

func count(ops []string, s string) int {
	n := 0
	for _, o := range ops {
		if o == s {
			n++
		}
	}
	return n
}

// The loop owns only while in contact and caught up; losing contact
// drops at once; regaining it owns again only once caught up; stopping
// drops.
func TestDataPathFencing(t *testing.T) {
	src := &fakeSource{st: testState(1, 1, 2, 3)}
	dp := &fakeDP{}
	var quorate, caught atomic.Bool
	quorate.Store(true)
	p := &dataPath{
		self: 1, stack: 7, iface: "eth0", src: src,
		quorate:  quorate.Load,
		caughtUp: caught.Load,
		members: func() []membership.Member {
			return []membership.Member{{ID: 1, Addr: "10.251.0.1:7946"}, {ID: 2, Addr: "10.251.0.2:7946"}, {ID: 3, Addr: "10.251.0.3:7946"}}
		},
		log:  slog.New(slog.DiscardHandler),
		kick: make(chan struct{}, 1),
		open: func(string, string, *slog.Logger) (dataplane, error) { return dp, nil },
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.run(ctx) }()

	dp.wait(t, "a first plan, not owner (not caught up)", func(ops []string) bool { return count(ops, "apply owner=false") >= 1 })
	caught.Store(true)
	p.poke()
	dp.wait(t, "owner and announced once caught up", func(ops []string) bool { return count(ops, "announce "+testVIP.String()) == 1 })

	quorate.Store(false)
	caught.Store(false)
	p.poke()
	dp.wait(t, "dropped on lost contact", func(ops []string) bool { return count(ops, "drop") == 1 })
	quorate.Store(true)
	p.poke()
	src.set(testState(1, 1, 2, 3))
	dp.wait(t, "a non-owner plan after the drop", func(ops []string) bool {
		return len(ops) > 0 && ops[len(ops)-1] == "apply owner=false"
	})
	caught.Store(true)
	p.poke()
	dp.wait(t, "owner again once caught up", func(ops []string) bool { return count(ops, "announce "+testVIP.String()) == 2 })

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	dp.wait(t, "dropped at stop", func(ops []string) bool { return ops[len(ops)-1] == "drop" })
}

// A service port inside a leased block is no slice's: the plan carries
// the block's pieces around it, so the owner dispatches the port.
func TestBuildPlanSliceHoles(t *testing.T) {
	st := testState(1, 1, 2, 3)
	a := &st.Addrs[0]
	a.Leases[0].Holes = []uint16{10000, 10500}
	p, _ := buildPlan(1, 7, st, hops(1, 2, 3), false)
	var got []kernel.Slice
	for _, s := range p.Addrs[0].Slices {
		if s.Node == 1 {
			got = append(got, s)
		}
	}
	want := []kernel.Slice{{Proto: ctl.TCP, First: 10001, Last: 10499, Node: 1}, {Proto: ctl.TCP, First: 10501, Last: 10999, Node: 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("node 1's slices %v, want %v", got, want)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}
