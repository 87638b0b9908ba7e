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
