package replicated

import (
	"cmp"
	"slices"
)

// keySet is the client id index's set of CIPs for one client id, in
// ascending order for scans. The free records' client id (one byte 0)
// holds nearly every record of a network, so deleting from the middle of
// a plain sorted slice moved the whole list at every lease taken. A
// large set marks a removed key instead and compacts once a quarter of
// the slice is removed: a removal costs O(log n) amortized. Removing the
// lowest key, the common case, drops it from the front at once, with the
// removed ones behind it (a scan for free records would otherwise step
// over every address taken since the last compaction).
type keySet struct {
	keys []uint32            // ascending; keys in dead are removed
	dead map[uint32]struct{} // removed keys still in keys; nil: none
}

// keySetCompactMin is the size below which a removal deletes at once:
// moving a short slice is cheaper than a map.
const keySetCompactMin = 256

func (s *keySet) len() int { return len(s.keys) - len(s.dead) }

func (s *keySet) insert(k uint32) {
	if _, ok := s.dead[k]; ok {
		delete(s.dead, k)
		return
	}
	s.keys = insertSorted(s.keys, k, cmp.Compare[uint32])
}

func (s *keySet) remove(k uint32) {
	if _, ok := s.dead[k]; ok {
		return
	}
	i, found := slices.BinarySearch(s.keys, k)
	if !found {
		return
	}
	if i == 0 {
		// The lowest key, as a network's addresses are mostly taken in
		// order: drop it and the removed keys after it for free, so a
		// scan from the start does not step over them.
		s.keys = s.keys[1:]
		for len(s.keys) > 0 && len(s.dead) > 0 {
			if _, ok := s.dead[s.keys[0]]; !ok {
				break
			}
			delete(s.dead, s.keys[0])
			s.keys = s.keys[1:]
		}
		return
	}
	if len(s.keys) < keySetCompactMin {
		s.keys = slices.Delete(s.keys, i, i+1)
		return
	}
	if s.dead == nil {
		s.dead = map[uint32]struct{}{}
	}
	s.dead[k] = struct{}{}
	if len(s.dead) > len(s.keys)/4 {
		s.keys = slices.DeleteFunc(s.keys, func(k uint32) bool { _, ok := s.dead[k]; return ok })
		s.dead = nil
	}
}

// each calls fn with the keys in ascending order until it returns false.
func (s *keySet) each(fn func(uint32) bool) {
	for _, k := range s.keys {
		if s.dead != nil {
			if _, ok := s.dead[k]; ok {
				continue
			}
		}
		if !fn(k) {
			return
		}
	}
}
