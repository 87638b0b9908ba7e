package lock_test

import (
	"context"
	"testing"
)

func BenchmarkLock(b *testing.B) {
	for _, bc := range []struct {
		name string
		excl bool
	}{{"shared", false}, {"exclusive", true}} {
		b.Run(bc.name, func(b *testing.B) {
			s := newService(b, b.TempDir())
			key := testKey("10.0.0.0")
			ctx := context.Background()
			for b.Loop() {
				u, err := s.Lock(ctx, key, bc.excl, false)
				if err != nil {
					b.Fatal(err)
				}
				if err := u.Unlock(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "locks/s")
		})
	}
}

// Contended: goroutines (GOMAXPROCS × 4) on one container; "mixed" is one
// writer in ten.
func BenchmarkLockContended(b *testing.B) {
	for _, bc := range []struct {
		name  string
		every int // every n-th lock exclusive; 0 never
	}{{"shared", 0}, {"exclusive", 1}, {"mixed", 10}} {
		b.Run(bc.name, func(b *testing.B) {
			s := newService(b, b.TempDir())
			key := testKey("10.0.0.0")
			ctx := context.Background()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					i++
					u, err := s.Lock(ctx, key, bc.every > 0 && i%bc.every == 0, false)
					if err != nil {
						b.Error(err)
						return
					}
					if err := u.Unlock(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "locks/s")
		})
	}
}
