package clusterlog_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"

	"github.com/corralhq/corral/clusterlog"
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

// BenchmarkStorageUpdate measures one Storage.Update that appends entries
// and sets the hard state, as a follower's persist step does: the fsyncs
// and the bytes written per entry appended, for small entries in a batch
// and for one 100 KB entry.
func BenchmarkStorageUpdate(b *testing.B) {
	for _, bc := range []struct {
		name      string
		size, per int
	}{{"entry=100B/batch=64", 100, 64}, {"entry=100KB/batch=1", 100 << 10, 1}} {
		b.Run(bc.name, func(b *testing.B) {
			dir := b.TempDir()
			st, err := clusterlog.OpenStorage(filepath.Join(dir, "log.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			data := make([]byte, bc.size)
			next := uint64(1)
			b.SetBytes(int64(bc.size * bc.per))
			written := writtenBytes()
			b.ResetTimer()
			for range b.N {
				ents := make([]*raftpb.Entry, bc.per)
				for j := range ents {
					ents[j] = &raftpb.Entry{Index: new(next), Term: new(uint64(1)), Data: data}
					next++
				}
				hs := &raftpb.HardState{Term: new(uint64(1)), Commit: new(next - 1)}
				if err := st.Update(func(bt *clusterlog.Batch) error {
					if err := bt.Append(ents); err != nil {
						return err
					}
					return bt.SetHardState(hs)
				}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(writtenBytes()-written)/float64(b.N*bc.per), "written-B/entry")
		})
	}
}

// writtenBytes is what this process has passed to write calls so far
// (wchar of /proc/self/io), or 0 where that file does not exist.
func writtenBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "wchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}
