package ctl

import (
	"encoding/binary"
	"hash/fnv"
	"net/netip"
)

// mix64 is splitmix64's finaliser: the node's place in the table comes
// from its id alone, so every node computes the same permutation.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// Seeds of the two hashes of Maglev's permutation (SPEC.md, "Dispatch
// table"); fixed forever with the format.
const (
	seedOffset = 0x636f7272616c0001
	seedSkip   = 0x636f7272616c0002
)

// Build returns a weighted Maglev table of m buckets (m prime) over the
// nodes, which must be sorted by node with no duplicates and weights > 0:
// each bucket holds a node. Every node walks its own permutation of the
// buckets (offset + j·skip mod m, from hashes of its id) and takes the
// next free one when its turn comes; turns are weighted: each round a
// node adds its weight to a credit and takes a turn for every maximum
// weight the credit holds. A node's share of the buckets is its share of
// the weight, within one bucket per round's rounding; a change of one
// node's weight, or a node joining or leaving, moves few buckets
// (measured in the tests: table_test.go).
//
// Build returns nil for no nodes or an m that is not prime (a skip that
// shares a factor with m would not visit every bucket).
func Build(nodes []Weight, m int) []uint64 {
	if len(nodes) == 0 || !prime(m) {
		return nil
	}
	n := len(nodes)
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	credit := make([]uint64, n)
	var wmax uint64
	for i, nd := range nodes {
		offset[i] = mix64(nd.Node^seedOffset) % uint64(m)
		skip[i] = mix64(nd.Node^seedSkip)%uint64(m-1) + 1
		wmax = max(wmax, uint64(nd.Weight))
	}
	owner := make([]int32, m)
	for i := range owner {
		owner[i] = -1
	}
	for filled := 0; filled < m; {
		for i := 0; i < n && filled < m; i++ {
			credit[i] += uint64(nodes[i].Weight)
			if credit[i] < wmax {
				continue
			}
			credit[i] -= wmax
			c := (offset[i] + next[i]*skip[i]) % uint64(m)
			for owner[c] >= 0 {
				next[i]++
				c = (offset[i] + next[i]*skip[i]) % uint64(m)
			}
			owner[c] = int32(i)
			next[i]++
			filled++
		}
	}
	t := make([]uint64, m)
	for i, o := range owner {
		t[i] = nodes[o].Node
	}
	return t
}

// Bucket returns the bucket of a flow from client in a table of m
// buckets, by the policy: Weighted hashes the client's address and port,
// Sticky and StickyWild the address only. The hash is FNV-1a 64 over the
// address's 16 bytes (IPv4 v4-mapped) and, for Weighted, the port big
// endian, then mix64 (FNV alone leaves a bias of about 0.5 % in shares); the kernel data path computes its own hash into the same
// buckets, this one is the reference for user space (the fallback proxy,
// tests).
func Bucket(p Policy, client netip.AddrPort, m int) int {
	h := fnv.New64a()
	ip := client.Addr().As16()
	h.Write(ip[:])
	if p == Weighted {
		h.Write(binary.BigEndian.AppendUint16(nil, client.Port()))
	}
	return int(mix64(h.Sum64()) % uint64(m))
}

func prime(m int) bool {
	if m < 2 {
		return false
	}
	for d := 2; d*d <= m; d++ {
		if m%d == 0 {
			return false
		}
	}
	return true
}

// nextPrime returns the least prime ≥ m.
func nextPrime(m int) int {
	for !prime(m) {
		m++
	}
	return m
}
