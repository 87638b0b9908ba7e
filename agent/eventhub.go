package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
)

// hubLimits bound the hub's memory (proto/client/SPEC.md, "History" and
// "Falling behind").
type hubLimits struct {
	// The history keeps the last histEvents events, and more while they
	// take at most histKeepBytes; never more than histMaxBytes.
	histEvents    int
	histKeepBytes int
	histMaxBytes  int
	// A subscriber with more than lagEvents events, or lagBytes bytes,
	// of its classes not yet handed to its link is disconnected.
	lagEvents int
	lagBytes  int
	// flush bounds how long Close waits for subscribers to take what was
	// published before their links are closed anyway.
	flush time.Duration
}

// defaultHubLimits keep the lag bound plus a link's send queue well within
// what the history keeps, so that a client disconnected for falling
// behind finds its events when it resumes.
var defaultHubLimits = hubLimits{
	histEvents:    4096,
	histKeepBytes: 2 * transport.DefaultQueueBytes,
	histMaxBytes:  64 << 20,
	lagEvents:     1024,
	lagBytes:      4 << 20,
	flush:         time.Second,
}

// tally counts the events of the stream and their bytes, by class.
type tally struct {
	n, bytes [4]uint64 // index: events.Class; 0 unused
}

// entry is one published event, encoded once and shared read-only by the
// history and every subscriber.
type entry struct {
	seq    uint64 // 0: local-only
	class  events.Class
	body   []byte // the EVENT body
	before tally  // the stream's totals before this entry
}

type subState uint8

const (
	subActive  subState = iota
	subBehind           // fell too far behind: say GOODBYE CodeBehind
	subClosing          // the hub closes: hand over what was published, then GOODBYE
	subDropped          // the link ended
)

// subscriber is one client link's subscription. Its goroutine (serve) hands
// the stream to the link; its position in the stream is guarded by the
// hub's mutex.
type subscriber struct {
	l       *transport.Link
	msgID   uint64 // the SUBSCRIBE's, carried by every EVENT
	classes client.ClassMask
	after   uint64 // cluster-wide events at or below it are not sent
	joined  uint64 // stream position at subscription: older local events are not sent

	ctx    context.Context // cancelled when the goroutine must stop waiting on the link
	cancel context.CancelFunc
	wake   chan struct{} // cap 1: something was published

	// Guarded by eventHub.mu.
	pos   uint64 // next stream position to look at
	sent  uint64 // stream positions below it were handed to the link (or skipped)
	state subState
	why   string // for subBehind: the GOODBYE text
}

// eventHub delivers the agent's events to local clients over the client
// protocol (proto/client/SPEC.md, "Cluster events"): it keeps a history of
// what was published for clients that resume, a position in that stream
// for each subscriber, and answers the on-demand queries. Publish never
// waits for a client: each subscriber has a goroutine that hands the
// stream to its link, and a subscriber that falls too far behind is
// disconnected.
type eventHub struct {
	log *slog.Logger
	wg  sync.WaitGroup // subscriber goroutines

	mu     sync.Mutex // guards the fields below and every subscriber's pos, sent, state and why
	lim    hubLimits
	closed bool
	view   func() events.Membership
	conn   func() events.Connectivity
	subs   map[*transport.Link]*subscriber
	// The stream: every published event has a position, from 1. hist
	// holds positions base .. next-1.
	hist      []*entry
	base      uint64
	next      uint64
	histBytes int
	total     tally  // of the whole stream
	latest    uint64 // highest Seq published
	floor     uint64 // highest Seq let go from the history
}

func newEventHub(log *slog.Logger) *eventHub {
	return &eventHub{log: log, lim: defaultHubLimits, subs: make(map[*transport.Link]*subscriber), base: 1, next: 1}
}

// setLimits replaces the limits; tests use it to overflow the history and
// fall behind with few events.
func (h *eventHub) setLimits(l hubLimits) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lim = l
}

// SetProviders sets the functions that answer QUERY_MEMBERSHIP and
// QUERY_CONNECTIVITY. They are called on a client link's goroutine, without
// the hub's lock.
func (h *eventHub) SetProviders(view func() events.Membership, conn func() events.Connectivity) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.view, h.conn = view, conn
}

// Publish hands ev to every subscriber of its class and keeps it in the
// history. It never blocks on a client. Cluster-wide events (Seq != 0) must
// come with strictly increasing Seq; an event that cannot be encoded, or
// whose Seq is not above the last one, is logged and dropped.
func (h *eventHub) Publish(ev events.Event) {
	body, err := client.AppendEvent(nil, &ev)
	if err != nil {
		h.log.Error("event cannot be sent to clients; dropped", "event", ev.String(), "err", err.Error())
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if ev.Seq != 0 {
		if ev.Seq <= h.latest {
			h.log.Warn("event seq not above the last one; dropped", "event", ev.String(), "last_seq", h.latest)
			return
		}
		h.latest = ev.Seq
	}
	c := ev.Desc.Class()
	e := &entry{seq: ev.Seq, class: c, body: body, before: h.total}
	h.total.n[c]++
	h.total.bytes[c] += uint64(len(body))
	h.hist = append(h.hist, e)
	h.histBytes += len(body)
	h.next++
	for len(h.hist) > 1 && (h.histBytes > h.lim.histMaxBytes || (len(h.hist) > h.lim.histEvents && h.histBytes > h.lim.histKeepBytes)) {
		old := h.hist[0]
		for _, s := range h.subs {
			// A subscriber that would skip the entry loses nothing.
			if s.pos == h.base && !s.wants(old, h.base) {
				s.pos++
			}
		}
		h.hist[0] = nil
		h.hist = h.hist[1:]
		h.base++
		h.histBytes -= len(old.body)
		if old.seq != 0 {
			h.floor = old.seq
		}
	}
	for _, s := range h.subs {
		if s.state == subActive && h.checkLagLocked(s) && s.classes.Has(c) {
			signal(s.wake)
		}
	}
}

// wants reports whether s is to be sent e, found at stream position p.
func (s *subscriber) wants(e *entry, p uint64) bool {
	if !s.classes.Has(e.class) {
		return false
	}
	if e.seq == 0 {
		return p >= s.joined // local events only to those subscribed at the time
	}
	return e.seq > s.after
}

// checkLagLocked disconnects s if it fell too far behind and reports
// whether it is still active.
func (h *eventHub) checkLagLocked(s *subscriber) bool {
	// Entries of serve's batch may have left the history: they count
	// from the oldest still in it.
	from := max(s.sent, s.joined, h.base)
	if s.pos < h.base {
		h.behindLocked(s, "client fell behind: events it was still to be sent are no longer in the agent's history; reconnect and resume after the last seq you delivered")
		return false
	}
	var n, b uint64
	if from < h.next {
		before := h.hist[from-h.base].before
		for _, c := range s.classes.Classes() {
			n += h.total.n[c] - before.n[c]
			b += h.total.bytes[c] - before.bytes[c]
		}
	}
	if n > uint64(h.lim.lagEvents) || (n > 1 && b > uint64(h.lim.lagBytes)) {
		h.behindLocked(s, fmt.Sprintf("client fell behind: %d events (%d bytes) queued for it, limit %d events or %d bytes; reconnect and resume after the last seq you delivered", n, b, h.lim.lagEvents, h.lim.lagBytes))
		return false
	}
	return true
}

func (h *eventHub) behindLocked(s *subscriber, why string) {
	s.state, s.why = subBehind, why
	delete(h.subs, s.l)
	s.cancel()
	h.log.Warn("disconnecting a client that fell behind", "client", s.l.Peer().Name, "why", why)
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// handle serves the client-protocol frames of one client link. It runs on
// the link's reader goroutine; an error it returns ends that link only,
// with a GOODBYE that carries the error.
func (h *eventHub) handle(l *transport.Link, f *proto.Frame) error {
	name := client.Ops().Name(f.Opcode)
	switch {
	case f.Opcode == client.OpEvent:
		return proto.Errorf(proto.CodeState, "a client sent EVENT; events flow from the agent to clients")
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
		h.subscribe(l, f.MsgID, req)
		return nil
	case client.OpQueryMembership, client.OpQueryConnectivity:
		if err := proto.NewReader(f.Body, name+" request").Err(); err != nil {
			return err
		}
		h.query(l, f.Opcode, f.MsgID)
		return nil
	}
	return proto.Errorf(proto.CodeOpcode, "client opcode %#04x (%s) has no handler", f.Opcode, name)
}

// subscribe answers a SUBSCRIBE and starts the subscriber's goroutine. The
// reply is queued on the link before the goroutine starts, so it precedes
// every EVENT.
func (h *eventHub) subscribe(l *transport.Link, msgID uint64, req client.Subscribe) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		h.fail(l, client.OpSubscribe, msgID, proto.CodeShutdown, "agent shutting down")
		return
	}
	if _, ok := h.subs[l]; ok {
		h.mu.Unlock()
		h.fail(l, client.OpSubscribe, msgID, proto.CodeState, "already subscribed on this link")
		return
	}
	resume := req.Flags&client.SubResume != 0
	rep := client.SubscribeReply{Latest: h.latest, Floor: h.floor}
	s := &subscriber{l: l, msgID: msgID, classes: req.Classes, joined: h.next, pos: h.next, sent: h.next, wake: make(chan struct{}, 1)}
	if resume {
		s.after, s.pos, s.sent = req.After, h.base, h.base
		if req.After < h.floor {
			rep.Flags |= client.ReplyGap
		}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	h.subs[l] = s
	h.wg.Add(1)
	h.mu.Unlock()

	h.log.Debug("client subscribed", "client", l.Peer().Name, "classes", fmt.Sprint(req.Classes.Classes()), "resume", resume, "after", req.After, "latest", rep.Latest, "floor", rep.Floor, "gap", rep.Gap())
	if rep.Gap() {
		h.log.Warn("client resumes after events the agent no longer holds", "client", l.Peer().Name, "after", req.After, "floor", rep.Floor)
	}
	f := proto.Frame{Header: proto.Header{Opcode: client.OpSubscribe, MsgID: msgID, Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply},
		Body: client.AppendSubscribeReply(nil, &rep)}
	l.Send(s.ctx, &f) // a failure ends the link, or the subscription, which serve sees
	go h.serve(s)
}

// maxBatch is how many events serve takes from the stream at a time.
const maxBatch = 16

// item is an entry taken for sending and its stream position.
type item struct {
	e   *entry
	pos uint64
}

// serve hands the stream to one subscriber's link until the link ends, the
// subscriber falls behind or the hub closes.
func (h *eventHub) serve(s *subscriber) {
	defer h.wg.Done()
	defer s.cancel()
	batch := make([]item, 0, maxBatch)
	for {
		h.mu.Lock()
		state, why := s.state, s.why
		batch = batch[:0]
		if state == subActive || state == subClosing {
			if s.pos < h.base {
				h.behindLocked(s, "client fell behind: events it was still to be sent are no longer in the agent's history; reconnect and resume after the last seq you delivered")
				state, why = s.state, s.why
			}
			for s.pos < h.next && s.pos >= h.base && len(batch) < maxBatch {
				if e := h.hist[s.pos-h.base]; s.wants(e, s.pos) {
					batch = append(batch, item{e, s.pos})
				}
				s.pos++
			}
			if len(batch) == 0 {
				s.sent = s.pos // everything up to here was skipped
			}
		}
		h.mu.Unlock()
		switch {
		case state == subBehind:
			s.l.Close(proto.CodeBehind, why)
			return
		case state == subDropped:
			return
		case state == subClosing && (len(batch) == 0 || s.ctx.Err() != nil):
			s.l.Close(proto.CodeShutdown, "agent shutting down")
			return
		}
		if len(batch) == 0 {
			select {
			case <-s.wake:
			case <-s.ctx.Done():
			case <-s.l.Done():
				return
			}
			continue
		}
		for _, it := range batch {
			f := proto.Frame{Header: proto.Header{Opcode: client.OpEvent, MsgID: s.msgID, Flags: proto.FlagCreate | proto.FlagDelete}, Body: it.e.body}
			if err := s.l.Send(s.ctx, &f); err != nil {
				if s.ctx.Err() == nil {
					return // the link ended
				}
				break // the state changed; the loop looks
			}
			// Lag counts from here: what waits in serve's batch is not
			// yet the link's.
			h.mu.Lock()
			s.sent = it.pos + 1
			h.mu.Unlock()
		}
	}
}

// query answers QUERY_MEMBERSHIP or QUERY_CONNECTIVITY from the providers.
func (h *eventHub) query(l *transport.Link, op uint16, msgID uint64) {
	h.mu.Lock()
	view, conn := h.view, h.conn
	h.mu.Unlock()
	var body []byte
	var err error
	switch {
	case op == client.OpQueryMembership && view != nil:
		m := view()
		body, err = client.AppendMembership(nil, &m)
	case op == client.OpQueryConnectivity && conn != nil:
		c := conn()
		c.Interface, c.Nodes = events.Interface{}, nil // the reply has no subject
		body, err = client.AppendConnectivity(nil, &c)
	default:
		h.fail(l, op, msgID, proto.CodeState, "the agent cannot answer "+client.Ops().Name(op)+" yet")
		return
	}
	if err != nil {
		h.log.Error("cannot answer a client query", "query", client.Ops().Name(op), "err", err.Error())
		h.fail(l, op, msgID, proto.CodeTooLarge, err.Error())
		return
	}
	f := proto.Frame{Header: proto.Header{Opcode: op, MsgID: msgID, Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply}, Body: body}
	l.Send(context.Background(), &f) // a closed link is not this request's error
}

// fail answers a request with ABORT and a Status; the link stays up.
func (h *eventHub) fail(l *transport.Link, op uint16, msgID uint64, code proto.Code, text string) {
	st := proto.Status{Code: code, Text: text}
	f := proto.Frame{Header: proto.Header{Opcode: op, MsgID: msgID, Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply | proto.FlagAbort},
		Body: proto.AppendStatus(nil, &st)}
	l.Send(context.Background(), &f)
}

// drop forgets a client link that ended.
func (h *eventHub) drop(l *transport.Link) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s, ok := h.subs[l]; ok {
		delete(h.subs, l)
		if s.state == subActive || s.state == subClosing {
			s.state = subDropped
		}
		s.cancel()
	}
}

// Close stops the hub: later events are dropped, and every subscriber is
// handed what was published (for at most the flush limit) before its link
// is closed with GOODBYE CodeShutdown. It returns when every subscriber's
// goroutine has ended.
func (h *eventHub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	for _, s := range h.subs {
		if s.state == subActive {
			s.state = subClosing
			signal(s.wake)
		}
	}
	flush := h.lim.flush
	h.mu.Unlock()
	t := time.AfterFunc(flush, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, s := range h.subs {
			s.cancel()
		}
	})
	defer t.Stop()
	h.wg.Wait()
}
