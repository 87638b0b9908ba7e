package eventstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
)

// Server serves the client protocol's cluster-event opcodes on local
// links (proto/client/SPEC.md): SUBSCRIBE into a Stream, EVENT out of it,
// and the on-demand queries from providers.
type Server struct {
	stream *Stream
	log    *slog.Logger

	mu   sync.Mutex // guards view, conn and linkFilter
	view func() events.Membership
	conn func() events.Connectivity
	// linkFilter, if set, narrows what each link's subscription is sent
	// beyond its classes (the group service's recipients).
	linkFilter func(*transport.Link) Filter
	// onGap, if set, hears of every subscription that resumed with a gap.
	onGap func(*transport.Link)
}

// NewServer returns a server whose subscriptions go to s.
func NewServer(s *Stream, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{stream: s, log: log.With("subsystem", "eventstream")}
}

// SetProviders sets the functions that answer QUERY_MEMBERSHIP and
// QUERY_CONNECTIVITY; nil refuses the query. They are called on a client
// link's reader goroutine, without the server's lock.
func (srv *Server) SetProviders(view func() events.Membership, conn func() events.Connectivity) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.view, srv.conn = view, conn
}

// SetLinkFilter sets a function whose Filter, made once per SUBSCRIBE,
// each event of that link must also pass. It is how a service that knows
// which client an event is for (group messages) narrows the stream.
func (srv *Server) SetLinkFilter(f func(*transport.Link) Filter) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.linkFilter = f
}

// SetOnGap sets a function told of each link whose SUBSCRIBE resumed
// after events the stream no longer holds: a service that promised that
// client every event (a group member) can end that promise.
func (srv *Server) SetOnGap(f func(*transport.Link)) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	srv.onGap = f
}

// Handler returns the transport.Handler for one client link: start each
// link with its own. An error it returns ends that link only, with a
// GOODBYE that carries the error.
func (srv *Server) Handler() transport.Handler {
	var sink *linkSink        // the link's subscription; only the reader touches it
	var cbs *client.Callbacks // CALLBACKS sent before SUBSCRIBE; only the reader touches it
	return func(l *transport.Link, f *proto.Frame) error {
		name := client.Ops().Name(f.Opcode)
		switch {
		case f.Opcode == client.OpEvent || f.Opcode == client.OpEventBatch:
			return proto.Errorf(proto.CodeState, "a client sent %s; events flow from the agent to clients", name)
		case f.Flags&(proto.FlagReply|proto.FlagAbort) != 0:
			return proto.Errorf(proto.CodeState, "a client sent a %s reply (flags %#x); clients send requests", name, f.Flags)
		case f.Flags != proto.FlagCreate|proto.FlagDelete:
			return proto.Errorf(proto.CodeField, "%s request with flags %#x, want CREATE|DELETE", name, f.Flags)
		}
		switch f.Opcode {
		case client.OpSubscribe:
			req, err := client.ParseSubscribe(f.Body)
			if err != nil {
				return err
			}
			if sink != nil {
				l.Abort(context.Background(), f, proto.Errorf(proto.CodeState, "already subscribed on this link"))
				return nil
			}
			sink = srv.subscribe(l, f, req, cbs)
			return nil
		case client.OpCallbacks:
			// The opcode table refuses it on links of version 1 and 2.
			cb, err := client.ParseCallbacks(f.Body)
			if err != nil {
				return err
			}
			if sink == nil {
				cbs = &cb // gates the SUBSCRIBE to come
			} else if err := srv.stream.SetCallbacks(sink, cb); err != nil {
				// The subscription has ended (the stream closes, or it
				// was evicted): the link is going away.
				l.Abort(context.Background(), f, proto.Errorf(proto.CodeState, "the subscription on this link has ended"))
				return nil
			}
			l.Reply(context.Background(), f, nil)
			return nil
		case client.OpDone:
			d, err := client.ParseDone(f.Body)
			switch {
			case err != nil:
				return err
			case sink == nil:
				return proto.Errorf(proto.CodeState, "DONE for seq %d (%v) before SUBSCRIBE", d.Seq, d.Desc)
			case f.MsgID != sink.msgID:
				return proto.Errorf(proto.CodeState, "DONE with msg id %d, the SUBSCRIBE's is %d", f.MsgID, sink.msgID)
			}
			if err := srv.stream.Done(sink, d.Seq, d.Desc); err != nil && !errors.Is(err, ErrNotSubscribed) {
				return proto.Errorf(proto.CodeState, "%s", err.Error())
			}
			return nil
		case client.OpQueryMembership, client.OpQueryConnectivity:
			if err := proto.NewReader(f.Body, name+" request").Err(); err != nil {
				return err
			}
			srv.query(l, f)
			return nil
		}
		return proto.Errorf(proto.CodeOpcode, "client opcode %#04x (%s) has no handler", f.Opcode, name)
	}
}

// subscribe answers a SUBSCRIBE. It returns the link's sink, or nil if
// the stream refused.
func (srv *Server) subscribe(l *transport.Link, f *proto.Frame, req client.Subscribe, cbs *client.Callbacks) *linkSink {
	k := &linkSink{l: l, msgID: f.MsgID, ready: make(chan struct{})}
	// The reply is queued before k lets any EVENT through.
	defer close(k.ready)
	filter := Classes(req.Classes)
	srv.mu.Lock()
	lf, onGap := srv.linkFilter, srv.onGap
	srv.mu.Unlock()
	if lf != nil {
		classes, narrow := filter, lf(l)
		filter = func(ev *events.Event) bool { return classes(ev) && narrow(ev) }
	}
	rep, err := srv.stream.Subscribe(k, Subscription{Filter: filter, Resume: req.Flags&client.SubResume != 0, After: req.After, Callbacks: cbs})
	if err != nil {
		code := proto.CodeState
		if errors.Is(err, ErrClosed) {
			code = proto.CodeShutdown
		}
		l.Abort(context.Background(), f, proto.Errorf(code, "agent shutting down"))
		return nil
	}
	srv.log.Debug("client subscribed", "client", l.Peer().Name, "classes", fmt.Sprint(req.Classes.Classes()), "after", req.After, "latest", rep.Latest, "floor", rep.Floor, "gap", rep.Gap, "gated", cbs != nil)
	wr := client.SubscribeReply{Latest: rep.Latest, Floor: rep.Floor}
	if rep.Gap {
		wr.Flags |= client.ReplyGap
		if onGap != nil {
			onGap(l)
		}
	}
	l.Reply(context.Background(), f, client.AppendSubscribeReply(nil, &wr)) // a failure ends the link, which the stream sees
	return k
}

// query answers QUERY_MEMBERSHIP or QUERY_CONNECTIVITY from the providers.
func (srv *Server) query(l *transport.Link, f *proto.Frame) {
	srv.mu.Lock()
	view, conn := srv.view, srv.conn
	srv.mu.Unlock()
	ctx := context.Background() // a closed link is not this request's error
	var body []byte
	var err error
	switch {
	case f.Opcode == client.OpQueryMembership && view != nil:
		m := view()
		body, err = client.AppendMembership(nil, &m)
	case f.Opcode == client.OpQueryConnectivity && conn != nil:
		c := conn()
		c.Interface, c.Nodes = events.Interface{}, nil // the reply has no subject
		body, err = client.AppendConnectivity(nil, &c)
	default:
		l.Abort(ctx, f, proto.Errorf(proto.CodeState, "the agent cannot answer %s yet", client.Ops().Name(f.Opcode)))
		return
	}
	if err != nil {
		srv.log.Error("cannot answer a client query", "query", client.Ops().Name(f.Opcode), "err", err.Error())
		l.Abort(ctx, f, proto.Errorf(proto.CodeTooLarge, "%s", err.Error()))
		return
	}
	l.Reply(ctx, f, body)
}

// linkSink is a Sink over a client link: each event is an EVENT frame
// with the msg id of the link's SUBSCRIBE.
type linkSink struct {
	l     *transport.Link
	msgID uint64
	ready chan struct{} // closed once the SUBSCRIBE reply is queued: no EVENT precedes it
}

func (k *linkSink) Send(ctx context.Context, body []byte) error {
	return k.sendFrame(ctx, client.OpEvent, body)
}

// sendFrame sends one EVENT or EVENT_BATCH, never before the SUBSCRIBE
// reply.
func (k *linkSink) sendFrame(ctx context.Context, op uint16, body []byte) error {
	select {
	case <-k.ready:
	case <-ctx.Done():
		return ctx.Err()
	}
	f := proto.Frame{Header: proto.Header{Opcode: op, MsgID: k.msgID, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
	return k.l.Send(ctx, &f)
}

// SendBatch implements BatchSink. A link of version 5 gets consecutive
// events packed into EVENT_BATCH frames (within client.MaxEventBatch
// events and client.MaxEventBatchBytes), a lone one as EVENT; an older
// link gets one EVENT per event, exactly as Send sends them.
func (k *linkSink) SendBatch(ctx context.Context, bodies [][]byte) error {
	if k.l.Peer().Version < 5 {
		for _, b := range bodies {
			if err := k.Send(ctx, b); err != nil {
				return err
			}
		}
		return nil
	}
	flush := func(group [][]byte) error {
		if len(group) == 1 {
			return k.Send(ctx, group[0])
		}
		body, err := client.AppendEventBatch(nil, group)
		if err != nil {
			// A flagged or malformed body, which a batch may not hold:
			// each goes alone.
			for _, b := range group {
				if err := k.Send(ctx, b); err != nil {
					return err
				}
			}
			return nil
		}
		return k.sendFrame(ctx, client.OpEventBatch, body)
	}
	start, size := 0, 0
	for i, b := range bodies {
		if i > start && (i-start >= client.MaxEventBatch || size+len(b) > client.MaxEventBatchBytes) {
			if err := flush(bodies[start:i]); err != nil {
				return err
			}
			start, size = i, 0
		}
		size += len(b)
	}
	return flush(bodies[start:])
}

func (k *linkSink) Close(code proto.Code, text string) { k.l.Close(code, text) }

func (k *linkSink) Done() <-chan struct{} { return k.l.Done() }

// Err returns why the link ended, once Done is closed.
func (k *linkSink) Err() error { return k.l.Err() }

// Queued implements QueuedSink: what waits in the link's send queue.
func (k *linkSink) Queued() int { return k.l.Queued() }

// Name implements service.Service.
func (srv *Server) Name() string { return "eventstream" }

// Run implements service.Service: the server has no goroutines of its own
// (each subscriber's belongs to the Stream), so it waits for ctx.
func (srv *Server) Run(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// ClientOps implements service.ClientServer: the cluster-event opcodes.
func (srv *Server) ClientOps() (lo, hi uint16) { return 0x0100, 0x01FF }

// ClientHandler implements service.ClientServer.
func (srv *Server) ClientHandler() transport.Handler { return srv.Handler() }
