package main

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	dsvccluster "github.com/corralhq/corral/dsvc/cluster"
)

// BenchmarkDsvcCluster measures the cluster module on three real agents:
// modifies with a signature (each one a log entry committed on a majority)
// and lookups by client IP with and without a read index, from 1 and 16
// clients spread over the nodes (one module, so one link, per node, as a
// DHCP server on each node would have). Run it with bench/dsvc.sh or
//
//	go test ./cmd/corral -run XXX -bench DsvcCluster -benchtime 5s
func BenchmarkDsvcCluster(b *testing.B) {
	nodes := formed(b, 3)
	ctx := context.Background()
	regs := make([]*dsvc.Registry, len(nodes))
	locals := make([]*dsvc.Registry, len(nodes))
	for i, nd := range nodes {
		for _, reads := range []string{"linearizable", "local"} {
			m := dsvccluster.New(nil)
			b.Cleanup(m.Close)
			if err := m.Configure("socket=" + filepath.Join(nd.dir, "client.sock") + ",reads=" + reads); err != nil {
				b.Fatal(err)
			}
			reg, err := dsvc.NewRegistry(dsvc.Options{}, m)
			if err != nil {
				b.Fatal(err)
			}
			if reads == "local" {
				locals[i] = reg
			} else {
				regs[i] = reg
			}
		}
	}
	ds := dsvc.Datastore{Module: dsvccluster.Name, Location: "/bench", Version: dsvc.CurrentVersion}
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := regs[0].MkLocation(waitCtx, ds)
		if err == nil {
			break
		}
		if waitCtx.Err() != nil {
			b.Fatalf("mklocation: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	const records = 4096
	net := netip.MustParsePrefix("10.20.0.0/16")
	h, err := regs[0].Open(ctx, ds, dsvc.Network, net.String(), dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		b.Fatal(err)
	}
	ip := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, 20, byte(1 + i/250), byte(1 + i%250)}) }
	var batch []dsvc.DNRecord
	for i := range records {
		batch = append(batch, dsvc.DNRecord{CID: []byte{0}, CIP: ip(i), SIP: netip.MustParseAddr("10.20.0.1"), Macro: "bench"})
	}
	if err := h.ImportDN(ctx, batch); err != nil {
		b.Fatal(err)
	}
	h.Close()
	// The framework configures the module with the datastore's config on
	// every open, so the local handles' datastore must say reads=local
	// (the module keeps the socket it was given when the config names none).
	localDS := ds
	localDS.Config = "reads=local"
	open := func(reg *dsvc.Registry, ds dsvc.Datastore) *dsvc.Handle {
		h, err := reg.Open(ctx, ds, dsvc.Network, net.String(), dsvc.Read|dsvc.Write)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		return h
	}
	handles, localHandles := make([]*dsvc.Handle, len(nodes)), make([]*dsvc.Handle, len(nodes))
	for i := range nodes {
		handles[i], localHandles[i] = open(regs[i], ds), open(locals[i], localDS)
	}

	// run spreads b.N operations over n clients, client c on node c%3,
	// and reports operations per second.
	run := func(b *testing.B, n int, op func(c int, k int) error) {
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, n)
		b.ResetTimer()
		start := time.Now()
		for c := range n {
			wg.Go(func() {
				for k := 0; ; k++ {
					if next.Add(1) > int64(b.N) {
						return
					}
					if err := op(c, k); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		wg.Wait()
		el := time.Since(start)
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/el.Seconds(), "ops/s")
	}
	for _, n := range []int{1, 16} {
		b.Run(fmt.Sprintf("modify/clients=%d", n), func(b *testing.B) {
			// Each client modifies records of its own, with the signature
			// of its last write: no collisions, one log entry each.
			cur := make([][]dsvc.DNRecord, n)
			for c := range n {
				q := dsvc.Query(0).Eq(dsvc.DNQCIP)
				for j := range 8 {
					t := dsvc.DNRecord{CIP: ip(c*8 + j)}
					rs, err := handles[c%3].LookupDN(ctx, false, q, 1, &t)
					if err != nil || len(rs) != 1 {
						b.Fatalf("lookup %v: %v %d", t.CIP, err, len(rs))
					}
					cur[c] = append(cur[c], rs[0])
				}
			}
			run(b, n, func(c, k int) error {
				r := &cur[c][k%8]
				nr := *r
				nr.Lease++
				if err := handles[c%3].ModifyDN(ctx, r, &nr); err != nil {
					return fmt.Errorf("modify %v: %w", r.CIP, err)
				}
				*r = nr
				return nil
			})
		})
		for _, mode := range []string{"linearizable", "local"} {
			hs := handles
			if mode == "local" {
				hs = localHandles
			}
			b.Run(fmt.Sprintf("lookup-%s/clients=%d", mode, n), func(b *testing.B) {
				q := dsvc.Query(0).Eq(dsvc.DNQCIP)
				run(b, n, func(c, k int) error {
					t := dsvc.DNRecord{CIP: ip((c*131 + k*7) % records)}
					rs, err := hs[c%3].LookupDN(ctx, false, q, 1, &t)
					if err != nil || len(rs) != 1 {
						return fmt.Errorf("lookup %v: %v, %d records", t.CIP, err, len(rs))
					}
					return nil
				})
			})
		}
	}
}
