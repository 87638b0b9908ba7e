package obs

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// serve runs a Server for reg on 127.0.0.1:0 until the test ends.
func serve(t *testing.T, reg *prometheus.Registry) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0", reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// scrape fetches /metrics and parses the text exposition.
func scrape(t *testing.T, s *Server) map[string]*dto.MetricFamily {
	t.Helper()
	code, body, h := get(t, s.URL()+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("/metrics Content-Type %q, want the text exposition", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the sample of family name whose labels are
// the pairs given, and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, lp := range m.GetLabel() {
			have[lp.GetName()] = lp.GetValue()
		}
		if len(have) != len(labels)/2 {
			continue
		}
		for i := 0; i < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		}
	}
	return 0, false
}

func TestMetricsScrape(t *testing.T) {
	var proposals atomic.Uint64
	proposals.Store(7)
	src := Sources{
		Links: func() []Link {
			return []Link{
				{PeerID: 2, Name: "n2", Up: true, RTT: 1500 * time.Microsecond},
				{PeerID: 3, Name: "n3", Up: false},
			}
		},
		Raft:      func() (RaftStats, bool) { return RaftStats{Term: 4, Commit: 120, Applied: 118, Leader: true}, true },
		Proposals: proposals.Load,
		Fsyncs:    func() uint64 { return 9 },
		View:      func() ViewStats { return ViewStats{Instance: 12, Members: 3} },
		Stream: func() StreamStats {
			return StreamStats{Subscribers: 2, LagMax: 5, LagSum: 8, Gated: 3, DispatchWaiting: 1, Timeouts: 4}
		},
		Mesh: func() MeshStats {
			return MeshStats{Routes: 4, Changes: 11, Relayed: 20, RelayedBytes: 2048, HopLimit: 1, NoRoute: 2, RelayDrops: 3, AdvertsSent: 30, AdvertsRecv: 31, OpenTx: 6, LinkFails: 7, TxBusy: 8, TxWaits: 9, TxBacklogged: 10}
		},
	}
	m := NewMetrics(src)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	m.ObserveSync(2 * time.Millisecond)
	m.ObserveSync(40 * time.Millisecond)
	s := serve(t, reg)

	fams := scrape(t, s)
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"corral_peer_up", []string{"peer_id", "2", "peer", "n2"}, 1},
		{"corral_peer_up", []string{"peer_id", "3", "peer", "n3"}, 0},
		{"corral_peer_rtt_seconds", []string{"peer_id", "2", "peer", "n2"}, 0.0015},
		{"corral_raft_term", nil, 4},
		{"corral_raft_commit_index", nil, 120},
		{"corral_raft_applied_index", nil, 118},
		{"corral_raft_leader", nil, 1},
		{"corral_raft_proposals_total", nil, 7},
		{"corral_log_fsyncs_total", nil, 9},
		{"corral_view_instance", nil, 12},
		{"corral_view_members", nil, 3},
		{"corral_eventstream_subscribers", nil, 2},
		{"corral_eventstream_max_lag_events", nil, 5},
		{"corral_eventstream_queued_events", nil, 8},
		{"corral_eventstream_gated_subscribers", nil, 3},
		{"corral_eventstream_dispatch_waiting", nil, 1},
		{"corral_eventstream_callback_timeouts_total", nil, 4},
		{"corral_mesh_routes", nil, 4},
		{"corral_mesh_route_changes_total", nil, 11},
		{"corral_mesh_relayed_frames_total", nil, 20},
		{"corral_mesh_relayed_bytes_total", nil, 2048},
		{"corral_mesh_hop_limit_drops_total", nil, 1},
		{"corral_mesh_no_route_drops_total", nil, 2},
		{"corral_mesh_relay_drops_total", nil, 3},
		{"corral_mesh_adverts_sent_total", nil, 30},
		{"corral_mesh_adverts_received_total", nil, 31},
		{"corral_mesh_open_transactions", nil, 6},
		{"corral_mesh_linkfails_total", nil, 7},
		{"corral_mesh_tx_busy_total", nil, 8},
		{"corral_mesh_tx_window_waits_total", nil, 9},
		{"corral_mesh_tx_backlogged_frames_total", nil, 10},
	} {
		got, ok := value(fams, tc.name, tc.labels...)
		if !ok || got != tc.want {
			t.Errorf("%s%v = %v (present %v), want %v", tc.name, tc.labels, got, ok, tc.want)
		}
	}
	if _, ok := value(fams, "corral_peer_rtt_seconds", "peer_id", "3", "peer", "n3"); ok {
		t.Error("an RTT is exported for a peer never measured")
	}
	for name, want := range map[string]dto.MetricType{
		"corral_raft_proposals_total":       dto.MetricType_COUNTER,
		"corral_mesh_relayed_frames_total":  dto.MetricType_COUNTER,
		"corral_mesh_hop_limit_drops_total": dto.MetricType_COUNTER,
		"corral_mesh_routes":                dto.MetricType_GAUGE,
	} {
		if f := fams[name]; f.GetType() != want {
			t.Errorf("%s is a %v, want a %v", name, f.GetType(), want)
		}
	}
	h := fams["corral_log_fsync_duration_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() < 0.041 || h.GetSampleSum() > 0.0421 {
		t.Errorf("fsync histogram: %d samples, sum %v; want 2 summing 0.042", h.GetSampleCount(), h.GetSampleSum())
	}
	var under5ms uint64
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() >= 0.005 {
			under5ms = b.GetCumulativeCount()
			break
		}
	}
	if under5ms != 1 {
		t.Errorf("fsync histogram has %d samples at or under the first bucket past 5ms, want 1", under5ms)
	}

	// Sources are read at scrape time.
	proposals.Add(5)
	if got, _ := value(scrape(t, s), "corral_raft_proposals_total"); got != 12 {
		t.Errorf("second scrape: proposals %v, want 12", got)
	}
}

// Missing sources, and a raft node that is not running, export nothing
// rather than zeros that would look like a real state.
func TestMetricsMissingSources(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewMetrics(Sources{Raft: func() (RaftStats, bool) { return RaftStats{Term: 9}, false }}))
	fams := scrape(t, serve(t, reg))
	for name := range fams {
		if name != "corral_log_fsync_duration_seconds" {
			t.Errorf("%s exported without a source", name)
		}
	}
	var nilMetrics *Metrics
	nilMetrics.ObserveSync(time.Millisecond) // a hook wired before metrics exist
}

func TestPprof(t *testing.T) {
	s := serve(t, prometheus.NewRegistry())
	code, body, _ := get(t, s.URL()+"/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("/debug/pprof/: %d\n%.300s", code, body)
	}
	code, body, _ = get(t, s.URL()+"/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !strings.Contains(body, "goroutine profile") {
		t.Fatalf("/debug/pprof/goroutine: %d\n%.300s", code, body)
	}
	if code, _, _ := get(t, s.URL()+"/debug/pprof/cmdline"); code != http.StatusOK {
		t.Fatalf("/debug/pprof/cmdline: %d", code)
	}
}

// Nothing obs does reaches the process-global registry.
func TestDefaultRegistryUntouched(t *testing.T) {
	before, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	m := NewMetrics(Sources{View: func() ViewStats { return ViewStats{Instance: 1, Members: 1} }})
	reg.MustRegister(m)
	m.ObserveSync(time.Millisecond)
	scrape(t, serve(t, reg))
	after, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Errorf("the default registry went from %d to %d families", len(before), len(after))
	}
	for _, f := range after {
		if strings.HasPrefix(f.GetName(), "corral_") {
			t.Errorf("%s is in the default registry", f.GetName())
		}
	}
}

func TestListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(ln.Addr().String(), prometheus.NewRegistry(), nil)
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("Listen on a bound port: %v, want an error naming the address", err)
	}
	s, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", s.Addr().String()); err == nil {
		c.Close()
		t.Fatal("Close left the port listening")
	}
}

// Run returns after shutdown, only once handlers in flight have ended,
// and the port is closed by then.
func TestRunWaitsForHandlers(t *testing.T) {
	s, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.grace = 50 * time.Millisecond
	entered := make(chan struct{})
	var exited atomic.Bool
	s.Handle("/block", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // like a CPU profile: runs until cut
		exited.Store(true)
	}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	reqErr := make(chan error, 1)
	go func() {
		resp, err := http.Get(s.URL() + "/block")
		if err == nil {
			resp.Body.Close()
		}
		reqErr <- err
	}()
	select {
	case <-entered:
	case <-time.After(5 * time.Second):
		t.Fatal("request did not reach its handler")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after shutdown")
	}
	if !exited.Load() {
		t.Fatal("Run returned with a handler still running")
	}
	if c, err := net.Dial("tcp", s.Addr().String()); err == nil {
		c.Close()
		t.Fatal("port still open after Run returned")
	}
	<-reqErr
}

func TestRunReportsServeFailure(t *testing.T) {
	s, err := Listen("127.0.0.1:0", prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	s.ln.Close() // the listener fails under Serve
	if err := s.Run(context.Background()); !errors.Is(err, ErrServe) {
		t.Fatalf("Run on a failed listener: %v, want ErrServe", err)
	}
}
