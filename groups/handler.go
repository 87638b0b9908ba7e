package groups

import (
	"bytes"
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
)

// handle serves one frame of the group range on a client link's reader
// goroutine. It never blocks: a command is queued for the next batch and
// answered when the batch has applied; an error it returns ends the link.
func (s *Service) handle(l *transport.Link, f *proto.Frame) error {
	name := wire.Ops().Name(f.Opcode)
	switch {
	case f.Flags&(proto.FlagReply|proto.FlagAbort) != 0:
		return proto.Errorf(proto.CodeState, "a client sent a %s reply (flags %#x); clients send requests", name, f.Flags)
	case f.Flags != proto.FlagCreate|proto.FlagDelete:
		return proto.Errorf(proto.CodeField, "%s request with flags %#x, want CREATE|DELETE", name, f.Flags)
	}
	k := s.linkOf(l)
	switch f.Opcode {
	case wire.OpGroupJoin:
		req, err := wire.ParseGroupJoin(f.Body)
		if err != nil {
			return err
		}
		return s.join(k, f, req)
	case wire.OpGroupLeave:
		req, err := wire.ParseGroupLeave(f.Body)
		if err != nil {
			return err
		}
		return s.leave(k, f, req)
	case wire.OpGroupSend:
		req, err := wire.ParseGroupSend(f.Body)
		if err != nil {
			return err
		}
		return s.send(k, f, req)
	case wire.OpGroupSendBatch:
		// The opcode table refuses it on links before version 5. One
		// copy of the body, which the queued messages' payloads share:
		// the frame's slices are valid only while the handler runs.
		req, err := wire.ParseGroupSendBatch(bytes.Clone(f.Body))
		if err != nil {
			return err
		}
		return s.sendBatch(k, f, req)
	case wire.OpGroupMembers:
		req, err := wire.ParseGroupName(f.Body)
		if err != nil {
			return err
		}
		seq, members := s.m.Members(req.Group)
		body, err := wire.AppendGroupMembers(nil, &wire.GroupMembers{Seq: seq, Members: members})
		if err != nil {
			s.abort(l, f, err)
			return nil
		}
		s.reply(l, f, body)
		return nil
	case wire.OpGroupList:
		if err := proto.NewReader(f.Body, name+" request").Err(); err != nil {
			return err
		}
		var list wire.GroupList
		for _, g := range s.m.Groups() {
			list.Groups = append(list.Groups, wire.GroupListItem{Group: g.Name, Members: uint32(g.Members)})
		}
		if len(list.Groups) > wire.MaxGroupList {
			s.abort(l, f, proto.Errorf(proto.CodeTooLarge, "%d groups, more than a GROUP_LIST reply holds (%d)", len(list.Groups), wire.MaxGroupList))
			return nil
		}
		body, err := wire.AppendGroupList(nil, &list)
		if err != nil {
			s.abort(l, f, err)
			return nil
		}
		s.reply(l, f, body)
		return nil
	case wire.OpGroupWindow:
		if err := proto.NewReader(f.Body, name+" request").Err(); err != nil {
			return err
		}
		s.mu.Lock()
		w := wire.GroupWindow{Window: uint32(s.cfg.Window), WindowBytes: uint32(s.cfg.WindowBytes),
			InFlight: uint32(k.inflight), InFlightBytes: uint32(k.inflightBytes), Refused: k.refused}
		s.mu.Unlock()
		s.reply(l, f, wire.AppendGroupWindow(nil, &w))
		return nil
	case wire.OpGroupAttach:
		req, err := wire.ParseGroupAttach(f.Body)
		if err != nil {
			return err
		}
		s.attach(k, f, req)
		return nil
	}
	return proto.Errorf(proto.CodeOpcode, "client opcode %#04x (%s) has no handler", f.Opcode, name)
}

// reply answers f. It never waits on the calling goroutine (a handler
// or the batcher): the answer goes into the link's send queue now if there
// is room, else a goroutine waits for room, up to replyWait, and a client
// that has not made room by then is closed as behind. (A large event ahead
// in the queue can fill it for a moment.)
func (s *Service) reply(l *transport.Link, f *proto.Frame, body []byte) {
	if l.Reply(doneCtx, f, body) == nil {
		return
	}
	s.later(l, func(ctx context.Context) error { return l.Reply(ctx, f, body) })
}

// abort is reply for a failure.
func (s *Service) abort(l *transport.Link, f *proto.Frame, err error) {
	if l.Abort(doneCtx, f, err) == nil {
		return
	}
	s.later(l, func(ctx context.Context) error { return l.Abort(ctx, f, err) })
}

// replyWait bounds how long an answer waits for room in a link's queue.
const replyWait = 10 * time.Second

func (s *Service) later(l *transport.Link, send func(context.Context) error) {
	select {
	case <-l.Done():
		return // nobody to answer
	default:
	}
	// Under goMu (callers may hold mu), so that no goroutine starts once
	// Run waits for them.
	s.goMu.Lock()
	defer s.goMu.Unlock()
	if s.goStopped {
		return // the links are being closed
	}
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), replyWait)
		defer cancel()
		if err := send(ctx); err != nil && ctx.Err() != nil {
			l.Close(proto.CodeBehind, "client does not read its replies")
		}
	})
}

// doneCtx is already done: an answer is queued only if the link's send
// queue has room now.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// sessionLocked returns k's session, opening one (its OPEN queued first)
// if k has none.
func (s *Service) sessionLocked(k *link, name string) (*memberSession, error) {
	if ss := k.sess.Load(); ss != nil {
		if ss.closed {
			return nil, proto.Errorf(proto.CodeNoMember, "the link's member session was closed")
		}
		return ss, nil
	}
	ss := &memberSession{key: newKey(), token: newKey(), pid: uint32(max(k.l.Peer().Pid, 0)), name: name, link: k}
	s.sessions[ss.key] = ss
	k.sess.Store(ss)
	s.enqueueLocked(&pending{cmd: Cmd{Op: OpOpen, Key: ss.key, Pid: ss.pid, Name: name}, done: func(r CmdResult, err error) {
		if err == nil && r.Status == proto.CodeNone {
			ss.member.Store(r.Member)
		}
	}})
	return ss, nil
}

func (s *Service) join(k *link, f *proto.Frame, req wire.GroupJoin) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.sessionLocked(k, req.Name)
	if err != nil {
		s.abort(k.l, f, err)
		return nil
	}
	s.enqueueLocked(&pending{cmd: Cmd{Op: OpJoin, Key: ss.key, Group: req.Group}, done: func(r CmdResult, err error) {
		if err = resultErr(r, err); err != nil {
			s.abort(k.l, f, err)
			return
		}
		s.reply(k.l, f, wire.AppendGroupJoinReply(nil, &wire.GroupJoinReply{Seq: r.Seq, Member: r.Member, Token: ss.token,
			Window: uint32(s.cfg.Window), WindowBytes: uint32(s.cfg.WindowBytes)}))
	}})
	return nil
}

func (s *Service) leave(k *link, f *proto.Frame, req wire.GroupLeave) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := k.sess.Load()
	if ss == nil || ss.closed {
		s.abort(k.l, f, proto.Errorf(proto.CodeNoMember, "not a member of group %q", req.Group))
		return nil
	}
	s.enqueueLocked(&pending{cmd: Cmd{Op: OpLeave, Key: ss.key, Group: req.Group}, done: func(r CmdResult, err error) {
		if err = resultErr(r, err); err != nil {
			s.abort(k.l, f, err)
			return
		}
		s.reply(k.l, f, wire.AppendGroupSeq(nil, &wire.GroupSeq{Seq: r.Seq}))
	}})
	return nil
}

// send admits a message within the link's window and the agent's, and
// queues it.
func (s *Service) send(k *link, f *proto.Frame, req wire.GroupSend) error {
	n := len(req.Payload)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.admitLocked(k, n) {
		s.abort(k.l, f, s.windowErrLocked(k))
		return nil
	}
	ss, err := s.sessionLocked(k, "")
	if err != nil {
		s.releaseLocked(k, n)
		s.abort(k.l, f, err)
		return nil
	}
	// The frame's slices are valid only while the handler runs; the
	// command waits for its batch.
	req.Payload = bytes.Clone(req.Payload)
	s.queueSendLocked(ss, &req, func(r CmdResult, err error) {
		s.mu.Lock()
		s.releaseLocked(k, n)
		s.mu.Unlock()
		if err = resultErr(r, err); err != nil {
			s.abort(k.l, f, err)
			return
		}
		s.met.sent.Inc()
		s.reply(k.l, f, wire.AppendGroupSendReply(nil, &wire.GroupSendReply{Seq: r.Seq, Member: r.Member, Delivered: r.Delivered}))
	})
	return nil
}

// sendBatch serves GROUP_SEND_BATCH (SPEC.md, "Batches"): its messages
// are admitted in order as separate GROUP_SENDs would be, the first one
// the window refuses and all after it fail with CodeTryAgain, and the
// admitted ones are queued back to back. One reply, once every admitted
// message is answered, carries each message's result.
func (s *Service) sendBatch(k *link, f *proto.Frame, req wire.GroupSendBatch) error {
	res := make([]wire.GroupSendResult, len(req.Msgs))
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, err := s.sessionLocked(k, "")
	if err != nil {
		for i := range res {
			res[i].Code, _ = codeOf(err)
		}
		s.replyBatch(k, f, res)
		return nil
	}
	admitted := 0
	for admitted < len(req.Msgs) && s.admitLocked(k, len(req.Msgs[admitted].Payload)) {
		admitted++
	}
	for i := admitted; i < len(res); i++ {
		res[i] = wire.GroupSendResult{Code: proto.CodeTryAgain, Member: ss.member.Load()}
		if i > admitted {
			// admitLocked counted the first refusal; the rest are
			// refused with it.
			k.refused++
			s.met.refused.Inc()
		}
	}
	if admitted == 0 {
		s.replyBatch(k, f, res)
		return nil
	}
	left := admitted // guarded by s.mu
	for i := range admitted {
		n := len(req.Msgs[i].Payload)
		s.queueSendLocked(ss, &req.Msgs[i], func(r CmdResult, err error) {
			x := wire.GroupSendResult{Seq: r.Seq, Member: r.Member, Delivered: r.Delivered}
			if err = resultErr(r, err); err != nil {
				x = wire.GroupSendResult{Member: r.Member}
				x.Code, _ = codeOf(err)
			} else {
				s.met.sent.Inc()
			}
			s.mu.Lock()
			s.releaseLocked(k, n)
			res[i] = x
			left--
			last := left == 0
			s.mu.Unlock()
			if last {
				s.replyBatch(k, f, res)
			}
		})
	}
	return nil
}

// replyBatch answers a GROUP_SEND_BATCH with its results.
func (s *Service) replyBatch(k *link, f *proto.Frame, res []wire.GroupSendResult) {
	body, err := wire.AppendGroupSendBatchReply(nil, &wire.GroupSendBatchReply{Results: res})
	if err != nil {
		// A result the agent made that the rules refuse: a bug here,
		// which the client must still hear of.
		s.log.Error("cannot encode a GROUP_SEND_BATCH reply", "err", err.Error())
		s.abort(k.l, f, err)
		return
	}
	s.reply(k.l, f, body)
}

// codeOf is the code a client is told for err.
func codeOf(err error) (proto.Code, string) {
	var pe *proto.Error
	if errors.As(err, &pe) && pe.Code != proto.CodeNone {
		return pe.Code, pe.Detail
	}
	return proto.CodeShutdown, err.Error()
}

// admitLocked takes a place for a message of n payload bytes in k's window
// and the agent's; a link with nothing in flight may always send one. A
// refusal is counted.
func (s *Service) admitLocked(k *link, n int) bool {
	if k.inflight > 0 && (k.inflight >= s.cfg.Window || k.inflightBytes+n > s.cfg.WindowBytes) ||
		s.inflightBytes > 0 && s.inflightBytes+n > s.cfg.TotalBytes {
		k.refused++
		s.met.refused.Inc()
		return false
	}
	k.inflight++
	k.inflightBytes += n
	s.inflightBytes += n
	return true
}

// releaseLocked gives back what admitLocked took.
func (s *Service) releaseLocked(k *link, n int) {
	k.inflight--
	k.inflightBytes -= n
	s.inflightBytes -= n
}

func (s *Service) windowErrLocked(k *link) error {
	return proto.Errorf(proto.CodeTryAgain, "window full: %d sends (%d bytes) in flight on this link, limit %d (%d bytes); %d bytes in flight in the agent, limit %d",
		k.inflight, k.inflightBytes, s.cfg.Window, s.cfg.WindowBytes, s.inflightBytes, s.cfg.TotalBytes)
}

// queueSendLocked queues an admitted message of session ss: whole if it
// fits an entry, else as PARTs of at most MaxEntryPayload and a final SEND
// that assembles them. done hears the final SEND's result. The payload
// must be the service's own, not the frame's.
func (s *Service) queueSendLocked(ss *memberSession, req *wire.GroupSend, done func(CmdResult, error)) {
	payload := req.Payload
	cmd := Cmd{Op: OpSend, Key: ss.key, Kind: req.Kind, Group: req.Group, Target: req.Target, ReplyTo: req.ReplyTo, MsgID: req.MsgID, Payload: payload}
	if len(payload) <= MaxEntryPayload {
		s.enqueueLocked(&pending{cmd: cmd, done: done})
		return
	}
	// A transfer: the parts wait in the machine until the final SEND; a
	// session closed before it leaves nothing delivered.
	xfer := newKey()
	p := payload
	for len(p) > MaxEntryPayload {
		part := p[:MaxEntryPayload]
		p = p[MaxEntryPayload:]
		// A part is answered by the final SEND: a refused part means a
		// closed session, which refuses that SEND too. (A part lost with
		// a whole batch refused — which an agent's own batches never are
		// — is not detected: the SEND would assemble the parts that came.)
		s.enqueueLocked(&pending{cmd: Cmd{Op: OpPart, Key: ss.key, Xfer: xfer, Payload: part}, done: func(CmdResult, error) {}})
	}
	cmd.Flags, cmd.Xfer, cmd.Payload = FlagAssembled, xfer, p
	s.enqueueLocked(&pending{cmd: cmd, done: done})
}

// attach adopts a detached session on a new link of the same process.
func (s *Service) attach(k *link, f *proto.Frame, req wire.GroupAttach) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k.sess.Load() != nil {
		s.abort(k.l, f, proto.Errorf(proto.CodeState, "the link has a member session already"))
		return
	}
	var found *memberSession
	for _, ss := range s.sessions {
		if ss.member.Load() == req.Member {
			found = ss
			break
		}
	}
	switch {
	case found == nil || found.closed:
		s.abort(k.l, f, proto.Errorf(proto.CodeNoMember, "member %#x has no session on this agent (it was closed, or belongs to another run of the agent)", req.Member))
		return
	case found.token != req.Token:
		s.abort(k.l, f, proto.Errorf(proto.CodeNoMember, "member %#x: wrong session token", req.Member))
		return
	case found.link != nil:
		// The old link has not ended yet (its process reconnected first):
		// the new one takes over.
		old := found.link
		old.sess.Store(nil)
		go old.l.Close(proto.CodeState, "member session attached to a new link")
	}
	if found.timer != nil {
		found.timer.Stop()
		found.timer = nil
	}
	found.link = k
	k.sess.Store(found)
	s.reply(k.l, f, wire.AppendGroupAttachReply(nil, &wire.GroupAttachReply{Member: req.Member}))
}

// resultErr turns a command's failure into the error the client is sent.
func resultErr(r CmdResult, err error) error {
	if err != nil {
		return err
	}
	if r.Status != proto.CodeNone {
		return proto.Errorf(r.Status, "%s", r.Text)
	}
	return nil
}

// processAlive reports whether pid names a live process.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
