package eventstream_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/eventstream"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport/transporttest"
)

// TestEventBatchByVersion: events ready together reach a version-5 link
// as one EVENT_BATCH holding exactly the EVENT bodies, and a version-4
// link as one EVENT frame per event with the very bytes it got before
// version 5 (each body is AppendEvent's, the frame EVENT with the
// SUBSCRIBE's msg id).
func TestEventBatchByVersion(t *testing.T) {
	const n = 40
	s := eventstream.New(eventstream.DefaultLimits(), 0, nil)
	defer s.Close()
	var want [][]byte
	for i := range n {
		ev := events.Event{Seq: uint64(i+1) << 20, Desc: events.GSBroadcast, Data: &events.Group{Name: "g", MsgID: uint64(i), Payload: bytes.Repeat([]byte{byte(i)}, 100)}}
		if err := s.Publish(ev); err != nil {
			t.Fatal(err)
		}
		b, err := wire.AppendEvent(nil, &ev)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b)
	}
	srv := eventstream.NewServer(s, nil)
	for _, v := range []uint8{4, 5} {
		appCfg := transporttest.Config(0, "app")
		appCfg.Key, appCfg.Ranges = nil, proto.Ranges{{Proto: proto.ProtoClient, Min: 1, Max: v}}
		l, frames := clientPipeCfg(t, srv, appCfg)
		if got := l.Peer().Version; got != v {
			t.Fatalf("negotiated version %d, want %d", got, v)
		}
		// Resume after 0: the history is ready at once, so the agent has
		// every event in hand together.
		if err := l.Send(context.Background(), subscribeFrame(7, wire.Subscribe{Classes: wire.AllClasses, Flags: wire.SubResume})); err != nil {
			t.Fatal(err)
		}
		if f := next(t, frames); f.Opcode != wire.OpSubscribe {
			t.Fatalf("v%d: first frame %+v", v, f.Header)
		}
		var got [][]byte
		frameCount := 0
		for len(got) < n {
			f := next(t, frames)
			frameCount++
			if f.MsgID != 7 || f.Flags != proto.FlagCreate|proto.FlagDelete {
				t.Fatalf("v%d: frame %+v", v, f.Header)
			}
			switch {
			case f.Opcode == wire.OpEvent:
				got = append(got, f.Body)
			case f.Opcode == wire.OpEventBatch && v >= 5:
				bodies, err := wire.SplitEventBatch(f.Body)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, bodies...)
			default:
				t.Fatalf("v%d: unexpected %s", v, wire.Ops().Name(f.Opcode))
			}
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("v%d: event %d differs from its EVENT body", v, i)
			}
		}
		switch {
		case v == 4 && frameCount != n:
			t.Errorf("v4: %d frames for %d events", frameCount, n)
		case v == 5 && frameCount >= n/2:
			t.Errorf("v5: %d frames for %d events ready together: not batched", frameCount, n)
		}
		t.Logf("v%d: %d events in %d frames", v, n, frameCount)
	}
}
