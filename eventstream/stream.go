package eventstream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
)

var (
	// ErrClosed is returned by Publish and Subscribe after Close.
	ErrClosed = errors.New("eventstream: closed")
	// ErrSubscribed is returned by Subscribe for a sink subscribed already.
	ErrSubscribed = errors.New("eventstream: sink already subscribed")
	// ErrStaleSeq is returned by Publish for a cluster-wide event whose Seq
	// is not above the latest: it was published before, or skipped.
	ErrStaleSeq = errors.New("eventstream: seq not above the latest")
	// ErrNotSubscribed is returned by SetCallbacks and Done for a sink the
	// stream does not serve (never subscribed, or ended).
	ErrNotSubscribed = errors.New("eventstream: sink not subscribed")
	// ErrDone is returned by Done when the completion does not match the
	// event the dispatch awaits from the sink.
	ErrDone = errors.New("eventstream: DONE does not match the event awaited")
)

// Limits bound the stream's memory (proto/client/SPEC.md, "History" and
// "Falling behind").
type Limits struct {
	// The history keeps the last HistEvents events, and more while they
	// take at most HistKeepBytes; never more than HistMaxBytes.
	HistEvents    int
	HistKeepBytes int
	HistMaxBytes  int
	// A subscriber with more than LagEvents events, or LagBytes bytes,
	// published since it subscribed and not yet handed to its sink (with
	// what a QueuedSink holds unread) is disconnected; the events of the
	// newest log entry published are not counted (lagLocked).
	LagEvents int
	LagBytes  int
	// Flush bounds how long Close waits for subscribers to take what was
	// published before their sinks are closed anyway.
	Flush time.Duration
	// CallbackTimeout bounds how long the node-wide dispatch waits for a
	// gated subscriber's Done of an event released to it; one that is
	// later is closed with CodeTimeout. 0 means DefaultCallbackTimeout.
	CallbackTimeout time.Duration
}

// DefaultCallbackTimeout is the callback timeout of DefaultLimits.
const DefaultCallbackTimeout = 10 * time.Second

// DefaultLimits keep the lag bound plus a link's send queue well within
// what the history keeps, so that a client disconnected for falling
// behind finds its events when it resumes.
func DefaultLimits() Limits {
	return Limits{
		HistEvents:    4096,
		HistKeepBytes: 2 * transport.DefaultQueueBytes,
		HistMaxBytes:  64 << 20,
		LagEvents:     16384,
		LagBytes:      4 << 20,
		Flush:         time.Second,

		CallbackTimeout: DefaultCallbackTimeout,
	}
}

// Sink is where one subscriber's events go: a client link, or a fake in
// tests.
type Sink interface {
	// Send hands over one EVENT body (proto/client's Event encoding). It
	// may block while the sink is full, until ctx ends.
	Send(ctx context.Context, body []byte) error
	// Close ends the sink with a reason (GOODBYE on a link). The stream
	// calls it once, when the subscriber falls behind or the stream
	// closes, and never after Done is closed.
	Close(code proto.Code, text string)
	// Done is closed when the sink has ended by itself (the link dropped).
	Done() <-chan struct{}
}

// QueuedSink is a Sink that holds what Send handed it until the receiver
// takes it, as a link's send queue does. The stream counts those bytes in
// the subscriber's lag: a client that stops reading is then told it fell
// behind (Close with CodeBehind) while it can still be told, rather than
// being dropped by the link's write timeout without a word.
type QueuedSink interface {
	Sink
	// Queued returns the bytes handed over and not yet taken. It is
	// called with the stream's lock held and must not block.
	Queued() int
}

// Filter selects the events a subscriber is sent. It is called with the
// stream's lock held, possibly more than once per event: it must be fast,
// give the same answer for the same event, and not modify ev.
type Filter func(ev *events.Event) bool

// Classes returns a Filter that selects the events of the classes in m.
func Classes(m client.ClassMask) Filter {
	return func(ev *events.Event) bool { return m.Has(ev.Desc.Class()) }
}

// Subscription is what a subscriber asks for.
type Subscription struct {
	Filter Filter // nil: every event
	// Resume: first the cluster-wide events above After still in the
	// history, then everything published after Subscribe, cluster-wide
	// events only above After. Without Resume, only what is published
	// after Subscribe.
	Resume bool
	After  uint64
	// Callbacks, if set, gates the subscriber from the start: it takes
	// part in the node-wide dispatch (dispatch.go) as SetCallbacks says.
	Callbacks *client.Callbacks
}

// Reply is the answer to a subscription (client.SubscribeReply).
type Reply struct {
	Latest uint64 // highest Seq published (or skipped)
	Floor  uint64 // every cluster-wide event above Floor is in the history
	Gap    bool   // Resume was asked and After < Floor: events may be lost
}

// entry is one published event, encoded once and shared read-only by the
// history and every subscriber.
type entry struct {
	ev   events.Event // for filters
	body []byte       // the EVENT body
}

type subState uint8

const (
	subActive  subState = iota
	subBehind           // fell too far behind, or missed a callback deadline: Close with code and why
	subClosing          // the stream closes: hand over what was published, then Close
)

// subscriber is one sink's subscription. Its goroutine (serve) hands the
// stream to the sink; its position in the stream is guarded by the
// stream's mutex.
type subscriber struct {
	k      Sink
	queued func() int // bytes the sink holds; nil if it says not
	filter Filter
	after  uint64 // cluster-wide events at or below it are not sent
	joined uint64 // stream position at subscription: older local events are not sent, and lag counts from here

	ctx    context.Context // cancelled when serve must stop waiting on the sink
	cancel context.CancelFunc
	wake   chan struct{} // cap 1: something was published

	// Guarded by Stream.mu.
	pos        uint64 // next stream position to look at
	lagN, lagB uint64 // events (and bytes) wanted at positions >= joined not yet handed to the sink
	// The lag's part of the newest log entry counted (entry, 0 for a
	// local event): one entry's events are published in one burst, and a
	// subscriber is not behind for not having been sent them yet.
	entry          uint64
	entryN, entryB uint64
	state          subState
	code           proto.Code // for subBehind: the Close code
	why            string     // for subBehind: the Close text

	// The node-wide dispatch (dispatch.go), guarded by Stream.mu. Only a
	// gated subscriber uses these.
	gated    bool
	cb       client.Callbacks // classes and priorities for the next dispatch started
	djoin    uint64           // positions below it are caught up without the dispatch
	dpos     uint64           // position it takes part in, 0 if none
	released bool             // dpos was released to it: it is sent flagged and awaited
	prio     uint8            // its band's priority at dpos
	held     bool             // its goroutine waits for the dispatch: what is published meanwhile is not lag
}

// Stream is the node's sequence of events for local subscribers
// (proto/client/SPEC.md, "Cluster events"). It keeps a history of what
// was published for subscribers that resume and a position in the stream
// for each subscriber. Publish never waits for a subscriber: each has a
// goroutine that hands the stream to its sink, and one that falls too far
// behind is closed with CodeBehind.
type Stream struct {
	log *slog.Logger
	wg  sync.WaitGroup // subscriber goroutines

	encMu sync.Mutex // guards enc: publishers encode outside mu
	enc   arena

	mu     sync.Mutex // guards the fields below and every subscriber's pos, lag, state and why
	lim    Limits
	closed bool
	subs   map[Sink]*subscriber
	// The stream: every published event has a position, from 1. hist
	// holds positions base .. next-1.
	hist      []*entry
	base      uint64
	next      uint64
	histBytes int
	latest    uint64 // highest Seq published or skipped
	floor     uint64 // every cluster-wide event above it is in hist

	// The node-wide dispatch over the gated subscribers (dispatch.go).
	gated    map[*subscriber]struct{}
	d        dispatch
	timeouts uint64        // gated subscribers closed for a missed deadline
	tick     chan struct{} // cap 1: the dispatcher's deadline changed
	quit     chan struct{} // closed by Close: the dispatcher returns
	ticking  bool          // the dispatcher goroutine runs
}

// New returns a stream whose history is empty and whose floor and latest
// Seq are floor: at start, the last Seq the applied entries of the cluster
// log could have (events.SeqOf(applied, 1<<events.SeqShift-1)). The
// events up to it were published by an earlier run, or never here (a
// snapshot replaced them); this stream does not hold them, so a
// subscriber resuming below floor is told of a gap.
func New(lim Limits, floor uint64, log *slog.Logger) *Stream {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stream{
		log:    log.With("subsystem", "eventstream"),
		lim:    lim,
		subs:   make(map[Sink]*subscriber),
		base:   1,
		next:   1,
		latest: floor,
		floor:  floor,
		gated:  make(map[*subscriber]struct{}),
		tick:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
	}
}

// SetLimits replaces the limits; tests use it to overflow the history and
// fall behind with few events.
func (s *Stream) SetLimits(lim Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lim = lim
}

// Latest returns the highest Seq published or skipped.
func (s *Stream) Latest() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest
}

// Floor returns the Seq above which the history holds every cluster-wide
// event.
func (s *Stream) Floor() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.floor
}

// Subscribers returns how many subscribers the stream serves.
func (s *Stream) Subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// Publish hands ev to every subscriber whose filter selects it and keeps
// it in the history. It never blocks on a subscriber. Cluster-wide events
// (Seq != 0) come with strictly increasing Seq: this is where
// exactly-once holds for the stream. An event whose Seq is not above the
// latest is a caller's error: it is logged and dropped (ErrStaleSeq), as
// is one that cannot be encoded.
func (s *Stream) Publish(ev events.Event) error {
	e := &entry{ev: ev}
	if err := s.encode(e); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.checkSeqLocked(&e.ev); err != nil {
		return err
	}
	s.publishLocked(e)
	return nil
}

// PublishBatch publishes evs, in order, as Publish would one by one: the
// cluster publishes a log entry's events (up to thousands of messages)
// with it. It takes the lock once, and makes one pass over the
// subscribers for the batch, each signalled once. Events that Publish
// would drop are dropped, the others published; the error is the first
// drop's. evs is not retained.
func (s *Stream) PublishBatch(evs []events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	// One allocation for the batch's entries: the history and the
	// subscribers' batches point into it.
	es := make([]entry, 0, len(evs))
	var first error
	for i := range evs {
		es = append(es, entry{ev: evs[i]})
		if err := s.encode(&es[len(es)-1]); err != nil {
			es = es[:len(es)-1]
			first = cmp.Or(first, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	n := 0
	for i := range es {
		if err := s.checkSeqLocked(&es[i].ev); err != nil {
			first = cmp.Or(first, err)
			continue
		}
		es[n] = es[i]
		n++
	}
	es = es[:n]
	if len(es) == 0 {
		return first
	}
	if s.dispatchesLocked(es) {
		// The node-wide dispatch takes events one at a time.
		for i := range es {
			s.publishLocked(&es[i])
		}
		return first
	}
	from := s.next
	for i := range es {
		s.appendLocked(&es[i])
	}
	s.trimLocked()
	s.offerLocked(from)
	if len(s.gated) > 0 {
		// Where advanceLocked would have gone: past every event of the
		// batch, none of which had participants.
		s.d.pos = s.next
	}
	return first
}

// dispatchesLocked reports whether the node-wide dispatch may have work
// in es: it is busy, or behind, or a gated subscriber has callbacks for
// the class of an event of es. Otherwise (group events to clients that
// take them through their Deliveries) es passes every gated subscriber
// as it passes an ungated one.
func (s *Stream) dispatchesLocked(es []entry) bool {
	if len(s.gated) == 0 {
		return s.d.active
	}
	if s.d.active || s.d.pos != s.next {
		return true
	}
	var gated client.ClassMask
	for u := range s.gated {
		gated |= u.cb.Classes
	}
	for i := range es {
		if gated.Has(es[i].ev.Desc.Class()) {
			return true
		}
	}
	return false
}

// fellOut is the Close text of a subscriber whose next events left the
// history.
const fellOut = "client fell behind: events it was still to be sent are no longer in the agent's history; reconnect and resume after the last seq you delivered"

// encode sets e.body, the EVENT body of e.ev, or logs and returns why it
// cannot be sent.
func (s *Stream) encode(e *entry) error {
	s.encMu.Lock()
	body, err := s.enc.append(&e.ev)
	s.encMu.Unlock()
	if err != nil {
		s.log.Error("event cannot be sent to clients; dropped", "event", e.ev.String(), "err", err.Error())
		return fmt.Errorf("eventstream: %w", err)
	}
	e.body = body
	return nil
}

// checkSeqLocked refuses a cluster-wide event not above the latest Seq,
// and makes one the latest.
func (s *Stream) checkSeqLocked(ev *events.Event) error {
	if ev.Seq == 0 {
		return nil
	}
	if ev.Seq <= s.latest {
		s.log.Error("cluster-wide event published twice, or below the start floor; dropped", "event", ev.String(), "latest", s.latest)
		return fmt.Errorf("%w: seq %d, latest %d", ErrStaleSeq, ev.Seq, s.latest)
	}
	s.latest = ev.Seq
	return nil
}

// publishLocked adds e to the history and hands it to the subscribers.
func (s *Stream) publishLocked(e *entry) {
	pos := s.next
	s.appendLocked(e)
	s.trimLocked()
	s.offerLocked(pos)
	if len(s.gated) > 0 || s.d.active {
		s.advanceLocked()
	}
}

// appendLocked adds e at the end of the history.
func (s *Stream) appendLocked(e *entry) {
	s.hist = append(s.hist, e)
	s.histBytes += len(e.body)
	s.next++
}

// offerLocked hands the subscribers the history's events from stream
// position from on (those the history still holds): one pass, each
// subscriber signalled once if it wants one of them. A gated subscriber
// that the dispatch holds back could not be sent them: they are not lag.
func (s *Stream) offerLocked(from uint64) {
	for _, sub := range s.subs {
		if sub.state != subActive {
			continue
		}
		if sub.pos < s.base {
			s.behindLocked(sub, fellOut)
			continue
		}
		// The events the history let go of already were not wanted by
		// sub: it would be behind otherwise.
		wake, onLink := false, -1
		for p := max(from, s.base); p < s.next; p++ {
			e := s.hist[p-s.base]
			if !sub.wants(e, p) {
				continue
			}
			if !sub.held {
				if onLink < 0 {
					onLink = sub.onLink()
				}
				if !s.lagLocked(sub, events.SeqIndex(e.ev.Seq), len(e.body), onLink) {
					wake = false
					break
				}
			}
			wake = true
		}
		if wake {
			signal(sub.wake)
		}
	}
}

// trimLocked lets the history go of its oldest entries beyond the
// limits. A subscriber at an entry let go of that it would skip loses
// nothing: it moves past it.
func (s *Stream) trimLocked() {
	k, bytes := 0, s.histBytes
	for len(s.hist)-k > 1 && (bytes > s.lim.HistMaxBytes || (len(s.hist)-k > s.lim.HistEvents && bytes > s.lim.HistKeepBytes)) {
		bytes -= len(s.hist[k].body)
		k++
	}
	if k == 0 {
		return
	}
	for _, sub := range s.subs {
		for sub.pos >= s.base && sub.pos-s.base < uint64(k) && !sub.wants(s.hist[sub.pos-s.base], sub.pos) {
			sub.pos++
		}
	}
	for i := k - 1; i >= 0; i-- {
		if seq := s.hist[i].ev.Seq; seq != 0 {
			s.floor = seq
			break
		}
	}
	clear(s.hist[:k])
	s.hist = s.hist[k:]
	s.base += uint64(k)
	s.histBytes = bytes
}

// lagLocked counts an event of n bytes, of log entry index (0: a local
// event), in sub's lag (onLink: the bytes its sink holds) and disconnects sub if that is too much. It
// reports whether sub is still served. The events of the newest entry
// counted are left out of the bound: an entry's events (up to a batch of
// thousands of messages) are published at once, faster than any sink is
// handed them, so the bound is the limit plus one entry's events.
func (s *Stream) lagLocked(sub *subscriber, index uint64, n int, onLink int) bool {
	if index == 0 || index != sub.entry {
		sub.entry, sub.entryN, sub.entryB = index, 0, 0
	}
	sub.entryN++
	sub.entryB += uint64(n)
	sub.lagN++
	sub.lagB += uint64(n)
	// The sink is handed the oldest events first: a lag smaller than the
	// entry's part is all of this entry.
	lagN := sub.lagN - min(sub.lagN, sub.entryN)
	lagB := sub.lagB - min(sub.lagB, sub.entryB) + uint64(onLink)
	if lagN > uint64(s.lim.LagEvents) || lagB > uint64(s.lim.LagBytes) {
		s.behindLocked(sub, fmt.Sprintf("client fell behind: %d events (%d bytes) waiting for it and %d bytes on its link that it has not read, limit %d events or %d bytes; reconnect and resume after the last seq you delivered",
			sub.lagN, sub.lagB, onLink, s.lim.LagEvents, s.lim.LagBytes))
		return false
	}
	return true
}

// Skip records that the cluster-wide events up to seq will not be
// published here: a snapshot of the log took their place. A subscriber
// resuming below seq is told of a gap.
func (s *Stream) Skip(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.latest {
		s.latest = seq
	}
	if seq > s.floor {
		s.floor = seq
	}
}

// onLink returns the bytes sub's sink holds unread.
func (sub *subscriber) onLink() int {
	if sub.queued == nil {
		return 0
	}
	return sub.queued()
}

// arena hands out EVENT bodies cut from shared chunks: one allocation for
// many small bodies rather than one each. A body is never written once
// handed out; it keeps its chunk alive while the history or a sink holds
// it, so the memory held is the history's plus at most a chunk at each
// end.
type arena struct{ buf []byte }

const arenaChunk = 64 << 10

// append returns ev's EVENT body.
func (a *arena) append(ev *events.Event) ([]byte, error) {
	rest := a.buf[len(a.buf):]
	out, err := client.AppendEvent(rest, ev)
	if err != nil {
		return nil, err
	}
	if cap(out) == cap(rest) {
		// Encoded in place (a growth would have changed the capacity).
		a.buf = a.buf[:len(a.buf)+len(out)]
		return out[:len(out):len(out)], nil
	}
	// It did not fit and has an allocation of its own; a small body
	// means the chunk is used up.
	if len(out) < arenaChunk/8 {
		a.buf = make([]byte, 0, arenaChunk)
	}
	return out[:len(out):len(out)], nil
}

// wants reports whether sub is to be sent e, found at stream position p.
func (sub *subscriber) wants(e *entry, p uint64) bool {
	if sub.filter != nil && !sub.filter(&e.ev) {
		return false
	}
	if e.ev.Seq == 0 {
		return p >= sub.joined // local events only to those subscribed at the time
	}
	return e.ev.Seq > sub.after
}

func (s *Stream) behindLocked(sub *subscriber, why string) {
	s.evictLocked(sub, proto.CodeBehind, why)
	s.log.Warn("disconnecting a subscriber that fell behind", "why", why)
}

// evictLocked ends sub's subscription: its goroutine closes the sink with
// code and why. The caller advances the dispatch.
func (s *Stream) evictLocked(sub *subscriber, code proto.Code, why string) {
	sub.state, sub.code, sub.why = subBehind, code, why
	delete(s.subs, sub.k)
	s.leaveLocked(sub)
	sub.cancel()
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Subscribe starts handing the stream to k, as sub asks, and returns what
// the subscriber is to be told first. Events reach k only through its
// Send, from a goroutine of the stream, until k is Done, falls behind
// (Close CodeBehind) or the stream closes (Close CodeShutdown).
func (s *Stream) Subscribe(k Sink, sub Subscription) (Reply, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return Reply{}, ErrClosed
	}
	if _, ok := s.subs[k]; ok {
		s.mu.Unlock()
		return Reply{}, ErrSubscribed
	}
	rep := Reply{Latest: s.latest, Floor: s.floor}
	u := &subscriber{k: k, filter: sub.Filter, joined: s.next, pos: s.next, wake: make(chan struct{}, 1)}
	if q, ok := k.(QueuedSink); ok {
		u.queued = q.Queued
	}
	if sub.Resume {
		u.after, u.pos = sub.After, s.base
		// Events the subscriber missed that the history no longer
		// holds: a gap, never silence.
		rep.Gap = sub.After < s.floor
	}
	u.ctx, u.cancel = context.WithCancel(context.Background())
	s.subs[k] = u
	if sub.Callbacks != nil {
		s.gateLocked(u, *sub.Callbacks)
	}
	s.wg.Add(1)
	s.mu.Unlock()

	s.log.Debug("subscribed", "resume", sub.Resume, "after", sub.After, "latest", rep.Latest, "floor", rep.Floor, "gap", rep.Gap)
	if rep.Gap {
		s.log.Warn("subscriber resumes after events the stream no longer holds", "after", sub.After, "floor", rep.Floor)
	}
	go s.serve(u)
	return rep, nil
}

// maxBatch is how many events serve takes from the stream at a time;
// maxSinkBatch for a BatchSink, which frames many in one.
const (
	maxBatch     = 16
	maxSinkBatch = 256
)

// BatchSink is a Sink that can take many events at once: a client link of
// version 5 puts consecutive events into one EVENT_BATCH frame. The stream
// never puts an event flagged for the node-wide dispatch in a batch: it
// travels alone.
type BatchSink interface {
	Sink
	// SendBatch hands over EVENT bodies, in order, as Send would one
	// by one.
	SendBatch(ctx context.Context, bodies [][]byte) error
}

// item is an entry taken for sending and its stream position.
type item struct {
	e       *entry
	pos     uint64
	body    []byte // e.body, or its flagged copy
	flagged bool   // body is the flagged copy: sent alone
}

// serve hands the stream to one subscriber's sink until the sink ends, the
// subscriber falls behind or the stream closes.
func (s *Stream) serve(u *subscriber) {
	defer s.wg.Done()
	defer s.drop(u)
	batch := make([]item, 0, maxBatch)
	bs, _ := u.k.(BatchSink)
	var bodies [][]byte
	for {
		s.mu.Lock()
		state, why := u.state, u.why
		batch = batch[:0]
		// Whether each body is flagged is decided under the lock, as it
		// is taken, whatever SetCallbacks does meanwhile.
		limit := maxBatch
		if bs != nil {
			limit = maxSinkBatch
		}
		if state == subActive || state == subClosing {
			if u.pos < s.base {
				s.behindLocked(u, fellOut)
				state, why = u.state, u.why
			}
			u.held = false
			for u.pos < s.next && u.pos >= s.base && len(batch) < limit {
				if e := s.hist[u.pos-s.base]; u.wants(e, u.pos) {
					body, flagged := e.body, false
					if u.gated {
						if body, flagged, u.held = s.sendableLocked(u, e, u.pos); u.held {
							break
						}
					}
					batch = append(batch, item{e, u.pos, body, flagged})
				}
				u.pos++
			}
		}
		s.mu.Unlock()
		switch {
		case state == subBehind:
			u.k.Close(u.code, why)
			return
		case state == subClosing && (len(batch) == 0 || u.ctx.Err() != nil):
			u.k.Close(proto.CodeShutdown, "agent shutting down")
			return
		}
		if len(batch) == 0 {
			select {
			case <-u.wake:
			case <-u.ctx.Done():
			case <-u.k.Done():
				s.ended(u)
				return
			}
			continue
		}
		for i := 0; i < len(batch); {
			// A run of unflagged events goes in one frame; a flagged one
			// alone, as EVENT.
			j := i + 1
			if bs != nil && !batch[i].flagged {
				for j < len(batch) && !batch[j].flagged {
					j++
				}
			}
			var err error
			if j-i > 1 {
				bodies = bodies[:0]
				for _, it := range batch[i:j] {
					bodies = append(bodies, it.body)
				}
				err = bs.SendBatch(u.ctx, bodies)
			} else {
				err = u.k.Send(u.ctx, batch[i].body)
			}
			if err != nil {
				if u.ctx.Err() == nil {
					s.ended(u) // the sink ended
					return
				}
				break // the state changed; the loop looks
			}
			// Lag counts from here: what waits in serve's batch is not
			// yet the sink's. Saturating: a gated subscriber is not
			// counted the events published while the dispatch held it
			// back.
			s.mu.Lock()
			for _, it := range batch[i:j] {
				if it.pos >= u.joined {
					u.lagN -= min(u.lagN, 1)
					u.lagB -= min(u.lagB, uint64(len(it.e.body)))
				}
			}
			s.mu.Unlock()
			i = j
		}
	}
}

// ended logs a sink that ended by itself on a timeout: a link dropped
// because its client neither read nor answered in time, which would
// otherwise go unsaid.
func (s *Stream) ended(u *subscriber) {
	e, ok := u.k.(interface{ Err() error })
	if !ok {
		return
	}
	if err := e.Err(); errors.Is(err, proto.ErrTimeout) {
		s.log.Warn("dropped a subscriber whose link timed out", "err", err.Error())
	}
}

// drop forgets a subscriber whose goroutine ends.
func (s *Stream) drop(u *subscriber) {
	u.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[u.k] == u {
		delete(s.subs, u.k)
	}
	if u.gated {
		s.leaveLocked(u)
		s.advanceLocked()
	}
}

// Close stops the stream: later events are dropped, and every subscriber
// is handed what was published (for at most Limits.Flush) before its sink
// is closed with CodeShutdown. It returns when every subscriber's
// goroutine has ended.
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	// The dispatch ends: gated subscribers are handed the rest unflagged.
	if s.ticking {
		close(s.quit)
	}
	for _, u := range s.subs {
		if u.state == subActive {
			u.state = subClosing
			signal(u.wake)
		}
	}
	flush := s.lim.Flush
	s.mu.Unlock()
	t := time.AfterFunc(flush, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, u := range s.subs {
			u.cancel()
		}
	})
	defer t.Stop()
	s.wg.Wait()
}

// Stats are the stream's subscribers and how far they lag.
type Stats struct {
	Subscribers int
	// LagMax and LagSum count the events published and not yet handed to
	// a subscriber's sink: the worst subscriber's, and all together.
	LagMax, LagSum uint64
	// Gated subscribers take part in the node-wide dispatch.
	Gated int
	// DispatchSeq is the Seq of the event the dispatch is at (0 if it is
	// idle or at a local event); DispatchWaiting counts the subscribers
	// it waits for the Done of.
	DispatchSeq     uint64
	DispatchWaiting int
	// Timeouts counts the gated subscribers closed because an event's
	// callbacks did not complete within Limits.CallbackTimeout.
	Timeouts uint64
}

// Stats returns the stream's current figures.
func (s *Stream) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Subscribers: len(s.subs), Gated: len(s.gated), Timeouts: s.timeouts}
	if s.d.active {
		st.DispatchSeq, st.DispatchWaiting = s.d.e.ev.Seq, s.d.open
	}
	for _, sub := range s.subs {
		st.LagMax = max(st.LagMax, sub.lagN)
		st.LagSum += sub.lagN
	}
	return st
}
