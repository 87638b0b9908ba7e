package client_test

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
)

// eventBatch sends the events of seqs as one EVENT_BATCH.
func (s sub) eventBatch(t *testing.T, seqs ...uint64) {
	t.Helper()
	var bodies [][]byte
	for _, seq := range seqs {
		e := ev(seq)
		b, err := wire.AppendEvent(nil, &e)
		if err != nil {
			t.Fatal(err)
		}
		bodies = append(bodies, b)
	}
	body, err := wire.AppendEventBatch(nil, bodies)
	if err != nil {
		t.Fatal(err)
	}
	f := proto.Frame{Header: proto.Header{Opcode: wire.OpEventBatch, MsgID: s.id, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
	if err := s.l.Send(context.Background(), &f); err != nil {
		t.Fatal(err)
	}
}

// TestEventBatchDelivered: the events of EVENT_BATCH frames are delivered
// one by one in order, mixed with EVENTs, and exactly once: what a batch
// repeats of an earlier frame is dropped like a repeated EVENT.
func TestEventBatchDelivered(t *testing.T) {
	fa := newFake(t)
	svc, rec := recording(t)
	d := dial(t, fa.dir, client.Options{Service: svc})
	s := fa.next()
	if v := s.l.Peer().Version; v != wire.MaxVersion {
		t.Fatalf("negotiated version %d", v)
	}
	s.reply(t, wire.SubscribeReply{Latest: 2})
	r := <-d
	if r.err != nil {
		t.Fatal(r.err)
	}
	s.eventBatch(t, 3, 4, 5)
	s.event(t, ev(6))
	s.eventBatch(t, 5, 6, 7, 8)
	if got := seqsOf(rec.Wait(t, 6, waitFor)); !slices.Equal(got, []uint64{3, 4, 5, 6, 7, 8}) {
		t.Fatalf("delivered %v", got)
	}
}

// TestSendsCoalesce: a lone send leaves at once as GROUP_SEND; sends
// started while the link cannot write (the agent is not reading) leave
// together as GROUP_SEND_BATCHes, in the order they were started, each
// answered with its own result.
func TestSendsCoalesce(t *testing.T) {
	const n = 1000
	fa := newFake(t)
	release := make(chan struct{})
	var (
		mu  sync.Mutex // guards ops: the fake agent's reader writes it, the test reads it
		ops []uint16
	)
	var seq uint64
	fa.group = func(l *transport.Link, f *proto.Frame) error {
		mu.Lock()
		ops = append(ops, f.Opcode)
		nops := len(ops)
		mu.Unlock()
		if nops == 2 {
			<-release // stop reading: the client's sends pile up
		}
		switch f.Opcode {
		case wire.OpGroupSend:
			if _, err := wire.ParseGroupSend(f.Body); err != nil {
				return err
			}
			seq++ // in arrival order: the Seqs show the order
			return l.Reply(context.Background(), f, wire.AppendGroupSendReply(nil, &wire.GroupSendReply{Seq: seq, Member: 9}))
		case wire.OpGroupSendBatch:
			b, err := wire.ParseGroupSendBatch(f.Body)
			if err != nil {
				return err
			}
			var rep wire.GroupSendBatchReply
			for range b.Msgs {
				seq++
				rep.Results = append(rep.Results, wire.GroupSendResult{Seq: seq, Member: 9})
			}
			body, err := wire.AppendGroupSendBatchReply(nil, &rep)
			if err != nil {
				return err
			}
			return l.Reply(context.Background(), f, body)
		}
		return proto.Errorf(proto.CodeOpcode, "fake agent: no %s", wire.Ops().Name(f.Opcode))
	}
	d := dial(t, fa.dir, client.Options{})
	s := fa.next()
	s.reply(t, wire.SubscribeReply{})
	r := <-d
	if r.err != nil {
		t.Fatal(r.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if res, err := r.c.SendGroup(ctx, "g", []byte("lone")); err != nil || res.Seq != 1 {
		t.Fatalf("lone send: %+v, %v", res, err)
	}
	var sends []*client.Sending
	payload := make([]byte, 1000)
	for range n {
		sd, err := r.c.SendGroupAsync(ctx, "g", payload)
		if err != nil {
			t.Fatal(err)
		}
		sends = append(sends, sd)
	}
	close(release)
	for i, sd := range sends {
		res, err := sd.Wait(ctx)
		if err != nil || res.Seq != uint64(i+2) {
			t.Fatalf("send %d: %+v, %v", i, res, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if ops[0] != wire.OpGroupSend {
		t.Errorf("the lone send went as %s", wire.Ops().Name(ops[0]))
	}
	batches, msgs := r.c.SendBatches()
	if len(ops) > n/4 || batches == 0 {
		t.Errorf("%d frames (%d batches of %d messages) for %d sends", len(ops), batches, msgs, n+1)
	}
	t.Logf("%d sends in %d frames, %d of them batches holding %d", n+1, len(ops), batches, msgs)
}
