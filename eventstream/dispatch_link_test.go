package eventstream_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/eventstream"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
	"github.com/corralhq/corral/transport/transporttest"
)

// versionPipe is clientPipe with an application that speaks client
// versions 1..max.
func versionPipe(t *testing.T, srv *eventstream.Server, max uint8) (*transport.Link, <-chan proto.Frame) {
	t.Helper()
	agentCfg := transporttest.Config(1, "agent")
	agentCfg.Key, agentCfg.Serve = nil, []proto.ProtoID{proto.ProtoClient}
	appCfg := transporttest.Config(0, "app")
	appCfg.Key, appCfg.Ranges = nil, proto.Ranges{{Proto: proto.ProtoClient, Min: 1, Max: max}}
	app, agent := transporttest.PipeReason(t, appCfg, agentCfg, proto.ReasonClient)
	frames := make(chan proto.Frame, 64)
	app.Start(func(_ *transport.Link, f *proto.Frame) error {
		frames <- proto.Frame{Header: f.Header, Body: bytes.Clone(f.Body)}
		return nil
	})
	agent.Start(srv.Handler())
	if v := app.Peer().Version; v != max {
		t.Fatalf("link agreed on version %d, want %d", v, max)
	}
	return app, frames
}

func sendCallbacks(t *testing.T, l *transport.Link, cb wire.Callbacks) {
	t.Helper()
	body, err := wire.AppendCallbacks(nil, &cb)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: wire.OpCallbacks}, Body: body}); err != nil {
		t.Fatalf("CALLBACKS: %v", err)
	}
}

func sendDone(t *testing.T, l *transport.Link, subID uint64, seq uint64, desc events.Descriptor) {
	t.Helper()
	body, err := wire.AppendDone(nil, &wire.Done{Seq: seq, Desc: desc})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Send(context.Background(), &proto.Frame{Header: proto.Header{Opcode: wire.OpDone, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: subID}, Body: body}); err != nil {
		t.Fatal(err)
	}
}

// nextEvent returns the next frame, an EVENT, decoded at version v.
func nextEvent(t *testing.T, frames <-chan proto.Frame, v uint8) (events.Event, wire.EventFlags) {
	t.Helper()
	f := next(t, frames)
	ev, fl, err := wire.ParseEventAt(v, f.Body)
	if f.Opcode != wire.OpEvent || err != nil {
		t.Fatalf("want an EVENT, got %+v: %v", f.Header, err)
	}
	return ev, fl
}

func waitEnded(t *testing.T, l *transport.Link) error {
	t.Helper()
	select {
	case <-l.Done():
	case <-time.After(waitFor):
		t.Fatal("the server did not close the link")
	}
	return l.Err()
}

func newView(seq uint64) events.Event {
	return events.Event{Seq: seq, Desc: events.MSNewView, Data: &events.Membership{Instance: seq}}
}

// TestDispatchOnTheWire: two v3 links that sent CALLBACKS (one before
// SUBSCRIBE, one after) get a membership event in priority order, each
// flagged, the second only after the first's DONE; a v2 link gets it at
// once and cannot send CALLBACKS; a DONE for another event ends its link
// with CodeState.
func TestDispatchOnTheWire(t *testing.T) {
	s := eventstream.New(eventstream.DefaultLimits(), 0, nil)
	defer s.Close()
	srv := eventstream.NewServer(s, nil)
	memb := wire.Callbacks{Classes: wire.MaskOf(events.ClassMemb)}

	first, firstFrames := versionPipe(t, srv, 3)
	memb.Prio[events.ClassMemb] = 1
	sendCallbacks(t, first, memb) // before SUBSCRIBE
	second, secondFrames := versionPipe(t, srv, 3)
	old, oldFrames := versionPipe(t, srv, 2)
	for i, l := range []*transport.Link{first, second, old} {
		if err := l.Send(context.Background(), subscribeFrame(uint64(10+i), wire.Subscribe{Classes: wire.AllClasses})); err != nil {
			t.Fatal(err)
		}
	}
	next(t, firstFrames)
	next(t, secondFrames)
	next(t, oldFrames)
	memb.Prio[events.ClassMemb] = 2
	sendCallbacks(t, second, memb) // after SUBSCRIBE

	if err := s.Publish(newView(1)); err != nil {
		t.Fatal(err)
	}
	if ev, _ := nextEvent(t, oldFrames, 2); ev.Seq != 1 {
		t.Fatalf("v2 link got %v", ev)
	}
	if ev, fl := nextEvent(t, firstFrames, 3); ev.Seq != 1 || fl != wire.EventAwaitDone {
		t.Fatalf("first got %v flags %#x", ev, fl)
	}
	if st := s.Stats(); st.Gated != 2 || st.DispatchSeq != 1 || st.DispatchWaiting != 1 {
		t.Fatalf("stats %+v", st)
	}
	select {
	case f := <-secondFrames:
		t.Fatalf("the second band got %+v before the first's DONE", f.Header)
	default:
	}
	sendDone(t, first, 10, 1, events.MSNewView)
	if ev, fl := nextEvent(t, secondFrames, 3); ev.Seq != 1 || fl != wire.EventAwaitDone {
		t.Fatalf("second got %v flags %#x", ev, fl)
	}

	// The v2 link may not take part.
	body, _ := wire.AppendCallbacks(nil, &memb)
	if err := old.Send(context.Background(), &proto.Frame{Header: proto.Header{Opcode: wire.OpCallbacks, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: 99}, Body: body}); err != nil {
		t.Fatal(err)
	}
	if err := waitEnded(t, old); !errors.Is(err, proto.ErrOpcode) {
		t.Fatalf("v2 link sending CALLBACKS ended with %v", err)
	}

	// A DONE naming another event ends the link.
	sendDone(t, second, 11, 7, events.MSNewView)
	err := waitEnded(t, second)
	if !errors.Is(err, proto.ErrState) || !strings.Contains(err.Error(), "DONE for seq 7 (NEWVIEW), but the event awaited is seq 1 (NEWVIEW)") {
		t.Fatalf("second ended with %v", err)
	}
	// The dispatch goes on without it.
	if err := s.Publish(newView(2)); err != nil {
		t.Fatal(err)
	}
	if ev, fl := nextEvent(t, firstFrames, 3); ev.Seq != 2 || fl != wire.EventAwaitDone {
		t.Fatalf("first got %v flags %#x", ev, fl)
	}
}

// TestDispatchTimeoutOnTheWire: a link that does not send its DONE in
// time is told so with GOODBYE CodeTimeout.
func TestDispatchTimeoutOnTheWire(t *testing.T) {
	lim := eventstream.DefaultLimits()
	lim.CallbackTimeout = 100 * time.Millisecond
	s := eventstream.New(lim, 0, nil)
	defer s.Close()
	l, frames := versionPipe(t, eventstream.NewServer(s, nil), 3)
	sendCallbacks(t, l, wire.Callbacks{Classes: wire.AllClasses})
	if err := l.Send(context.Background(), subscribeFrame(1, wire.Subscribe{Classes: wire.AllClasses})); err != nil {
		t.Fatal(err)
	}
	next(t, frames)
	if err := s.Publish(newView(5)); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, frames, 3)
	err := waitEnded(t, l)
	if !errors.Is(err, proto.ErrTimeout) || !strings.Contains(err.Error(), "callback not completed within 100ms: event seq 5 (MEMB NEWVIEW)") {
		t.Fatalf("link ended with %v", err)
	}
	if st := s.Stats(); st.Timeouts != 1 || st.Gated != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestGatedLinkBatches: a version-5 link that sent CALLBACKS (for the
// membership class) is sent the events of its other classes that are ready
// together in EVENT_BATCH frames, and a flagged event alone, as EVENT,
// between them in stream order.
func TestGatedLinkBatches(t *testing.T) {
	s := eventstream.New(eventstream.DefaultLimits(), 0, nil)
	defer s.Close()
	srv := eventstream.NewServer(s, nil)
	l, frames := versionPipe(t, srv, 5)
	sendCallbacks(t, l, wire.Callbacks{Classes: wire.MaskOf(events.ClassMemb)})
	if err := l.Send(context.Background(), subscribeFrame(10, wire.Subscribe{Classes: wire.AllClasses})); err != nil {
		t.Fatal(err)
	}
	next(t, frames)
	group := func(index uint64, k uint32) events.Event {
		return events.Event{Seq: events.SeqOf(index, k), Desc: events.GSBroadcast, Data: &events.Group{Name: "g", MsgID: uint64(k), Payload: []byte("m")}}
	}
	var evs []events.Event
	for k := uint32(1); k <= 30; k++ {
		evs = append(evs, group(5, k))
	}
	evs = append(evs, newView(events.SeqOf(6, 1)))
	for k := uint32(1); k <= 30; k++ {
		evs = append(evs, group(7, k))
	}
	if err := s.PublishBatch(evs); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	batches := 0
	for len(got) < len(evs) {
		f := next(t, frames)
		switch f.Opcode {
		case wire.OpEventBatch:
			batches++
			bodies, err := wire.SplitEventBatch(f.Body)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bodies {
				ev, fl, err := wire.ParseEventAt(5, b)
				if err != nil || fl != 0 || ev.Desc.Class() != events.ClassGroup {
					t.Fatalf("in a batch: %v flags %#x, %v", ev, fl, err)
				}
				got = append(got, ev.Seq)
			}
		case wire.OpEvent:
			ev, fl, err := wire.ParseEventAt(5, f.Body)
			if err != nil {
				t.Fatal(err)
			}
			if ev.Desc.Class() == events.ClassMemb {
				if fl != wire.EventAwaitDone {
					t.Fatalf("the view came unflagged: %v", ev)
				}
				sendDone(t, l, 10, ev.Seq, ev.Desc)
			}
			got = append(got, ev.Seq)
		default:
			t.Fatalf("unexpected %s", wire.Ops().Name(f.Opcode))
		}
	}
	for i := range evs {
		if got[i] != evs[i].Seq {
			t.Fatalf("event %d: seq %#x, want %#x (got %x)", i, got[i], evs[i].Seq, got)
		}
	}
	if batches < 2 {
		t.Errorf("%d EVENT_BATCH frames for 60 group events ready together, want one or more on each side of the view", batches)
	}
}
