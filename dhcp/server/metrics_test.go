package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/corralhq/corral/dhcp/netio"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// startWatched is env.start with the sockets' counters in the metrics, as
// Run has them.
func (e *env) startWatched(owners ...netip.Addr) (*Server, netip.AddrPort) {
	e.t.Helper()
	s, cfg := e.server(owners...)
	ns, err := netio.Listen(cfg.NetConfig(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	s.WatchSockets(ns)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ns.Serve(ctx, s.Handle) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
		s.Close()
	})
	return s, ns.Addr()
}

// scrape gathers reg into name → the metrics of that family.
func scrape(t *testing.T, reg *prometheus.Registry) map[string][]*dto.Metric {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]*dto.Metric{}
	for _, f := range fams {
		m[f.GetName()] = f.Metric
	}
	return m
}

// value is the counter or gauge of name with the label, or -1 if absent.
func value(fams map[string][]*dto.Metric, name, label, lv string) float64 {
	for _, m := range fams[name] {
		match := label == ""
		for _, l := range m.Label {
			if l.GetName() == label && l.GetValue() == lv {
				match = true
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		}
	}
	return -1
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, "files")
	e.add(10, 5, ownerA, 0)
	s, srv := e.startWatched(ownerA)
	reg := prometheus.NewRegistry()
	if err := s.Register(reg); err != nil {
		t.Fatal(err)
	}

	// Before any traffic every type and reason is exported, at 0.
	fams := scrape(t, reg)
	for _, c := range []struct{ name, label, lv string }{
		{MetricReceived, "type", "DISCOVER"}, {MetricSent, "type", "ACK"},
		{MetricDrops, "reason", "short"}, {MetricDrops, "reason", "queue_full"}, {MetricDrops, "reason", DropNoNetwork},
		{MetricTakeovers, "", ""}, {MetricOffers, "", ""}, {MetricCollisions, "", ""},
	} {
		if v := value(fams, c.name, c.label, c.lv); v != 0 {
			t.Errorf("%s{%s=%q} = %v before traffic, want 0", c.name, c.label, c.lv, v)
		}
	}
	if value(fams, MetricDrops, "reason", "none") != -1 {
		t.Error("drops by reason none exported")
	}

	f := e.client.fake(1)
	if _, err := f.dora(srv); err != nil {
		t.Fatal(err)
	}
	// A wrong address at init-reboot: NAK.
	if nak := f.one(t, f.initReboot(ipN(12)), srv); nak.MessageType() != dhcpv4.MessageTypeNak {
		t.Fatalf("init-reboot to a wrong address: %s", nak.Summary())
	}
	// A runt datagram: dropped by the socket layer's check.
	if _, err := e.client.conn.WriteToUDPAddrPort([]byte("short"), srv); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the short datagram counted", func() bool {
		return value(scrape(t, reg), MetricDrops, "reason", "short") == 1
	})

	fams = scrape(t, reg)
	for _, c := range []struct {
		name, label, lv string
		want            float64
	}{
		{MetricReceived, "type", "DISCOVER", 1}, {MetricReceived, "type", "REQUEST", 2},
		{MetricSent, "type", "OFFER", 1}, {MetricSent, "type", "ACK", 1}, {MetricSent, "type", "NAK", 1},
		{MetricNAKs, "", "", 1}, {MetricCommits, "", "", 1}, {MetricDrops, "reason", "short", 1},
		{MetricDatagrams, "", "", 4}, {MetricTakeovers, "", "", 0},
		{MetricOffers, "", "", 1}, // the committed offer stays until its TTL
	} {
		if v := value(fams, c.name, c.label, c.lv); v != c.want {
			t.Errorf("%s{%s=%q} = %v, want %v", c.name, c.label, c.lv, v, c.want)
		}
	}
	h := fams[MetricACKLatency]
	if len(h) != 1 || h[0].Histogram.GetSampleCount() != 1 || h[0].Histogram.GetSampleSum() <= 0 {
		t.Fatalf("ack latency %v: want one positive sample (the NAK is not an ACK)", h)
	}

	// /stats has the same numbers as JSON.
	hs := httptest.NewServer(s.StatsHandler())
	defer hs.Close()
	resp, err := http.Get(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Report
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Received["DISCOVER"] != 1 || r.Sent["ACK"] != 1 || r.Commits != 1 || r.Drops["short"] != 1 ||
		r.Sockets == nil || r.Sockets.Drops["short"] != 1 {
		t.Fatalf("/stats: %+v", r)
	}
}
