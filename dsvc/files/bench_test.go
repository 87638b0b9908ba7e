package files_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/corralhq/corral/dsvc/lock"
)

const benchRecords = 1000

// benchContainer is a /22 of benchRecords records behind the real lock
// service.
func benchContainer(b *testing.B) (*dsvc.Handle, []dsvc.DNRecord) {
	ctx := context.Background()
	lk, err := lock.New(lock.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	r, _ := dsvc.NewRegistry(dsvc.Options{Locker: lk}, files.New())
	ds := dsvc.Datastore{Location: filepath.Join(b.TempDir(), "dhcp"), Version: 1}
	r.MkLocation(ctx, ds)
	h, err := r.Open(ctx, ds, dsvc.Network, "10.0.0.0/22", dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	rs := make([]dsvc.DNRecord, benchRecords)
	a := netip.MustParseAddr("10.0.0.0")
	for i := range rs {
		a = a.Next()
		rs[i] = dsvc.DNRecord{CID: []byte{1, 2, 3, byte(i >> 8), byte(i)}, CIP: a, SIP: netip.MustParseAddr("10.0.0.1"), Lease: 1700000000, Macro: "atlantic", Comment: "bench"}
	}
	if err := h.ImportDN(ctx, rs); err != nil {
		b.Fatal(err)
	}
	return h, rs
}

// inGoroutines runs b.N operations spread over exactly n goroutines; op(g)
// returns goroutine g's operation.
func inGoroutines(b *testing.B, n int, op func(g int) func() error) {
	ops := make([]func() error, n)
	for g := range ops {
		ops[g] = op(g)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for g := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := ops[g](); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func benchLookup(b *testing.B, n int) {
	h, rs := benchContainer(b)
	ctx := context.Background()
	inGoroutines(b, n, func(g int) func() error {
		i := g * 97
		return func() error {
			i = (i + 7919) % len(rs)
			got, err := h.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &rs[i])
			if err == nil && len(got) != 1 {
				err = fmt.Errorf("%d records for %v", len(got), rs[i].CIP)
			}
			return err
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

func benchModify(b *testing.B, n int) {
	h, rs := benchContainer(b)
	ctx := context.Background()
	inGoroutines(b, n, func(g int) func() error {
		cur := rs[g] // each goroutine its own record: no collisions
		return func() error {
			nr := cur
			nr.Lease++
			if err := h.ModifyDN(ctx, &cur, &nr); err != nil {
				return err
			}
			cur = nr
			return nil
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "modifies/s")
}

func BenchmarkLookup1(b *testing.B)  { benchLookup(b, 1) }
func BenchmarkLookup16(b *testing.B) { benchLookup(b, 16) }
func BenchmarkModify1(b *testing.B)  { benchModify(b, 1) }
func BenchmarkModify16(b *testing.B) { benchModify(b, 16) }
