package clusterlog_test

import (
	"fmt"
	"sync"
	"testing"
)

// TestBatching sends many concurrent proposals to the leader and counts the
// fsynced write transactions each node made meanwhile: proposals that arrive
// while a cycle is busy are folded into the next one, so there are far
// fewer fsyncs than proposals.
func TestBatching(t *testing.T) {
	ctx := testCtx(t)
	c := newCluster(t, 3, nil)
	lead := c.waitLeader(ctx)
	c.mustPropose(ctx, lead, "warmup")
	c.waitApplied(ctx, c.maxCommit())

	before := make(map[uint64]uint64)
	for _, id := range c.running() {
		before[id] = c.stores[id].WriteTxns()
	}
	const proposals, workers = 2000, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < proposals; i += workers {
				if _, err := c.propose(ctx, lead, fmt.Sprintf("p%d", i)); err != nil {
					t.Errorf("propose %d: %v", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	c.waitApplied(ctx, c.maxCommit())
	state, _ := c.checkSameState()
	if len(state) != proposals+1 {
		t.Fatalf("applied %d entries, want %d", len(state), proposals+1)
	}
	for _, id := range c.running() {
		fsyncs := c.stores[id].WriteTxns() - before[id]
		t.Logf("node %d: %d proposals, %d fsynced write transactions (%.1f proposals per fsync)",
			id, proposals, fsyncs, float64(proposals)/float64(fsyncs))
		if fsyncs*5 > proposals {
			t.Errorf("node %d made %d fsyncs for %d proposals; batching should need far fewer", id, fsyncs, proposals)
		}
	}
}
