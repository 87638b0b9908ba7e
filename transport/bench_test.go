package transport

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
)

// BenchmarkLink measures one link on loopback, TLS and plain TCP with the
// same framing side by side: go test -run '^$' -bench Link ./transport
func BenchmarkLink(b *testing.B) {
	for _, size := range []int{64, 1 << 10, 64 << 10} {
		for _, mode := range []string{"tls", "tls-nogather", "plain"} {
			b.Run(fmt.Sprintf("%s/%dB", mode, size), func(b *testing.B) {
				gatherTLSRecords = mode == "tls"
				defer func() { gatherTLSRecords = true }()
				benchLink(b, mode != "plain", size)
			})
		}
	}
}

func benchLink(b *testing.B, secure bool, size int) {
	ca, _ := testConfig(1, "a")
	cb, _ := testConfig(2, "b")
	ca.HeartbeatTimeout, cb.HeartbeatTimeout = 10*time.Second, 10*time.Second
	if !secure {
		ca.Key, cb.Key = nil, nil
	}
	t := &testing.T{}
	c, s := pair(t, ca, cb, proto.ReasonJoin)
	if c.err != nil || s.err != nil {
		b.Fatal(c.err, s.err)
	}
	defer c.link.end(ErrClosed)
	defer s.link.end(ErrClosed)
	c.link.ops, s.link.ops = testOps, testOps
	var got atomic.Int64
	done := make(chan struct{})
	want := int64(b.N)
	s.link.Start(func(_ *Link, f *proto.Frame) error {
		if got.Add(1) == want {
			close(done)
		}
		return nil
	})
	c.link.Start(func(*Link, *proto.Frame) error { return nil })
	body := make([]byte, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		f := proto.Frame{Header: proto.Header{Opcode: opTest}, Body: body}
		if err := c.link.Send(ctx, &f); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-done:
	case <-s.link.Done():
		b.Fatal(s.link.Err())
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
