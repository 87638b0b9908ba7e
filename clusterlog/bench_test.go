package clusterlog_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkPropose measures committed-and-applied proposals per second on
// three in-memory nodes with bbolt files in b.TempDir(), for several numbers
// of concurrent proposers on the leader. Each proposal carries 128 bytes and
// Propose returns only once the entry is applied on the leader, so one
// proposer is bound by the fsync latency; more proposers share fsyncs. The
// application only counts entries, so its snapshots (every 10000 entries,
// the default) are small and the log's own costs dominate.
func BenchmarkPropose(b *testing.B) {
	for _, workers := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("proposers=%d", workers), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			c := newClusterOpts(b, 3, nil, true)
			lead := c.waitLeader(ctx)
			c.mustPropose(ctx, lead, "warmup")
			payload := string(make([]byte, 128))
			before := c.stores[lead].WriteTxns()

			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for range workers {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := c.propose(ctx, lead, payload); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "proposals/s")
			b.ReportMetric(float64(c.stores[lead].WriteTxns()-before)/float64(b.N), "fsyncs/op")
		})
	}
}
