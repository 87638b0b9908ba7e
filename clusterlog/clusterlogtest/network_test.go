package clusterlogtest

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// recorder is a Peer and Reporter that records what reaches it.
type recorder struct {
	mu          sync.Mutex // guards the fields below
	got         []*raftpb.Message
	unreachable []uint64
	snaps       map[uint64]bool
	arrived     chan struct{} // a message was stepped
	reported    chan struct{} // a snapshot report came in
}

func newRecorder() *recorder {
	return &recorder{snaps: make(map[uint64]bool), arrived: make(chan struct{}, 100), reported: make(chan struct{}, 100)}
}

func (r *recorder) Step(_ context.Context, m *raftpb.Message) error {
	r.mu.Lock()
	r.got = append(r.got, m)
	r.mu.Unlock()
	r.arrived <- struct{}{}
	return nil
}

func (r *recorder) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable = append(r.unreachable, id)
}

func (r *recorder) ReportSnapshot(id uint64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snaps[id] = ok
	r.reported <- struct{}{}
}

func msg(typ raftpb.MessageType, from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{Type: typ.Enum(), From: new(from), To: new(to), Index: new(index)}
}

func wait(t *testing.T, c <-chan struct{}) {
	t.Helper()
	select {
	case <-c:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a delivery")
	}
}

func TestDeliveryOrderAndCopy(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := newRecorder(), newRecorder()
	n.Attach(1, a)
	n.Attach(2, b)
	sent := []*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 1), msg(raftpb.MsgApp, 1, 2, 2), msg(raftpb.MsgApp, 1, 2, 3)}
	n.Endpoint(1).Send(sent)
	for range sent {
		wait(t, b.arrived)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, m := range b.got {
		if m.GetIndex() != uint64(i+1) {
			t.Errorf("message %d has index %d: out of order", i, m.GetIndex())
		}
		if m == sent[i] {
			t.Errorf("message %d delivered by pointer, not copied", i)
		}
	}
}

func TestCutIsolateHealDetach(t *testing.T) {
	n := New()
	defer n.Close()
	a, b := newRecorder(), newRecorder()
	n.Attach(1, a)
	n.Attach(2, b)

	n.Cut(1, 2)
	n.Endpoint(1).Send([]*raftpb.Message{msg(raftpb.MsgSnap, 1, 2, 1)})
	wait(t, a.reported)
	a.mu.Lock()
	if len(a.unreachable) != 1 || a.unreachable[0] != 2 || a.snaps[2] {
		t.Errorf("cut link: unreachable %v snaps %v; want 2 unreachable and its snapshot failed", a.unreachable, a.snaps)
	}
	a.mu.Unlock()

	n.Heal()
	n.Endpoint(1).Send([]*raftpb.Message{msg(raftpb.MsgSnap, 1, 2, 2)})
	wait(t, b.arrived)
	wait(t, a.reported)
	a.mu.Lock()
	if ok, seen := a.snaps[2]; !seen || !ok {
		t.Errorf("delivered snapshot not reported as finished")
	}
	a.mu.Unlock()

	n.Isolate(2)
	n.Endpoint(2).Send([]*raftpb.Message{msg(raftpb.MsgAppResp, 2, 1, 2)})
	n.Heal()
	n.Detach(2)
	n.Endpoint(1).Send([]*raftpb.Message{msg(raftpb.MsgApp, 1, 2, 3)})
	if s := n.Stats(); s.Dropped != 3 || s.Delivered != 1 || s.Sent != 4 {
		t.Errorf("stats %+v, want 4 sent, 1 delivered, 3 dropped", s)
	}
}
