package replicated

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestKeySet checks the set against a map under random inserts and
// removals, across the compaction threshold, in both directions.
func TestKeySet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var s keySet
	ref := map[uint32]bool{}
	for i := range 20000 {
		k := uint32(rng.IntN(2000))
		if rng.IntN(4) == 0 && len(ref) > 0 {
			k = 2000 // the lowest key present, as addresses are taken in order
			for r := range ref {
				k = min(k, r)
			}
		}
		// Grow first, then shrink, so the set crosses keySetCompactMin.
		if rng.IntN(10) < 7 == (i < 10000) {
			s.insert(k)
			ref[k] = true
		} else {
			s.remove(k)
			delete(ref, k)
		}
		if i%97 != 0 {
			continue
		}
		var got []uint32
		s.each(func(k uint32) bool { got = append(got, k); return true })
		var want []uint32
		for k := range ref {
			want = append(want, k)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) || s.len() != len(want) {
			t.Fatalf("step %d: set has %d keys (len %d), want %d", i, len(got), s.len(), len(want))
		}
	}
}
