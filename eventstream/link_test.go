package eventstream_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/eventstream"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
	"github.com/corralhq/corral/transport/transporttest"
)

const waitFor = 10 * time.Second

// clientPipe returns a client-protocol link served by srv at the far end,
// and the channel of the frames the near end receives (replies to Call
// excepted).
func clientPipe(t *testing.T, srv *eventstream.Server) (*transport.Link, <-chan proto.Frame) {
	appCfg := transporttest.Config(0, "app")
	appCfg.Key = nil
	return clientPipeCfg(t, srv, appCfg)
}

// clientPipeCfg is clientPipe with the application end's config.
func clientPipeCfg(t *testing.T, srv *eventstream.Server, appCfg *transport.Config) (*transport.Link, <-chan proto.Frame) {
	t.Helper()
	agentCfg := transporttest.Config(1, "agent")
	agentCfg.Key, agentCfg.Serve = nil, []proto.ProtoID{proto.ProtoClient}
	app, agent := transporttest.PipeReason(t, appCfg, agentCfg, proto.ReasonClient)
	frames := make(chan proto.Frame, 64)
	app.Start(func(_ *transport.Link, f *proto.Frame) error {
		frames <- proto.Frame{Header: f.Header, Body: bytes.Clone(f.Body)}
		return nil
	})
	agent.Start(srv.Handler())
	return app, frames
}

func next(t *testing.T, frames <-chan proto.Frame) proto.Frame {
	t.Helper()
	select {
	case f := <-frames:
		return f
	case <-time.After(waitFor):
		t.Fatal("no frame from the server")
		return proto.Frame{}
	}
}

func subscribeFrame(id uint64, req wire.Subscribe) *proto.Frame {
	return &proto.Frame{Header: proto.Header{Opcode: wire.OpSubscribe, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: id},
		Body: wire.AppendSubscribe(nil, &req)}
}

// TestResumeAfterRestartOnTheWire: the reply to SUBSCRIBE resume-after 0
// from a stream started at applied index 3 carries GAP.
func TestResumeAfterRestartOnTheWire(t *testing.T) {
	s := eventstream.New(eventstream.DefaultLimits(), 3, nil)
	defer s.Close()
	l, frames := clientPipe(t, eventstream.NewServer(s, nil))
	if err := l.Send(context.Background(), subscribeFrame(1, wire.Subscribe{Classes: wire.AllClasses, Flags: wire.SubResume})); err != nil {
		t.Fatal(err)
	}
	f := next(t, frames)
	rep, err := wire.ParseSubscribeReply(f.Body)
	if f.Opcode != wire.OpSubscribe || f.Flags&proto.FlagReply == 0 || err != nil || !rep.Gap() || rep.Floor != 3 || rep.Latest != 3 {
		t.Fatalf("reply to SUBSCRIBE resume after 0: %+v %+v %v, want GAP with floor 3", f.Header, rep, err)
	}
	// The next event follows the reply, with the SUBSCRIBE's msg id.
	if err := s.Publish(events.Event{Seq: 4, Desc: events.MSNewView, Data: &events.Membership{Instance: 4}}); err != nil {
		t.Fatal(err)
	}
	f = next(t, frames)
	ev, err := wire.ParseEvent(f.Body)
	if f.Opcode != wire.OpEvent || f.MsgID != 1 || err != nil || ev.Seq != 4 {
		t.Fatalf("EVENT: %+v %v %v", f.Header, ev, err)
	}
}

// TestBadClientFrames: each malformed frame ends its own link with a
// GOODBYE carrying a typed error; a subscribed link goes on.
func TestBadClientFrames(t *testing.T) {
	s := eventstream.New(eventstream.DefaultLimits(), 0, nil)
	defer s.Close()
	srv := eventstream.NewServer(s, nil)
	good, goodFrames := clientPipe(t, srv)
	if err := good.Send(context.Background(), subscribeFrame(1, wire.Subscribe{Classes: wire.AllClasses})); err != nil {
		t.Fatal(err)
	}
	next(t, goodFrames)
	req := func(op uint16, flags proto.Flags, body []byte) *proto.Frame {
		return &proto.Frame{Header: proto.Header{Opcode: op, Flags: flags, MsgID: 9}, Body: body}
	}
	cd := proto.FlagCreate | proto.FlagDelete
	sub := wire.AppendSubscribe(nil, &wire.Subscribe{Classes: wire.AllClasses})
	ev := events.Event{Seq: 1, Desc: events.GSBroadcast, Data: &events.Group{Name: "g"}}
	evBody, _ := wire.AppendEvent(nil, &ev)
	for _, tc := range []struct {
		name string
		f    *proto.Frame
		code proto.Code
		text string
	}{
		{"empty class mask", req(wire.OpSubscribe, cd, wire.AppendSubscribe(nil, &wire.Subscribe{})), proto.CodeField, "class mask selects no class"},
		{"short subscribe", req(wire.OpSubscribe, cd, sub[:10]), proto.CodeField, "SUBSCRIBE: truncated"},
		{"unknown class", req(wire.OpSubscribe, cd, wire.AppendSubscribe(nil, &wire.Subscribe{Classes: 1 << 9})), proto.CodeField, "unknown classes"},
		{"query with body", req(wire.OpQueryMembership, cd, []byte{1}), proto.CodeField, "QUERY_MEMBERSHIP request: 1 unexpected bytes"},
		{"event from a client", req(wire.OpEvent, cd, evBody), proto.CodeState, "events flow from the agent"},
		{"a reply", req(wire.OpSubscribe, cd|proto.FlagReply, wire.AppendSubscribeReply(nil, &wire.SubscribeReply{})), proto.CodeState, "clients send requests"},
		{"streaming flags", req(wire.OpSubscribe, proto.FlagCreate, sub), proto.CodeField, "want CREATE|DELETE"},
		{"unassigned opcode", req(0x0108, cd, nil), proto.CodeOpcode, "no opcode 0x0108"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, _ := clientPipe(t, srv)
			if err := l.Send(context.Background(), tc.f); err != nil {
				t.Fatal(err)
			}
			select {
			case <-l.Done():
			case <-time.After(waitFor):
				t.Fatal("the server did not close the link")
			}
			err := l.Err()
			var pe *proto.Error
			if !errors.As(err, &pe) || pe.Code != tc.code || !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "peer said goodbye") {
				t.Fatalf("link ended with %v, want a GOODBYE with code %d (%s) saying %q", err, tc.code, tc.code, tc.text)
			}
		})
	}
	if err := s.Publish(ev); err != nil {
		t.Fatal(err)
	}
	if f := next(t, goodFrames); f.Opcode != wire.OpEvent {
		t.Fatalf("good link got %+v", f.Header)
	}
}

// TestSecondSubscribeRefused: a second SUBSCRIBE on a link is answered
// with ABORT; the link and its first subscription stay.
func TestSecondSubscribeRefused(t *testing.T) {
	s := eventstream.New(eventstream.DefaultLimits(), 0, nil)
	defer s.Close()
	l, frames := clientPipe(t, eventstream.NewServer(s, nil))
	req := wire.Subscribe{Classes: wire.MaskOf(events.ClassGroup)}
	l.Send(context.Background(), subscribeFrame(1, req))
	if f := next(t, frames); f.Opcode != wire.OpSubscribe || f.MsgID != 1 || f.Flags != proto.FlagCreate|proto.FlagDelete|proto.FlagReply {
		t.Fatalf("answer to SUBSCRIBE: %+v", f.Header)
	}
	l.Send(context.Background(), subscribeFrame(2, req))
	f := next(t, frames)
	st, err := proto.ParseStatus(f.Body, "ABORT")
	if f.MsgID != 2 || f.Flags&proto.FlagAbort == 0 || err != nil || st.Code != proto.CodeState || !strings.Contains(st.Text, "already subscribed") {
		t.Fatalf("answer to a second SUBSCRIBE: %+v %+v %v", f.Header, st, err)
	}
	s.Publish(events.Event{Seq: 1, Desc: events.GSBroadcast, Data: &events.Group{Name: "g"}})
	f = next(t, frames)
	if ev, err := wire.ParseEvent(f.Body); f.Opcode != wire.OpEvent || f.MsgID != 1 || err != nil || ev.Seq != 1 {
		t.Fatalf("EVENT after the refused SUBSCRIBE: %+v %v %v", f.Header, ev, err)
	}
}

// TestSubscribeAfterClose: a closed stream refuses SUBSCRIBE with ABORT
// CodeShutdown.
func TestSubscribeAfterClose(t *testing.T) {
	s := eventstream.New(eventstream.DefaultLimits(), 0, nil)
	s.Close()
	l, _ := clientPipe(t, eventstream.NewServer(s, nil))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: wire.OpSubscribe}, Body: wire.AppendSubscribe(nil, &wire.Subscribe{Classes: wire.AllClasses})})
	if !errors.Is(err, proto.ErrShutdown) {
		t.Fatalf("SUBSCRIBE to a closed stream: %v", err)
	}
}

func TestQueries(t *testing.T) {
	view := events.Membership{Instance: 4, Members: []events.Node{
		{ID: 1, Name: "n1", BornOn: 1, Addr: netip.MustParseAddrPort("127.0.0.1:7946")},
		{ID: 2, Name: "n2", BornOn: 4, Addr: netip.MustParseAddrPort("127.0.0.2:7946")},
	}}
	conn := events.Connectivity{
		Interface:  events.Interface{Name: "subject, not in the reply"},
		Nodes:      view.Members,
		Interfaces: []events.Interface{{Name: "lo", Addr: netip.MustParsePrefix("127.0.0.1/8"), Up: true}},
		Peers:      []events.Peer{{Node: view.Members[1], Eligible: true, Connected: true}},
	}
	s := eventstream.New(eventstream.DefaultLimits(), 0, nil)
	defer s.Close()
	srv := eventstream.NewServer(s, slog.New(slog.DiscardHandler))
	l, _ := clientPipe(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	query := func(op uint16) (*proto.Frame, error) {
		return l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: op}})
	}
	if _, err := query(wire.OpQueryMembership); !errors.Is(err, proto.ErrState) {
		t.Fatalf("QUERY_MEMBERSHIP without a provider: %v, want code %d", err, proto.CodeState)
	}
	srv.SetProviders(func() events.Membership { return view }, func() events.Connectivity { return conn })
	f, err := query(wire.OpQueryMembership)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := wire.ParseMembership(f.Body); err != nil || m.Instance != 4 || !slices.Equal(m.Members, view.Members) {
		t.Fatalf("membership: %+v %v", m, err)
	}
	f, err = query(wire.OpQueryConnectivity)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := wire.ParseConnectivity(f.Body); err != nil || !slices.Equal(c.Interfaces, conn.Interfaces) || c.Interface != (events.Interface{}) || len(c.Nodes) != 0 {
		t.Fatalf("connectivity: %+v %v", c, err)
	}
}

// recorder is a slog.Handler that keeps the messages logged at Warn and
// above, with their attributes.
type recorder struct {
	mu    sync.Mutex // guards lines
	lines []string
	added chan struct{} // cap 1: a line was kept
}

func newRecorder() *recorder { return &recorder{added: make(chan struct{}, 1)} }

func (r *recorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler           { return r }
func (r *recorder) WithGroup(string) slog.Handler                { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Message
	rec.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	r.mu.Lock()
	r.lines = append(r.lines, line)
	r.mu.Unlock()
	select {
	case r.added <- struct{}{}:
	default:
	}
	return nil
}

func (r *recorder) matching(s string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.lines {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// TestClientThatStopsReading: a client that subscribes and then reads
// nothing fills the socket and the link's send queue. The bytes waiting
// on the link count in its lag, so it is told GOODBYE CodeBehind with the
// reason, and the agent logs it once, long before the link's write
// timeout would drop it without a word.
func TestClientThatStopsReading(t *testing.T) {
	log := newRecorder()
	s := eventstream.New(eventstream.DefaultLimits(), 0, slog.New(log))
	defer s.Close()
	lim := eventstream.DefaultLimits()
	lim.LagBytes = 64 << 10
	s.SetLimits(lim)
	srv := eventstream.NewServer(s, slog.New(log))

	agentCfg := transporttest.Config(1, "agent")
	agentCfg.Key, agentCfg.Serve = nil, []proto.ProtoID{proto.ProtoClient}
	// The client's PINGs keep the link alive; the write timeout
	// (heartbeat timeout + 1s) is what would drop it.
	agentCfg.HeartbeatInterval, agentCfg.HeartbeatTimeout = 100*time.Millisecond, time.Second
	appCfg := transporttest.Config(0, "app")
	appCfg.Key = nil
	appCfg.HeartbeatInterval, appCfg.HeartbeatTimeout = 100*time.Millisecond, time.Minute
	app, agent := transporttest.PipeReason(t, appCfg, agentCfg, proto.ReasonClient)
	replied := make(chan struct{})
	resume := make(chan struct{})
	var got int
	app.Start(func(_ *transport.Link, f *proto.Frame) error {
		switch f.Opcode {
		case wire.OpSubscribe:
			close(replied)
		case wire.OpEvent:
			<-resume // the application stops reading
			got++
		}
		return nil
	})
	agent.Start(srv.Handler())
	if err := app.Send(context.Background(), subscribeFrame(1, wire.Subscribe{Classes: wire.AllClasses})); err != nil {
		t.Fatal(err)
	}
	select {
	case <-replied:
	case <-time.After(waitFor):
		t.Fatal("no reply to SUBSCRIBE")
	}

	// 1 KiB events at about 1 MB/s: the socket buffer fills in a few
	// hundred milliseconds, the 64 KiB bound some 64 ms later; the write
	// timeout is 2 s after the socket filled.
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	behind := false
	for seq := uint64(1); !behind; seq++ {
		select {
		case <-agent.Done():
			t.Fatalf("after %v the agent's link ended with %v before the stream said the client fell behind; log: %q",
				time.Since(start).Round(time.Millisecond), agent.Err(), log.matching(""))
		case <-time.After(waitFor):
			t.Fatal("the client was never found behind")
		case <-tick.C:
		}
		if err := s.Publish(groupEvent(seq, 1024)); err != nil {
			t.Fatal(err)
		}
		behind = len(log.matching("fell behind")) > 0
	}
	found := time.Since(start)
	close(resume)
	select {
	case <-app.Done():
	case <-time.After(waitFor):
		t.Fatal("the client's link did not end")
	}
	err := app.Err()
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Code != proto.CodeBehind || !strings.Contains(err.Error(), "peer said goodbye: client fell behind") ||
		!strings.Contains(err.Error(), "on its link that it has not read") {
		t.Fatalf("client's link ended with %v, want GOODBYE %d (%s) with the reason", err, proto.CodeBehind, proto.CodeBehind)
	}
	if lines := log.matching("fell behind"); len(lines) != 1 {
		t.Fatalf("log lines about falling behind: %q, want one", lines)
	}
	if lines := log.matching("timed out"); len(lines) != 0 {
		t.Fatalf("log: %q", lines)
	}
	t.Logf("client found behind %v after the first event; it read %d events, then the GOODBYE", found.Round(time.Millisecond), got)
}

func groupEvent(seq uint64, n int) events.Event {
	return events.Event{Seq: seq, Desc: events.GSBroadcast, Data: &events.Group{Name: "g", MsgID: seq, Payload: bytes.Repeat([]byte{'x'}, n)}}
}
