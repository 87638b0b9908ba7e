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
