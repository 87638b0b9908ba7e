package transport

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/corralhq/corral/proto"
)

// maxGone bounds how many ids of calls given up by their caller a link
// remembers, so that their late replies are dropped instead of reaching
// the Handler.
const maxGone = 1024

// calls is the table of requests waiting for their replies: a link's, or,
// on links with a session, the session's, shared by its links — a request
// sent on one link is resent on the next when the session resumes, and
// its reply may come on either.
type calls struct {
	mu      sync.Mutex // guards the fields below
	waiting map[uint64]*call
	gone    map[uint64]struct{} // given up; a late reply is dropped
	err     error               // set when the link ended: no new calls (a link's table only)
}

// call is one request in flight.
type call struct {
	op    uint16
	via   *Link           // the link the request was sent on
	reply chan callResult // cap 1; written once
}

type callResult struct {
	f   *proto.Frame
	err error
}

// Call sends the request f and waits for its reply: the frame with
// FlagReply and f's msg id. The link allocates the msg id, and sets
// CREATE|DELETE when f has no flags; f's slices are copied before Call
// sends it. A reply with FlagAbort is returned as the *proto.Error of its
// Status. When ctx ends first Call returns ctx's error and a late reply is
// dropped; when the link ends, every pending Call returns an error that
// wraps ErrClosed and the link's error.
//
// Replies are matched here, on the reader, before the Handler: the
// Handler sees only replies no Call waits for.
func (l *Link) Call(ctx context.Context, f *proto.Frame) (*proto.Frame, error) {
	p, err := l.StartCall(ctx, f)
	if err != nil {
		return nil, err
	}
	return p.Wait(ctx)
}

// Pending is a request sent by StartCall whose reply is still to come.
type Pending struct {
	l  *Link
	id uint64
	c  *call
}

// StartCall sends the request f as Call does and returns without waiting
// for the reply: requests a goroutine starts one after the other leave in
// that order, so a peer that serves a link's requests in order applies
// them in order. Wait for the reply with Pending.Wait.
func (l *Link) StartCall(ctx context.Context, f *proto.Frame) (*Pending, error) {
	if f.Flags&(proto.FlagReply|proto.FlagAbort) != 0 {
		return nil, fmt.Errorf("transport: Call with a reply frame (flags %#x)", f.Flags)
	}
	if f.Flags == 0 {
		f.Flags = proto.FlagCreate | proto.FlagDelete
	}
	f.MsgID = l.NextMsgID()
	c := &call{op: f.Opcode, via: l, reply: make(chan callResult, 1)}
	if err := l.calls.add(f.MsgID, c); err != nil {
		return nil, err
	}
	if err := l.Send(ctx, f); err != nil {
		l.calls.giveUp(f.MsgID)
		return nil, err
	}
	return &Pending{l: l, id: f.MsgID, c: c}, nil
}

// Wait returns the reply of the request, as Call does: a reply with
// FlagAbort as the *proto.Error of its Status; ctx's error if it ends
// first (a late reply is then dropped); an error wrapping ErrClosed if
// the link ends.
func (p *Pending) Wait(ctx context.Context) (*proto.Frame, error) {
	select {
	case r := <-p.c.reply:
		return r.f, r.err
	case <-ctx.Done():
		p.l.calls.giveUp(p.id)
		// The reply may have come meanwhile: it wins, so that a caller
		// never loses an answer that is there.
		select {
		case r := <-p.c.reply:
			return r.f, r.err
		default:
		}
		return nil, ctx.Err()
	}
}

func (cs *calls) add(id uint64, c *call) error {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.err != nil {
		return cs.err
	}
	if cs.waiting == nil {
		cs.waiting = make(map[uint64]*call)
	}
	cs.waiting[id] = c
	return nil
}

// giveUp forgets a call whose caller stopped waiting.
func (cs *calls) giveUp(id uint64) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if _, ok := cs.waiting[id]; !ok {
		return
	}
	delete(cs.waiting, id)
	if cs.err != nil {
		return
	}
	if cs.gone == nil {
		cs.gone = make(map[uint64]struct{})
	}
	if len(cs.gone) >= maxGone {
		for k := range cs.gone {
			delete(cs.gone, k)
			break
		}
	}
	cs.gone[id] = struct{}{}
}

// route hands a reply to its Call. It reports whether the frame was a
// reply the link took (for a Call, or late for one given up); an error
// ends the link.
func (cs *calls) route(f *proto.Frame) (bool, error) {
	if f.Flags&proto.FlagReply == 0 || f.Target != 0 {
		// A routed reply (Target set) answers a call of the mesh, not of
		// this link.
		return false, nil
	}
	cs.mu.Lock()
	c, ok := cs.waiting[f.MsgID]
	if ok {
		delete(cs.waiting, f.MsgID)
	} else if _, late := cs.gone[f.MsgID]; late {
		delete(cs.gone, f.MsgID)
		cs.mu.Unlock()
		return true, nil
	}
	cs.mu.Unlock()
	if !ok {
		return false, nil
	}
	// A reply that breaks the protocol ends the link; its caller gets
	// the error itself.
	var r callResult
	var bad error
	switch {
	case f.Opcode != c.op:
		bad = proto.Errorf(proto.CodeState, "reply to msg id %d has opcode %#04x, the request %#04x", f.MsgID, f.Opcode, c.op)
		r.err = bad
	case f.Flags&proto.FlagAbort != 0:
		st, err := proto.ParseStatus(f.Body, "ABORT")
		if err != nil {
			bad, r.err = err, err
		} else {
			r.err = st.Err()
		}
	default:
		g := &proto.Frame{Header: f.Header}
		if len(f.Ext) > 0 {
			g.Ext = append([]byte(nil), f.Ext...)
		}
		g.Body = append([]byte(nil), f.Body...)
		r.f = g
	}
	c.reply <- r
	return true, bad
}

// ended fails, for the link l that ended, what can no longer be answered:
// with no session, every call (and new ones are refused); with one that
// can resume, nothing yet — its next link resends the requests and
// carries the replies, and losing the session fails them (lost); with
// one that cannot, the calls sent on l.
func (cs *calls) ended(l *Link, err error) {
	s := l.Session()
	if s == nil {
		cs.fail(err)
		return
	}
	if s.Resumable() {
		return
	}
	cs.failIf(err, func(c *call) bool { return c.via == l })
}

// lost fails the calls sent on the session's earlier links, all but
// keep's (the link that carries it now, or nil): the session they were in
// was given up or replaced by a fresh one, with their frames. An earlier
// link may still be ending: it is detached first.
func (cs *calls) lost(err error, keep *Link) {
	cs.failIf(err, func(c *call) bool { return c.via != keep })
}

func (cs *calls) failIf(err error, which func(*call) bool) {
	if !errors.Is(err, ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for id, c := range cs.waiting {
		if which(c) {
			c.reply <- callResult{err: err}
			delete(cs.waiting, id)
		}
	}
}

// fail ends every pending call, and refuses new ones, once the link ended.
func (cs *calls) fail(err error) {
	if !errors.Is(err, ErrClosed) {
		err = fmt.Errorf("%w: %w", ErrClosed, err)
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.err = err
	for id, c := range cs.waiting {
		c.reply <- callResult{err: err}
		delete(cs.waiting, id)
	}
	cs.gone = nil
}

// Reply answers the request req with body: the same opcode and msg id,
// with FlagReply. A closed link is not the request's error: callers may
// ignore the result.
func (l *Link) Reply(ctx context.Context, req *proto.Frame, body []byte) error {
	f := proto.Frame{Header: proto.Header{Opcode: req.Opcode, MsgID: req.MsgID, Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply}, Body: body}
	replyTo(&f, req)
	return l.sendReply(ctx, &f)
}

// sendReply sends a reply on l, or, once l ended, in its session: the
// request came in the session, so the link that resumes it carries the
// answer (Session.Send buffers it meanwhile).
func (l *Link) sendReply(ctx context.Context, f *proto.Frame) error {
	select {
	case <-l.done:
		if s := l.Session(); s != nil {
			return s.Send(ctx, f)
		}
	default:
	}
	return l.Send(ctx, f)
}

// replyTo addresses the reply f to a routed request's source, so the
// relays carry it back; a link-local request gets a link-local reply.
func replyTo(f, req *proto.Frame) {
	if req.Target != 0 && req.Source != 0 {
		f.Source, f.Target = req.Target, req.Source
	}
}

// Abort answers the request req with an ABORT reply whose Status carries
// err: the code of a *proto.Error in its chain (CodeState otherwise) and
// its text. The link stays up.
func (l *Link) Abort(ctx context.Context, req *proto.Frame, err error) error {
	st := proto.Status{Code: proto.CodeState, Text: err.Error()}
	var pe *proto.Error
	if errors.As(err, &pe) {
		st.Code = pe.Code
		if error(pe) == err && pe.Err == nil && pe.Detail != "" {
			st.Text = pe.Detail // the receiver's Status.Err names the code
		}
	}
	f := proto.Frame{Header: proto.Header{Opcode: req.Opcode, MsgID: req.MsgID, Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply | proto.FlagAbort},
		Body: proto.AppendStatus(nil, &st)}
	replyTo(&f, req)
	return l.sendReply(ctx, &f)
}
