package event_test

import (
	"testing"

	"github.com/corralhq/corral/types/event"
)

func TestSeq(t *testing.T) {
	for _, tc := range []struct {
		index uint64
		k     uint32
		seq   uint64
	}{
		{0, 0, 0},
		{1, 0, 1 << 20},
		{1, 1, 1<<20 + 1},
		{7, 1<<20 - 1, 8<<20 - 1},
		{1<<44 - 1, 3, (1<<44-1)<<20 | 3},
	} {
		if got := event.SeqOf(tc.index, tc.k); got != tc.seq {
			t.Errorf("SeqOf(%d, %d) = %#x, want %#x", tc.index, tc.k, got, tc.seq)
		}
		if got := event.SeqIndex(tc.seq); got != tc.index {
			t.Errorf("SeqIndex(%#x) = %d, want %d", tc.seq, got, tc.index)
		}
	}
	// Every event of entry i sorts before every event of entry i+1.
	if !(event.SeqOf(5, 1<<20-1) < event.SeqOf(6, 0)) {
		t.Error("the last event of an entry does not sort before the next entry's first")
	}
}
