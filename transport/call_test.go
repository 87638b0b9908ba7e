package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/transport"
	"github.com/corralhq/corral/transport/transporttest"
)

const waitFor = 10 * time.Second

// frames records the frames a Handler receives.
type frames struct {
	mu  sync.Mutex // guards got
	got []proto.Frame
	ch  chan struct{} // cap 1: a frame arrived
}

func newFrames() *frames { return &frames{ch: make(chan struct{}, 1)} }

func (fs *frames) handler(_ *transport.Link, f *proto.Frame) error {
	fs.mu.Lock()
	fs.got = append(fs.got, proto.Frame{Header: f.Header, Body: bytes.Clone(f.Body)})
	fs.mu.Unlock()
	select {
	case fs.ch <- struct{}{}:
	default:
	}
	return nil
}

// wait returns the frames received once there are at least n.
func (fs *frames) wait(t *testing.T, n int) []proto.Frame {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		fs.mu.Lock()
		got := slices.Clone(fs.got)
		fs.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-fs.ch:
		case <-deadline.C:
			t.Fatalf("%d frames received, want %d", len(got), n)
		}
	}
}

func request(body string) *proto.Frame {
	return &proto.Frame{Header: proto.Header{Opcode: peer.OpJoin}, Body: []byte(body)}
}

// echo answers every request with its body reversed, "abort:TEXT" with an
// ABORT CodeField, and "silent" not at all.
func echo(l *transport.Link, f *proto.Frame) error {
	if f.Flags&proto.FlagReply != 0 {
		return nil
	}
	body := string(f.Body)
	switch {
	case body == "silent":
		return nil
	case strings.HasPrefix(body, "abort:"):
		l.Abort(context.Background(), f, proto.Errorf(proto.CodeField, "%s", strings.TrimPrefix(body, "abort:")))
		return nil
	}
	r := []byte(body)
	slices.Reverse(r)
	l.Reply(context.Background(), f, r)
	return nil
}

func TestCallReply(t *testing.T) {
	a, b := transporttest.Pipe(t, nil, nil)
	seen := newFrames()
	a.Start(seen.handler)
	b.Start(echo)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	req := request("hello")
	rep, err := a.Call(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if string(rep.Body) != "olleh" || rep.MsgID != req.MsgID || req.MsgID == 0 || rep.Opcode != peer.OpJoin || rep.Flags != proto.FlagCreate|proto.FlagDelete|proto.FlagReply {
		t.Fatalf("reply %+v %q to request %+v", rep.Header, rep.Body, req.Header)
	}
	// A second call gets a fresh msg id.
	req2 := request("ab")
	if rep, err := a.Call(ctx, req2); err != nil || string(rep.Body) != "ba" || req2.MsgID == req.MsgID {
		t.Fatalf("second call: %v %v (msg ids %d, %d)", rep, err, req.MsgID, req2.MsgID)
	}
	// The replies went to Call, not to the Handler: a notice that b
	// sends after them is the first frame a's Handler sees.
	if err := b.Send(ctx, &proto.Frame{Header: proto.Header{Opcode: peer.OpNotMember, Flags: proto.FlagCreate | proto.FlagDelete}}); err != nil {
		t.Fatal(err)
	}
	if got := seen.wait(t, 1); got[0].Opcode != peer.OpNotMember {
		t.Fatalf("a's Handler saw %+v first", got[0].Header)
	}
}

func TestCallAbort(t *testing.T) {
	a, b := transporttest.Pipe(t, nil, nil)
	a.Start(newFrames().handler)
	b.Start(echo)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := a.Call(ctx, request("abort:no such thing"))
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Code != proto.CodeField || !errors.Is(err, proto.ErrField) || !strings.Contains(err.Error(), "no such thing") {
		t.Fatalf("Call answered by ABORT: %v, want a *proto.Error with code %d", err, proto.CodeField)
	}
	if strings.Count(err.Error(), "bad field") != 1 {
		t.Fatalf("the code is named more than once: %v", err)
	}
	// The link stays up.
	if rep, err := a.Call(ctx, request("up")); err != nil || string(rep.Body) != "pu" {
		t.Fatalf("Call after an ABORT: %v %v", rep, err)
	}
}

// pendingCall starts a call that b receives and never answers; it
// returns when b has the request.
func pendingCall(t *testing.T, ctx context.Context, a *transport.Link, atB *frames) <-chan error {
	t.Helper()
	n := len(atB.wait(t, 0))
	errc := make(chan error, 1)
	go func() {
		_, err := a.Call(ctx, request("silent"))
		errc <- err
	}()
	atB.wait(t, n+1)
	return errc
}

func waitErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(waitFor):
		t.Fatal("Call did not return")
		return nil
	}
}

func TestCallClose(t *testing.T) {
	for _, side := range []string{"this side", "peer"} {
		t.Run(side, func(t *testing.T) {
			a, b := transporttest.Pipe(t, nil, nil)
			atB := newFrames()
			a.Start(newFrames().handler)
			b.Start(atB.handler)
			errc := pendingCall(t, context.Background(), a, atB)
			if side == "peer" {
				b.Close(proto.CodeShutdown, "going away")
			} else {
				a.Close(proto.CodeShutdown, "going away")
			}
			err := waitErr(t, errc)
			if !errors.Is(err, transport.ErrClosed) || (side == "peer" && !strings.Contains(err.Error(), "going away")) {
				t.Fatalf("pending Call when the %s closed: %v, want ErrClosed", side, err)
			}
			<-a.Done()
			if _, err := a.Call(context.Background(), request("x")); !errors.Is(err, transport.ErrClosed) {
				t.Fatalf("Call on an ended link: %v, want ErrClosed", err)
			}
		})
	}
}

func TestCallCancel(t *testing.T) {
	a, b := transporttest.Pipe(t, nil, nil)
	atA, atB := newFrames(), newFrames()
	a.Start(atA.handler)
	b.Start(atB.handler)
	ctx, cancel := context.WithCancel(context.Background())
	errc := pendingCall(t, ctx, a, atB)
	cancel()
	if err := waitErr(t, errc); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Call: %v", err)
	}
	// The late reply is dropped: neither a Call nor the Handler gets it,
	// and the link stays up.
	req := atB.wait(t, 1)[0]
	bg, stop := context.WithTimeout(context.Background(), waitFor)
	defer stop()
	b.Reply(bg, &req, []byte("late"))
	b.Send(bg, &proto.Frame{Header: proto.Header{Opcode: peer.OpNotMember, Flags: proto.FlagCreate | proto.FlagDelete}})
	if got := atA.wait(t, 1); got[0].Opcode != peer.OpNotMember || got[0].Flags&proto.FlagReply != 0 {
		t.Fatalf("a's Handler got %+v, want only the notice after the late reply", got[0].Header)
	}
	select {
	case <-a.Done():
		t.Fatalf("the late reply ended the link: %v", a.Err())
	default:
	}
}

func TestCallConcurrent(t *testing.T) {
	a, b := transporttest.Pipe(t, nil, nil)
	a.Start(newFrames().handler)
	b.Start(echo)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			body := fmt.Sprintf("call-%03d", i)
			rep, err := a.Call(ctx, request(body))
			want := []byte(body)
			slices.Reverse(want)
			if err != nil || !bytes.Equal(rep.Body, want) {
				errs <- fmt.Errorf("call %d: %v %q", i, err, rep.Body)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestUnmatchedReplyToHandler: a reply no Call waits for reaches the
// Handler, which decides what it means.
func TestUnmatchedReplyToHandler(t *testing.T) {
	a, b := transporttest.Pipe(t, nil, nil)
	atA := newFrames()
	a.Start(atA.handler)
	b.Start(newFrames().handler)
	req := proto.Frame{Header: proto.Header{Opcode: peer.OpJoin, MsgID: a.NextMsgID()}}
	if err := b.Reply(context.Background(), &req, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got := atA.wait(t, 1); got[0].MsgID != req.MsgID || got[0].Flags&proto.FlagReply == 0 {
		t.Fatalf("Handler got %+v", got[0].Header)
	}
}

// TestCallWrongOpcode: a reply with another opcode than its request
// breaks the protocol: the call fails and the link ends.
func TestCallWrongOpcode(t *testing.T) {
	a, b := transporttest.Pipe(t, nil, nil)
	a.Start(newFrames().handler)
	b.Start(func(l *transport.Link, f *proto.Frame) error {
		g := *f
		g.Opcode = peer.OpLeave
		l.Reply(context.Background(), &g, nil)
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := a.Call(ctx, request("x")); !errors.Is(err, proto.ErrState) {
		t.Fatalf("Call answered with another opcode: %v", err)
	}
	<-a.Done()
	if !errors.Is(a.Err(), proto.ErrState) {
		t.Fatalf("link ended with %v", a.Err())
	}
}
