package client_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/eventstream"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// streamAgent serves an eventstream.Server, the agent's, on
// dir/client.sock, speaking client versions 1..max.
func streamAgent(t *testing.T, max uint8) (string, *eventstream.Stream) {
	t.Helper()
	dir := t.TempDir()
	s := eventstream.New(eventstream.DefaultLimits(), 0, nil)
	srv := eventstream.NewServer(s, nil)
	ln, err := net.Listen("unix", filepath.Join(dir, client.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &transport.Config{NodeName: "agent", Protocols: protos.All(), Serve: []proto.ProtoID{proto.ProtoClient}, HeartbeatInterval: time.Second, HeartbeatTimeout: 10 * time.Second,
		Ranges: proto.Ranges{{Proto: proto.ProtoClient, Min: 1, Max: max}}}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			l, err := transport.Accept(context.Background(), conn, cfg)
			if err != nil {
				continue
			}
			l.Start(srv.Handler())
		}
	}()
	t.Cleanup(func() {
		s.Close()
		ln.Close()
		wg.Wait()
	})
	return dir, s
}

// log is what the callbacks of several clients did, in order.
type log struct {
	mu      sync.Mutex // guards lines and changed
	lines   []string
	changed chan struct{}
}

func (lg *log) add(format string, args ...any) {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	lg.lines = append(lg.lines, fmt.Sprintf(format, args...))
	close(lg.changed)
	lg.changed = make(chan struct{})
}

func (lg *log) waitFor(t *testing.T, n int) []string {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		lg.mu.Lock()
		lines, changed := append([]string(nil), lg.lines...), lg.changed
		lg.mu.Unlock()
		if len(lines) >= n {
			return lines
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("log %q, waiting for %d lines", lines, n)
		}
	}
}

// member dials a client whose service has one membership callback at pri;
// the callback logs its start and completes when the test says.
func member(t *testing.T, dir, name string, pri events.Priority, lg *log, complete chan events.Cookie) *client.Client {
	t.Helper()
	svc := events.New(events.Options{})
	t.Cleanup(func() { svc.Close() })
	h, _ := svc.Register()
	h.SetCallback(pri, events.ClassMemb, func(ev events.Event, c events.Cookie) {
		lg.add("%s %d", name, ev.Seq)
		complete <- c
	})
	if err := h.ActivateNoReturn(); err != nil {
		t.Fatal(err)
	}
	go h.HandleEvent() // returns on Close
	c, err := client.Dial(context.Background(), dir, client.Options{Service: svc, Classes: []events.Class{events.ClassMemb}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestNodeWidePriorities: two clients on one agent (two processes, as
// the agent sees them) run an event's callbacks in priority order across
// them, the second only after the first completed, and the next event
// only after both.
func TestNodeWidePriorities(t *testing.T) {
	dir, s := streamAgent(t, 3)
	lg := &log{changed: make(chan struct{})}
	early, late := make(chan events.Cookie, 4), make(chan events.Cookie, 4)
	member(t, dir, "late", events.PriorityLow, lg, late)
	member(t, dir, "early", events.PriorityHigh, lg, early)
	if st := s.Stats(); st.Gated != 2 {
		t.Fatalf("stats %+v: both clients should take part", st)
	}
	for seq := uint64(1); seq <= 2; seq++ {
		if err := s.Publish(events.Event{Seq: seq, Desc: events.MSNewView, Data: &events.Membership{Instance: seq}}); err != nil {
			t.Fatal(err)
		}
	}
	lg.waitFor(t, 1)
	c := <-early
	if st := s.Stats(); st.DispatchSeq != 1 || st.DispatchWaiting != 1 {
		t.Fatalf("stats %+v", st)
	}
	events.CallbackDone(c)
	lg.waitFor(t, 2)
	events.CallbackDone(<-late)
	lg.waitFor(t, 3)
	events.CallbackDone(<-early)
	lines := lg.waitFor(t, 4)
	events.CallbackDone(<-late)
	want := []string{"early 1", "late 1", "early 2", "late 2"}
	if fmt.Sprint(lines) != fmt.Sprint(want) {
		t.Fatalf("callbacks ran %q, want %q", lines, want)
	}
	deadline := time.Now().Add(waitFor)
	for st := s.Stats(); st.DispatchWaiting != 0 || st.DispatchSeq != 0; st = s.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("dispatch still waiting: %+v", st)
		}
		time.Sleep(time.Millisecond) // polling the stream's state
	}
	if st := s.Stats(); st.Timeouts != 0 || st.Subscribers != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestVersion2Agent: against an agent of version 2 the client sends no
// CALLBACKS and its events are not gated.
func TestVersion2Agent(t *testing.T) {
	dir, s := streamAgent(t, 2)
	lg := &log{changed: make(chan struct{})}
	a, b := make(chan events.Cookie, 4), make(chan events.Cookie, 4)
	member(t, dir, "a", events.PriorityHigh, lg, a)
	member(t, dir, "b", events.PriorityLow, lg, b)
	if err := s.Publish(events.Event{Seq: 1, Desc: events.MSNewView, Data: &events.Membership{Instance: 1}}); err != nil {
		t.Fatal(err)
	}
	// Both run at once: nothing orders them across the two services.
	lg.waitFor(t, 2)
	events.CallbackDone(<-a)
	events.CallbackDone(<-b)
	if st := s.Stats(); st.Gated != 0 || st.Subscribers != 2 {
		t.Fatalf("stats %+v", st)
	}
}
