package client_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/events/eventstest"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// These tests put the client against a fake agent that says exactly what
// each test wants, including what a real agent never says. The client
// against the real agent is tested in package agent (clients_test.go).

const waitFor = 10 * time.Second

// fakeAgent accepts client links on dir/client.sock and hands every
// SUBSCRIBE to the test.
type fakeAgent struct {
	t    *testing.T
	dir  string
	subs chan sub // one per SUBSCRIBE received
	// group, if set, serves the other requests (on the link's reader).
	group func(l *transport.Link, f *proto.Frame) error
}

// sub is a SUBSCRIBE the fake agent received.
type sub struct {
	l   *transport.Link
	id  uint64
	req wire.Subscribe
}

func newFake(t *testing.T) *fakeAgent {
	t.Helper()
	fa := &fakeAgent{t: t, dir: t.TempDir(), subs: make(chan sub, 16)}
	ln, err := net.Listen("unix", filepath.Join(fa.dir, client.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &transport.Config{NodeName: "fake", Protocols: protos.All(), Serve: []proto.ProtoID{proto.ProtoClient}, HeartbeatInterval: time.Second, HeartbeatTimeout: 10 * time.Second}
	done := make(chan struct{})
	var links []*transport.Link
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			l, err := transport.Accept(context.Background(), conn, cfg)
			if err != nil {
				continue
			}
			links = append(links, l)
			l.Start(func(l *transport.Link, f *proto.Frame) error {
				if f.Opcode == wire.OpCallbacks {
					// Version 3: the client says its callbacks first.
					if _, err := wire.ParseCallbacks(f.Body); err != nil {
						return err
					}
					return l.Reply(context.Background(), f, nil)
				}
				if f.Opcode != wire.OpSubscribe && fa.group != nil {
					return fa.group(l, f)
				}
				if f.Opcode != wire.OpSubscribe {
					return proto.Errorf(proto.CodeOpcode, "fake agent: no %s", wire.Ops().Name(f.Opcode))
				}
				req, err := wire.ParseSubscribe(f.Body)
				if err != nil {
					return err
				}
				fa.subs <- sub{l: l, id: f.MsgID, req: req}
				return nil
			})
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for _, l := range links {
			l.Close(proto.CodeShutdown, "test done")
		}
	})
	return fa
}

func (fa *fakeAgent) next() sub {
	fa.t.Helper()
	select {
	case s := <-fa.subs:
		return s
	case <-time.After(waitFor):
		fa.t.Fatal("no SUBSCRIBE")
		return sub{}
	}
}

func (s sub) reply(t *testing.T, rep wire.SubscribeReply) {
	t.Helper()
	f := proto.Frame{Header: proto.Header{Opcode: wire.OpSubscribe, MsgID: s.id, Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply},
		Body: wire.AppendSubscribeReply(nil, &rep)}
	if err := s.l.Send(context.Background(), &f); err != nil {
		t.Fatal(err)
	}
}

func (s sub) event(t *testing.T, ev events.Event) {
	t.Helper()
	body, err := wire.AppendEvent(nil, &ev)
	if err != nil {
		t.Fatal(err)
	}
	f := proto.Frame{Header: proto.Header{Opcode: wire.OpEvent, MsgID: s.id, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
	if err := s.l.Send(context.Background(), &f); err != nil {
		t.Fatal(err)
	}
}

func ev(seq uint64) events.Event {
	return events.Event{Seq: seq, Desc: events.GSBroadcast, Data: &events.Group{Name: "g", MsgID: seq}}
}

// dial runs Dial in the background; the test answers the SUBSCRIBE.
func dial(t *testing.T, path string, opts client.Options) <-chan dialed {
	ch := make(chan dialed, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		c, err := client.Dial(ctx, path, opts)
		if c != nil {
			t.Cleanup(func() { c.Close() })
		}
		ch <- dialed{c, err}
	}()
	return ch
}

type dialed struct {
	c   *client.Client
	err error
}

// recording returns a service with an active handle recording the group
// class.
func recording(t *testing.T) (*events.Service, *eventstest.Recorder) {
	svc := events.New(events.Options{})
	t.Cleanup(func() { svc.Close() })
	rec := eventstest.NewRecorder()
	h, _ := svc.Register()
	h.SetCallback(events.PriorityMed, events.ClassGroup, rec.Callback("g", true))
	ch, err := h.ActivateChan()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ch {
			h.HandleEvent()
		}
	}()
	return svc, rec
}

func seqsOf(calls []eventstest.Call) []uint64 {
	var out []uint64
	for _, c := range calls {
		out = append(out, c.Event.Seq)
	}
	return out
}

func TestDialDirOrSocket(t *testing.T) {
	fa := newFake(t)
	for _, path := range []string{fa.dir, filepath.Join(fa.dir, client.SocketName)} {
		d := dial(t, path, client.Options{Classes: []events.Class{events.ClassGroup, events.ClassMemb}})
		s := fa.next()
		if s.req.Classes != wire.MaskOf(events.ClassGroup, events.ClassMemb) || s.req.Flags != 0 || s.req.After != 0 {
			t.Fatalf("SUBSCRIBE %+v", s.req)
		}
		s.reply(t, wire.SubscribeReply{})
		if r := <-d; r.err != nil {
			t.Fatalf("Dial(%s): %v", path, r.err)
		}
	}
}

func TestDialRefused(t *testing.T) {
	fa := newFake(t)
	d := dial(t, fa.dir, client.Options{})
	s := fa.next()
	st := proto.Status{Code: proto.CodeState, Text: "already subscribed on this link"}
	f := proto.Frame{Header: proto.Header{Opcode: wire.OpSubscribe, MsgID: s.id, Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply | proto.FlagAbort},
		Body: proto.AppendStatus(nil, &st)}
	s.l.Send(context.Background(), &f)
	if r := <-d; !errors.Is(r.err, proto.ErrState) || !strings.Contains(r.err.Error(), "already subscribed") {
		t.Fatalf("Dial refused: %v", r.err)
	}
}

func TestBadClass(t *testing.T) {
	_, err := client.Dial(context.Background(), t.TempDir(), client.Options{Classes: []events.Class{9}})
	if !errors.Is(err, events.ErrBadClass) {
		t.Fatalf("Dial with class 9: %v", err)
	}
}

// TestEventBeforeReply: an agent that sends EVENT before answering
// SUBSCRIBE breaks the protocol; the client ends that link.
func TestEventBeforeReply(t *testing.T) {
	fa := newFake(t)
	d := dial(t, fa.dir, client.Options{})
	s := fa.next()
	s.event(t, ev(1))
	<-s.l.Done()
	if err := s.l.Err(); !errors.Is(err, proto.ErrState) || !strings.Contains(err.Error(), "before or outside the subscription") {
		t.Fatalf("fake agent's link ended with %v", err)
	}
	if r := <-d; r.err == nil {
		t.Fatal("Dial succeeded")
	}
}

// TestDuplicatesDropped: an event at or below the last seq delivered does
// not reach the service again, even when the agent resends it.
func TestDuplicatesDropped(t *testing.T) {
	fa := newFake(t)
	svc, rec := recording(t)
	d := dial(t, fa.dir, client.Options{Service: svc})
	s := fa.next()
	s.reply(t, wire.SubscribeReply{Latest: 4})
	r := <-d
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, seq := range []uint64{5, 5, 4, 3, 6, 0, 6, 7} {
		s.event(t, ev(seq))
	}
	if got := seqsOf(rec.Wait(t, 4, waitFor)); !slices.Equal(got, []uint64{5, 6, 0, 7}) {
		t.Fatalf("delivered %v", got)
	}
	if r.c.LastSeq() != 7 {
		t.Fatalf("LastSeq %d", r.c.LastSeq())
	}
}

// TestResumeAfterLatest: a client that asked for new events only and
// received none resumes after the Latest of its first reply; one that
// received events resumes after the last.
func TestResumeAfterLatest(t *testing.T) {
	fa := newFake(t)
	svc, rec := recording(t)
	lost := make(chan error, 4)
	d := dial(t, fa.dir, client.Options{Service: svc, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		OnDisconnect: func(err error) { lost <- err }})
	s := fa.next()
	s.reply(t, wire.SubscribeReply{Latest: 10})
	r := <-d
	if r.err != nil {
		t.Fatal(r.err)
	}
	s.l.Close(proto.CodeShutdown, "agent restarting")
	if err := <-lost; !errors.Is(err, proto.ErrShutdown) {
		t.Fatalf("OnDisconnect(%v)", err)
	}
	s = fa.next()
	if s.req.Flags != wire.SubResume || s.req.After != 10 {
		t.Fatalf("second SUBSCRIBE %+v, want RESUME after 10", s.req)
	}
	s.reply(t, wire.SubscribeReply{Latest: 12})
	s.event(t, ev(11))
	s.event(t, ev(12))
	rec.Wait(t, 2, waitFor)
	s.l.Close(proto.CodeBehind, "client fell behind")
	if err := <-lost; !errors.Is(err, proto.ErrBehind) {
		t.Fatalf("OnDisconnect(%v)", err)
	}
	s = fa.next()
	if s.req.Flags != wire.SubResume || s.req.After != 12 {
		t.Fatalf("third SUBSCRIBE %+v, want RESUME after 12", s.req)
	}
}

// TestGapBeforeEvents: OnGap runs before any event of the resumed link
// reaches the service.
func TestGapBeforeEvents(t *testing.T) {
	fa := newFake(t)
	svc, rec := recording(t)
	var delivered []int
	d := dial(t, fa.dir, client.Options{Service: svc, Resume: true, After: 3, OnGap: func(g client.Gap) {
		delivered = append(delivered, len(rec.Calls()))
		if g != (client.Gap{After: 3, Floor: 9, Latest: 20}) {
			t.Errorf("gap %+v", g)
		}
	}})
	s := fa.next()
	if s.req.Flags != wire.SubResume || s.req.After != 3 {
		t.Fatalf("SUBSCRIBE %+v", s.req)
	}
	s.reply(t, wire.SubscribeReply{Latest: 20, Floor: 9, Flags: wire.ReplyGap})
	s.event(t, ev(10))
	if r := <-d; r.err != nil {
		t.Fatal(r.err)
	}
	rec.Wait(t, 1, waitFor)
	if !slices.Equal(delivered, []int{0}) {
		t.Fatalf("OnGap saw %v events already delivered", delivered)
	}
}

func TestCloseTwice(t *testing.T) {
	fa := newFake(t)
	d := dial(t, fa.dir, client.Options{})
	s := fa.next()
	s.reply(t, wire.SubscribeReply{})
	r := <-d
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := r.c.Close(); err != nil {
		t.Fatal(err)
	}
	<-s.l.Done()
	if err := s.l.Err(); !errors.Is(err, proto.ErrShutdown) {
		t.Fatalf("agent saw %v, want GOODBYE shutdown", err)
	}
	if err := r.c.Close(); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := r.c.Membership(context.Background()); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("Membership after Close: %v", err)
	}
	if err := r.c.Events().Publish(ev(1)); !errors.Is(err, events.ErrClosed) {
		t.Fatalf("the client's own service is open after Close: %v", err)
	}
}

func TestGapString(t *testing.T) {
	g := client.Gap{After: 3, Floor: 9, Latest: 20}
	if s := g.String(); !bytes.Contains([]byte(s), []byte("events 4..9 may be lost")) {
		t.Fatal(s)
	}
}
