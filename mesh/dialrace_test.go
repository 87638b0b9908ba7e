package mesh

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/transport"
)

// Two nodes that dial each other at once, with sessions as the agent runs
// them: whichever link survives the race carries frames both ways.
func TestDialRaceWithSessions(t *testing.T) {
	for round := range 20 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			lns := listeners(t, 2)
			var buf syncBuffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			withSessions := func(c *Config) {
				c.Link.Sessions = transport.NewSessions(transport.DefaultQueueBytes)
				c.Logger = log.With("self", c.Self)
				c.Link.Logger = log.With("self", c.Self)
			}
			defer func() {
				if t.Failed() {
					t.Log(buf.String())
					var g bytes.Buffer
					pprof.Lookup("goroutine").WriteTo(&g, 2)
					for _, st := range strings.Split(g.String(), "\n\n") {
						if strings.Contains(st, "transport.") {
							t.Log(st)
						}
					}
				}
			}()
			a := startCfg(t, 1, lns[0], []string{lns[1].Addr().String()}, withSessions)
			b := startCfg(t, 2, lns[1], []string{lns[0].Addr().String()}, withSessions)
			eventually(t, 10*time.Second, "linked both ways", func() bool { return a.m.Link(2) != nil && b.m.Link(1) != nil })
			// A frame queued on a link that the race then replaces is lost
			// with it (the new link's session starts fresh), as without
			// sessions: send until one arrives each way, as every user of
			// the mesh retries.
			deadline := time.Now().Add(5 * time.Second)
			for len(a.frames()) == 0 || len(b.frames()) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("no frame arrived both ways within 5s (n1 got %d, n2 got %d)", len(a.frames()), len(b.frames()))
				}
				for i, x := range []*testNode{a, b} {
					f := proto.Frame{Header: proto.Header{Opcode: 0x0100, Flags: proto.FlagCreate | proto.FlagDelete}, Body: []byte("hello")}
					ctx, cancel := context.WithTimeout(context.Background(), time.Second)
					x.m.Send(ctx, uint64(2-i), &f)
					cancel()
				}
				time.Sleep(100 * time.Millisecond)
			}
			// And the routes: each reaches the other.
			eventually(t, 5*time.Second, "routes both ways", func() bool { return a.m.Reachable(2) && b.m.Reachable(1) })
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A link replaced by a duplicate (the node with the smaller id dialled
// too) moves no route: on a line 1-2-3 whose 2-3 link, opened by 3, is
// replaced by one 2 opens, node 1 never loses its route to 3 (a leader
// that saw a member unreachable for that instant removed it), and the
// route tables are whole again on the new link. With and without
// sessions.
func TestReplacedLinkMovesNoRoute(t *testing.T) {
	for _, sessions := range []bool{false, true} {
		t.Run(fmt.Sprintf("sessions=%v", sessions), func(t *testing.T) {
			lns := listeners(t, 3)
			var buf syncBuffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			var mu sync.Mutex
			var lost []RouteEvent // node 1's route events for node 3 going down
			tweak := func(c *Config) {
				if sessions {
					c.Link.Sessions = transport.NewSessions(transport.DefaultQueueBytes)
				}
				c.Logger = log.With("self", c.Self)
				if c.Self == 1 {
					c.OnRoute = func(ev RouteEvent) {
						if ev.ID == 3 && !ev.Up {
							mu.Lock()
							lost = append(lost, ev)
							mu.Unlock()
						}
					}
				}
			}
			defer func() {
				if t.Failed() {
					t.Log(buf.String())
				}
			}()
			n1 := startCfg(t, 1, lns[0], []string{lns[1].Addr().String()}, tweak)
			n2 := startCfg(t, 2, lns[1], nil, tweak)
			n3 := startCfg(t, 3, lns[2], []string{lns[1].Addr().String()}, tweak)
			// A link 2 opened has 3's listening address at its far end.
			openedBy2 := func(l *transport.Link) bool { return l.Peer().Addr.String() == lns[2].Addr().String() }
			eventually(t, 10*time.Second, "1 routes to 3 over 3's link to 2", func() bool {
				l := n2.m.Link(3)
				return n1.m.Reachable(3) && n3.m.Reachable(1) && l != nil && !openedBy2(l)
			})
			old := n2.m.Link(3)
			if err := n2.m.AddPeer(lns[2].Addr().String()); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "2's own link to 3 replaced 3's", func() bool {
				l := n2.m.Link(3)
				return l != nil && l != old && openedBy2(l)
			})
			// The routers exchange their tables on the new link; a route
			// through it still answers a call both ways.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			for _, c := range []struct {
				from *testNode
				to   uint64
			}{{n1, 3}, {n3, 1}} {
				if _, err := c.from.m.Call(ctx, c.to, &proto.Frame{Header: proto.Header{Opcode: peer.OpJoin}, Body: []byte{1}}); err != nil {
					t.Fatalf("call to %d after the replacement: %v", c.to, err)
				}
			}
			time.Sleep(2 * DefaultRouteTick) // past the routers' reset ticks: nothing unconfirmed is dropped
			if !n1.m.Reachable(3) || !n3.m.Reachable(1) {
				t.Fatalf("after the reset ticks: 1 reaches 3 %v, 3 reaches 1 %v", n1.m.Reachable(3), n3.m.Reachable(1))
			}
			mu.Lock()
			defer mu.Unlock()
			if len(lost) > 0 {
				t.Fatalf("node 1 lost its route to 3 during the replacement: %+v", lost)
			}
		})
	}
}

// A line 1-2-3 whose 2-3 link is raced (both dial, with sessions as the
// agent runs them): the routers' full tables, queued on the surviving
// link before its SESSION exchange, must cross it, so 1 and 3 route to
// each other. The end of the losing link gave the session up and took
// them with it: 3 (the 5 of a 5-node line) stayed linked to 2 and
// unreachable from 1 for good.
func TestDialRaceKeepsRoutes(t *testing.T) {
	for round := range 20 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			lns := listeners(t, 3)
			var buf syncBuffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
			tweak := func(c *Config) {
				c.Logger = log.With("self", c.Self)
				c.Link.Logger = log.With("self", c.Self)
			}
			defer func() {
				if t.Failed() {
					t.Log(buf.String())
				}
			}()
			addr := func(i int) string { return lns[i].Addr().String() }
			n1 := startCfg(t, 1, lns[0], []string{addr(1)}, tweak)
			startCfg(t, 2, lns[1], []string{addr(0), addr(2)}, tweak)
			n3 := startCfg(t, 3, lns[2], []string{addr(1)}, tweak)
			eventually(t, 10*time.Second, "1 and 3 route to each other", func() bool { return n1.m.Reachable(3) && n3.m.Reachable(1) })
		})
	}
}
