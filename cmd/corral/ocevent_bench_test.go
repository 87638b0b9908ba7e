package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
)

// BenchmarkOcEventDelivery measures how fast group events reach a C
// process using liboc_event (c/test/bench/ocbench.c) whose callback calls
// oc_ev_callback_done at once, next to a Go client whose events.Service
// callback completes at once (gated too: client protocol v3, the same
// priority, so both are in one band of the node-wide dispatch) and a Go
// client reading Deliveries (ungated), in the same run. Three agents; the
// receivers and one sender on node 1; the sender floods b.N messages of
// 100 B to a group the receivers joined (flood), then sends b.N paced at
// half the gated rate the flood reached (rate=half). recv= chooses the
// gated receivers: c and go together, or one of them alone.
//
// Per receiver: events/s from its first callback to its last, and the
// latency from commit (the sender got the GROUP_SEND reply: the message
// is committed and applied on node 1) to its callback, same machine,
// same clock. bench/ocevent.sh runs it.
func BenchmarkOcEventDelivery(b *testing.B) {
	od := newOcDelivery(b)
	for _, recv := range []string{"c+go", "c", "go"} {
		var maxRate float64
		b.Run("recv="+recv+"/flood", func(b *testing.B) {
			r := od.run(b, recv, b.N, 0)
			r.report(b)
			if b.N >= 1000 {
				maxRate = r.gatedRate()
			}
		})
		b.Run("recv="+recv+"/rate=half", func(b *testing.B) {
			if maxRate == 0 {
				maxRate = od.run(b, recv, 5000, 0).gatedRate()
			}
			b.ResetTimer()
			r := od.run(b, recv, b.N, maxRate/2)
			r.report(b)
			b.ReportMetric(maxRate/2, "paced-msg/s")
		})
	}
}

// ocDelivery is the cluster and the clients the runs share.
type ocDelivery struct {
	nodes  []*node
	bin    string // ocbench
	sender *client.Client
	gated  *client.Client // events.Service callback, gated
	free   *client.Client // Deliveries, ungated
	gRec   *seqTimes
	fRec   *seqTimes
	round  int
}

// seqTimes records when each message of one group reached a receiver.
type seqTimes struct {
	mu    sync.Mutex // guards the fields below
	group string
	want  int
	at    map[uint64]int64 // seq → unix ns
	full  chan struct{}    // closed once want messages arrived
}

func (r *seqTimes) reset(group string, want int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.group, r.want, r.at, r.full = group, want, make(map[uint64]int64, want), make(chan struct{})
}

func (r *seqTimes) add(ev events.Event, ns int64) {
	g := ev.Group()
	if g == nil || ev.Desc != events.GSMulticast {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if g.Name != r.group || len(r.at) >= r.want {
		return
	}
	r.at[ev.Seq] = ns
	if len(r.at) == r.want {
		close(r.full)
	}
}

func (r *seqTimes) wait(ctx context.Context) (map[uint64]int64, error) {
	r.mu.Lock()
	full := r.full
	r.mu.Unlock()
	select {
	case <-full:
	case <-ctx.Done():
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.at) < r.want {
		return nil, fmt.Errorf("received %d of %d", len(r.at), r.want)
	}
	return r.at, nil
}

func newOcDelivery(b *testing.B) *ocDelivery {
	bins := ocInstall(b, "test/bench/ocbench")
	od := &ocDelivery{nodes: formed(b, 3), bin: bins["ocbench"], gRec: &seqTimes{}, fRec: &seqTimes{}}
	// The receivers' goroutines; cleanups run last first, so this wait
	// comes after the closes registered below.
	var wg sync.WaitGroup
	b.Cleanup(wg.Wait)
	nd := od.nodes[0]
	od.gRec.reset("", 0)
	od.fRec.reset("", 0)
	dial := func(opts client.Options) *client.Client {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Dial(ctx, nd.dir, opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		return c
	}
	od.sender = dial(client.Options{Name: "sender", Classes: []events.Class{events.ClassMemb}})

	svc := events.New(events.Options{})
	b.Cleanup(func() { svc.Close() })
	h, err := svc.Register()
	if err != nil {
		b.Fatal(err)
	}
	h.SetCallback(100, events.ClassGroup, func(ev events.Event, c events.Cookie) {
		od.gRec.add(ev, time.Now().UnixNano())
		events.CallbackDone(c)
	})
	if err := h.ActivateNoReturn(); err != nil {
		b.Fatal(err)
	}
	wg.Go(func() { h.HandleEvent() }) // returns on svc.Close
	od.gated = dial(client.Options{Name: "go-gated", Service: svc, Classes: []events.Class{events.ClassGroup}})

	od.free = dial(client.Options{Name: "go-ungated", Classes: []events.Class{events.ClassGroup}, GroupBuffer: 1 << 16})
	ctx, cancel := context.WithCancel(context.Background())
	wg.Go(func() {
		for {
			select {
			case ev := <-od.free.Deliveries():
				od.fRec.add(ev, time.Now().UnixNano())
			case <-ctx.Done():
				return
			}
		}
	})
	b.Cleanup(cancel)
	return od
}

// ocResult is one run: per receiver, seq → callback time; and seq →
// commit time at the sender.
type ocResult struct {
	commit map[uint64]int64
	recv   map[string]map[uint64]int64 // "c", "go", "go-ungated"
	order  []string
}

// run sends n messages of 100 B to a new group joined by the receivers
// recv names (and the ungated Go client), at rate a second (0: as fast
// as the window allows), and waits until every receiver had them all.
func (od *ocDelivery) run(b *testing.B, recv string, n int, rate float64) *ocResult {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	od.round++
	group := fmt.Sprintf("ocb-%d", od.round)
	withC, withGo := strings.Contains(recv, "c"), strings.Contains(recv, "go")
	res := &ocResult{commit: make(map[uint64]int64, n), recv: map[string]map[uint64]int64{}}

	var cp *cproc
	out := filepath.Join(b.TempDir(), "times")
	if withC {
		cp = startC(b, od.nodes[0], "ocbench", od.bin, "-g", group, "-n", strconv.Itoa(n), "-o", out, "-p", "100")
		cp.wait(15*time.Second, "ready", func(l string) bool { return l == "ready" })
	}
	var members []*client.Member
	join := func(c *client.Client, r *seqTimes) {
		r.reset(group, n)
		m, err := c.Join(ctx, group)
		if err != nil {
			b.Fatal(err)
		}
		members = append(members, m)
	}
	if withGo {
		join(od.gated, od.gRec)
	}
	join(od.free, od.fRec)
	defer func() {
		for _, m := range members {
			m.Leave(ctx)
		}
	}()

	// One goroutine starts the sends, another records when each is
	// answered (committed), as the group benchmarks do.
	inflight := make(chan *client.Sending, 1<<16)
	var wg sync.WaitGroup
	start := time.Now()
	wg.Go(func() {
		defer close(inflight)
		buf := make([]byte, 100)
		for i := range n {
			if rate > 0 {
				time.Sleep(time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))))
			}
			p, err := od.sender.SendGroupAsync(ctx, group, buf)
			if err != nil {
				b.Error(err)
				return
			}
			inflight <- p
		}
	})
	wg.Go(func() {
		for p := range inflight {
			r, err := p.Wait(ctx)
			if err != nil {
				b.Error(err)
				continue
			}
			res.commit[r.Seq] = time.Now().UnixNano()
		}
	})
	wg.Wait()

	if withC {
		select {
		case <-cp.exited:
		case <-ctx.Done():
		}
		if !cp.has("summary events=" + strconv.Itoa(n) + " ") {
			b.Fatalf("ocbench did not receive %d messages:\n%s\nstderr: %s", n, cp.dump(), cp.stderr.String())
		}
		at, err := readSeqTimes(out)
		if err != nil {
			b.Fatal(err)
		}
		res.add("c", at)
	}
	if withGo {
		at, err := od.gRec.wait(ctx)
		if err != nil {
			b.Fatalf("go gated: %v", err)
		}
		res.add("go", at)
	}
	at, err := od.fRec.wait(ctx)
	if err != nil {
		b.Fatalf("go ungated: %v", err)
	}
	res.add("go-ungated", at)
	return res
}

func (r *ocResult) add(who string, at map[uint64]int64) {
	r.recv[who] = at
	r.order = append(r.order, who)
}

func readSeqTimes(path string) (map[uint64]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	at := map[uint64]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var seq uint64
		var ns int64
		if _, err := fmt.Sscan(sc.Text(), &seq, &ns); err != nil {
			return nil, fmt.Errorf("%s: %q: %w", path, sc.Text(), err)
		}
		at[seq] = ns
	}
	return at, sc.Err()
}

// rate is who's events a second from its first callback to its last.
func (r *ocResult) rate(who string) float64 {
	at := r.recv[who]
	if len(at) < 2 {
		return 0
	}
	lo, hi := int64(1<<63-1), int64(0)
	for _, ns := range at {
		lo, hi = min(lo, ns), max(hi, ns)
	}
	if hi == lo {
		return 0
	}
	return float64(len(at)-1) / (float64(hi-lo) / 1e9)
}

// gatedRate is the rate of the node-wide dispatch: the slowest gated
// receiver's.
func (r *ocResult) gatedRate() float64 {
	rate := 0.0
	for _, who := range r.order {
		if who != "go-ungated" && (rate == 0 || r.rate(who) < rate) {
			rate = r.rate(who)
		}
	}
	return rate
}

// latency returns who's commit-to-callback times.
func (r *ocResult) latency(who string) []time.Duration {
	var d []time.Duration
	for seq, ns := range r.recv[who] {
		if c, ok := r.commit[seq]; ok {
			d = append(d, time.Duration(ns-c))
		}
	}
	slices.Sort(d)
	return d
}

func (r *ocResult) report(b *testing.B) {
	for _, who := range r.order {
		lat := r.latency(who)
		b.ReportMetric(r.rate(who), who+"-ev/s")
		b.ReportMetric(float64(quantile(lat, 0.5).Microseconds())/1000, who+"-p50-ms")
		b.ReportMetric(float64(quantile(lat, 0.99).Microseconds())/1000, who+"-p99-ms")
	}
	if r.recv["c"] != nil && r.recv["go"] != nil {
		b.ReportMetric(r.rate("c")/r.rate("go"), "c/go")
	}
}
