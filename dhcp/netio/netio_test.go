package netio

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// serve starts Serve in the background; the returned stop cancels it and
// returns its error.
func serve(t *testing.T, cfg Config, h Handler) (*Server, func() error) {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	s, err := Listen(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, h) }()
	var once sync.Once
	var serr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case serr = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("Serve did not return")
			}
		})
		return serr
	}
	t.Cleanup(func() { stop() })
	return s, stop
}

func client(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func xidOf(b []byte) uint32 { return binary.BigEndian.Uint32(b[4:8]) }

func TestServeAnswersEveryPacketOnce(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skip("no lo:", err)
	}
	for _, mode := range []WriteMode{WriteDirect, WriteGather} {
		t.Run(mode.String(), func(t *testing.T) {
			const clients, each = 16, 40
			var handled sync.Map // xid → *atomic.Int32
			var badMeta atomic.Value
			s, stop := serve(t, Config{Sockets: 2, Workers: 4, Batch: 8, Write: mode}, func(ctx context.Context, p *Packet, r Reply) {
				n, _ := handled.LoadOrStore(xidOf(p.Data), new(atomic.Int32))
				n.(*atomic.Int32).Add(1)
				if p.IfIndex != lo.Index || p.Dst != netip.MustParseAddr("127.0.0.1") || !p.Src.Addr().IsLoopback() {
					badMeta.Store(p.IfIndex)
				}
				if err := r.Send(p.Src, p.IfIndex, p.Data); err != nil {
					t.Errorf("Send: %v", err)
				}
			})
			to := net.UDPAddrFromAddrPort(s.Addr())
			var wg sync.WaitGroup
			for c := range clients {
				conn := client(t)
				wg.Go(func() {
					buf := make([]byte, 2048)
					for k := range each {
						xid := uint32(c<<16 | k)
						if _, err := conn.WriteToUDP(discover(t, xid), to); err != nil {
							t.Error(err)
							return
						}
						conn.SetReadDeadline(time.Now().Add(5 * time.Second))
						n, err := conn.Read(buf)
						if err != nil {
							t.Errorf("client %d request %d: %v", c, k, err)
							return
						}
						if got := xidOf(buf[:n]); got != xid {
							t.Errorf("client %d: reply xid %#x, want %#x", c, got, xid)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if v := badMeta.Load(); v != nil {
				t.Errorf("packet metadata: ifindex %v (lo is %d), want dst 127.0.0.1 and a loopback source", v, lo.Index)
			}
			total := 0
			handled.Range(func(k, v any) bool {
				if n := v.(*atomic.Int32).Load(); n != 1 {
					t.Errorf("xid %#x handled %d times", k, n)
				}
				total++
				return true
			})
			st := s.Stats()
			if total != clients*each || st.Handled != clients*each || st.Sent != clients*each || st.Dropped() != 0 {
				t.Fatalf("distinct %d, stats %+v; want %d handled and sent, no drops", total, st, clients*each)
			}
		})
	}
}

func TestFullQueueDropsWithoutBlocking(t *testing.T) {
	release := make(chan struct{})
	var handled atomic.Int32
	s, stop := serve(t, Config{Sockets: 1, Workers: 1, Queue: 2}, func(ctx context.Context, p *Packet, r Reply) {
		handled.Add(1)
		<-release
	})
	c := client(t)
	to := net.UDPAddrFromAddrPort(s.Addr())
	const sent = 50
	for k := range sent {
		if _, err := c.WriteToUDP(discover(t, uint32(k)), to); err != nil {
			t.Fatal(err)
		}
	}
	// The one worker is stuck: the reader must still read all of them,
	// and drop what does not fit. Received counts a batch before its
	// packets are queued or dropped; at most three are taken (one by the
	// worker, two queued), so at least sent-3 drop.
	waitFor(t, "the reader to read every packet and drop most", func() bool {
		st := s.Stats()
		return st.Received == sent && st.Drops[DropQueueFull] >= sent-3
	})
	close(release)
	waitFor(t, "every packet handled or dropped", func() bool {
		st := s.Stats()
		return st.Handled+st.Drops[DropQueueFull] == sent
	})
	drops := s.Stats().Drops[DropQueueFull]
	// One in the handler (or not yet taken) and two in the queue.
	if drops != sent-3 && drops != sent-2 {
		t.Fatalf("queue-full drops %d, want %d or %d", drops, sent-3, sent-2)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Dropped() != drops || int(handled.Load()) != sent-int(drops) {
		t.Fatalf("stats %+v, handled %d", st, handled.Load())
	}
}

func TestBadPacketsDroppedAndCounted(t *testing.T) {
	var handled atomic.Int32
	s, stop := serve(t, Config{Sockets: 1}, func(ctx context.Context, p *Packet, r Reply) {
		handled.Add(1)
		r.Send(p.Src, 0, p.Data)
	})
	good := discover(t, 1)
	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	bad := map[DropReason][]byte{
		DropShort:       good[:100],
		DropTruncated:   append(append([]byte(nil), good...), make([]byte, MaxPacket)...),
		DropNotRequest:  mod(func(b []byte) { b[offOp] = 2 }),
		DropHardware:    mod(func(b []byte) { b[offHLen] = 17 }),
		DropHops:        mod(func(b []byte) { b[offHops] = 17 }),
		DropCookie:      mod(func(b []byte) { b[offCookie] = 0 }),
		DropOptions:     withOpts([]byte{53, 1, 1, 12, 40, 'x'}, nil),
		DropOverload:    withOpts([]byte{53, 1, 1, 52, 1, 9, 255}, nil),
		DropMessageType: withOpts([]byte{53, 1, 5, 255}, nil),
	}
	c := client(t)
	to := net.UDPAddrFromAddrPort(s.Addr())
	for _, b := range bad {
		if _, err := c.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every bad packet to be counted", func() bool { return s.Stats().Dropped() == uint64(len(bad)) })
	st := s.Stats()
	for r := range bad {
		if st.Drops[r] != 1 {
			t.Errorf("drops[%v] = %d, want 1", r, st.Drops[r])
		}
	}
	if handled.Load() != 0 || st.Sent != 0 {
		t.Fatalf("a bad packet reached the handler: %+v", st)
	}
	// A good one still goes through, and only it is answered.
	c.WriteToUDP(good, to)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	if n, err := c.Read(buf); err != nil || xidOf(buf[:n]) != 1 {
		t.Fatalf("good packet: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestServeStopsCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	var kept atomic.Value // a Reply kept past the handler
	entered := make(chan struct{}, 1)
	s, stop := serve(t, Config{Sockets: 3, Workers: 5, Write: WriteGather}, func(ctx context.Context, p *Packet, r Reply) {
		kept.Store(r)
		select {
		case entered <- struct{}{}:
		default:
		}
		<-ctx.Done() // a handler that blocks until shutdown
	})
	c := client(t)
	to := net.UDPAddrFromAddrPort(s.Addr())
	c.WriteToUDP(discover(t, 1), to)
	<-entered
	if err := s.Serve(context.Background(), nil); !errors.Is(err, ErrServing) {
		t.Fatalf("second Serve: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := kept.Load().(Reply).Send(netip.MustParseAddrPort("127.0.0.1:9"), 0, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Serve returned: %v", err)
	}
	waitFor(t, "Serve's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestListenBadAddr(t *testing.T) {
	if _, err := Listen(Config{Addr: "256.0.0.1:67"}, nil); err == nil {
		t.Fatal("Listen on a bad address succeeded")
	}
	s, err := Listen(Config{Addr: "127.0.0.1:0", Sockets: 2}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The receive buffer is what was asked (the kernel reports twice
	// that), or at least rmem_max when SO_RCVBUFFORCE is not permitted.
	want := 8 << 20
	if b, err := os.ReadFile("/proc/sys/net/core/rmem_max"); err == nil {
		if m, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && m < want {
			want = m
		}
	}
	if got := s.Stats().RcvBuf; got < 2*want {
		t.Errorf("SO_RCVBUF %d, want %d", got, 2*want)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), nil); !errors.Is(err, ErrServing) {
		t.Fatalf("Serve after Close: %v", err)
	}
}

// TestRequestsFirstStaleDiscoversDropped: with the one worker busy, two
// DISCOVERs and then two REQUESTs queue; the REQUESTs are handled first,
// and the DISCOVERs, queued longer than MaxWait by then, are dropped.
func TestRequestsFirstStaleDiscoversDropped(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var order []uint32
	s, stop := serve(t, Config{Sockets: 1, Workers: 1, MaxWait: time.Nanosecond}, func(ctx context.Context, p *Packet, r Reply) {
		mu.Lock()
		order = append(order, xidOf(p.Data))
		first := len(order) == 1
		mu.Unlock()
		if first {
			<-release
		}
	})
	c := client(t)
	to := net.UDPAddrFromAddrPort(s.Addr())
	request := func(xid uint32) []byte {
		b := discover(t, xid)
		// The message type option (53, length 1) follows the cookie.
		for i := offOpts; i+2 < len(b); i += 2 + int(b[i+1]) {
			if b[i] == optMsgType {
				b[i+2] = 3
				return b
			}
		}
		t.Fatal("no option 53")
		return nil
	}
	send := func(b []byte) {
		if _, err := c.WriteToUDP(b, to); err != nil {
			t.Fatal(err)
		}
	}
	send(request(100))
	waitFor(t, "the first REQUEST in the handler", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 1 })
	send(discover(t, 1))
	send(discover(t, 2))
	send(request(101))
	send(request(102))
	waitFor(t, "every packet read", func() bool { return s.Stats().Received == 5 })
	close(release)
	waitFor(t, "the queues to empty", func() bool { st := s.Stats(); return st.Handled+st.Drops[DropStale] == 5 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []uint32{100, 101, 102}; !slices.Equal(order, want) {
		t.Fatalf("handled %v, want %v", order, want)
	}
	if d := s.Stats().Drops[DropStale]; d != 2 {
		t.Fatalf("stale drops %d, want 2", d)
	}
}
