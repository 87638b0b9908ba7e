package replicated

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/internal/wireconv"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/service"
	"github.com/corralhq/corral/transport"
	"github.com/corralhq/corral/transport/transporttest"
)

// fakeProp is a proposer whose ReadIndex returns the writes "acknowledged"
// when it was called (committed), and waits while gate is open.
type fakeProp struct {
	mu        sync.Mutex // guards the fields below
	committed uint64
	calls     int
	gate      chan struct{} // ReadIndex waits until it is closed; nil: no wait
}

func (p *fakeProp) NextRequest() uint64 { return 1 }
func (p *fakeProp) Propose(context.Context, rsm.ID, []byte) (uint64, []byte, error) {
	return 0, nil, errors.New("fakeProp: no writes")
}
func (p *fakeProp) ProposeRequest(context.Context, rsm.ID, uint64, []byte) (uint64, []byte, error) {
	return 0, nil, errors.New("fakeProp: no writes")
}

func (p *fakeProp) ReadIndex(ctx context.Context) (uint64, error) {
	p.mu.Lock()
	idx, gate := p.committed, p.gate
	p.calls++
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return idx, nil
}

func (p *fakeProp) state() (calls int, committed uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls, p.committed
}

// waitFor polls cond until it holds or 10 s pass.
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

// running starts s with a client link to it; cancel stops s and waits.
func running(t *testing.T, s *Service) (client *transport.Link, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "the service to run", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.ctx != nil
	})
	agentCfg := transporttest.Config(1, "agent")
	agentCfg.Key, agentCfg.Serve = nil, []proto.ProtoID{proto.ProtoClient}
	appCfg := transporttest.Config(0, "app")
	appCfg.Key = nil
	a, b := transporttest.PipeReason(t, appCfg, agentCfg, proto.ReasonClient)
	b.Start(s.handle)
	a.Start(func(_ *transport.Link, f *proto.Frame) error {
		return proto.Errorf(proto.CodeState, "unexpected %#04x", f.Opcode)
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return a, stop
}

func newTestService(t *testing.T, p *fakeProp, cfg Config) *Service {
	t.Helper()
	s, err := NewService(service.Deps{Cluster: p}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// lookupReq is a lookup in a location that does not exist: the machine
// answers CodeNoLocation, at the index the read was served at.
func lookupReq(flags uint8) []byte {
	b, err := wire.AppendDSRequest(nil, &wire.DSRequest{Op: wire.OpDSLookup, Count: 1,
		Target: wire.DSTarget{Kind: wireconv.Kind(dsvc.Network), Flags: flags, Location: "/nowhere", Container: "10.0.0.0"}})
	if err != nil {
		panic(err)
	}
	return b
}

func start(t *testing.T, l *transport.Link, body []byte) *transport.Pending {
	t.Helper()
	p, err := l.StartCall(context.Background(), &proto.Frame{Header: proto.Header{Opcode: wire.OpDSLookup}, Body: body})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// result waits for a lookup's reply.
func result(t *testing.T, p *transport.Pending) (wire.DSResult, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := p.Wait(ctx)
	if err != nil {
		return wire.DSResult{}, err
	}
	rep, err := wire.ParseDSReply(wire.OpDSLookup, wireconv.Kind(dsvc.Network), f.Body)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Result, nil
}

func pending(s *Service) int {
	s.reads.mu.Lock()
	defer s.reads.mu.Unlock()
	return len(s.reads.next)
}

// Reads that arrive while MaxReadIndexes read indexes are in flight share
// the next one, asked after they arrived: they see the write acknowledged
// before they were sent, which the read indexes in flight (asked before)
// may not cover.
func TestReadsShareReadIndex(t *testing.T) {
	for _, limit := range []int{1, 2} {
		t.Run(fmt.Sprintf("MaxReadIndexes=%d", limit), func(t *testing.T) {
			p := &fakeProp{gate: make(chan struct{})}
			s := newTestService(t, p, Config{MaxReadIndexes: limit})
			l, _ := running(t, s)

			// Each of the first reads finds a free slot: a read index of its own.
			var first []*transport.Pending
			for i := range limit {
				first = append(first, start(t, l, lookupReq(0)))
				waitFor(t, "a read index", func() bool { c, _ := p.state(); return c == i+1 })
			}
			// A write is acknowledged: reads sent from now on must see index 1.
			p.mu.Lock()
			p.committed = 1
			p.mu.Unlock()
			const n = 64
			var later []*transport.Pending
			for range n {
				later = append(later, start(t, l, lookupReq(0)))
			}
			waitFor(t, "the reads to wait for the next batch", func() bool { return pending(s) == n })
			close(p.gate)

			for i, pr := range first {
				if r, err := result(t, pr); err != nil || dsvc.Code(r.Code) != dsvc.CodeNoLocation || r.Index != 0 {
					t.Fatalf("first read %d: %+v, %v; want CodeNoLocation at index 0", i, r, err)
				}
			}
			for i, pr := range later {
				r, err := result(t, pr)
				if err != nil || dsvc.Code(r.Code) != dsvc.CodeNoLocation {
					t.Fatalf("read %d: %+v, %v; want CodeNoLocation", i, r, err)
				}
				if r.Index < 1 {
					t.Fatalf("read %d sent after the write was acknowledged was served at index %d", i, r.Index)
				}
			}
			if c, _ := p.state(); c != limit+1 {
				t.Fatalf("%d ReadIndex calls for %d reads, want %d (one per batch)", c, limit+n, limit+1)
			}
			var m dto.Metric
			if err := s.met.readBatches.Write(&m); err != nil {
				t.Fatal(err)
			}
			if got := m.GetCounter().GetValue(); got != float64(limit+1) {
				t.Fatalf("read batches metric %v, want %d", got, limit+1)
			}
		})
	}
}

// A DSLocal lookup is answered from the replica without a read index,
// even while one is stuck; linearizable reads stay bounded by MaxInFlight.
func TestLocalReadsInlineAndMaxInFlight(t *testing.T) {
	p := &fakeProp{gate: make(chan struct{})}
	s := newTestService(t, p, Config{MaxInFlight: 3, MaxReadIndexes: 1})
	l, _ := running(t, s)

	held := []*transport.Pending{start(t, l, lookupReq(0))}
	waitFor(t, "the read index", func() bool { c, _ := p.state(); return c == 1 })
	held = append(held, start(t, l, lookupReq(0)), start(t, l, lookupReq(0)))
	waitFor(t, "the reads to be queued", func() bool { return pending(s) == 2 })
	var pe *proto.Error
	if _, err := result(t, start(t, l, lookupReq(0))); !errors.As(err, &pe) || pe.Code != proto.CodeTryAgain {
		t.Fatalf("a read over MaxInFlight: %v, want CodeTryAgain", err)
	}
	for range 5 {
		r, err := result(t, start(t, l, lookupReq(wire.DSLocal)))
		if err != nil || dsvc.Code(r.Code) != dsvc.CodeNoLocation {
			t.Fatalf("local read: %+v, %v; want CodeNoLocation", r, err)
		}
	}
	if c, _ := p.state(); c != 1 {
		t.Fatalf("%d ReadIndex calls, want 1 (local reads ask none)", c)
	}
	close(p.gate)
	for i, pr := range held {
		if r, err := result(t, pr); err != nil || dsvc.Code(r.Code) != dsvc.CodeNoLocation {
			t.Fatalf("read %d: %+v, %v", i, r, err)
		}
	}
	// The tokens came back: a read is served again.
	if r, err := result(t, start(t, l, lookupReq(0))); err != nil || dsvc.Code(r.Code) != dsvc.CodeNoLocation {
		t.Fatalf("read after the batch: %+v, %v", r, err)
	}
}

// Reads waiting for a read index when the agent stops are answered
// CodeUnavailable, and Run waits for them.
func TestReadsAnsweredOnShutdown(t *testing.T) {
	p := &fakeProp{gate: make(chan struct{})}
	s := newTestService(t, p, Config{MaxReadIndexes: 1})
	l, stop := running(t, s)
	prs := []*transport.Pending{start(t, l, lookupReq(0))}
	waitFor(t, "the read index", func() bool { c, _ := p.state(); return c == 1 })
	for range 3 {
		prs = append(prs, start(t, l, lookupReq(0)))
	}
	waitFor(t, "the reads to be queued", func() bool { return pending(s) == 3 })
	stop()
	for i, pr := range prs {
		r, err := result(t, pr)
		if err != nil || dsvc.Code(r.Code) != dsvc.CodeUnavailable {
			t.Fatalf("read %d: %+v, %v; want CodeUnavailable", i, r, err)
		}
	}
}
