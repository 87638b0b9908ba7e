package obs

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Link is one peer link as the metrics show it.
type Link struct {
	PeerID uint64
	Name   string
	Up     bool
	RTT    time.Duration // last measured round trip; 0 if none yet
}

// RaftStats are the cluster log numbers exported, a subset of
// clusterlog.Status kept here so obs does not follow that type's changes.
type RaftStats struct {
	Term    uint64
	Commit  uint64
	Applied uint64
	Leader  bool // this node is the leader
}

// ViewStats describe the current membership view.
type ViewStats struct {
	Instance uint64
	Members  int
}

// StreamStats describe the cluster event stream: its subscribers and the
// events queued behind them.
type StreamStats struct {
	Subscribers int
	LagMax      uint64 // the most events queued behind one subscriber
	LagSum      uint64 // events queued behind all subscribers together
	// The node-wide dispatch (client protocol v3): subscribers taking
	// part, those it waits on for the event in progress, and those closed
	// for not completing a callback in time.
	Gated           int
	DispatchWaiting int
	Timeouts        uint64
}

// MeshStats are the mesh's routing and forwarding numbers, a subset of
// mesh.RouteStats kept here so obs does not follow that type's changes.
type MeshStats struct {
	Routes       int    // destinations with a route
	Changes      uint64 // route changes applied
	Relayed      uint64 // frames forwarded for other nodes
	RelayedBytes uint64 // their bodies' bytes
	HopLimit     uint64 // frames dropped because their hop count ran out
	NoRoute      uint64 // frames for a node without a route, dropped
	RelayDrops   uint64 // frames dropped because the next link's queue stayed full
	AdvertsSent  uint64 // routing adverts and seqno requests sent
	AdvertsRecv  uint64 // and received
	OpenTx       int    // transactions open at this node (as an end or a relay)
	LinkFails    uint64 // transactions this node ended with LINKFAIL when a link on their path went down
	TxBusy       uint64 // transactions ended because their next link had no room in time
	TxWaits      uint64 // transaction sends that waited for the receiver's window
	TxBacklogged uint64 // transaction frames that waited behind a full link send queue
	Resumes      uint64 // lost links that resumed their session within the window
	ResumeFails  uint64 // lost links whose session did not resume: their transactions failed
}

// Sources are read at every scrape. Each must be safe to call from any
// goroutine and must not block for long; a nil one is not exported.
type Sources struct {
	Links func() []Link
	// Raft reports false while no cluster log node runs (before start, or
	// between an eviction and the next life).
	Raft      func() (RaftStats, bool)
	Proposals func() uint64 // proposals made, ever increasing
	Fsyncs    func() uint64 // fsyncs of the log, ever increasing
	View      func() ViewStats
	Stream    func() StreamStats
	Mesh      func() MeshStats
}

// Metric names. Units are in the names, as Prometheus asks.
const (
	namePeerUp          = "corral_peer_up"
	namePeerRTT         = "corral_peer_rtt_seconds"
	nameRaftTerm        = "corral_raft_term"
	nameRaftCommit      = "corral_raft_commit_index"
	nameRaftApplied     = "corral_raft_applied_index"
	nameRaftLeader      = "corral_raft_leader"
	nameProposals       = "corral_raft_proposals_total"
	nameFsyncs          = "corral_log_fsyncs_total"
	nameFsyncSeconds    = "corral_log_fsync_duration_seconds"
	nameViewInstance    = "corral_view_instance"
	nameViewMembers     = "corral_view_members"
	nameStreamSubs      = "corral_eventstream_subscribers"
	nameStreamLagMax    = "corral_eventstream_max_lag_events"
	nameStreamLagQueued = "corral_eventstream_queued_events"
	nameStreamGated     = "corral_eventstream_gated_subscribers"
	nameStreamWaiting   = "corral_eventstream_dispatch_waiting"
	nameStreamTimeouts  = "corral_eventstream_callback_timeouts_total"
	nameMeshRoutes      = "corral_mesh_routes"
	nameMeshChanges     = "corral_mesh_route_changes_total"
	nameMeshRelayed     = "corral_mesh_relayed_frames_total"
	nameMeshRelayedB    = "corral_mesh_relayed_bytes_total"
	nameMeshHopLimit    = "corral_mesh_hop_limit_drops_total"
	nameMeshNoRoute     = "corral_mesh_no_route_drops_total"
	nameMeshRelayDrops  = "corral_mesh_relay_drops_total"
	nameMeshAdvertsSent = "corral_mesh_adverts_sent_total"
	nameMeshAdvertsRecv = "corral_mesh_adverts_received_total"
	nameMeshOpenTx      = "corral_mesh_open_transactions"
	nameMeshLinkFails   = "corral_mesh_linkfails_total"
	nameMeshTxBusy      = "corral_mesh_tx_busy_total"
	nameMeshTxWaits     = "corral_mesh_tx_window_waits_total"
	nameMeshTxBacklog   = "corral_mesh_tx_backlogged_frames_total"
	nameMeshResumes     = "corral_mesh_resumes_total"
	nameMeshResumeFails = "corral_mesh_resume_failures_total"
)

// Metrics is a prometheus.Collector of the cluster's state, read from
// Sources when scraped, plus the fsync latency histogram.
type Metrics struct {
	src   Sources
	fsync prometheus.Histogram

	peerUp, peerRTT                        *prometheus.Desc
	term, commit, applied, leader          *prometheus.Desc
	proposals, fsyncs                      *prometheus.Desc
	viewInstance, viewMembers              *prometheus.Desc
	streamSubs, streamLagMax, streamQueued *prometheus.Desc
	streamGated, streamWaiting, streamTOs  *prometheus.Desc
	meshRoutes, meshChanges                *prometheus.Desc
	meshRelayed, meshRelayedBytes          *prometheus.Desc
	meshHopLimit, meshNoRoute, meshDrops   *prometheus.Desc
	meshAdvertsSent, meshAdvertsRecv       *prometheus.Desc
	meshOpenTx, meshLinkFails              *prometheus.Desc
	meshTxBusy, meshTxWaits, meshTxBacklog *prometheus.Desc
	meshResumes, meshResumeFails           *prometheus.Desc
}

// NewMetrics returns the collector for src. Register it on the agent's
// registry.
func NewMetrics(src Sources) *Metrics {
	peer := []string{"peer_id", "peer"}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &Metrics{
		src: src,
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: nameFsyncSeconds,
			Help: "Time a write of the cluster log took to reach the disk (fsync).",
			// 100µs to about 1.6s: from a fast SSD to a disk in trouble.
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 15),
		}),
		peerUp:           d(namePeerUp, "1 while this node has a link to the peer, 0 while it is down.", peer...),
		peerRTT:          d(namePeerRTT, "Last round trip of a heartbeat to the peer.", peer...),
		term:             d(nameRaftTerm, "Raft term this node is in."),
		commit:           d(nameRaftCommit, "Highest cluster log index known committed."),
		applied:          d(nameRaftApplied, "Highest cluster log index applied on this node."),
		leader:           d(nameRaftLeader, "1 if this node is the raft leader, else 0."),
		proposals:        d(nameProposals, "Proposals made to the cluster log by this node."),
		fsyncs:           d(nameFsyncs, "Writes of the cluster log that were fsynced."),
		viewInstance:     d(nameViewInstance, "Instance number of the current membership view."),
		viewMembers:      d(nameViewMembers, "Members of the current membership view."),
		streamSubs:       d(nameStreamSubs, "Clients subscribed to the cluster event stream."),
		streamLagMax:     d(nameStreamLagMax, "Most events queued behind a single subscriber."),
		streamQueued:     d(nameStreamLagQueued, "Events queued behind all subscribers together."),
		streamGated:      d(nameStreamGated, "Subscribers in the node-wide dispatch (priorities and completion across processes)."),
		streamWaiting:    d(nameStreamWaiting, "Subscribers the node-wide dispatch waits on to complete the event in progress."),
		streamTOs:        d(nameStreamTimeouts, "Subscribers closed because a callback did not complete within the deadline."),
		meshRoutes:       d(nameMeshRoutes, "Destinations this node has a route to (direct or through a neighbour)."),
		meshChanges:      d(nameMeshChanges, "Route changes applied: a new next hop, metric or loss of a route."),
		meshRelayed:      d(nameMeshRelayed, "Frames this node forwarded for other nodes: routed one-shots and transaction frames."),
		meshRelayedBytes: d(nameMeshRelayedB, "Body bytes of the frames this node forwarded."),
		meshHopLimit:     d(nameMeshHopLimit, "Frames dropped because their hop count ran out; 0 in a steady state."),
		meshNoRoute:      d(nameMeshNoRoute, "Frames dropped for a destination without a route."),
		meshDrops:        d(nameMeshRelayDrops, "Frames dropped because the next link's send queue stayed full."),
		meshAdvertsSent:  d(nameMeshAdvertsSent, "Routing adverts and sequence-number requests sent."),
		meshAdvertsRecv:  d(nameMeshAdvertsRecv, "Routing adverts and sequence-number requests received."),
		meshOpenTx:       d(nameMeshOpenTx, "Transactions open at this node, as an end or a relay."),
		meshLinkFails:    d(nameMeshLinkFails, "Transactions this node ended with LINKFAIL because a link on their path went down."),
		meshTxBusy:       d(nameMeshTxBusy, "Transactions this node ended (CodeBusy) because their next link had no room for a frame in time."),
		meshTxWaits:      d(nameMeshTxWaits, "Transaction sends that waited for the receiver's window (flow control)."),
		meshTxBacklog:    d(nameMeshTxBacklog, "Transaction frames that found their link's send queue full and waited behind it."),
		meshResumes:      d(nameMeshResumes, "Lost peer links that came back within the resume window, losing no frame."),
		meshResumeFails:  d(nameMeshResumeFails, "Lost peer links whose session did not resume (window over, fresh session, replay overflow)."),
	}
}

// ObserveSync records how long one fsync of the log took. It is safe on
// a nil *Metrics, so a hook can be wired before metrics exist.
func (m *Metrics) ObserveSync(d time.Duration) {
	if m == nil {
		return
	}
	m.fsync.Observe(d.Seconds())
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.fsync.Describe(ch)
	for _, d := range []*prometheus.Desc{
		m.peerUp, m.peerRTT, m.term, m.commit, m.applied, m.leader, m.proposals, m.fsyncs,
		m.viewInstance, m.viewMembers, m.streamSubs, m.streamLagMax, m.streamQueued,
		m.streamGated, m.streamWaiting, m.streamTOs,
		m.meshRoutes, m.meshChanges, m.meshRelayed, m.meshRelayedBytes,
		m.meshHopLimit, m.meshNoRoute, m.meshDrops, m.meshAdvertsSent, m.meshAdvertsRecv,
		m.meshOpenTx, m.meshLinkFails, m.meshTxBusy, m.meshTxWaits, m.meshTxBacklog, m.meshResumes, m.meshResumeFails,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads every source once.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.fsync.Collect(ch)
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	if f := m.src.Links; f != nil {
		for _, l := range f() {
			id := strconv.FormatUint(l.PeerID, 10)
			gauge(m.peerUp, b2f(l.Up), id, l.Name)
			if l.RTT > 0 {
				gauge(m.peerRTT, l.RTT.Seconds(), id, l.Name)
			}
		}
	}
	if f := m.src.Raft; f != nil {
		if st, ok := f(); ok {
			gauge(m.term, float64(st.Term))
			gauge(m.commit, float64(st.Commit))
			gauge(m.applied, float64(st.Applied))
			gauge(m.leader, b2f(st.Leader))
		}
	}
	if f := m.src.Proposals; f != nil {
		counter(m.proposals, f())
	}
	if f := m.src.Fsyncs; f != nil {
		counter(m.fsyncs, f())
	}
	if f := m.src.View; f != nil {
		v := f()
		gauge(m.viewInstance, float64(v.Instance))
		gauge(m.viewMembers, float64(v.Members))
	}
	if f := m.src.Stream; f != nil {
		s := f()
		gauge(m.streamSubs, float64(s.Subscribers))
		gauge(m.streamLagMax, float64(s.LagMax))
		gauge(m.streamQueued, float64(s.LagSum))
		gauge(m.streamGated, float64(s.Gated))
		gauge(m.streamWaiting, float64(s.DispatchWaiting))
		counter(m.streamTOs, s.Timeouts)
	}
	if f := m.src.Mesh; f != nil {
		s := f()
		gauge(m.meshRoutes, float64(s.Routes))
		counter(m.meshChanges, s.Changes)
		counter(m.meshRelayed, s.Relayed)
		counter(m.meshRelayedBytes, s.RelayedBytes)
		counter(m.meshHopLimit, s.HopLimit)
		counter(m.meshNoRoute, s.NoRoute)
		counter(m.meshDrops, s.RelayDrops)
		counter(m.meshAdvertsSent, s.AdvertsSent)
		counter(m.meshAdvertsRecv, s.AdvertsRecv)
		gauge(m.meshOpenTx, float64(s.OpenTx))
		counter(m.meshLinkFails, s.LinkFails)
		counter(m.meshTxBusy, s.TxBusy)
		counter(m.meshTxWaits, s.TxWaits)
		counter(m.meshTxBacklog, s.TxBacklogged)
		counter(m.meshResumes, s.Resumes)
		counter(m.meshResumeFails, s.ResumeFails)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
