package transport

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
)

// pause holds one goroutine of a link at a gate, as a process that gets
// no CPU, or was sent SIGSTOP, holds all of them.
type pause struct {
	mu   sync.Mutex    // guards gate
	gate chan struct{} // non-nil while holding; closed to let go
	held chan struct{} // the goroutine reached the gate
}

func newPause() *pause { return &pause{held: make(chan struct{}, 1)} }

func (p *pause) hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = make(chan struct{})
}

func (p *pause) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

// at runs on the link's goroutine.
func (p *pause) at() {
	p.mu.Lock()
	g := p.gate
	p.mu.Unlock()
	if g == nil {
		return
	}
	p.held <- struct{}{}
	<-g
}

func (p *pause) waitHeld(t *testing.T, what string) {
	t.Helper()
	select {
	case <-p.held:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s not held", what)
	}
}

// freezable is a started link whose heartbeat and reader can be stopped.
type freezable struct {
	l      *Link
	hb, rd *pause
	wakes  atomic.Int64 // heartbeat wake-ups
}

func startFreezable(t *testing.T, l *Link) *freezable {
	f := &freezable{l: l, hb: newPause(), rd: newPause()}
	l.ops = testOps
	l.hbWake = func() {
		f.hb.at()
		f.wakes.Add(1)
	}
	l.Start(func(_ *Link, fr *proto.Frame) error {
		if fr.Opcode == opTest {
			f.rd.at()
		}
		return nil
	})
	t.Cleanup(func() { f.hb.release(); f.rd.release() })
	return f
}

// freeze stops f's heartbeat and reader; peer is the other end, which
// sends the frame that parks the reader in its handler. Frames sent
// meanwhile wait unread in the socket.
func (f *freezable) freeze(t *testing.T, peer *Link) {
	t.Helper()
	f.hb.hold()
	f.rd.hold()
	if err := peer.Send(context.Background(), &proto.Frame{Header: proto.Header{Opcode: opTest}}); err != nil {
		t.Fatal(err)
	}
	f.hb.waitHeld(t, "heartbeat")
	f.rd.waitHeld(t, "reader")
}

// heartbeats waits for n more heartbeat wake-ups of f, and reports false if
// the link ended first.
func (f *freezable) heartbeats(t *testing.T, n int64) bool {
	t.Helper()
	want := f.wakes.Load() + n
	deadline := time.After(10 * time.Second)
	for f.wakes.Load() < want {
		select {
		case <-f.l.Done():
			return false
		case <-deadline:
			t.Fatalf("%d heartbeats did not come", n)
		case <-time.After(time.Millisecond):
		}
	}
	return true
}

func freezablePair(t *testing.T, cb *Config, ca *Config) (a, b *freezable) {
	t.Helper()
	c, s := pair(t, ca, cb, proto.ReasonJoin)
	if c.err != nil || s.err != nil {
		t.Fatal(c.err, s.err)
	}
	a, b = startFreezable(t, c.link), startFreezable(t, s.link)
	deadline := time.Now().Add(5 * time.Second)
	for a.l.RTT() == 0 || b.l.RTT() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no heartbeats on the new link")
		}
		time.Sleep(time.Millisecond)
	}
	return a, b
}

// A process that did not run for two timeouts must not blame its peer for
// the silence it could not hear: the frames are waiting in its socket.
func TestStarvedSideDoesNotBlamePeer(t *testing.T) {
	ca, la := testConfig(1, "a")
	cb, _ := testConfig(2, "b")
	cb.HeartbeatTimeout = time.Minute // b keeps pinging and never blames a
	timeout, interval := ca.HeartbeatTimeout, ca.HeartbeatInterval
	a, b := freezablePair(t, cb, ca)

	a.freeze(t, b.l)
	<-time.After(2 * timeout) // the stall itself
	// The heartbeat runs first and sees only silence; the reader, with the
	// PINGs b sent meanwhile, runs later.
	a.hb.release()
	if !a.heartbeats(t, 2) {
		t.Fatalf("the starved side blamed its peer on waking: %v", a.l.Err())
	}
	a.rd.release()
	// Past a full timeout of running time, the link still stands.
	if !a.heartbeats(t, int64(2*timeout/interval)) {
		t.Fatalf("link ended after the stall: %v", a.l.Err())
	}
	select {
	case <-b.l.Done():
		t.Fatalf("peer side ended: %v", b.l.Err())
	default:
	}
	if stalls(la) == 0 {
		t.Errorf("the stall was not noticed; log:\n%s", la.String())
	}
}

// A peer that stops answering while this process runs is declared dead
// within about one timeout.
func TestStoppedPeerDetected(t *testing.T) {
	ca, la := testConfig(1, "a")
	cb, _ := testConfig(2, "b")
	cb.HeartbeatTimeout = time.Minute
	timeout := ca.HeartbeatTimeout
	a, b := freezablePair(t, cb, ca)

	b.freeze(t, a.l)
	stopped := time.Now()
	select {
	case <-a.l.Done():
	case <-time.After(10 * timeout):
		t.Fatal("stopped peer not detected")
	}
	d := time.Since(stopped)
	wantCode(t, "a", a.l.Err(), proto.CodeTimeout)
	t.Logf("stopped peer detected after %v (timeout %v)", d, timeout)
	if d < timeout/2 {
		t.Errorf("stopped peer detected after %v, before any timeout (%v)", d, timeout)
	}
	if d > 3*timeout {
		if stalls(la) == 0 {
			t.Errorf("stopped peer detected after %v, want about one timeout (%v)", d, timeout)
		} else {
			t.Logf("this process stalled on a loaded machine, which rightly delayed detection; log:\n%s", la.String())
		}
	}
}

// stalls counts the stalls a link's heartbeat noticed, from its log.
func stalls(log *logBuf) int { return strings.Count(log.String(), "heartbeat woke late") }

// When both stopped and only this side resumes, the peer is declared dead
// one timeout after the resumption: not at once, and not never.
func TestStarvedSideBlamesStoppedPeerAfterFreshTimeout(t *testing.T) {
	ca, la := testConfig(1, "a")
	cb, _ := testConfig(2, "b")
	cb.HeartbeatTimeout = time.Minute
	timeout := ca.HeartbeatTimeout
	a, b := freezablePair(t, cb, ca)

	b.freeze(t, a.l)
	a.freeze(t, b.l) // b's writer still sends the frame that parks a's reader
	<-time.After(2 * timeout)
	resumed := time.Now()
	a.hb.release()
	a.rd.release()
	select {
	case <-a.l.Done():
	case <-time.After(10 * timeout):
		t.Fatal("stopped peer not detected after this side resumed")
	}
	d := time.Since(resumed)
	wantCode(t, "a", a.l.Err(), proto.CodeTimeout)
	t.Logf("declared dead %v after resuming (timeout %v)", d, timeout)
	if d < timeout {
		t.Errorf("declared dead %v after resuming, before a fresh timeout (%v)", d, timeout)
	}
	if d > 3*timeout {
		if stalls(la) <= 1 { // the one made here
			t.Errorf("declared dead %v after resuming, want about one timeout (%v)", d, timeout)
		} else {
			t.Logf("this process stalled again on a loaded machine, which rightly delayed detection; log:\n%s", la.String())
		}
	}
}
