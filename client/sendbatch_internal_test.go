package client

import (
	"context"
	"testing"

	wire "github.com/corralhq/corral/proto/client"
)

// BenchmarkSendingWait is Sending.Wait for a message of a batch already
// answered, as a pipelined sender meets it: the cost of the wait itself.
func BenchmarkSendingWait(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Client{ctx: ctx, space: make(chan struct{}), window: defaultWindow, windowBytes: defaultWindowBytes}
	batch := &sentBatch{done: make(chan struct{}), rep: wire.GroupSendBatchReply{Results: make([]wire.GroupSendResult, 1)}}
	close(batch.done)
	ready := make(chan struct{})
	close(ready)
	b.ReportAllocs()
	for range b.N {
		if err := c.acquire(ctx, true, 100); err != nil {
			b.Fatal(err)
		}
		s := Sending{c: c, size: 100, ready: ready, batch: batch}
		if _, err := s.Wait(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
