package kernel

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// affSize caps the clients of one affinity map. A full map makes the
// dispatch rule's update fail; the plain rule behind it then steers the
// new client by its bucket alone.
const affSize = 1 << 20

// applied is what the last Apply put into the nft table: the plan and
// its marks, so that the next rebuild can carry the affinity entries
// over (an entry's value is a mark, whose node only the plan knows).
type applied struct {
	plan   Plan
	marks  map[uint64]uint32
	tables string // plan's tables fingerprint
}

// affName is the affinity map of port group g of address k.
func affName(k, g int) string { return fmt.Sprintf("f%d_%d", k, g) }

func affSet(k, g int, timeout time.Duration) *nftables.Set {
	return &nftables.Set{Table: table, Name: affName(k, g), IsMap: true, Dynamic: true, HasTimeout: true,
		Timeout: timeout, Size: affSize, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeMark}
}

// affineRules are the two rules of one service of an affine address,
// ahead of its plain rule: a client with an entry in the group's map f
// goes to the entry's node, and the entry's timeout restarts; a client
// without one is steered by its bucket in bm (of m buckets) and gets an
// entry for the node it went to. match selects the service's packets.
func affineRules(match []expr.Any, f, bm *nftables.Set, m int, timeout time.Duration) [][]expr.Any {
	saddr := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
	// The update adds an entry only where there is none, and otherwise
	// only restarts its timeout: the data (register 2) of an existing
	// entry is kept.
	update := &expr.Dynset{SrcRegKey: 1, SrcRegData: 2, SetName: f.Name, SetID: f.ID,
		Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: timeout}
	hit := append(slices.Clone(match), saddr,
		&expr.Lookup{SourceRegister: 1, DestRegister: 2, IsDestRegSet: true, SetName: f.Name, SetID: f.ID},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 2},
		update,
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
	miss := append(slices.Clone(match), saddr,
		&expr.Hash{SourceRegister: 1, DestRegister: 2, Length: 4, Modulus: uint32(m), Seed: HashSeed, Type: expr.HashTypeJenkins},
		&expr.Lookup{SourceRegister: 2, DestRegister: 2, IsDestRegSet: true, SetName: bm.Name, SetID: bm.ID},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 2},
		update,
		&expr.Verdict{Kind: expr.VerdictAccept},
	)
	return [][]expr.Any{hit, miss}
}

// carried returns, by the new plan's map names, the affinity entries of
// the table now installed that the new plan keeps: those of a client in
// an old group sharing a service with the new group, whose node is still
// in the new group's table, with the time they have left (at most the
// new timeout). An entry whose node left the table is dropped: its
// client's next flow follows the table at once. Entries made between
// this read and the batch's commit are lost (their clients follow the
// new table); so are all of them after a restart, which has no old plan.
func (d *Dataplane) carried(c *nftables.Conn, p Plan, marks map[uint64]uint32) map[string][]nftables.SetElement {
	if d.applied == nil {
		return nil
	}
	old := d.applied
	nodeOf := map[uint32]uint64{}
	for id, i := range old.marks {
		nodeOf[markOf(i)] = id
	}
	out := map[string][]nftables.SetElement{}
	for k, a := range p.Addrs {
		if !a.affine() {
			continue
		}
		ko := slices.IndexFunc(old.plan.Addrs, func(o Addr) bool { return o.VIP == a.VIP })
		if ko < 0 || !old.plan.Addrs[ko].affine() {
			continue
		}
		oa := &old.plan.Addrs[ko]
		oldGroups := oa.groups()
		for g, grp := range a.groups() {
			in := map[uint64]bool{}
			for _, n := range a.Services[grp[0]].Table {
				in[n] = true
			}
			best := map[[4]byte]nftables.SetElement{}
			for og, ogrp := range oldGroups {
				if !sharesService(a.Services, grp, oa.Services, ogrp) {
					continue
				}
				elems, err := c.GetSetElements(&nftables.Set{Table: table, Name: affName(ko, og)})
				if err != nil {
					d.log.Debug("affinity entries not carried over", "vip", a.VIP, "err", err)
					continue
				}
				for _, e := range elems {
					if len(e.Key) != 4 || len(e.Val) != 4 || e.Expires <= 0 {
						continue
					}
					node, ok := nodeOf[binaryutil.NativeEndian.Uint32(e.Val)]
					if !ok || !in[node] {
						continue
					}
					left := min(e.Expires, a.Affinity)
					key := [4]byte(e.Key)
					if b, ok := best[key]; ok && b.Timeout >= left {
						continue
					}
					best[key] = nftables.SetElement{Key: key[:], Val: binaryutil.NativeEndian.PutUint32(markOf(marks[node])),
						Timeout: max(left, time.Millisecond)}
				}
			}
			name := affName(k, g)
			for _, e := range best {
				out[name] = append(out[name], e)
			}
		}
	}
	return out
}

func sharesService(a []Service, ga []int, b []Service, gb []int) bool {
	for _, i := range ga {
		for _, j := range gb {
			if a[i].Proto == b[j].Proto && a[i].Port == b[j].Port {
				return true
			}
		}
	}
	return false
}

// Affinities returns the affinity entries the stack holds for vip, by
// client address: the node each client is kept on, and the time it has
// left, for every port group (a client may be in several). It is empty
// where the node is not the owner, the address has no affinity, or
// nothing has been applied.
func (d *Dataplane) Affinities(vip netip.Addr) ([]Affinity, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.applied == nil {
		return nil, nil
	}
	k := slices.IndexFunc(d.applied.plan.Addrs, func(a Addr) bool { return a.VIP == vip })
	if k < 0 || !d.applied.plan.Addrs[k].affine() {
		return nil, nil
	}
	nodeOf := map[uint32]uint64{}
	for id, i := range d.applied.marks {
		nodeOf[markOf(i)] = id
	}
	c, err := d.nftConn()
	if err != nil {
		return nil, err
	}
	var out []Affinity
	a := &d.applied.plan.Addrs[k]
	for g, grp := range a.groups() {
		elems, err := c.GetSetElements(&nftables.Set{Table: table, Name: affName(k, g)})
		if err != nil {
			return nil, fmt.Errorf("kernel: affinity entries of %v: %w", vip, err)
		}
		for _, e := range elems {
			if len(e.Key) != 4 || len(e.Val) != 4 {
				continue
			}
			var svcs []Service
			for _, j := range grp {
				svcs = append(svcs, Service{Proto: a.Services[j].Proto, Port: a.Services[j].Port})
			}
			out = append(out, Affinity{Client: netip.AddrFrom4([4]byte(e.Key)),
				Node: nodeOf[binaryutil.NativeEndian.Uint32(e.Val)], Left: e.Expires, Services: svcs})
		}
	}
	return out, nil
}
