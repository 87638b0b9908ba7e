package replicated

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	wire "github.com/corralhq/corral/proto/client"
)

// TestServedSeries: the cached series count what WithLabelValues would,
// and an opcode outside the range still gets its own.
func TestServedSeries(t *testing.T) {
	m := newMetrics()
	m.served(wire.OpDSModify, 0, time.Millisecond)
	m.served(wire.OpDSModify, 0, time.Millisecond)
	m.served(wire.OpDSModify, 9, time.Millisecond)
	m.served(0x03FF, 0, time.Millisecond)
	for _, c := range []struct {
		op, code string
		want     float64
	}{{"modify", "ok", 2}, {"modify", codeLabel(9), 1}, {"1023", "ok", 1}} {
		var pb dto.Metric
		if err := m.requests.WithLabelValues(c.op, c.code).Write(&pb); err != nil {
			t.Fatal(err)
		}
		if got := pb.GetCounter().GetValue(); got != c.want {
			t.Errorf("requests{op=%s,code=%s} = %v, want %v", c.op, c.code, got, c.want)
		}
	}
	ch := make(chan prometheus.Metric, 16)
	m.latency.Collect(ch)
	close(ch)
	if n := len(ch); n != 2 {
		t.Errorf("%d latency series, want 2 (modify, 1023)", n)
	}
}
