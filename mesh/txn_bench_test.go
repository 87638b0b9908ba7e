package mesh

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
)

// BenchmarkTxLinkFail: on a line 1-2-3 with n transactions open from
// node 1 to node 3, node 1 closes its link to node 2; reported: the time
// from the cut until every transaction ended at the initiator (node 1,
// told by its own link's end) and at the responder (node 3, told by
// relay 2's LINKFAILs). Run with -benchtime=Nx: each iteration opens n
// transactions and waits for the link to come back. CORRAL_BENCH_TX100K=1
// adds 100k open transactions (a goroutine and a Tx each at node 3).
func BenchmarkTxLinkFail(b *testing.B) {
	sizes := []int{1, 1000, 10000}
	if os.Getenv("CORRAL_BENCH_TX100K") != "" {
		sizes = append(sizes, 100000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("open=%d", n), func(b *testing.B) {
			// The relay carries all n: its cap per link is the default
			// 65536 or above n.
			nodes := txLineWith(b, 3, txOpts{relayCap: max(DefaultTxRelayCap, 2*n)})
			m1 := nodes[0].m
			ctx := context.Background()
			var initMs, respMs float64
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				waitFor(b, 20*time.Second, "node 1 routes to node 3", func() bool {
					return m1.Link(2) != nil && m1.Reachable(3) && nodes[2].m.Reachable(1) && m1.TxStats().Tombstones == 0
				})
				before := len(nodes[2].accepts())
				open := make([]*Tx, n)
				for j := range open {
					x, err := m1.Open(ctx, 3, peer.OpStream, []byte("hold"), nil)
					if err != nil {
						b.Fatal(err)
					}
					open[j] = x
				}
				waitFor(b, 20*time.Second, "node 3 accepted them", func() bool { return len(nodes[2].accepts()) == before+n })
				resp := nodes[2].accepts()[before:]
				b.StartTimer()
				start := time.Now()
				closed := make(chan struct{})
				go func() {
					defer close(closed)
					m1.Link(2).Close(proto.CodeShutdown, "cut")
				}()
				for _, x := range open {
					<-x.Done()
				}
				initMs += float64(time.Since(start)) / 1e6
				for _, x := range resp {
					<-x.Done()
				}
				respMs += float64(time.Since(start)) / 1e6
				<-closed
			}
			b.ReportMetric(initMs/float64(b.N), "init-ms")
			b.ReportMetric(respMs/float64(b.N), "resp-ms")
		})
	}
}

// BenchmarkTxStream: one transaction streams b.N frames from node 1 to
// node 1+hops over a line; the time runs until the responder has read
// them all (its DELETE comes back).
func BenchmarkTxStream(b *testing.B) {
	for _, hops := range []int{1, 2, 3} {
		for _, size := range []int{64, 1024} {
			b.Run(fmt.Sprintf("hops=%d/size=%d", hops, size), func(b *testing.B) {
				nodes := txLine(b, hops+1)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				x, err := nodes[0].m.Open(ctx, uint64(hops+1), peer.OpStream, []byte("sink"), nil)
				if err != nil {
					b.Fatal(err)
				}
				body := make([]byte, size)
				b.SetBytes(int64(size))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if err := x.Send(ctx, body); err != nil {
						b.Fatal(err)
					}
				}
				if err := x.Close(ctx); err != nil {
					b.Fatal(err)
				}
				select {
				case <-x.Done():
				case <-ctx.Done():
					b.Fatalf("the stream did not end; relay stats %+v", nodes[1].m.TxStats())
				}
				b.StopTimer()
				for _, n := range nodes {
					if st := n.m.TxStats(); st.SendDrops != 0 {
						b.Fatalf("node %d dropped %d frames", n.m.cfg.Self, st.SendDrops)
					}
				}
			})
		}
	}
}
