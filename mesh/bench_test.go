package mesh

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
)

// Throughput, latency and relay cost of routed frames on a line of real
// meshes over loopback TCP (TLS links, one process):
//
//	go test ./mesh -run '^$' -bench 'Routed|Relay' -benchtime 2s
//
// hops=1 is the direct link; hops=h goes through h-1 relays. The per-hop
// overhead is the ratio of a figure to its hops=1 value (bench/mesh.sh
// prints them). cpu-ns/msg is the process's CPU time (user+system, every
// node of the line) per frame delivered: its growth per hop is what one
// relay costs, reader, TLS both ways and writer included.

var (
	benchHops  = []int{1, 2, 3, 5}
	benchSizes = []int{64, 1 << 10, 64 << 10}
)

// benchLine starts a line 1–2–…–n of benchNodes, each dialing the next,
// and waits until node 1 routes to node n.
func benchLine(b *testing.B, n int) []*benchNode {
	b.Helper()
	lns := listenersTB(b, n)
	nodes := make([]*benchNode, n)
	for i := range n {
		var peers []string
		if i+1 < n {
			peers = []string{lns[i+1].Addr().String()}
		}
		nodes[i] = startBench(b, uint64(i+1), lns[i], peers, benchOpts{})
	}
	if _, ok := waitUntil(20*time.Second, func() bool {
		for j := 2; j <= n; j++ {
			if !nodes[0].m.Reachable(uint64(j)) || !nodes[j-1].m.Reachable(1) {
				return false
			}
		}
		return true
	}); !ok {
		b.Fatalf("the line of %d did not converge", n)
	}
	return nodes
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRoutedSend: node 1 sends b.N frames to the node hops away as
// fast as Send takes them; the clock stops when the last one arrived.
// Frames a relay dropped (its next link's queue full for forwardWait) are
// counted in relay-drops and not waited for.
func BenchmarkRoutedSend(b *testing.B) {
	nodes := benchLine(b, 1+slices.Max(benchHops))
	for _, hops := range benchHops {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("hops=%d/size=%d", hops, size), func(b *testing.B) {
				src, dst := nodes[0], nodes[hops]
				relays := nodes[1:hops]
				drops := func() (d uint64) {
					for _, r := range relays {
						d += r.m.RouteStats().RelayDrops
					}
					return d
				}
				body := make([]byte, size)
				ctx := context.Background()
				got0, drops0 := dst.got.Load(), drops()
				b.SetBytes(int64(size))
				b.ResetTimer()
				cpu0, t0 := cpuTime(), time.Now()
				for range b.N {
					f := proto.Frame{Header: proto.Header{Opcode: peer.OpRaft, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
					if err := src.m.Send(ctx, uint64(hops+1), &f); err != nil {
						b.Fatal(err)
					}
				}
				if _, ok := waitUntil(60*time.Second, func() bool {
					return dst.got.Load()-got0+drops()-drops0 >= uint64(b.N)
				}); !ok {
					b.Fatalf("%d of %d frames arrived, %d dropped", dst.got.Load()-got0, b.N, drops()-drops0)
				}
				el, cpu := time.Since(t0), cpuTime()-cpu0
				b.StopTimer()
				n := float64(dst.got.Load() - got0)
				b.ReportMetric(n/el.Seconds(), "msgs/s")
				b.ReportMetric(float64(cpu.Nanoseconds())/n, "cpu-ns/msg")
				b.ReportMetric(float64(drops()-drops0), "relay-drops")
			})
		}
	}
}

// BenchmarkRoutedCall: node 1 calls the node hops away, one call at a
// time; the reply carries the request's body back. ns/op is the mean
// round trip; p50 and p99 are of the calls of the run.
func BenchmarkRoutedCall(b *testing.B) {
	nodes := benchLine(b, 1+slices.Max(benchHops))
	for _, hops := range benchHops {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("hops=%d/size=%d", hops, size), func(b *testing.B) {
				src := nodes[0]
				body := make([]byte, size)
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				lat := make([]time.Duration, 0, b.N)
				b.SetBytes(int64(2 * size))
				b.ResetTimer()
				for range b.N {
					f := proto.Frame{Header: proto.Header{Opcode: peer.OpJoin}, Body: body}
					t0 := time.Now()
					r, err := src.m.Call(ctx, uint64(hops+1), &f)
					if err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(t0))
					if len(r.Body) != size {
						b.Fatalf("reply of %d bytes, want %d", len(r.Body), size)
					}
				}
				b.StopTimer()
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}

// BenchmarkRelayForward is the relay's own share of a forwarded frame:
// node 2 of a line 1–2–3 is handed frames for node 3 as its reader hands
// them over (Mesh.receive), and forwards them. ns/op and allocs/op are
// the reader's cost (table lookup, hop count, queueing on the next link);
// the next link's writer (TLS, write) runs on its own goroutine and shows
// in cpu-ns/msg only.
func BenchmarkRelayForward(b *testing.B) {
	nodes := benchLine(b, 3)
	relay, dst := nodes[1], nodes[2]
	in := relay.m.Link(1)
	if in == nil {
		b.Fatal("no link 2–1")
	}
	for _, size := range benchSizes {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			body := make([]byte, size)
			st0, got0 := relay.m.RouteStats(), dst.got.Load()
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := cpuTime()
			for range b.N {
				f := proto.Frame{Header: proto.Header{Opcode: peer.OpRaft, Flags: proto.FlagCreate | proto.FlagDelete,
					Source: 1, Target: 3, Hops: proto.HopLimit}, Body: body}
				if err := relay.m.receive(in, &f); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			st := relay.m.RouteStats()
			drops := st.RelayDrops - st0.RelayDrops
			if _, ok := waitUntil(60*time.Second, func() bool { return dst.got.Load()-got0+drops >= uint64(b.N) }); !ok {
				b.Fatalf("%d of %d forwarded frames arrived", dst.got.Load()-got0, b.N)
			}
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/msg")
			b.ReportMetric(float64(drops), "relay-drops")
			if st.Relayed-st0.Relayed+drops != uint64(b.N) {
				b.Errorf("relayed %d + dropped %d of %d", st.Relayed-st0.Relayed, drops, b.N)
			}
		})
	}
}
