package agent

import (
	"net"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/corralhq/corral/obs"
	"github.com/corralhq/corral/proto/admin"
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
// Proposals and Stream are left nil until the cluster log and the event
// stream count them.
func (a *Agent) metricSources() obs.Sources {
	return obs.Sources{
		Links: a.linkStats,
		Raft: func() (obs.RaftStats, bool) {
			n := a.cluster.raft()
			if n == nil {
				return obs.RaftStats{}, false
			}
			st := n.Status()
			return obs.RaftStats{Term: st.Term, Commit: st.Commit, Applied: st.Applied, Leader: st.IsLeader()}, true
		},
		// The count restarts with a new copy of the log after an
		// eviction; Prometheus reads a drop as a counter reset.
		Fsyncs: func() uint64 {
			c := a.cluster
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.store == nil {
				return 0
			}
			return c.store.WriteTxns()
		},
		View: func() obs.ViewStats {
			c := a.cluster
			c.mu.Lock()
			defer c.mu.Unlock()
			return obs.ViewStats{Instance: c.view.Instance, Members: len(c.view.Members)}
		},
	}
}

// linkStats lists every node ever linked, from the node table.
func (a *Agent) linkStats() []obs.Link {
	ms := a.nodes.members(admin.Member{})[1:] // without this node
	out := make([]obs.Link, 0, len(ms))
	for _, m := range ms {
		if m.ID == 0 {
			continue // a configured address no node answered from yet
		}
		out = append(out, obs.Link{PeerID: m.ID, Name: m.Name, Up: m.State == admin.StateUp, RTT: time.Duration(m.RTT) * time.Microsecond})
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
