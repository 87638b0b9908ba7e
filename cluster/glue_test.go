package cluster

import (
	"slices"
	"testing"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/eventstream"
)

// The agent's event stream takes a commit's events at once.
var _ BatchEvents = (*eventstream.Stream)(nil)

// batchRecorder is a recorder that also takes batches, and counts them.
type batchRecorder struct {
	recorder
	batches int
}

func (r *batchRecorder) PublishBatch(evs []events.Event) error {
	r.batches++
	for _, ev := range evs {
		if err := r.Publish(ev); err != nil {
			return err
		}
	}
	return nil
}

// TestPublishCommitted: the events an earlier life published are left
// out, the rest go on in order, in one batch to an Events that takes
// batches and one by one to one that does not.
func TestPublishCommitted(t *testing.T) {
	evs := []events.Event{{Seq: 5 << 20, Desc: events.GSJoin}, {Seq: 5<<20 | 1, Desc: events.GSJoin}, {Seq: 6 << 20, Desc: events.GSJoin}}
	l := &life{replayed: 5 << 20}
	want := []uint64{5<<20 | 1, 6 << 20}
	seqs := func(evs []events.Event) []uint64 {
		var out []uint64
		for _, ev := range evs {
			out = append(out, ev.Seq)
		}
		return out
	}
	br := &batchRecorder{}
	(&Cluster{cfg: Config{Events: br}}).publishCommitted(l, evs)
	if got := seqs(br.events()); !slices.Equal(got, want) || br.batches != 1 {
		t.Fatalf("batch events got %v in %d batches, want %v in 1", got, br.batches, want)
	}
	(&Cluster{cfg: Config{Events: br}}).publishCommitted(l, evs[:1])
	if br.batches != 1 {
		t.Fatalf("a batch of events published already was handed on")
	}
	r := &recorder{}
	(&Cluster{cfg: Config{Events: r}}).publishCommitted(l, evs)
	if got := seqs(r.events()); !slices.Equal(got, want) {
		t.Fatalf("events got %v, want %v", got, want)
	}
}
