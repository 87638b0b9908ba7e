package agent

import (
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/corralhq/corral/obs"
)

// newRegistry makes the agent's metrics registry: the Go runtime, the
// process, and the cluster state that m reads. It is the agent's own,
// never the process-global one.
func newRegistry(m *obs.Metrics) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m,
	)
	return reg
}

// metricSources are the agent state the metrics read at scrape time.
func (a *Agent) metricSources() obs.Sources {
	return obs.Sources{
		Links: a.linkStats,
		Raft: func() (obs.RaftStats, bool) {
			if a.cluster == nil {
				return obs.RaftStats{}, false
			}
			st := a.cluster.Status()
			return obs.RaftStats{Term: st.Term, Commit: st.Commit, Applied: st.Applied, Leader: st.IsLeader()}, true
		},
		// The counts restart with a new copy of the log after an
		// eviction; Prometheus reads a drop as a counter reset.
		Proposals: func() uint64 { return a.cluster.Stats().Proposals },
		Fsyncs:    func() uint64 { return a.cluster.Stats().Fsyncs },
		View: func() obs.ViewStats {
			v := a.cluster.View()
			return obs.ViewStats{Instance: v.Instance, Members: len(v.Members)}
		},
		Stream: func() obs.StreamStats {
			st := a.stream.Stats()
			return obs.StreamStats{Subscribers: st.Subscribers, LagMax: st.LagMax, LagSum: st.LagSum, Gated: st.Gated, DispatchWaiting: st.DispatchWaiting, Timeouts: st.Timeouts}
		},
		Mesh: func() obs.MeshStats {
			st, tx := a.mesh.RouteStats(), a.mesh.TxStats()
			// Relayed: the one-shots the router forwards and the
			// transactions' frames the transaction table forwards.
			return obs.MeshStats{Routes: st.Routes, Changes: st.Changes, Relayed: st.Relayed + tx.Relayed, RelayedBytes: st.RelayedBytes + tx.RelayedBytes,
				HopLimit: st.HopLimit, NoRoute: st.NoRoute, RelayDrops: st.RelayDrops, AdvertsSent: st.AdvertsSent, AdvertsRecv: st.AdvertsRecv,
				OpenTx: tx.Open, LinkFails: tx.LinkFails, TxBusy: tx.SendDrops, TxWaits: tx.Waits, TxBacklogged: tx.Backlogged, Resumes: tx.Resumes, ResumeFails: tx.ResumeFails}
		},
	}
}

// linkStats lists every node ever linked.
func (a *Agent) linkStats() []obs.Link {
	var out []obs.Link
	for _, s := range a.mesh.States() {
		if s.ID == 0 {
			continue // a configured address no node answered from yet
		}
		out = append(out, obs.Link{PeerID: s.ID, Name: s.Name, Up: s.Up, RTT: s.RTT})
	}
	return out
}

// Registry is the agent's metrics registry, for services to register on.
func (a *Agent) Registry() *prometheus.Registry { return a.registry }

// Metrics is the agent's cluster metrics; its ObserveSync is the hook for
// the log's fsync latency.
func (a *Agent) Metrics() *obs.Metrics { return a.metrics }

// HTTPAddr is the address of the /metrics and /debug/pprof/ server, nil
// when it is off.
func (a *Agent) HTTPAddr() net.Addr {
	if a.http == nil {
		return nil
	}
	return a.http.Addr()
}

// HTTPURL is the base URL of that server, "" when it is off.
func (a *Agent) HTTPURL() string {
	if a.http == nil {
		return ""
	}
	return a.http.URL()
}
