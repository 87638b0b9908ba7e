package agent

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/transport"
)

// BenchmarkCommitToCallback measures a cluster event from proposal to the
// callback of an application on the same node: the membership change is
// proposed, fsynced, committed and applied by a one-node cluster, turned
// into NEWVIEW, sent over the client socket and dispatched by the events
// API. Each iteration adds or removes a non-voting member that does not
// exist (it does not count for the quorum). p50 and p99 are reported.
//
//	go test -run '^$' -bench CommitToCallback ./agent
func BenchmarkCommitToCallback(b *testing.B) {
	dir := b.TempDir()
	key := filepath.Join(dir, "cluster.key")
	k, _ := transport.GenerateKey()
	if err := transport.WriteKeyFile(key, k); err != nil {
		b.Fatal(err)
	}
	cfg := Defaults()
	cfg.Name, cfg.DataDir, cfg.Bind, cfg.ClusterKeyFile, cfg.Bootstrap = "n1", dir, "127.0.0.1:0", key, true
	a, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if _, err := a.cluster.WaitFor(ctx, func(st clusterlog.Status) bool { return st.IsLeader() && a.cluster.Member() }); err != nil {
		b.Fatal(err)
	}

	svc := events.New(events.Options{})
	defer svc.Close()
	h, _ := svc.Register()
	got := make(chan time.Time, 1)
	h.SetCallback(events.PriorityMed, events.ClassMemb, func(ev events.Event, c events.Cookie) {
		if ev.Desc == events.MSNewView {
			got <- time.Now()
		}
		events.CallbackDone(c)
	})
	ch, _ := h.ActivateChan()
	go func() {
		for range ch {
			h.HandleEvent()
		}
	}()
	c, err := client.Dial(ctx, dir, client.Options{Service: svc, Classes: []events.Class{events.ClassMemb}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()

	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A removed life never joins again: each JOIN is a new one.
		inc := uint64(1001 + i/2)
		cmd := membership.Command{Op: membership.OpJoin, ID: 1000, Incarnation: inc, Name: "ghost", Voter: false}
		if i%2 == 1 {
			cmd = membership.Command{Op: membership.OpLeave, Cause: membership.CauseRemoved, ID: 1000, Incarnation: inc}
		}
		start := time.Now()
		if _, err := a.cluster.ProposeChange(ctx, cmd); err != nil {
			b.Fatal(err)
		}
		select {
		case at := <-got:
			lat = append(lat, at.Sub(start))
		case <-time.After(10 * time.Second):
			b.Fatal("no NEWVIEW callback")
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
