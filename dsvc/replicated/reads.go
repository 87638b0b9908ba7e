package replicated

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/internal/wireconv"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
)

// isRead reports whether req only reads the machine's state.
func isRead(req *wire.DSRequest) bool {
	switch req.Op {
	case wire.OpDSStatus, wire.OpDSList, wire.OpDSLookup, wire.OpDSCount:
		return true
	case wire.OpDSOpen:
		return req.Target.Flags&uint8(dsvc.Create) == 0
	}
	return false
}

// isLocalRead reports whether req is a read the client asked to be served
// from this replica without a read index (DSLocal).
func isLocalRead(req *wire.DSRequest) bool {
	return (req.Op == wire.OpDSLookup || req.Op == wire.OpDSCount) && req.Target.Flags&wire.DSLocal != 0
}

// readAt answers the read req from the machine's state, which has
// applied at least idx.
func (s *Service) readAt(req *wire.DSRequest, idx uint64) wire.DSReply {
	t := &req.Target
	kind := wireconv.FromKind(t.Kind)
	switch req.Op {
	case wire.OpDSStatus:
		return reply(s.m.Status(t.Location), idx)
	case wire.OpDSList:
		names, err := s.m.List(t.Location, kind)
		rep := reply(err, idx)
		rep.Names = names
		return rep
	case wire.OpDSLookup, wire.OpDSCount:
		return s.lookup(req, kind, idx)
	case wire.OpDSOpen:
		var p netip.Prefix
		p, err := s.m.Container(t.Location, kind, t.Container)
		rep := reply(err, idx)
		if err == nil && kind == dsvc.Network {
			rep.Prefix = wireconv.Prefix(p)
		}
		return rep
	}
	return reply(dsvc.Errorf(dsvc.CodeUnsupported, "opcode %#04x", req.Op), idx)
}

// pendingRead is a linearizable read waiting for its read index.
type pendingRead struct {
	l     *transport.Link
	hdr   proto.Header // of the request: its opcode and msg id
	req   wire.DSRequest
	start time.Time
}

// readBatcher gathers linearizable reads into batches that share one
// read index: a read arriving while MaxReadIndexes are being confirmed
// waits for the next batch, so under load one ReadIndex serves many
// reads, and an idle agent still asks one at once. This keeps reads
// linearizable: a batch's ReadIndex is asked after every read in it
// arrived, so its index covers every write acknowledged before any of
// them was sent.
type readBatcher struct {
	mu      sync.Mutex     // guards the fields below
	next    []*pendingRead // the next batch
	running int            // readLoop goroutines, each confirming a batch or about to
}

// addRead queues r for the next batch, starting a goroutine to serve it
// if fewer than MaxReadIndexes run. Called with s.mu held and the service
// running, so that wg.Go never races Run's Wait.
func (s *Service) addRead(ctx context.Context, r *pendingRead) {
	b := &s.reads
	b.mu.Lock()
	b.next = append(b.next, r)
	start := b.running < s.cfg.MaxReadIndexes
	if start {
		b.running++
	}
	b.mu.Unlock()
	if start {
		s.wg.Go(func() { s.readLoop(ctx) })
	}
}

// readLoop serves batches of reads until none waits: one read index for
// each batch, then every read of the batch from the machine's state.
func (s *Service) readLoop(ctx context.Context) {
	b := &s.reads
	var batch []*pendingRead
	for {
		b.mu.Lock()
		batch, b.next = b.next, batch[:0]
		if len(batch) == 0 {
			b.running--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		s.met.readBatches.Inc()
		idx, err := s.read(ctx)
		for i, r := range batch {
			rep := reply(err, idx)
			if err == nil {
				rep = s.readAt(&r.req, idx)
			}
			s.answerNow(ctx, r.l, r.hdr, &r.req, r.start, &rep)
			batch[i] = nil
		}
	}
}

// answerNow sends the reply of a batched read without making the rest of
// the batch wait for a client that does not read its replies: when the
// link's queue has no room, the reply waits on a goroutine of its own.
// The read's MaxInFlight token is released once the reply is sent.
func (s *Service) answerNow(ctx context.Context, l *transport.Link, hdr proto.Header, req *wire.DSRequest, start time.Time, rep *wire.DSReply) {
	body, ok := s.encode(ctx, l, hdr, req, start, rep)
	if !ok {
		<-s.sem
		return
	}
	if err := l.Reply(doneCtx, &proto.Frame{Header: hdr}, body); !errors.Is(err, context.Canceled) {
		<-s.sem
		return
	}
	// readLoop runs under s.wg, so its count is above zero here.
	s.wg.Go(func() {
		defer func() { <-s.sem }()
		s.send(l, hdr, body)
	})
}

// encode records the metrics of an answered request and encodes its
// reply; ok is false if it could not (the link was aborted instead).
func (s *Service) encode(ctx context.Context, l *transport.Link, hdr proto.Header, req *wire.DSRequest, start time.Time, rep *wire.DSReply) ([]byte, bool) {
	s.met.served(hdr.Opcode, rep.Result.Code, time.Since(start))
	body, err := wire.AppendDSReply(nil, hdr.Opcode, req.Target.Kind, rep)
	if err != nil {
		// A reply that does not encode (a lookup over the frame
		// limit): say so with a code, not an ended link.
		*rep = wire.DSReply{Result: wireconv.Result(dsvc.Errorf(dsvc.CodeNoResources, "%v; narrow the query", err), rep.Result.Index)}
		body, err = wire.AppendDSReply(nil, hdr.Opcode, req.Target.Kind, rep)
		if err != nil {
			s.log.Error("cannot encode a data-service reply", "op", opName(hdr.Opcode), "err", err.Error())
			_ = l.Abort(ctx, &proto.Frame{Header: hdr}, proto.Errorf(proto.CodeField, "reply: %v", err))
			return nil, false
		}
	}
	return body, true
}

// answer encodes and sends a reply, waiting up to replyWait for room in
// the link's queue.
func (s *Service) answer(ctx context.Context, l *transport.Link, hdr proto.Header, req *wire.DSRequest, start time.Time, rep *wire.DSReply) {
	if body, ok := s.encode(ctx, l, hdr, req, start, rep); ok {
		s.send(l, hdr, body)
	}
}

// send queues a reply, waiting up to replyWait for room; a client that
// leaves no room by then does not read its replies and loses its link.
func (s *Service) send(l *transport.Link, hdr proto.Header, body []byte) {
	// Room in the queue is the usual case: try without a timer first.
	if err := l.Reply(doneCtx, &proto.Frame{Header: hdr}, body); !errors.Is(err, context.Canceled) {
		return
	}
	rctx, cancel := context.WithTimeout(context.Background(), replyWait)
	defer cancel()
	if err := l.Reply(rctx, &proto.Frame{Header: hdr}, body); err != nil && rctx.Err() != nil {
		l.Close(proto.CodeBehind, "client does not read its replies")
	}
}

// doneCtx is a context already cancelled: a link's Send with it queues the
// frame if there is room and fails with context.Canceled where it would
// wait.
var doneCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()
