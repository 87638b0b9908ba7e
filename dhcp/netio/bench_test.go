package netio

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// BenchmarkServe measures request→reply packets per second through Serve
// on loopback with an echo handler: 4 client sockets, each keeping 32
// requests in flight (a reply lets the next request go; a request with no
// reply in 100 ms counts as lost). The clients share the machine with the
// server, so the figure is a lower bound and compares configurations.
func BenchmarkServe(b *testing.B) {
	for _, sockets := range []int{1, 2} {
		for _, batch := range []int{1, 32} {
			for _, mode := range []WriteMode{WriteDirect, WriteGather} {
				name := fmt.Sprintf("sockets=%d/batch=%d/%s", sockets, batch, mode.String())
				b.Run(name, func(b *testing.B) {
					benchServe(b, Config{Sockets: sockets, Batch: batch, Write: mode})
				})
			}
		}
	}
}

func benchServe(b *testing.B, cfg Config) {
	cfg.Addr = "127.0.0.1:0"
	s, err := Listen(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Serve(ctx, func(ctx context.Context, p *Packet, r Reply) {
			r.Send(p.Src, 0, p.Data)
		})
	}()
	defer func() {
		cancel()
		<-done
	}()
	to := net.UDPAddrFromAddrPort(s.Addr())
	req := discover(b, 1)
	const clients, window = 4, 32
	var lost, got [clients]int
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		quota := b.N / clients
		if c < b.N%clients {
			quota++
		}
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		wg.Go(func() {
			buf := make([]byte, 2048)
			sent, inflight := 0, 0
			for got[c]+lost[c] < quota {
				for inflight < window && sent < quota {
					conn.WriteToUDP(req, to)
					sent++
					inflight++
				}
				conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := conn.Read(buf); err != nil {
					lost[c] += inflight
					inflight = 0
					continue
				}
				got[c]++
				if inflight > 0 {
					inflight--
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	var g, l int
	for c := range clients {
		g, l = g+got[c], l+lost[c]
	}
	st := s.Stats()
	b.ReportMetric(float64(g)/el.Seconds(), "replies/s")
	b.ReportMetric(float64(l), "lost")
	if st.Batches > 0 {
		b.ReportMetric(float64(st.Received)/float64(st.Batches), "pkts/read")
	}
	b.ReportMetric(0, "ns/op")
}
