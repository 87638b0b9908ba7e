package main

import (
	"context"
	bin "encoding/binary"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
)

// benchCluster is a cluster of three agent processes shared by the group
// benchmarks, with one member client per node.
type benchCluster struct {
	nodes   []*node
	members []*client.Client
}

// newBenchCluster starts three agents and a member client on each.
func newBenchCluster(b *testing.B) *benchCluster {
	if bin := os.Getenv("CORRAL_BENCH_BINARY"); bin != "" {
		// A/B runs: the same benchmark against another build of the agent.
		binary = bin
	}
	nodes := cluster(b, 3)
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	if port := os.Getenv("CORRAL_BENCH_HTTP_PORT"); port != "" {
		// /metrics and /debug/pprof of node i at 127.0.0.i:port.
		for i, nd := range nodes {
			nd.args = append(nd.args, "--http-addr", fmt.Sprintf("127.0.0.%d:%s", i+1, port))
		}
	}
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	bc := &benchCluster{nodes: nodes}
	for _, nd := range nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := client.Dial(ctx, nd.dir, client.Options{Classes: []events.Class{events.ClassGroup}, GroupBuffer: 1 << 16})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		bc.members = append(bc.members, c)
	}
	return bc
}

// run sends n messages of size bytes to group from senders clients (on
// the first len(senders) nodes), pacing at rate messages a second (0: as
// fast as the windows allow), and waits until every one of members
// (clients of bc.members, which join group) delivered all of them. It
// returns the elapsed time and, per delivery, the latency from send to
// delivery.
func (bc *benchCluster) run(b *testing.B, group string, senders, members []*client.Client, n, size int, rate float64) (time.Duration, []time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var joined []*client.Member
	for _, c := range members {
		m, err := c.Join(ctx, group)
		if err != nil {
			b.Fatal(err)
		}
		joined = append(joined, m)
	}
	var lat []time.Duration
	var latMu sync.Mutex
	var recv sync.WaitGroup
	for _, c := range members {
		recv.Go(func() {
			got := 0
			local := make([]time.Duration, 0, n)
			for got < n {
				select {
				case ev := <-c.Deliveries():
					g := ev.Group()
					if ev.Desc != events.GSMulticast || g.Name != group || len(g.Payload) < 8 {
						continue
					}
					got++
					sent := int64(bin.LittleEndian.Uint64(g.Payload))
					local = append(local, time.Duration(time.Now().UnixNano()-sent))
				case <-ctx.Done():
					b.Errorf("a member delivered %d of %d", got, n)
					return
				}
			}
			latMu.Lock()
			lat = append(lat, local...)
			latMu.Unlock()
		})
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, s := range senders {
		// One goroutine starts the sends (in order, within the window),
		// another waits for their answers: how an application that
		// streams messages uses the client.
		inflight := make(chan *client.Sending, 1<<16)
		wg.Go(func() {
			defer close(inflight)
			buf := make([]byte, max(size, 8))
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				if rate > 0 {
					due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					time.Sleep(time.Until(due))
				}
				bin.LittleEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
				p, err := s.SendGroupAsync(ctx, group, buf[:size])
				if err != nil {
					b.Error(err)
					return
				}
				inflight <- p
			}
		})
		wg.Go(func() {
			for p := range inflight {
				if _, err := p.Wait(ctx); err != nil {
					b.Error(err)
				}
			}
		})
	}
	wg.Wait()
	recv.Wait()
	elapsed := time.Since(start)
	for _, m := range joined {
		m.Leave(ctx)
	}
	return elapsed, lat
}

// procUsage is the CPU time and disk bytes written of a set of processes
// at one moment, from /proc (Linux).
type procUsage struct {
	cpu    time.Duration // utime+stime of the agents
	client time.Duration // utime+stime of this process (the clients)
	disk   int64         // write_bytes of the agents
}

// procCPU returns the utime+stime of process pid ("self" for this one).
func procCPU(pid string) time.Duration {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (utime and stime are fields 14 and 15).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// procWrites returns the bytes process pid caused to be written to disk.
func procWrites(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

func (bc *benchCluster) usage() procUsage {
	u := procUsage{client: procCPU("self")}
	for _, nd := range bc.nodes {
		pid := strconv.Itoa(nd.cmd.Process.Pid)
		u.cpu += procCPU(pid)
		u.disk += procWrites(pid)
	}
	return u
}

// reportUsage reports CPU per message (agents, client) and disk bytes
// written per message since before, for n messages: less noisy figures
// than msg/s on a shared machine.
func (bc *benchCluster) reportUsage(b *testing.B, before procUsage, n int) {
	after := bc.usage()
	b.ReportMetric(float64((after.cpu-before.cpu).Microseconds())/float64(n), "agent-cpu-us/msg")
	b.ReportMetric(float64((after.client-before.client).Microseconds())/float64(n), "client-cpu-us/msg")
	b.ReportMetric(float64(after.disk-before.disk)/float64(n), "disk-B/msg")
}

// batchedMsgs is how many messages the senders sent in batches so far.
func batchedMsgs(senders []*client.Client) uint64 {
	var n uint64
	for _, c := range senders {
		_, m := c.SendBatches()
		n += m
	}
	return n
}

func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[min(len(d)-1, int(q*float64(len(d))))]
}

// BenchmarkGroupMulticast measures ordered multicast on three agent
// processes: b.N messages from one sender, or from a sender on every
// node, each delivered at a member on every node; every message is on a
// majority's disk before it is delivered. msg/s counts messages (not
// deliveries). The members=1 runs are shaped as the Corosync anchor's
// cpgbench-lite is: one process on node 1 joins the group, sends, and
// counts its own deliveries (the other nodes order and store every
// message, but deliver it to no one). bench/groups.sh runs it beside
// Corosync CPG.
func BenchmarkGroupMulticast(b *testing.B) {
	bc := newBenchCluster(b)
	var senders []*client.Client
	for _, nd := range bc.nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := client.Dial(ctx, nd.dir, client.Options{Classes: []events.Class{events.ClassMemb}})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		senders = append(senders, c)
	}
	round := 0
	for _, size := range []int{100, 1000, 10000} {
		for _, shape := range []struct {
			name             string
			senders, members []*client.Client
		}{
			{"senders=1", senders[:1], bc.members},
			{"senders=3", senders, bc.members},
			{"senders=1/members=1", bc.members[:1], bc.members[:1]},
		} {
			b.Run(fmt.Sprintf("size=%d/%s", size, shape.name), func(b *testing.B) {
				round++
				before := bc.usage()
				batchedBefore := batchedMsgs(shape.senders)
				elapsed, lat := bc.run(b, fmt.Sprintf("bench-%d", round), shape.senders, shape.members, b.N, size, 0)
				bc.reportUsage(b, before, b.N)
				// How many messages left in GROUP_SEND_BATCHes (0 against
				// an agent of client protocol version 4).
				b.ReportMetric(100*float64(batchedMsgs(shape.senders)-batchedBefore)/float64(b.N), "batched-%")
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msg/s")
				b.ReportMetric(float64(b.N)*float64(size)/elapsed.Seconds()/1e6, "MB/s")
				b.ReportMetric(float64(quantile(lat, 0.5).Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(quantile(lat, 0.99).Microseconds())/1000, "p99-ms")
			})
		}
	}
}

// BenchmarkGroupLatency measures send-to-delivery latency at every member
// at half the maximum rate: it first finds the maximum for 1 KB messages
// from one sender, then sends b.N messages paced at half of it.
func BenchmarkGroupLatency(b *testing.B) {
	bc := newBenchCluster(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	s, err := client.Dial(ctx, bc.nodes[0].dir, client.Options{Classes: []events.Class{events.ClassMemb}})
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for _, size := range []int{100, 1000} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			probe := 20000
			el, _ := bc.run(b, fmt.Sprintf("probe-%d", size), []*client.Client{s}, bc.members, probe, size, 0)
			maxRate := float64(probe) / el.Seconds()
			b.ResetTimer()
			_, lat := bc.run(b, fmt.Sprintf("lat-%d", size), []*client.Client{s}, bc.members, b.N, size, maxRate/2)
			b.ReportMetric(maxRate/2, "msg/s")
			b.ReportMetric(float64(quantile(lat, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(quantile(lat, 0.99).Microseconds())/1000, "p99-ms")
		})
	}
}
