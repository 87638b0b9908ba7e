package mesh

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

var testKey = bytes.Repeat([]byte{7}, transport.KeySize)

// eventually waits for cond with a deadline instead of sleeping.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type testNode struct {
	m      *Mesh
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error

	mu     sync.Mutex // guards events and got
	events []LinkEvent
	got    []*proto.Frame
}

func (n *testNode) linkEvents() []LinkEvent {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]LinkEvent(nil), n.events...)
}

func (n *testNode) frames() []*proto.Frame {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*proto.Frame(nil), n.got...)
}

func (n *testNode) stop(t *testing.T) {
	t.Helper()
	n.cancel()
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// listeners opens n loopback listeners, so every node's address is known
// before any starts.
func listeners(t *testing.T, n int) []net.Listener {
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	return lns
}

// start runs a mesh for node id on ln, dialing peers, with a handler that
// records frames of opcodes 0x0100..0x01FF.
func start(t *testing.T, id uint64, ln net.Listener, peers []string) *testNode {
	t.Helper()
	return startCfg(t, id, ln, peers, nil)
}

// startCfg is start with tweak applied to the configuration first.
func startCfg(t *testing.T, id uint64, ln net.Listener, peers []string, tweak func(*Config)) *testNode {
	t.Helper()
	n := &testNode{done: make(chan struct{})}
	cfg := Config{
		Self:     id,
		Listener: ln,
		Peers:    peers,
		Link: &transport.Config{
			Cluster: "test", NodeID: id, NodeName: "n" + string(rune('0'+id)), Key: testKey, Protocols: protos.All(),
			HandshakeTimeout: 2 * time.Second, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: time.Second,
		},
		ReconnectMax: 200 * time.Millisecond,
		OnLink: func(ev LinkEvent) {
			n.mu.Lock()
			n.events = append(n.events, ev)
			n.mu.Unlock()
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	n.m = New(cfg)
	n.m.Handle(0x0100, 0x01FF, func(l *transport.Link, f *proto.Frame) error {
		g := &proto.Frame{Header: f.Header, Body: append([]byte(nil), f.Body...)}
		g.Source = l.Peer().NodeID
		n.mu.Lock()
		n.got = append(n.got, g)
		n.mu.Unlock()
		return nil
	})
	n.m.Handle(peer.OpJoin, peer.OpLeave, func(l *transport.Link, f *proto.Frame) error {
		if f.Opcode == peer.OpLeave {
			return l.Abort(context.Background(), f, proto.Errorf(proto.CodeState, "not now"))
		}
		rev := make([]byte, len(f.Body))
		for i, c := range f.Body {
			rev[len(rev)-1-i] = c
		}
		return l.Reply(context.Background(), f, rev)
	})
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		n.err = n.m.Run(ctx)
		close(n.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-n.done
	})
	return n
}

func TestKeepNew(t *testing.T) {
	for _, c := range []struct {
		self, peer, oldInit, newInit uint64
		want                         bool
	}{
		{1, 2, 2, 1, true},  // the smaller id's link replaces the larger's
		{1, 2, 1, 2, false}, // and is not replaced by it
		{2, 1, 2, 1, true},  // the same rule seen from the other end
		{2, 1, 1, 2, false},
		{1, 2, 1, 1, true}, // a newer link from the same initiator wins
		{1, 2, 2, 2, true},
	} {
		if got := keepNew(c.self, c.peer, c.oldInit, c.newInit); got != c.want {
			t.Errorf("keepNew(self %d, peer %d, old by %d, new by %d) = %v, want %v", c.self, c.peer, c.oldInit, c.newInit, got, c.want)
		}
	}
}

// TestFullMeshOneLinkPerPair has every node dial every other at once: each
// pair ends up with one link, the same one at both ends.
func TestFullMeshOneLinkPerPair(t *testing.T) {
	lns := listeners(t, 3)
	addrs := []string{lns[0].Addr().String(), lns[1].Addr().String(), lns[2].Addr().String()}
	var ns []*testNode
	for i := range 3 {
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, a)
			}
		}
		ns = append(ns, start(t, uint64(i+1), lns[i], peers))
	}
	settled := func() bool {
		for i, n := range ns {
			for j := range ns {
				if i == j {
					continue
				}
				a, b := n.m.Link(uint64(j+1)), ns[j].m.Link(uint64(i+1))
				if a == nil || b == nil || len(n.m.Links()) != 2 {
					return false
				}
			}
		}
		return true
	}
	eventually(t, 10*time.Second, "every pair linked", settled)
	// Both ends of a pair must hold the same connection; a link that one
	// end closed as a duplicate goes down at the other end too, so wait
	// until no link goes down for a while.
	deadline := time.Now().Add(10 * time.Second)
	for stable := 0; stable < 20; {
		if time.Now().After(deadline) {
			t.Fatal("links did not settle")
		}
		if settled() {
			stable++
		} else {
			stable = 0
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i, n := range ns {
		for j := range ns {
			if i == j {
				continue
			}
			st, ok := n.m.State(uint64(j + 1))
			if !ok || !st.Up || st.Name == "" {
				t.Errorf("node %d's state of %d: %+v, %v", i+1, j+1, st, ok)
			}
		}
	}
	// Every node saw each peer come up, and any down it saw was followed
	// by an up again.
	for i, n := range ns {
		up := map[uint64]bool{}
		for _, ev := range n.linkEvents() {
			up[ev.Peer.NodeID] = ev.Up
		}
		if len(up) != 2 {
			t.Errorf("node %d: link events for %d peers, want 2: %v", i+1, len(up), n.linkEvents())
		}
		for id, u := range up {
			if !u {
				t.Errorf("node %d: last event for peer %d is down", i+1, id)
			}
		}
	}
}

func TestSendDispatchesByRange(t *testing.T) {
	lns := listeners(t, 2)
	a := start(t, 1, lns[0], []string{lns[1].Addr().String()})
	b := start(t, 2, lns[1], nil)
	eventually(t, 5*time.Second, "linked", func() bool { return a.m.Link(2) != nil && b.m.Link(1) != nil })
	ctx := context.Background()
	for i := range 10 {
		f := &proto.Frame{Header: proto.Header{Opcode: peer.OpRaft, Flags: proto.FlagCreate | proto.FlagDelete}, Body: []byte{byte(i)}}
		if err := a.m.Send(ctx, 2, f); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "10 frames at node 2", func() bool { return len(b.frames()) == 10 })
	for i, f := range b.frames() {
		if f.Opcode != peer.OpRaft || f.Source != 1 || !bytes.Equal(f.Body, []byte{byte(i)}) {
			t.Errorf("frame %d: opcode %#x from %d body %x", i, f.Opcode, f.Source, f.Body)
		}
	}
	// An opcode of the protocol that no handler serves ends the link with
	// a typed error.
	l := a.m.Link(2)
	if err := a.m.Send(ctx, 2, &proto.Frame{Header: proto.Header{Opcode: peer.OpNotMember, Flags: proto.FlagCreate | proto.FlagDelete}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("a frame of an unserved opcode did not end the link")
	}
	var pe *proto.Error
	if !errors.As(l.Err(), &pe) || pe.Code != proto.CodeOpcode {
		t.Errorf("link ended with %v, want an opcode error", l.Err())
	}
}

func TestSendNoRoute(t *testing.T) {
	lns := listeners(t, 1)
	a := start(t, 1, lns[0], nil)
	err := a.m.Send(context.Background(), 9, &proto.Frame{Header: proto.Header{Opcode: 0x0100}})
	if !errors.Is(err, ErrNoRoute) {
		t.Errorf("Send to an unknown node: %v, want ErrNoRoute", err)
	}
	if _, err := a.m.Call(context.Background(), 9, &proto.Frame{Header: proto.Header{Opcode: 0x0100}}); !errors.Is(err, ErrNoRoute) {
		t.Errorf("Call to an unknown node: %v, want ErrNoRoute", err)
	}
}

func TestLinkEventsAndState(t *testing.T) {
	lns := listeners(t, 2)
	a := start(t, 1, lns[0], []string{lns[1].Addr().String()})
	b := start(t, 2, lns[1], nil)
	eventually(t, 5*time.Second, "linked", func() bool { return a.m.Link(2) != nil })
	b.stop(t)
	eventually(t, 5*time.Second, "down seen", func() bool {
		evs := a.linkEvents()
		return len(evs) >= 2 && !evs[len(evs)-1].Up
	})
	st, ok := a.m.State(2)
	if !ok || st.Up || st.Since.IsZero() || st.Replaced {
		t.Errorf("state after the peer stopped: %+v %v", st, ok)
	}
	if evs := a.linkEvents(); !evs[0].Up || evs[0].Peer.NodeID != 2 {
		t.Errorf("first event %+v, want node 2 up", evs[0])
	}
	// The dialer keeps trying: the configured address stays listed.
	found := false
	for _, s := range a.m.States() {
		found = found || s.ID == 2 && s.Addr == lns[1].Addr().String()
	}
	if !found {
		t.Errorf("States() lost node 2: %+v", a.m.States())
	}
}

func TestAddPeer(t *testing.T) {
	lns := listeners(t, 2)
	m := New(Config{Self: 1, Listener: lns[0], Link: &transport.Config{Cluster: "test", NodeID: 1, Key: testKey, Protocols: protos.All()}})
	if err := m.AddPeer(lns[1].Addr().String()); !errors.Is(err, ErrNotRunning) {
		t.Errorf("AddPeer before Run: %v, want ErrNotRunning", err)
	}
	lns[0].Close()
	a := start(t, 1, listenersOne(t), nil)
	b := start(t, 2, lns[1], nil)
	if err := a.m.AddPeer("no-port"); !errors.Is(err, ErrBadPeer) {
		t.Errorf("AddPeer(no-port): %v, want ErrBadPeer", err)
	}
	eventually(t, 5*time.Second, "AddPeer usable once running", func() bool { return a.m.AddPeer(lns[1].Addr().String()) == nil })
	eventually(t, 5*time.Second, "linked after AddPeer", func() bool { return a.m.Link(2) != nil && b.m.Link(1) != nil })
	if err := a.m.AddPeer(lns[1].Addr().String()); err != nil {
		t.Errorf("AddPeer twice: %v", err)
	}
}

func listenersOne(t *testing.T) net.Listener { return listeners(t, 1)[0] }

func TestCallThroughMesh(t *testing.T) {
	lns := listeners(t, 2)
	a := start(t, 1, lns[0], []string{lns[1].Addr().String()})
	b := start(t, 2, lns[1], nil)
	eventually(t, 5*time.Second, "linked", func() bool { return a.m.Link(2) != nil && b.m.Link(1) != nil })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Node 2 answers JOIN with the body reversed, LEAVE with an ABORT.
	r, err := a.m.Call(ctx, 2, &proto.Frame{Header: proto.Header{Opcode: peer.OpJoin}, Body: []byte{1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(r.Body, []byte{3, 2, 1}) || r.Flags&proto.FlagReply == 0 {
		t.Errorf("reply %x flags %v", r.Body, r.Flags)
	}
	_, err = a.m.Call(ctx, 2, &proto.Frame{Header: proto.Header{Opcode: peer.OpLeave}})
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Code != proto.CodeState {
		t.Errorf("ABORT came back as %v, want a *proto.Error with CodeState", err)
	}
}
