package ctl

import (
	"encoding/binary"
	"hash/fnv"
	"maps"
	"slices"

	"github.com/corralhq/corral/rsm"
)

// seedOwner is the seed of the owner's rendezvous hash (SPEC.md,
// "Owner"); fixed forever with the format.
const seedOwner = 0x636f7272616c0003

// ownerScore is the rendezvous (highest-random-weight) score of node for
// address a: every node computes the same from the two ids alone.
func ownerScore(a Addr, node uint64) uint64 {
	h := fnv.New64a()
	h.Write(binary.LittleEndian.AppendUint64(nil, a.Stack))
	ip := a.IP.As16()
	h.Write(ip[:])
	return mix64(h.Sum64() ^ mix64(node^seedOwner))
}

// ownerOf is the owner of an address that exists: the recorded one, else
// (state written by version 2, which recorded none) the oldest member of
// the view, as version 2 derived it. 0 for an empty view.
func (m *Machine) ownerOf(a Addr) uint64 {
	if o, ok := m.st.owners[a]; ok {
		return o
	}
	if len(m.st.view.members) == 0 {
		return 0
	}
	return m.st.view.members[0].id
}

// ownerLoad counts the addresses each node owns, a left out.
func (m *Machine) ownerLoad(a Addr) map[uint64]int {
	load := map[uint64]int{}
	for b := range m.st.addrs {
		if b != a {
			load[m.ownerOf(b)]++
		}
	}
	return load
}

// chooseOwner picks the owner of a among the view's members: the one
// owning the fewest addresses by load, so that owners spread evenly over
// the members (at most ceil(addresses/members) each while the view does
// not change), then the highest rendezvous score, then the smallest id.
// 0 for an empty view.
func (m *Machine) chooseOwner(a Addr, load map[uint64]int) uint64 {
	var best uint64
	bestLoad, bestScore := 0, uint64(0)
	for _, mb := range m.st.view.members {
		l, s := load[mb.id], ownerScore(a, mb.id)
		if best == 0 || l < bestLoad || (l == bestLoad && (s > bestScore || (s == bestScore && mb.id < best))) {
			best, bestLoad, bestScore = mb.id, l, s
		}
	}
	return best
}

// setOwner records node as a's owner (0: no record).
func (m *Machine) setOwner(tx rsm.Tx, a Addr, node uint64) error {
	if node == 0 {
		delete(m.st.owners, a)
		return tx.Delete(ownerKey(a))
	}
	if o, ok := m.st.owners[a]; ok && o == node {
		return nil
	}
	if err := tx.Put(ownerKey(a), leaseValue(node)); err != nil {
		return err
	}
	m.st.owners[a] = node
	return nil
}

// reown applies a view change to the owners, in key order (the load
// chooseOwner counts depends on it): an address whose owner is still a
// member keeps it, recorded (a join never moves an address); the others
// are chosen anew among the members. prev is the view before.
func (m *Machine) reown(tx rsm.Tx, prev view) error {
	keep := map[Addr]uint64{}
	for a := range m.st.addrs {
		o, ok := m.st.owners[a]
		if !ok && len(prev.members) > 0 {
			o = prev.members[0].id // recorded by no one: version 2's owner
		}
		if o != 0 && m.st.view.has(o) {
			keep[a] = o
		}
	}
	addrs := slices.SortedFunc(maps.Keys(m.st.addrs), cmpAddr)
	// First the keepers (recorded, if version 2 did not), so that the
	// load counts them all; a moved address counts for nobody until it is
	// chosen.
	load := map[uint64]int{}
	for _, a := range addrs {
		if o, ok := keep[a]; ok {
			load[o]++
			if err := m.setOwner(tx, a, o); err != nil {
				return err
			}
		}
	}
	for _, a := range addrs {
		if _, ok := keep[a]; ok {
			continue
		}
		o := m.chooseOwner(a, load) // 0 for an empty view: no record
		load[o]++
		if err := m.setOwner(tx, a, o); err != nil {
			return err
		}
	}
	return nil
}
