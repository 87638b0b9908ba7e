package postgres_test

import (
	"fmt"
	"net/netip"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/postgres"
)

var net20 = netip.MustParsePrefix("10.16.0.0/20")

// benchTable is a /20 filled with 4094 records; every 16 share a client
// id. The pool may open 16 connections, one per goroutine.
func benchTable(b *testing.B) (*postgres.DNTable, []dsvc.DNRecord) {
	needServer(b)
	m := newMod(b)
	if err := m.Configure("maxconns=16"); err != nil {
		b.Fatal(err)
	}
	_, h := newDN(b, m, net20)
	var rs []dsvc.DNRecord
	base := net20.Addr().As4()
	for i := 1; i < 4095; i++ {
		ip := netip.AddrFrom4([4]byte{base[0], base[1], base[2] + byte(i>>8), byte(i)})
		rs = append(rs, dsvc.DNRecord{CID: []byte{1, byte(i / 16), byte(i / 16 >> 8)}, CIP: ip, SIP: netip.MustParseAddr("10.16.0.1"), Lease: 1e9, Macro: "net", Sig: dsvc.RandomSig()})
	}
	if err := h.Import(ctx, rs); err != nil {
		b.Fatal(err)
	}
	return h, rs
}

func parallel(b *testing.B, goroutines int, fn func(g int, i int)) {
	b.ReportAllocs()
	if goroutines == 1 {
		for i := 0; b.Loop(); i++ {
			fn(0, i)
		}
		return
	}
	b.SetParallelism((goroutines + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	var next atomic.Int32
	b.RunParallel(func(pb *testing.PB) {
		g := int(next.Add(1)) - 1
		for i := 0; pb.Next(); i++ {
			fn(g, i)
		}
	})
}

func BenchmarkLookupCIP(b *testing.B) {
	h, rs := benchTable(b)
	q := dsvc.Query(0).Eq(dsvc.DNQCIP)
	for _, g := range []int{1, 16} {
		b.Run(fmt.Sprint("goroutines=", g), func(b *testing.B) {
			parallel(b, g, func(gi, i int) {
				r := &rs[(gi*251+i*7)%len(rs)]
				if got, err := h.Lookup(ctx, false, q, -1, r); err != nil || len(got) != 1 {
					b.Fatal(got, err)
				}
			})
		})
	}
}

func BenchmarkLookupCID(b *testing.B) {
	h, rs := benchTable(b)
	q := dsvc.Query(0).Eq(dsvc.DNQCID)
	for _, g := range []int{1, 16} {
		b.Run(fmt.Sprint("goroutines=", g), func(b *testing.B) {
			parallel(b, g, func(gi, i int) {
				r := &rs[(gi*251+i*7)%len(rs)]
				if got, err := h.Lookup(ctx, false, q, -1, r); err != nil || len(got) == 0 || len(got) > 16 {
					b.Fatal(len(got), err)
				}
			})
		})
	}
}

// BenchmarkModify modifies with the signature it holds; each goroutine
// owns a stripe of records, so none collides.
func BenchmarkModify(b *testing.B) {
	h, rs := benchTable(b)
	for _, g := range []int{1, 16} {
		b.Run(fmt.Sprint("goroutines=", g), func(b *testing.B) {
			parallel(b, g, func(gi, i int) {
				r := &rs[gi+16*(i%(len(rs)/16))]
				nr := *r
				nr.Lease++
				if err := h.Modify(ctx, r, &nr); err != nil {
					b.Fatal(err)
				}
				*r = nr
			})
		})
	}
}
