package files

import (
	"testing"

	"github.com/corralhq/corral/dsvc/dsvctest"
)

// BenchmarkParseDN4096 parses a network file of 4096 records of the
// conformance suite's shapes; ns/line is the cost of one record.
func BenchmarkParseDN4096(b *testing.B) {
	const n = 4096
	data := []byte("# files1_10_0_0_0\n#\n" + dnNotice + "\n#\n" + netLine + "10.0.0.0/12\n")
	for i := range n {
		r := dsvctest.SpecRecord(i)
		data = append(data, formatDN(&r)...)
	}
	t := &dnTable{&table{file: "files1_10_0_0_0"}}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		es, err := t.parse(data)
		if err != nil || len(es) != n {
			b.Fatal(len(es), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/line")
}
