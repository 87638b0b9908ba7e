package mesh

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/proto/peer"
)

// A receiver that does not read holds its sender to the window: over 1
// and 3 hops the sender stops after exactly TxWindow bytes, a Send with a
// deadline fails with it, the receiver's queue holds no more than the
// window, and once it reads, everything arrives once, in order, on the
// grants it sends.
func TestTxWindow(t *testing.T) {
	for _, hops := range []int{1, 3} {
		t.Run(fmt.Sprintf("hops=%d", hops), func(t *testing.T) {
			nodes := txLine(t, hops+1)
			far := nodes[hops]
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			x, err := nodes[0].m.Open(ctx, far.m.cfg.Self, peer.OpStream, []byte("hold"), nil)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, 5*time.Second, "the responder holds the transaction", func() bool { return len(far.accepts()) == 1 })
			resp := far.accepts()[0]

			const size, total = 1024, 2 << 20
			var sent atomic.Int64
			errc := make(chan error, 1)
			go func() {
				body := make([]byte, size)
				for i := 0; i < total/size; i++ {
					binary.LittleEndian.PutUint32(body, uint32(i))
					if err := x.Send(ctx, body); err != nil {
						errc <- err
						return
					}
					sent.Add(size)
				}
				errc <- x.Close(ctx)
			}()
			waitFor(t, 5*time.Second, "the sender waits for window", func() bool { return nodes[0].m.TxStats().Waits > 0 })
			if got := sent.Load(); got != TxWindow {
				t.Fatalf("sender sent %d bytes before waiting, want the window %d", got, TxWindow)
			}
			short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
			err = x.Send(short, []byte("one more"))
			stop()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Send with the window used up = %v, want a deadline error", err)
			}
			waitFor(t, 5*time.Second, "the window's frames reach the responder", func() bool {
				resp.mu.Lock()
				defer resp.mu.Unlock()
				return len(resp.q) >= TxWindow/size
			})
			resp.mu.Lock()
			queued := len(resp.q)
			resp.mu.Unlock()
			if queued != TxWindow/size {
				t.Fatalf("responder queued %d frames, want %d (the window)", queued, TxWindow/size)
			}

			for i := 0; i < total/size; i++ {
				f, err := resp.Recv(ctx)
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if n := binary.LittleEndian.Uint32(f.Body); len(f.Body) != size || n != uint32(i) {
					t.Fatalf("frame %d: got #%d of %d bytes", i, n, len(f.Body))
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
			if _, err := resp.Recv(ctx); err == nil {
				t.Fatal("a frame after the last")
			}
			if g := far.m.TxStats().Grants; g < total/(TxWindow/2)-1 {
				t.Fatalf("responder sent %d grants, want at least %d", g, total/(TxWindow/2)-1)
			}
			resp.Close(ctx)
			waitFor(t, 5*time.Second, "every table empty", tablesEmpty(nodes))
		})
	}
}
