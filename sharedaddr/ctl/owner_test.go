package ctl_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// owners returns each address's owner on n, checking it is the same on
// every other node (they applied the same log).
func owners(t *testing.T, nodes []*node, addrs []ctl.Addr) map[ctl.Addr]uint64 {
	t.Helper()
	out := map[ctl.Addr]uint64{}
	for _, a := range addrs {
		o0, ok := nodes[0].m.Owner(a)
		if !ok {
			t.Fatalf("%v: no owner", a)
		}
		for i, n := range nodes[1:] {
			if o, ok := n.m.Owner(a); o != o0 || !ok {
				t.Fatalf("%v: node 0 derives owner %d, node %d derives %d", a, o0, i+1, o)
			}
		}
		out[a] = o0
	}
	return out
}

func applyAll(t *testing.T, nodes []*node, index uint64, c ctl.Cmd) {
	t.Helper()
	for _, n := range nodes {
		if r := n.apply(t, index, c); r.Code != ctl.OK {
			t.Fatalf("%v: %s", c.Op, replyText(r))
		}
	}
}

func viewAll(t *testing.T, nodes []*node, index, instance uint64, members ...[2]uint64) {
	t.Helper()
	for _, n := range nodes {
		n.view(t, index, instance, members...)
	}
}

// TestOwnerSpread: six addresses over three members are spread (none
// owns more than ceil(6/3)+1; the rule gives 2 each), every node derives
// the same owners from the same log, a join moves nothing, and the
// owner's leaving moves its addresses only, to the survivors.
func TestOwnerSpread(t *testing.T) {
	nodes := []*node{newNode(251), newNode(251)}
	var addrs []ctl.Addr
	for i := range 6 {
		addrs = append(addrs, ctl.Addr{Stack: 7, IP: netip.AddrFrom4([4]byte{10, 0, 0, byte(100 + i)})})
	}
	viewAll(t, nodes, 1, 1, [2]uint64{1, 1}, [2]uint64{2, 2}, [2]uint64{3, 3})
	for i, a := range addrs {
		applyAll(t, nodes, uint64(2+i), ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: ctl.Weighted})
	}
	before := owners(t, nodes, addrs)
	count := map[uint64]int{}
	for _, o := range before {
		count[o]++
	}
	for _, n := range []uint64{1, 2, 3} {
		if count[n] > 3 || count[n] == 0 {
			t.Fatalf("owners %v: node %d owns %d of 6", before, n, count[n])
		}
	}

	// A replace (weight change) keeps the owner.
	applyAll(t, nodes, 10, ctl.Cmd{Op: ctl.OpAdd, Addr: addrs[0], Replace: true, Policy: ctl.Sticky})
	// Node 4 joins, older than all (born-on 0): nothing moves.
	viewAll(t, nodes, 11, 2, [2]uint64{4, 0}, [2]uint64{1, 1}, [2]uint64{2, 2}, [2]uint64{3, 3})
	if got := owners(t, nodes, addrs); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("a join or a replace moved owners: %v, before %v", got, before)
	}

	// The owner of addrs[1] leaves: its addresses move, to members, and
	// no other address moves.
	gone := before[addrs[1]]
	var left [][2]uint64
	for _, m := range [][2]uint64{{4, 0}, {1, 1}, {2, 2}, {3, 3}} {
		if m[0] != gone {
			left = append(left, m)
		}
	}
	viewAll(t, nodes, 12, 3, left...)
	after := owners(t, nodes, addrs)
	for _, a := range addrs {
		switch {
		case before[a] != gone && after[a] != before[a]:
			t.Errorf("%v moved from %d to %d, its owner stayed", a, before[a], after[a])
		case before[a] == gone && (after[a] == gone || after[a] == 0):
			t.Errorf("%v still owned by %d, which left", a, after[a])
		}
	}
	// The new node, owning nothing, takes the moved addresses first.
	for _, a := range addrs {
		if before[a] == gone && count[gone] <= 2 && after[a] != 4 {
			t.Errorf("%v moved to %d; want 4, the member owning the fewest", a, after[a])
		}
	}

	// A machine restored from a snapshot derives the same owners.
	r := snapshotRestore(t, nodes[0])
	if got := owners(t, []*node{nodes[0], r}, addrs); fmt.Sprint(got) != fmt.Sprint(after) {
		t.Fatalf("restored owners %v, want %v", got, after)
	}

	// Every member leaves but one: it owns everything.
	viewAll(t, nodes, 13, 4, [2]uint64{left[0][0], left[0][1]})
	for a, o := range owners(t, nodes, addrs) {
		if o != left[0][0] {
			t.Errorf("%v owned by %d, the only member is %d", a, o, left[0][0])
		}
	}
}

// TestOwnerNoView: an address added before any view gets its owner at
// the first view, chosen as at ADD.
func TestOwnerNoView(t *testing.T) {
	nodes := []*node{newNode(251), newNode(251)}
	a := ctl.Addr{IP: netip.MustParseAddr("10.0.0.1")}
	applyAll(t, nodes, 1, ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: ctl.Weighted})
	if _, ok := nodes[0].m.Owner(a); ok {
		t.Fatal("an owner with no view")
	}
	viewAll(t, nodes, 2, 1, [2]uint64{10, 1}, [2]uint64{20, 1}, [2]uint64{30, 1})
	o := owners(t, nodes, []ctl.Addr{a})[a]
	if o == 0 {
		t.Fatal("no owner after the first view")
	}
}

func snapshotRestore(t *testing.T, n *node) *node {
	t.Helper()
	var buf bytes.Buffer
	if err := n.m.Snapshot(n.tx, &buf); err != nil {
		t.Fatal(err)
	}
	r := newNode(251)
	if err := r.m.Restore(r.tx, &buf); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestOwnerBalance: with 30 addresses the fewest-first rule gives 10 to
// each of 3 members; the 10 of one that leaves split 5/5 over the other
// two; a member that joins takes no address but the next ones added.
func TestOwnerBalance(t *testing.T) {
	n := newNode(251)
	var addrs []ctl.Addr
	for i := range 40 {
		addrs = append(addrs, ctl.Addr{Stack: 3, IP: netip.AddrFrom4([4]byte{10, 1, byte(i / 7), byte(i)})})
	}
	count := func() map[uint64]int {
		c := map[uint64]int{}
		for _, a := range n.m.Addrs() {
			c[a.Owner]++
		}
		return c
	}
	n.view(t, 1, 1, [2]uint64{1, 1}, [2]uint64{2, 2}, [2]uint64{3, 3})
	for i, a := range addrs[:30] {
		if r := n.apply(t, uint64(2+i), ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: ctl.Weighted}); r.Code != ctl.OK {
			t.Fatal(replyText(r))
		}
	}
	if c := count(); c[1] != 10 || c[2] != 10 || c[3] != 10 {
		t.Fatalf("owners of 30 addresses over 3 members: %v", c)
	}
	n.view(t, 40, 2, [2]uint64{1, 1}, [2]uint64{3, 3})
	if c := count(); c[1] != 15 || c[3] != 15 {
		t.Fatalf("after node 2 left: %v", c)
	}
	n.view(t, 41, 3, [2]uint64{1, 1}, [2]uint64{3, 3}, [2]uint64{4, 4})
	if c := count(); c[1] != 15 || c[3] != 15 || c[4] != 0 {
		t.Fatalf("after node 4 joined: %v", c)
	}
	for i, a := range addrs[30:] {
		if r := n.apply(t, uint64(50+i), ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: ctl.Weighted}); r.Code != ctl.OK {
			t.Fatal(replyText(r))
		}
	}
	if c := count(); c[1] != 15 || c[3] != 15 || c[4] != 10 {
		t.Fatalf("10 addresses added after node 4 joined: %v", c)
	}
}
