package kernel

import (
	"fmt"
	"maps"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

// A weight change, a listener's drain or a node's new share changes the
// nodes of some buckets and nothing else of the table's shape. Rebuilding
// the table then costs ~0.4 s for a 65537-bucket map, most of it
// re-sending buckets that did not move; patch instead queues, in the
// batch that refills the roles, the delete and re-add of each bucket
// (and exception) that changed. The kernel commits the batch whole, so a
// packet sees the old map or the new one.

// patch queues on c the element changes that turn the installed table,
// built from d.applied (its fingerprint have), into p's, and reports
// whether it could: only when every map and rule of p exists already,
// with the same names and marks — the same nodes, addresses, policies,
// services (protocol, port, size), slices, port groups and affinity, and
// exceptions present in both or neither. An affine address whose table
// gains or loses a node is rebuilt: Apply's rebuild drops the affinity
// entries of a node that left, and keeps only those (carried).
func (d *Dataplane) patch(c *nftables.Conn, have string, p Plan, marks map[uint64]uint32) (bool, error) {
	old := d.applied
	if old == nil || !maps.Equal(old.marks, marks) || len(old.plan.Addrs) != len(p.Addrs) {
		return false, nil
	}
	if old.tables != have {
		return false, nil // the table is not the one this process built
	}
	for k := range p.Addrs {
		if !samePlace(&p.Addrs[k], &old.plan.Addrs[k]) {
			return false, nil
		}
	}
	for k := range p.Addrs {
		a, o := &p.Addrs[k], &old.plan.Addrs[k]
		for j, s := range a.Services {
			var del, add []nftables.SetElement
			for b, n := range s.Table {
				if n == o.Services[j].Table[b] {
					continue
				}
				key := binaryutil.NativeEndian.PutUint32(uint32(b))
				del = append(del, nftables.SetElement{Key: key})
				add = append(add, nftables.SetElement{Key: key, Val: binaryutil.NativeEndian.PutUint32(markOf(marks[n]))})
			}
			bm := &nftables.Set{Table: table, Name: fmt.Sprintf("b%d_%d", k, j), IsMap: true,
				KeyType: nftables.TypeInteger, DataType: nftables.TypeMark}
			if err := replaceElements(c, bm, del, add); err != nil {
				return false, fmt.Errorf("kernel: nft table of %v %d/%d: %w", a.VIP, s.Proto, s.Port, err)
			}
		}
		if len(a.Exceptions) == 0 {
			continue
		}
		was := map[[8]byte]uint32{}
		for _, e := range o.Exceptions {
			was[exceptionKey(e)] = markOf(marks[e.Node])
		}
		now := map[[8]byte]uint32{}
		for _, e := range a.Exceptions {
			now[exceptionKey(e)] = markOf(marks[e.Node])
		}
		var del, add []nftables.SetElement
		for key, m := range was {
			if n, ok := now[key]; !ok || n != m {
				del = append(del, nftables.SetElement{Key: slices.Clone(key[:])})
			}
		}
		for key, n := range now {
			if m, ok := was[key]; !ok || m != n {
				add = append(add, nftables.SetElement{Key: slices.Clone(key[:]), Val: binaryutil.NativeEndian.PutUint32(n)})
			}
		}
		if err := replaceElements(c, exceptionSet(k), del, add); err != nil {
			return false, fmt.Errorf("kernel: nft exceptions of %v: %w", a.VIP, err)
		}
	}
	return true, nil
}

// samePlace reports whether a's maps and rules are o's but for their
// elements (see patch).
func samePlace(a, o *Addr) bool {
	if a.VIP != o.VIP || a.Policy != o.Policy || a.Affinity != o.Affinity || !slices.Equal(a.Slices, o.Slices) ||
		len(a.Services) != len(o.Services) || (len(a.Exceptions) == 0) != (len(o.Exceptions) == 0) ||
		!slices.EqualFunc(a.groups(), o.groups(), slices.Equal) {
		return false
	}
	for j, s := range a.Services {
		os := o.Services[j]
		if s.Proto != os.Proto || s.Port != os.Port || len(s.Table) != len(os.Table) {
			return false
		}
		if a.affine() && !sameNodes(s.Table, os.Table) {
			return false
		}
	}
	return true
}

func sameNodes(a, b []uint64) bool {
	in := func(t []uint64) map[uint64]bool {
		m := map[uint64]bool{}
		for _, n := range t {
			m[n] = true
		}
		return m
	}
	return maps.Equal(in(a), in(b))
}

// replaceElements queues the deletes, then the adds, in chunks.
func replaceElements(c *nftables.Conn, s *nftables.Set, del, add []nftables.SetElement) error {
	for len(del) > 0 {
		n := min(len(del), elemChunk)
		if err := c.SetDeleteElements(s, del[:n]); err != nil {
			return err
		}
		del = del[n:]
	}
	for len(add) > 0 {
		n := min(len(add), elemChunk)
		if err := c.SetAddElements(s, add[:n]); err != nil {
			return err
		}
		add = add[n:]
	}
	return nil
}

// clonePlan copies what patch and carried read of the applied plan, so
// that a caller reusing a table's slice for its next plan does not
// change the old one under them.
func clonePlan(p Plan) Plan {
	p.Nodes = slices.Clone(p.Nodes)
	p.Addrs = slices.Clone(p.Addrs)
	for k := range p.Addrs {
		a := &p.Addrs[k]
		a.Services = slices.Clone(a.Services)
		for j := range a.Services {
			a.Services[j].Table = slices.Clone(a.Services[j].Table)
		}
		a.Exceptions = slices.Clone(a.Exceptions)
		a.Slices = slices.Clone(a.Slices)
	}
	return p
}
