package server

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/dhcp/netio"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names. Units are in the names, as Prometheus asks.
const (
	MetricReceived    = "corral_dhcp_received_total"
	MetricSent        = "corral_dhcp_sent_total"
	MetricDrops       = "corral_dhcp_drops_total"
	MetricACKLatency  = "corral_dhcp_ack_latency_seconds"
	MetricCommits     = "corral_dhcp_commits_total"
	MetricCollisions  = "corral_dhcp_collisions_total"
	MetricLostRaces   = "corral_dhcp_lost_races_total"
	MetricNAKs        = "corral_dhcp_naks_total"
	MetricDeclines    = "corral_dhcp_declines_total"
	MetricReleases    = "corral_dhcp_releases_total"
	MetricStoreErrors = "corral_dhcp_store_errors_total"
	MetricSendErrors  = "corral_dhcp_send_errors_total"
	MetricTakeovers   = "corral_dhcp_takeovers_total"
	MetricOffers      = "corral_dhcp_offer_cache_entries"
	MetricDatagrams   = "corral_dhcp_datagrams_received_total"
	MetricBatches     = "corral_dhcp_receive_batches_total"
	MetricProbes      = "corral_dhcp_probes_total"
	MetricProbeHits   = "corral_dhcp_probe_hits_total"
)

// The server's own drop reasons, next to netio's DropReason strings in
// the reason label of MetricDrops: requests that passed the socket layer's
// checks and got no reply.
const (
	DropParseError = "parse_error" // dhcpv4.FromBytes refused it
	DropIgnored    = "ignored"     // no usable client id, or a type the server does not answer
	DropNoNetwork  = "no_network"  // no configured network for giaddr or the interface
	DropNotOurs    = "not_ours"    // left to the server that owns the binding
	DropNoAddress  = "no_address"  // a DISCOVER or BOOTP request with no free address
)

// The message types always exported, so that rate() sees them from zero.
var (
	receivedTypes = []string{"BOOTP", dhcpv4.MessageTypeDiscover.String(), dhcpv4.MessageTypeRequest.String(),
		dhcpv4.MessageTypeDecline.String(), dhcpv4.MessageTypeRelease.String(), dhcpv4.MessageTypeInform.String()}
	sentTypes = []string{"BOOTP", dhcpv4.MessageTypeOffer.String(), dhcpv4.MessageTypeAck.String(), dhcpv4.MessageTypeNak.String()}
)

// ackBuckets span an ACK from a local files store (~100 µs) to one
// committed on a slow cluster majority (seconds).
var ackBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}

// metrics are what the counters do not hold: the ACK latency histogram
// and the sockets Run serves on, whose drops the metrics include.
type metrics struct {
	ackLatency prometheus.Histogram
	takeovers  atomic.Uint64 // leases committed on a departed peer's records (takeover.go)
	sockets    atomic.Pointer[netio.Server]
}

func newMetrics() *metrics {
	return &metrics{ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    MetricACKLatency,
		Help:    "Time from reading a REQUEST (netio Packet.Received) to sending its ACK, in seconds; includes the durable lease write.",
		Buckets: ackBuckets,
	})}
}

// observeACK records an ACK sent for a packet read at received.
func (m *metrics) observeACK(received time.Time) {
	if !received.IsZero() {
		m.ackLatency.Observe(time.Since(received).Seconds())
	}
}

// WatchSockets makes ns's counters (datagrams read, drops by DropReason)
// part of the metrics and of Report. Run calls it; a caller serving Handle
// on its own netio.Server calls it before Serve.
func (s *Server) WatchSockets(ns *netio.Server) { s.met.sockets.Store(ns) }

// Register adds the server's metrics to reg (a registry of its own,
// never the global one). They are read from the counters at every scrape.
func (s *Server) Register(reg prometheus.Registerer) error {
	return reg.Register(&collector{s: s, descs: newDescs()})
}

type descs struct {
	received, sent, drops                   *prometheus.Desc
	commits, collisions, lost, naks         *prometheus.Desc
	declines, releases, storeErrs, sendErrs *prometheus.Desc
	takeovers, offers, datagrams, batches   *prometheus.Desc
	probes, probeHits                       *prometheus.Desc
}

func newDescs() descs {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return descs{
		received:   d(MetricReceived, "BOOTREQUESTs parsed, by DHCP message type (BOOTP: no option 53).", "type"),
		sent:       d(MetricSent, "Replies sent, by DHCP message type (BOOTP: a BOOTP reply).", "type"),
		drops:      d(MetricDrops, "Requests dropped without a reply, by reason: the socket layer's checks (short, bad_cookie, option_overrun, hops, queue_full, ...) and the server's (parse_error, ignored, no_network, not_ours, no_address).", "reason"),
		commits:    d(MetricCommits, "Leases written to the datastore."),
		collisions: d(MetricCollisions, "Writes refused with a signature collision (another writer changed the record first); each is reread."),
		lost:       d(MetricLostRaces, "Commits given up after a collision: another client took the address."),
		naks:       d(MetricNAKs, "DHCPNAKs decided."),
		declines:   d(MetricDeclines, "DHCPDECLINEs that marked a record UNUSABLE."),
		releases:   d(MetricReleases, "DHCPRELEASEs that freed a record."),
		storeErrs:  d(MetricStoreErrors, "Datastore calls that failed (other than collisions)."),
		sendErrs:   d(MetricSendErrors, "Replies the socket layer refused."),
		takeovers:  d(MetricTakeovers, "Leases this server committed on records of a peer that left the view (failover, [cluster] peers)."),
		offers:     d(MetricOffers, "Entries in the offer caches of all networks: offers, and committed ones kept until their TTL (expired ones until the next sweep)."),
		datagrams:  d(MetricDatagrams, "Datagrams read by the sockets, before any check."),
		batches:    d(MetricBatches, "Socket reads that returned at least one datagram."),
		probes:     d(MetricProbes, "ICMP probes of addresses about to be offered, by result: sent (an echo went out), cached (quiet a moment ago, not pinged), skipped (no probe slot within the timeout), error (the echo could not be sent).", "result"),
		probeHits:  d(MetricProbeHits, "Probed addresses that answered an ICMP echo: marked UNUSABLE, another address offered."),
	}
}

// collector reads the server's counters at every scrape.
type collector struct {
	s     *Server
	descs descs
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	d := &c.descs
	for _, x := range []*prometheus.Desc{d.received, d.sent, d.drops, d.commits, d.collisions, d.lost, d.naks,
		d.declines, d.releases, d.storeErrs, d.sendErrs, d.takeovers, d.offers, d.datagrams, d.batches,
		d.probes, d.probeHits} {
		ch <- x
	}
	c.s.met.ackLatency.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	d := &c.descs
	r := c.s.Report()
	counter := func(desc *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(v), labels...)
	}
	byType := func(desc *prometheus.Desc, m map[string]uint64, always []string) {
		for _, t := range always {
			counter(desc, m[t], t)
		}
		for t, v := range m {
			if !contains(always, t) {
				counter(desc, v, t)
			}
		}
	}
	byType(d.received, r.Received, receivedTypes)
	byType(d.sent, r.Sent, sentTypes)
	for reason, v := range r.Drops {
		counter(d.drops, v, reason)
	}
	counter(d.commits, r.Commits)
	counter(d.collisions, r.Collisions)
	counter(d.lost, r.Lost)
	counter(d.naks, r.NAKs)
	counter(d.declines, r.Declines)
	counter(d.releases, r.Releases)
	counter(d.storeErrs, r.StoreErrors)
	counter(d.sendErrs, r.SendErrors)
	counter(d.takeovers, r.Takeovers)
	counter(d.probes, r.Probes, "sent")
	counter(d.probes, r.ProbeCached, "cached")
	counter(d.probes, r.ProbeSkipped, "skipped")
	counter(d.probes, r.ProbeErrors, "error")
	counter(d.probeHits, r.ProbeHits)
	ch <- prometheus.MustNewConstMetric(d.offers, prometheus.GaugeValue, float64(r.Offers))
	if r.Sockets != nil {
		counter(d.datagrams, r.Sockets.Received)
		counter(d.batches, r.Sockets.Batches)
	}
	c.s.met.ackLatency.Collect(ch)
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// Report is Stats with what the server knows beyond its counters: the
// drops of both layers by reason, the offer caches and the sockets. It
// is what /stats serves as JSON.
type Report struct {
	Stats
	Drops     map[string]uint64 // every reason of MetricDrops, 0s included
	Takeovers uint64            // leases committed on a departed peer's records
	View      View              // the membership view applied (zero without [cluster] peers)
	Offers    int               // entries in the offer caches
	Sockets   *SocketStats      `json:",omitempty"` // nil before Run (or WatchSockets)
}

// SocketStats are netio.Stats with the drops by name.
type SocketStats struct {
	Received, Batches, Handled, Sent, SendCalls, SendErrors uint64
	Drops                                                   map[string]uint64
	RcvBuf                                                  int
}

// Report returns the counters, the sockets' and the offer caches' sizes.
func (s *Server) Report() Report {
	st := s.Stats()
	r := Report{Stats: st, Takeovers: s.met.takeovers.Load(), View: s.CurrentView(), Drops: map[string]uint64{
		DropParseError: st.ParseErrors, DropIgnored: st.Ignored, DropNoNetwork: st.NoNetwork,
		DropNotOurs: st.NotOurs, DropNoAddress: st.NoAddress,
	}}
	for _, n := range s.nets {
		r.Offers += n.offers.len()
	}
	if ns := s.met.sockets.Load(); ns != nil {
		nst := ns.Stats()
		ss := &SocketStats{Received: nst.Received, Batches: nst.Batches, Handled: nst.Handled, Sent: nst.Sent,
			SendCalls: nst.SendCalls, SendErrors: nst.SendErrors, RcvBuf: nst.RcvBuf, Drops: map[string]uint64{}}
		for i, v := range nst.Drops {
			if reason := netio.DropReason(i); reason != netio.DropNone {
				ss.Drops[reason.String()] = v
				r.Drops[reason.String()] += v
			}
		}
		r.Sockets = ss
	}
	return r
}

// StatsHandler serves Report as JSON (GET /stats).
func (s *Server) StatsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Report()) // a failed write is the client gone
	})
}
