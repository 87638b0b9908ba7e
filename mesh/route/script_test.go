package route_test

import (
	"strconv"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/corralhq/corral/mesh/route"
)

// TestScripts runs the golden scripts in testdata. Regenerate with
// go test ./mesh/route -rewrite.
//
//	topology line|ring|star|mesh|none n=N [cost=C] [maxhops=H] [hysteresis=H] [retry=T] [gc=T] [reqhops=N] [seqno=S]
//	link-up A B [cost=C] · link-down A B · cost A B C
//	deliver [n=N]   (default: what is in flight now, not what it causes)
//	converge        (deliver until nothing is in flight; counts, then all tables)
//	tick [n=N] · crash N · restart N [seqno=S] · routes [N] · sources [N]
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		var nw *network
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			if d.Cmd == "topology" {
				nw = topology(t, d)
				nw.check()
				return nw.summary()
			}
			if nw == nil {
				t.Fatalf("%s: no topology yet", d.Pos)
			}
			return nw.run(t, d)
		})
	})
}

func topology(t *testing.T, d *datadriven.TestData) *network {
	num := func(key string, def int) int {
		for _, a := range d.CmdArgs {
			if a.Key == key && len(a.Vals) > 0 {
				v, err := strconv.Atoi(a.Vals[0])
				if err != nil {
					t.Fatalf("%s: %v", key, err)
				}
				return v
			}
		}
		return def
	}
	if len(d.CmdArgs) == 0 {
		t.Fatalf("topology: missing kind")
	}
	cfg := route.Config{
		MaxHops:       uint8(num("maxhops", 0)),
		Hysteresis:    route.Metric(num("hysteresis", 0)),
		ReqRetryTicks: num("retry", 0),
		SourceGCTicks: num("gc", 0),
		SeqnoReqHops:  uint8(num("reqhops", 0)),
	}
	nw := newNetwork(t, cfg, num("n", 5), route.Seqno(num("seqno", 1)))
	nw.quiet = true
	nw.build(d.CmdArgs[0].Key, route.Metric(num("cost", 100)))
	return nw
}

func (nw *network) summary() string {
	n := 0
	for _, l := range nw.links {
		if l.up {
			n++
		}
	}
	return strconv.Itoa(len(nw.ids)) + " nodes, " + strconv.Itoa(n) + " links, " + strconv.Itoa(len(nw.queue)) + " messages in flight\n"
}
