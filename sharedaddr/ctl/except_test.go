package ctl_test

import (
	"net/netip"
	"testing"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// An address holds at most MaxExceptions: an EXCEPT beyond is refused
// whole (full), one that only names flows it holds is not, and a flow
// freed makes room again.
func TestExceptionBound(t *testing.T) {
	n := newNode(251)
	n.view(t, 1, 1, [2]uint64{1, 1}, [2]uint64{2, 2})
	a := ctl.Addr{IP: netip.MustParseAddr("10.0.0.1")}
	if r := n.apply(t, 2, ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: ctl.Weighted}); r.Code != ctl.OK {
		t.Fatal(replyText(r))
	}
	flow := func(i int) ctl.Flow {
		return ctl.Flow{Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 16), byte(i >> 8)}), uint16(i)), Proto: ctl.TCP, Port: 80}
	}
	var fs []ctl.Flow
	for i := range ctl.MaxExceptions {
		fs = append(fs, flow(i))
	}
	fs = ctl.SortFlows(fs)
	if r := n.apply(t, 3, ctl.Cmd{Op: ctl.OpExcept, Addr: a, Node: 1, Gen: 1, Flows: fs}); r.Code != ctl.OK {
		t.Fatal(replyText(r))
	}
	extra := []ctl.Flow{flow(ctl.MaxExceptions)}
	if r := n.apply(t, 4, ctl.Cmd{Op: ctl.OpExcept, Addr: a, Node: 2, Gen: 1, Flows: extra}); r.Code != ctl.Full {
		t.Fatalf("EXCEPT beyond the bound: %s", replyText(r))
	}
	if r := n.apply(t, 5, ctl.Cmd{Op: ctl.OpExcept, Addr: a, Node: 2, Gen: 1, Flows: fs[:1]}); r.Code != ctl.OK {
		t.Fatalf("EXCEPT of a held flow at the bound: %s", replyText(r))
	}
	if r := n.apply(t, 6, ctl.Cmd{Op: ctl.OpUnexcept, Addr: a, Node: 1, Flows: fs[1:2]}); r.Code != ctl.OK {
		t.Fatal(replyText(r))
	}
	if r := n.apply(t, 7, ctl.Cmd{Op: ctl.OpExcept, Addr: a, Node: 2, Gen: 1, Flows: extra}); r.Code != ctl.OK {
		t.Fatalf("EXCEPT after one was freed: %s", replyText(r))
	}
	if got := len(n.m.Exceptions(a)); got != ctl.MaxExceptions {
		t.Fatalf("%d exceptions, want %d", got, ctl.MaxExceptions)
	}
}

// TestExceptionChanges counts each exception added, moved or removed
// once, and nothing for an EXCEPT that repeats what is held.
func TestExceptionChanges(t *testing.T) {
	n := newNode(251)
	n.view(t, 1, 1, [2]uint64{1, 1}, [2]uint64{2, 2})
	a := ctl.Addr{IP: netip.MustParseAddr("10.0.0.1")}
	f1 := ctl.Flow{Client: netip.MustParseAddrPort("198.51.100.1:1000"), Proto: ctl.TCP, Port: 80}
	f2 := ctl.Flow{Client: netip.MustParseAddrPort("198.51.100.2:1000"), Proto: ctl.TCP, Port: 80}
	steps := []struct {
		cmd  ctl.Cmd
		want uint64
	}{
		{ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: ctl.Weighted}, 0},
		{ctl.Cmd{Op: ctl.OpExcept, Addr: a, Node: 1, Gen: 1, Flows: []ctl.Flow{f1, f2}}, 2},
		{ctl.Cmd{Op: ctl.OpExcept, Addr: a, Node: 1, Gen: 1, Flows: []ctl.Flow{f1, f2}}, 2}, // held already
		{ctl.Cmd{Op: ctl.OpExcept, Addr: a, Node: 2, Gen: 1, Flows: []ctl.Flow{f2}}, 3},     // moves
		{ctl.Cmd{Op: ctl.OpUnexcept, Addr: a, Node: 1, Flows: []ctl.Flow{f1, f2}}, 4},       // f2 is node 2's: skipped
	}
	for i, s := range steps {
		if r := n.apply(t, uint64(2+i), s.cmd); r.Code != ctl.OK {
			t.Fatalf("step %d: %s", i, replyText(r))
		}
		if got := n.m.ExceptionChanges(); got != s.want {
			t.Fatalf("step %d (%v): %d changes, want %d", i, s.cmd.Op, got, s.want)
		}
	}
	// Node 2 leaves: its exception goes with it.
	n.view(t, 10, 2, [2]uint64{1, 1})
	if got := n.m.ExceptionChanges(); got != 5 {
		t.Fatalf("after node 2 left: %d changes, want 5", got)
	}
}
