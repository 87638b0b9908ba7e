package kernel

import (
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
)

// Seeding the affinity maps from the exceptions (see the package doc,
// "Affinity"). An exception is a flow a serving node reported it holds
// (ctl's EXCEPT, from its walk) whose bucket is another node: its client
// is one whose next flow the table would send elsewhere. The entries of
// the owner that steered it are lost with that owner (or its process), so
// the owner seeds its own: each client of an exception gets an entry for
// the exception's node with the full timeout, where it has none. Packets
// of an excepted flow are accepted by the exception rule before the
// affinity rules, so without a seed the client's next flow would follow
// the table.

// seedSets returns, by affinity map name, the entries the exceptions of
// p's owned affine addresses give: for the address at index k, every
// exception if all(k), else those not in the last applied plan (their
// client was seeded, or had an entry, already). One entry per client and
// map: the first exception of the client (flow order) names the node.
func seedSets(p Plan, old *applied, marks map[uint64]uint32, all func(k int) bool) map[string][]nftables.SetElement {
	out := map[string][]nftables.SetElement{}
	for k := range p.Addrs {
		a := &p.Addrs[k]
		if !a.Owner || !a.affine() || len(a.Exceptions) == 0 {
			continue
		}
		prev := map[Exception]bool{}
		if !all(k) && old != nil {
			if ko := slices.IndexFunc(old.plan.Addrs, func(o Addr) bool { return o.VIP == a.VIP }); ko >= 0 {
				for _, e := range old.plan.Addrs[ko].Exceptions {
					prev[e] = true
				}
			}
		}
		groups := a.groups()
		seen := map[string]map[[4]byte]bool{}
		for _, e := range a.Exceptions {
			if prev[e] || !e.Client.Addr().Is4() {
				continue
			}
			g := seedGroup(a, groups, e)
			if g < 0 {
				continue
			}
			name := affName(k, g)
			key := e.Client.Addr().As4()
			if seen[name] == nil {
				seen[name] = map[[4]byte]bool{}
			}
			if seen[name][key] {
				continue
			}
			seen[name][key] = true
			out[name] = append(out[name], nftables.SetElement{Key: key[:],
				Val: binaryutil.NativeEndian.PutUint32(markOf(marks[e.Node])), Timeout: a.Affinity})
		}
	}
	return out
}

// seedGroup is the port group of a whose map an entry for e goes to: the
// group of e's service (a StickyWild table serves every port of its
// protocol), if its table has e's node; an exception naming no service
// (Port 0) goes to the first group whose table has the node. -1: none.
func seedGroup(a *Addr, groups [][]int, e Exception) int {
	for g, grp := range groups {
		if !slices.Contains(a.Services[grp[0]].Table, e.Node) {
			continue
		}
		if e.Port == 0 {
			return g
		}
		for _, j := range grp {
			if s := a.Services[j]; s.Proto == e.Proto && (s.Port == e.Port || s.Port == 0) {
				return g
			}
		}
	}
	return -1
}

// mergeSeeds adds to carry the seeds of clients carry has no entry for:
// an entry carried over is the client's, and a seed only fills a gap.
func mergeSeeds(carry, seeds map[string][]nftables.SetElement) map[string][]nftables.SetElement {
	if len(seeds) == 0 {
		return carry
	}
	if carry == nil {
		carry = map[string][]nftables.SetElement{}
	}
	for name, es := range seeds {
		have := map[[4]byte]bool{}
		for _, e := range carry[name] {
			have[[4]byte(e.Key)] = true
		}
		for _, e := range es {
			if !have[[4]byte(e.Key)] {
				carry[name] = append(carry[name], e)
			}
		}
	}
	return carry
}

// queueSeeds queues on c the seeds of clients the installed maps have no
// entry for, read now. Between this read and the batch's commit, a packet
// may give one of those clients an entry with another node: the kernel
// then refuses the batch (an element that exists with other data), so a
// batch that also carries the roles is queued only for maps no packet
// reaches (addresses not owned before it).
func queueSeeds(c *nftables.Conn, p Plan, seeds map[string][]nftables.SetElement) (int, error) {
	n := 0
	for k := range p.Addrs {
		a := &p.Addrs[k]
		for g := range a.groups() {
			es := seeds[affName(k, g)]
			if len(es) == 0 {
				continue
			}
			f := affSet(k, g, a.Affinity)
			have, err := c.GetSetElements(&nftables.Set{Table: table, Name: f.Name})
			if err != nil {
				return n, fmt.Errorf("kernel: affinity map of %v: %w", a.VIP, err)
			}
			in := map[[4]byte]bool{}
			for _, e := range have {
				if len(e.Key) == 4 {
					in[[4]byte(e.Key)] = true
				}
			}
			var add []nftables.SetElement
			for _, e := range es {
				if !in[[4]byte(e.Key)] {
					add = append(add, e)
				}
			}
			if err := replaceElements(c, f, nil, add); err != nil {
				return n, fmt.Errorf("kernel: affinity map of %v: %w", a.VIP, err)
			}
			n += len(add)
		}
	}
	return n, nil
}

// seedLater adds, in batches of their own after the plan's, the seeds for
// maps that packets reach (addresses owned before the plan): a packet
// that gives a client an entry between the read and the commit makes the
// kernel refuse the batch, and it is read and tried again. A failure is
// logged: the clients follow their entries or the table, as without
// seeds.
func (d *Dataplane) seedLater(p Plan, seeds map[string][]nftables.SetElement) {
	if len(seeds) == 0 {
		return
	}
	var err error
	for range 3 {
		var c *nftables.Conn
		if c, err = d.nftConn(); err != nil {
			break
		}
		var n int
		if n, err = queueSeeds(c, p, seeds); err == nil {
			if err = c.Flush(); err == nil {
				if n > 0 {
					d.log.Debug("affinity entries seeded from exceptions", "entries", n)
				}
				return
			}
		}
	}
	d.log.Warn("affinity entries not seeded from exceptions", "err", err.Error())
}
