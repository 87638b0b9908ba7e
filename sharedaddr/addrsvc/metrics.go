package addrsvc

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// metrics is a collector read from the state at each scrape: nothing to
// keep up to date on the log goroutine.
type metrics struct {
	s      *Service
	addrs  *prometheus.Desc
	leases *prometheus.Desc
	owner  *prometheus.Desc
	// exceptions and exceptChanges: the flows kept off their bucket's
	// node, per address, and how often they changed.
	exceptions    *prometheus.Desc
	exceptChanges *prometheus.Desc
}

func newMetrics(s *Service) *metrics {
	return &metrics{s: s,
		addrs:  prometheus.NewDesc("corral_sharedaddr_addresses", "Shared addresses in the applied state.", nil, nil),
		leases: prometheus.NewDesc("corral_sharedaddr_leases", "Blocks this node holds, by kind (slice, ident, spi).", []string{"kind"}, nil),
		owner:  prometheus.NewDesc("corral_sharedaddr_owner", "1 if this node owns the address (answers ARP for it), else 0.", []string{"address"}, nil),
		exceptions: prometheus.NewDesc("corral_sharedaddr_exceptions",
			"Flows of the address kept on a node other than their bucket's (exceptions in the applied state).", []string{"address"}, nil),
		exceptChanges: prometheus.NewDesc("corral_sharedaddr_exception_changes_total",
			"Exceptions added, moved to another node or removed by the entries this node applied since it started.", nil, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.addrs
	ch <- m.leases
	ch <- m.owner
	ch <- m.exceptions
	ch <- m.exceptChanges
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	st := m.s.m.State()
	self := m.s.self
	ch <- prometheus.MustNewConstMetric(m.addrs, prometheus.GaugeValue, float64(len(st.Addrs)))
	n := map[ctl.Kind]int{ctl.Slice: 0, ctl.Ident: 0, ctl.SPI: 0}
	for _, a := range st.Addrs {
		for _, l := range a.Leases {
			if l.Node == self {
				n[l.Kind]++
			}
		}
		v := 0.0
		if a.Owner == self {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(m.owner, prometheus.GaugeValue, v, a.Addr.String())
		ch <- prometheus.MustNewConstMetric(m.exceptions, prometheus.GaugeValue, float64(len(a.Exceptions)), a.Addr.String())
	}
	ch <- prometheus.MustNewConstMetric(m.exceptChanges, prometheus.CounterValue, float64(m.s.m.m.ExceptionChanges()))
	for _, l := range st.SPI {
		if l.Node == self {
			n[ctl.SPI]++
		}
	}
	for k, c := range n {
		ch <- prometheus.MustNewConstMetric(m.leases, prometheus.GaugeValue, float64(c), k.String())
	}
}
