package agent

import (
	"net/netip"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/addrsvc"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/kernel"
)

// gateState is testState at table generation gen, with reports of the
// nodes named for gen (and of the others for gen-1).
func gateState(gen uint64, reported ...uint64) *addrsvc.State {
	st := testState(1, 1, 2, 3)
	a := &st.Addrs[0]
	a.Gen = gen
	for _, m := range st.Members {
		r := ctl.Report{Node: m, Gen: gen - 1}
		for _, n := range reported {
			if n == m {
				r.Gen = gen
			}
		}
		a.Reports = append(a.Reports, r)
	}
	return st
}

// An owner holds a new generation's tables back until every member has
// reported, or the timeout passes; a node that does not own the address
// yet, or whose applied tables are current, holds nothing.
func TestGate(t *testing.T) {
	now := time.Unix(1000, 0)
	owned := map[netip.Addr]bool{testVIP: true}
	applied := map[netip.Addr]uint64{testVIP: 1}
	held := map[netip.Addr]heldGen{}
	hold, until, late := gate(gateState(2, 1, 3), 7, owned, applied, held, now, time.Second)
	if !hold || !until.Equal(now.Add(time.Second)) || len(late) != 0 {
		t.Fatalf("node 2 has not reported: hold=%v until=%v late=%v; want held for 1 s", hold, until, late)
	}
	// Later, still without node 2: the deadline stays that of the first hold.
	if hold, until, _ = gate(gateState(2, 1, 3), 7, owned, applied, held, now.Add(300*time.Millisecond), time.Second); !hold || !until.Equal(now.Add(time.Second)) {
		t.Fatalf("second look: hold=%v until=%v", hold, until)
	}
	if hold, _, _ = gate(gateState(2, 1, 2, 3), 7, owned, applied, held, now.Add(400*time.Millisecond), time.Second); hold {
		t.Fatal("every member reported: still held")
	}
	if hold, _, late = gate(gateState(2, 1, 3), 7, owned, applied, map[netip.Addr]heldGen{testVIP: {gen: 2, since: now}}, now.Add(time.Second), time.Second); hold || len(late) != 1 {
		t.Fatalf("after the timeout: hold=%v late=%v; want applied, named late", hold, late)
	}
	// A newer generation restarts the wait.
	if hold, until, _ = gate(gateState(3, 1), 7, owned, applied, map[netip.Addr]heldGen{testVIP: {gen: 2, since: now}}, now.Add(time.Second), time.Second); !hold || !until.Equal(now.Add(2*time.Second)) {
		t.Fatalf("a newer generation: hold=%v until=%v", hold, until)
	}
	if hold, _, _ = gate(gateState(2), 7, map[netip.Addr]bool{}, applied, held, now, time.Second); hold {
		t.Fatal("not owned (a takeover): held")
	}
	if hold, _, _ = gate(gateState(2), 7, owned, map[netip.Addr]uint64{testVIP: 2}, held, now, time.Second); hold {
		t.Fatal("applied tables are current: held")
	}
}

// The plan carries the address's exceptions, one per client, and leaves
// out those of a node with no next hop.
func TestBuildPlanExceptions(t *testing.T) {
	st := testState(1, 1, 2, 3)
	c := netip.MustParseAddrPort("198.51.100.1:5000")
	st.Addrs[0].Exceptions = []ctl.Exception{
		{Flow: ctl.Flow{Client: c, Proto: ctl.TCP, Port: 80}, Node: 2},
		{Flow: ctl.Flow{Client: c, Proto: ctl.TCP, Port: 81}, Node: 3},
		{Flow: ctl.Flow{Client: netip.MustParseAddrPort("198.51.100.2:5000"), Proto: ctl.TCP, Port: 80}, Node: 4},
	}
	p, skipped := buildPlan(1, 7, st, hops(1, 2, 3), false)
	if want := []kernel.Exception{{Client: c, Node: 2, Proto: 6, Port: 80}}; len(p.Addrs[0].Exceptions) != 1 || p.Addrs[0].Exceptions[0] != want[0] {
		t.Fatalf("exceptions %v, want %v", p.Addrs[0].Exceptions, want)
	}
	if len(skipped) != 1 {
		t.Fatalf("skipped %v: want node 4's exception", skipped)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
}
