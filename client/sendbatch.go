package client

import (
	"context"
	"encoding/binary"

	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
)

// This file is the client's send path. Every group message goes through
// one queue and one goroutine, the flusher, which writes it to the link:
// alone, as GROUP_SEND, when the link is idle (no added latency for a lone
// message); and while the link is still writing what went before (the
// agent reads slower than the client sends), the messages queued meanwhile
// leave together as one GROUP_SEND_BATCH on a version-5 link. Batches
// form only under load, the way Nagle's algorithm would but without its
// timer.

// idleRoom is a room larger than any send queue: Link.WaitRoom with it
// returns only once the queue is empty.
const idleRoom = 1 << 30

// sentBatch is a GROUP_SEND_BATCH on its way: one reply for its Sendings.
type sentBatch struct {
	done chan struct{} // closed once rep or err is set
	rep  wire.GroupSendBatchReply
	err  error
}

// enqueueSend queues s (its body encoded) for the flusher.
func (c *Client) enqueueSend(s *Sending) {
	c.smu.Lock()
	c.sendQ = append(c.sendQ, s)
	c.lastSend = s
	c.smu.Unlock()
	select {
	case c.sendKick <- struct{}{}:
	default:
	}
}

// sendBarrier waits until every send started so far is on the link, so
// that a request the caller makes next (a LEAVE) follows them there.
func (c *Client) sendBarrier(ctx context.Context) error {
	c.smu.Lock()
	s := c.lastSend
	c.smu.Unlock()
	if s == nil {
		return nil
	}
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return ErrClosed
	}
}

// flusher writes the queued sends to the link until Close.
func (c *Client) flusher() {
	defer c.sendWG.Done()
	var q []*Sending
	for {
		select {
		case <-c.sendKick:
		case <-c.ctx.Done():
			c.smu.Lock()
			q, c.sendQ = c.sendQ, nil
			c.smu.Unlock()
			for _, s := range q {
				s.fail(ErrClosed)
			}
			return
		}
		for {
			c.smu.Lock()
			q, c.sendQ = c.sendQ, q[:0]
			c.smu.Unlock()
			if len(q) == 0 {
				break
			}
			l := c.flush(q)
			clear(q)
			if l != nil {
				// Coalesce what comes while the link writes this.
				l.WaitRoom(c.ctx, idleRoom)
			}
		}
	}
}

// flush sends q in order and returns the link it used (nil if none).
func (c *Client) flush(q []*Sending) *transport.Link {
	l, err := c.groupLink(c.ctx)
	if err != nil {
		for _, s := range q {
			s.fail(err)
		}
		return nil
	}
	if l.Peer().Version < 5 {
		for _, s := range q {
			c.sendOne(l, s)
		}
		return l
	}
	for len(q) > 0 {
		n, bytes := 0, 0
		for n < len(q) && wire.BatchFits(n, bytes, q[n].size) {
			bytes += q[n].size
			n++
		}
		if n <= 1 {
			// Alone, or over MaxBatchBytes by itself.
			c.sendOne(l, q[0])
			q = q[1:]
			continue
		}
		c.sendBatch(l, q[:n])
		q = q[n:]
	}
	return l
}

func (c *Client) sendOne(l *transport.Link, s *Sending) {
	p, err := l.StartCall(c.ctx, &proto.Frame{Header: proto.Header{Opcode: wire.OpGroupSend}, Body: s.body})
	s.body = nil
	if err != nil {
		s.fail(c.callErr(c.ctx, wire.OpGroupSend, err))
		return
	}
	s.p = p
	close(s.ready)
}

// sendBatch sends q as one GROUP_SEND_BATCH: each body is a GROUP_SEND
// body, so the request is their count and them back to back.
func (c *Client) sendBatch(l *transport.Link, q []*Sending) {
	size := 4
	for _, s := range q {
		size += len(s.body)
	}
	body := binary.LittleEndian.AppendUint32(make([]byte, 0, size), uint32(len(q)))
	for _, s := range q {
		body = append(body, s.body...)
		s.body = nil
	}
	p, err := l.StartCall(c.ctx, &proto.Frame{Header: proto.Header{Opcode: wire.OpGroupSendBatch}, Body: body})
	if err != nil {
		err = c.callErr(c.ctx, wire.OpGroupSendBatch, err)
		for _, s := range q {
			s.fail(err)
		}
		return
	}
	c.batches.Add(1)
	c.batched.Add(uint64(len(q)))
	b := &sentBatch{done: make(chan struct{})}
	for i, s := range q {
		s.batch, s.idx = b, i
		close(s.ready)
	}
	n := len(q)
	c.sendWG.Go(func() {
		defer close(b.done)
		rep, err := p.Wait(c.ctx)
		if err != nil {
			b.err = c.callErr(c.ctx, wire.OpGroupSendBatch, err)
			return
		}
		if b.rep, b.err = wire.ParseGroupSendBatchReply(rep.Body); b.err == nil && len(b.rep.Results) != n {
			b.err = proto.Errorf(proto.CodeField, "GROUP_SEND_BATCH reply: %d results for %d messages", len(b.rep.Results), n)
		}
	})
}

// fail ends s unsent.
func (s *Sending) fail(err error) {
	s.body, s.err = nil, err
	close(s.ready)
}

// result returns s's answer once it has one, or fails when ctx ends or
// the client closes (ErrClosed).
func (s *Sending) result(ctx context.Context) (wire.GroupSendReply, error) {
	c := s.c
	select {
	case <-s.ready:
	case <-ctx.Done():
		return wire.GroupSendReply{}, ctx.Err()
	case <-c.ctx.Done():
		return wire.GroupSendReply{}, ErrClosed
	}
	switch {
	case s.err != nil:
		return wire.GroupSendReply{}, s.err
	case s.p != nil:
		// A lone GROUP_SEND: its Pending waits on one context, which
		// ends with ctx or with Close.
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		defer context.AfterFunc(c.ctx, cancel)()
		rep, err := s.p.Wait(ctx)
		if err != nil {
			return wire.GroupSendReply{}, c.callErr(ctx, wire.OpGroupSend, err)
		}
		return wire.ParseGroupSendReply(rep.Body)
	}
	select {
	case <-s.batch.done:
	case <-ctx.Done():
		return wire.GroupSendReply{}, ctx.Err()
	case <-c.ctx.Done():
		return wire.GroupSendReply{}, ErrClosed
	}
	if s.batch.err != nil {
		return wire.GroupSendReply{}, s.batch.err
	}
	x := s.batch.rep.Results[s.idx]
	if x.Code != proto.CodeNone {
		return wire.GroupSendReply{}, c.callErr(ctx, wire.OpGroupSend, proto.Errorf(x.Code, "message %d of a GROUP_SEND_BATCH", s.idx))
	}
	return wire.GroupSendReply{Seq: x.Seq, Member: x.Member, Delivered: x.Delivered}, nil
}

// SendBatches returns how many GROUP_SEND_BATCH requests the client sent
// and how many messages they carried; the other messages went alone.
func (c *Client) SendBatches() (batches, msgs uint64) {
	return c.batches.Load(), c.batched.Load()
}
