package transport

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
)

// TestSessionDialRace: both agents dial at once (a mesh whose peers are
// configured at both ends). b's own link X attaches to the session first,
// then a's link Y (the one the mesh keeps) replaces it at b; a has
// exchanged SESSION on X before b ends it as a duplicate, and Y comes up
// at a only after X ended there. b's owner gives the session up at X's
// end (its cookie never reached b: nothing to resume) while Y is still
// exchanging SESSION with frames queued on it (a router's full table).
// The survivor Y must carry every frame both ways, those queued on it
// before the exchange first.
func TestSessionDialRace(t *testing.T) {
	a, b := newSessEnd(t, 4, 5, 0), newSessEnd(t, 5, 4, 0)
	xb, xa := pair(t, b.cfg, a.cfg, proto.ReasonJoin) // X: b dials a
	ya, yb := pair(t, a.cfg, b.cfg, proto.ReasonJoin) // Y: a dials b
	for _, r := range []result{xb, xa, ya, yb} {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	defer a.close()
	defer b.close()
	// At b, X attached (its start) before Y replaced it.
	xb.link.attach()
	yb.link.attach()
	b.serve(xb.link)
	a.serve(xa.link)
	b.serve(yb.link)
	waitCond(t, "X ends at both", 10*time.Second, func() bool {
		select {
		case <-xa.link.Done():
		default:
			return false
		}
		select {
		case <-xb.link.Done():
			return true
		default:
			return false
		}
	})
	const total, early = 200, 10
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var sa atomic.Uint64
	bs := b.cfg.Sessions.Session(a.id)
	sendB := func(from, to uint64) error {
		body := make([]byte, 8)
		for i := from; i <= to; i++ {
			binary.LittleEndian.PutUint64(body, i)
			f := proto.Frame{Header: proto.Header{Opcode: opTest, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
			if err := bs.Send(ctx, &f); err != nil {
				return fmt.Errorf("b: send %d: %w", i, err)
			}
		}
		return nil
	}
	if err := sendB(1, early); err != nil {
		t.Fatal(err)
	}
	if bs.Resumable() {
		t.Fatal("b's session resumable though no exchange finished at b")
	}
	bs.Expire() // what the mesh does at X's end: nothing to resume
	if err := sendB(early+1, 2*early); err != nil {
		t.Fatal(err)
	}
	a.serve(ya.link)
	waitActive(t, a, b)

	errc := make(chan error, 2)
	go func() { errc <- a.sender(ctx, total, &sa) }()
	go func() { errc <- sendB(2*early+1, total) }()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	got := func(e *sessEnd) uint64 { n, _ := e.received(); return n }
	waitCond(t, "everything delivered on Y", 10*time.Second, func() bool { return got(a) == total && got(b) == total })
	for _, e := range []*sessEnd{a, b} {
		if _, err := e.received(); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-ya.link.Done():
		t.Fatalf("Y ended at a: %v", ya.link.Err())
	case <-yb.link.Done():
		t.Fatalf("Y ended at b: %v", yb.link.Err())
	default:
	}
}

// TestSessionExpireWhilePending: the owner's resume window runs out while
// the next link is attached but has not exchanged SESSION yet. The
// session is given up (fresh at both ends, nothing of the old link
// resent) yet the frames queued for the new link go out on it, first.
func TestSessionExpireWhilePending(t *testing.T) {
	a, b := newSessEnd(t, 1, 2, 0), newSessEnd(t, 2, 1, 0)
	defer a.close()
	defer b.close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	send := func(from, to uint64) {
		t.Helper()
		s := b.cfg.Sessions.Session(a.id)
		body := make([]byte, 8)
		for i := from; i <= to; i++ {
			binary.LittleEndian.PutUint64(body, i)
			f := proto.Frame{Header: proto.Header{Opcode: opTest, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
			if err := s.Send(ctx, &f); err != nil {
				t.Fatalf("b: send %d: %v", i, err)
			}
		}
	}
	got := func() uint64 { n, _ := a.received(); return n }

	c1, s1 := pair(t, a.cfg, b.cfg, proto.ReasonJoin)
	if c1.err != nil || s1.err != nil {
		t.Fatal(c1.err, s1.err)
	}
	a.serve(c1.link)
	b.serve(s1.link)
	waitActive(t, a, b)
	send(1, 5)
	waitCond(t, "5 delivered on the first link", 10*time.Second, func() bool { return got() == 5 })
	c1.link.end(ErrClosed)
	<-s1.link.Done()

	c2, s2 := pair(t, a.cfg, b.cfg, proto.ReasonRejoin)
	if c2.err != nil || s2.err != nil {
		t.Fatal(c2.err, s2.err)
	}
	s2.link.attach()
	send(6, 15) // queued for the new link, before its exchange
	bs := b.cfg.Sessions.Session(a.id)
	if !bs.Expire() {
		t.Fatal("Expire with a link still exchanging reported false")
	}
	send(16, 20)
	a.serve(c2.link)
	b.serve(s2.link)
	waitActive(t, a, b)
	send(21, 30)
	waitCond(t, "30 delivered", 10*time.Second, func() bool { return got() == 30 })
	if _, err := a.received(); err != nil {
		t.Fatal(err)
	}
	if a.fresh.Load() != 2 || b.fresh.Load() != 2 || a.resumed.Load()+b.resumed.Load() != 0 {
		t.Fatalf("fresh %d/%d, resumed %d/%d: want both links fresh", a.fresh.Load(), b.fresh.Load(), a.resumed.Load(), b.resumed.Load())
	}
}
