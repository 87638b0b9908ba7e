package netio

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestTimeoutBoundsEachCall: with Timeout, a handler's context ends that
// long after its call began, and the next call gets a live one.
func TestTimeoutBoundsEachCall(t *testing.T) {
	type call struct {
		ended bool // the context ended while the handler waited
		err   error
	}
	calls := make(chan call, 4)
	s, _ := serve(t, Config{Sockets: 1, Workers: 1, Timeout: 20 * time.Millisecond}, func(ctx context.Context, p *Packet, r Reply) {
		err := ctx.Err()
		select {
		case <-ctx.Done():
			calls <- call{ended: true, err: err}
		case <-time.After(10 * time.Second):
			calls <- call{err: err}
		}
	})
	c := client(t)
	to := net.UDPAddrFromAddrPort(s.Addr())
	for k := range 2 {
		if _, err := c.WriteToUDP(discover(t, uint32(k)), to); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-calls:
			if !got.ended || got.err != nil {
				t.Fatalf("call %d: context live at the start %v, ended by Timeout %v", k, got.err == nil, got.ended)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("call %d: no handler call", k)
		}
	}
}
