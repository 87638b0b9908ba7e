package clusterlog

import (
	"slices"

	"go.etcd.io/raft/v3/raftpb"
)

// recentBytes bounds the encoded size of the entries a Storage keeps in
// memory after storing them (at least the last one is kept).
const recentBytes = 16 << 20

// recent is the tail of the log as it was appended, in memory. raft reads
// nearly every entry back soon after it is stored — to apply it once it
// is committed, to send it to a follower — and reading it from the file
// copied and decoded every byte again (a sixth of a busy leader's
// allocations). It is part of diskState, a value: a write transaction
// changes its copy, so nothing a reader of the installed state can see is
// ever written; truncation copies, and appends write only beyond the
// installed copy's length.
type recent struct {
	first uint64          // index of ents[0]
	ents  []*raftpb.Entry // consecutive, the last one the log's last
	sizes []int           // encoded size of each entry
	bytes int             // sum of sizes
	dead  int             // slots before ents in its array, kept reachable by it
}

// add appends e, whose encoding is size bytes, the entry after the last
// one (or the first of an empty cache), and drops the oldest entries
// beyond recentBytes.
func (r recent) add(e *raftpb.Entry, size int) recent {
	if len(r.ents) == 0 || e.GetIndex() != r.first+uint64(len(r.ents)) {
		r = recent{first: e.GetIndex()}
	}
	r.ents, r.sizes = append(r.ents, e), append(r.sizes, size)
	r.bytes += size
	n := 0
	for r.bytes > recentBytes && n < len(r.ents)-1 {
		r.bytes -= r.sizes[n]
		n++
	}
	return r.drop(n)
}

// drop forgets the n oldest entries.
func (r recent) drop(n int) recent {
	if n == 0 {
		return r
	}
	r.ents, r.sizes, r.first, r.dead = r.ents[n:], r.sizes[n:], r.first+uint64(n), r.dead+n
	if r.dead > len(r.ents) {
		// Let the dropped entries go: a new array for the live ones.
		r.ents, r.sizes, r.dead = slices.Clone(r.ents), slices.Clone(r.sizes), 0
	}
	return r
}

// truncate forgets the entries from index i on (a conflicting suffix
// about to be replaced). It copies what it keeps: the installed state
// shares the array, and the replacements must not be written into it.
func (r recent) truncate(i uint64) recent {
	switch {
	case i <= r.first:
		return recent{}
	case i >= r.first+uint64(len(r.ents)):
		return r
	}
	k := int(i - r.first)
	out := recent{first: r.first, ents: slices.Clone(r.ents[:k]), sizes: slices.Clone(r.sizes[:k])}
	for _, s := range out.sizes {
		out.bytes += s
	}
	return out
}

// compact forgets the entries up to and including index i.
func (r recent) compact(i uint64) recent {
	switch {
	case len(r.ents) == 0 || i < r.first:
		return r
	case i >= r.first+uint64(len(r.ents))-1:
		return recent{}
	}
	n := int(i + 1 - r.first)
	for _, s := range r.sizes[:n] {
		r.bytes -= s
	}
	return r.drop(n)
}

// entry returns entry i if it is held.
func (r recent) entry(i uint64) (*raftpb.Entry, bool) {
	if i < r.first || i >= r.first+uint64(len(r.ents)) {
		return nil, false
	}
	return r.ents[i-r.first], true
}

// slice returns entries lo..hi-1, cut after maxSize bytes as
// Storage.Entries does, if all are held.
func (r recent) slice(lo, hi, maxSize uint64) ([]*raftpb.Entry, bool) {
	if lo < r.first || hi > r.first+uint64(len(r.ents)) || lo >= hi {
		return nil, false
	}
	a, b := int(lo-r.first), int(hi-r.first)
	var size uint64
	n := a
	for ; n < b; n++ {
		size += uint64(r.sizes[n])
		if n > a && size > maxSize {
			break
		}
	}
	return slices.Clone(r.ents[a:n]), true
}
