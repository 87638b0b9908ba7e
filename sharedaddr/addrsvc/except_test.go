package addrsvc_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/addrsvc"
	"github.com/corralhq/corral/sharedaddr/ctl"
)

// exceptText prints the exceptions of a as flow→node, sorted.
func exceptText(st *addrsvc.State) string {
	a, _ := st.Addr(vip)
	var out []string
	for _, e := range a.Exceptions {
		out = append(out, fmt.Sprintf("%v→%d", e.Client, e.Node))
	}
	return strings.Join(out, " ")
}

// allReported says whether every node in ids reported for a's present
// generation.
func allReported(st *addrsvc.State, ids ...uint64) error {
	a, ok := st.Addr(vip)
	if !ok {
		return fmt.Errorf("no address")
	}
	for _, id := range ids {
		if !a.Reported(id) {
			return fmt.Errorf("node %d has not reported for generation %d (reports %v)", id, a.Gen, a.Reports)
		}
	}
	return nil
}

// TestExceptionsFollowTableChanges: a weight change makes every node
// propose one EXCEPT with exactly the flows it holds whose bucket in the
// new table is another node; a flow that closes has its exception
// withdrawn; a node that stops listening excepts every flow it still
// holds (the drain), and they go when they close.
func TestExceptionsFollowTableChanges(t *testing.T) {
	ids := []uint64{1, 2, 3}
	socks := map[uint64]*sockets{1: {}, 2: {}, 3: {}}
	c := newClusterWith(t, func(id uint64, cfg *addrsvc.Config) {
		cfg.Walk, cfg.Observe, cfg.Recheck = socks[id].walk, -1, 20*time.Millisecond
	}, ids...)
	ctx := context.Background()
	if err := c.svc(1).Add(ctx, vip, ctl.Weighted, 0, nil, false); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := c.svc(id).Listen(ctx, vip, ctl.TCP, 80); err != nil {
			t.Fatal(err)
		}
	}
	st := c.svc(1).Source().State()
	a, _ := st.Addr(vip)
	old := a.Tables[0].Buckets
	// 300 clients, each connected to the node the old table gave it.
	held := map[uint64][]ctl.Flow{}
	for i := range 300 {
		f := ctl.Flow{Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(1 + i%200)}), uint16(20000+i)), Proto: ctl.TCP, Port: 80}
		n := old[ctl.Bucket(ctl.Weighted, f.Client, len(old))]
		held[n] = append(held[n], f)
	}
	setSockets := func() {
		for _, id := range ids {
			list := []sharedaddr.TCPInfo{listening("192.0.2.10:80")}
			for _, f := range held[id] {
				list = append(list, sharedaddr.TCPInfo{State: sharedaddr.StateEstablished, Local: netip.MustParseAddrPort("192.0.2.10:80"), Remote: f.Client})
			}
			socks[id].set(list...)
		}
	}
	setSockets()
	eventually(t, "every node reports for the first tables, with no exception", func() error {
		st := c.svc(1).Source().State()
		if e := exceptText(st); e != "" {
			return fmt.Errorf("exceptions %s", e)
		}
		if err := allReported(st, ids...); err != nil {
			return err
		}
		return fullLeases(st, vip, 3)
	})

	// The weight change.
	before := c.log.ProposalsOf(ctl.OpAdd, ctl.OpExcept, ctl.OpUnexcept)
	if err := c.svc(1).Add(ctx, vip, ctl.Weighted, 0, []ctl.Weight{{Node: 3, Weight: 3}}, true); err != nil {
		t.Fatal(err)
	}
	st = c.svc(1).Source().State()
	a, _ = st.Addr(vip)
	nt := a.Tables[0].Buckets
	var want []string
	moved := 0
	for _, id := range ids {
		for _, f := range held[id] {
			if nt[ctl.Bucket(ctl.Weighted, f.Client, len(nt))] != id {
				want = append(want, fmt.Sprintf("%v→%d", f.Client, id))
				moved++
			}
		}
	}
	if moved == 0 || moved == 300 {
		t.Fatalf("%d of 300 flows moved: the test needs some", moved)
	}
	eventually(t, "every node reports the flows that moved", func() error {
		st := c.svc(2).Source().State()
		if err := allReported(st, ids...); err != nil {
			return err
		}
		return nil
	})
	st = c.svc(2).Source().State()
	slices.SortFunc(want, func(x, y string) int { return strings.Compare(x, y) })
	got := strings.Split(exceptText(st), " ")
	slices.SortFunc(got, func(x, y string) int { return strings.Compare(x, y) })
	if !slices.Equal(got, want) {
		t.Fatalf("exceptions after the weight change:\n got %v\nwant %v", got, want)
	}
	// ADDR_LIST's rows carry them: the generation, the count, the flows.
	a2, _ := st.Addr(vip)
	rows := c.svc(2).Rows()
	if len(rows) != 1 || rows[0].Gen != a2.Gen || rows[0].Gen < 2 || rows[0].ExceptionCount != uint32(moved) || len(rows[0].Exceptions) != moved {
		t.Fatalf("ADDR_LIST row: gen %d (state %d), %d exceptions, %d listed; want %d", rows[0].Gen, a2.Gen, rows[0].ExceptionCount, len(rows[0].Exceptions), moved)
	}
	var listed []string
	for _, e := range rows[0].Exceptions {
		listed = append(listed, fmt.Sprintf("%v→%d", e.Client, e.Node))
	}
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Fatalf("ADDR_LIST exceptions %v, want %v", listed, want)
	}
	// The metrics: the gauge is the state's count; the counter has seen
	// each of them added (node 2 may have applied nothing else yet).
	if got := gauge(t, c.reg[2], "corral_sharedaddr_exceptions"); got != float64(moved) {
		t.Fatalf("corral_sharedaddr_exceptions = %v, want %d", got, moved)
	}
	changes := counter(t, c.reg[2], "corral_sharedaddr_exception_changes_total")
	if changes < float64(moved) {
		t.Fatalf("corral_sharedaddr_exception_changes_total = %v, want at least %d", changes, moved)
	}
	// The ADD and one EXCEPT per node (leases, still being taken, are
	// other proposals).
	if n := c.log.ProposalsOf(ctl.OpAdd, ctl.OpExcept, ctl.OpUnexcept) - before; n != 1+len(ids) {
		t.Errorf("%d ADD/EXCEPT/UNEXCEPT proposals for the weight change: want the ADD and one EXCEPT per node", n)
	}

	// Node 2's moved flows close: their exceptions go; the others stay.
	var kept []ctl.Flow
	for _, f := range held[2] {
		if nt[ctl.Bucket(ctl.Weighted, f.Client, len(nt))] == 2 {
			kept = append(kept, f)
		}
	}
	held[2] = kept
	setSockets()
	eventually(t, "node 2's closed flows lose their exceptions", func() error {
		a, _ := c.svc(3).Source().State().Addr(vip)
		for _, e := range a.Exceptions {
			if e.Node == 2 {
				return fmt.Errorf("exception %v→2 stays", e.Client)
			}
		}
		if len(a.Exceptions) == 0 {
			return fmt.Errorf("the other nodes' exceptions went too")
		}
		return nil
	})
	eventually(t, "the counter counts the removals", func() error {
		if got := counter(t, c.reg[2], "corral_sharedaddr_exception_changes_total"); got <= changes {
			return fmt.Errorf("corral_sharedaddr_exception_changes_total = %v, no more than %v before the removals", got, changes)
		}
		return nil
	})

	// The drain: node 2 stops listening; every flow it holds is excepted
	// to it, and no bucket of the new table is node 2's.
	if err := c.svc(2).Unlisten(ctx, vip, ctl.TCP, 80); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a node that stops listening excepts its held flows", func() error {
		st := c.svc(1).Source().State()
		if err := allReported(st, ids...); err != nil {
			return err
		}
		a, _ := st.Addr(vip)
		if slices.Contains(a.Tables[0].Buckets, 2) {
			return fmt.Errorf("node 2 keeps buckets")
		}
		mine := map[ctl.Flow]bool{}
		for _, e := range a.Exceptions {
			if e.Node == 2 {
				mine[e.Flow] = true
			}
		}
		if len(mine) != len(held[2]) {
			return fmt.Errorf("%d of node 2's %d flows excepted", len(mine), len(held[2]))
		}
		for _, f := range held[2] {
			if !mine[f] {
				return fmt.Errorf("flow %v not excepted", f)
			}
		}
		return nil
	})
	held[2] = nil
	setSockets()
	eventually(t, "the drained flows close and their exceptions go", func() error {
		a, _ := c.svc(1).Source().State().Addr(vip)
		if n := nodesOf(a.Exceptions)[2]; n > 0 {
			return fmt.Errorf("node 2 keeps %d exceptions", n)
		}
		return nil
	})
}

func nodesOf(es []ctl.Exception) map[uint64]int {
	out := map[uint64]int{}
	for _, e := range es {
		out[e.Node]++
	}
	return out
}
