package mesh

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/mesh/route"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/transport"
)

// Defaults of the routing configuration.
const (
	DefaultLinkCost  = 100         // every link's cost unless Config.LinkCost says otherwise
	DefaultRouteTick = time.Second // the router's logical clock: seqno request retries, FD expiry
	// dupGrace is how long a node whose last link ended as a duplicate
	// keeps its routes while its replacement is on the way.
	dupGrace = time.Second
	// forwardWait bounds how long a relay's reader waits for room in the
	// next link's queue: a slow link must not stall the reader (and its
	// heartbeats); the frame is dropped and counted instead.
	forwardWait = 10 * time.Millisecond
)

// Reach is what the mesh knows of reaching one node: over a direct link,
// routed through a neighbour, or not at all.
type Reach struct {
	ID      uint64
	Up      bool          // a direct link or a route
	Direct  bool          // a direct link is up
	NextHop uint64        // the neighbour a routed frame leaves through (ID itself when direct)
	Alt     uint64        // a feasible alternate next hop, 0 if none
	Metric  uint16        // route metric (sum of link costs); 0 for self
	Hops    uint8         // route length in links
	Seqno   uint16        // the destination's route seqno
	Since   time.Time     // last change between reachable and not
	RTT     time.Duration // the direct link's RTT, 0 when routed
	// Replaced says the last direct link ended as a duplicate, its
	// replacement on its way (LinkState.Replaced).
	Replaced bool
}

// RouteStats are the routing and forwarding counters.
type RouteStats struct {
	Routes        int    // destinations with a route
	Changes       uint64 // route changes applied
	Relayed       uint64 // frames forwarded for other nodes
	RelayedBytes  uint64 // their bodies' bytes
	HopLimit      uint64 // frames dropped because their hop count ran out
	NoRoute       uint64 // frames for a node without a route, dropped
	RelayDrops    uint64 // frames dropped because the next link's queue stayed full
	AdvertsSent   uint64 // ROUTES and SEQNO_REQ frames sent
	AdvertsRecv   uint64 // ROUTES and SEQNO_REQ frames received
	RoutedCalls   uint64 // requests sent over more than one hop
	RoutedReplies uint64 // replies to them received
}

// routing drives the routing core (package route) for the mesh: link
// events and received adverts go in at once, under mu; the adverts to
// send and the route changes come out on the routing goroutine, which
// drains the router after a burst of inputs rather than after each, and
// sends in order. Send and the relays read the forwarding table without
// a lock.
type routing struct {
	m    *Mesh
	kick chan struct{}

	mu    sync.Mutex // guards r, reach, held
	r     *route.Router
	reach map[uint64]*reachState // destinations ever routed to
	held  map[uint64]time.Time   // nodes whose last link ended as a duplicate: kept in the router until then

	fwd atomic.Pointer[map[uint64]uint64] // destination → next hop; replaced whole

	calls   sync.Map      // msg id → chan *proto.Frame: routed requests awaiting their reply
	callSeq atomic.Uint64 // msg ids of routed requests: a random base, so a restarted node does not reuse recent ones

	changes, relayed, relayedBytes, hopLimit, noRoute, relayDrops atomic.Uint64
	advertsSent, advertsRecv, routedCalls, routedReplies          atomic.Uint64
}

type reachState struct {
	up    bool
	since time.Time
	route route.Change
}

func newRouting(m *Mesh) *routing {
	var b [8]byte
	crand.Read(b[:])
	// The persisted seqno plus one, or a random one: a neighbour that
	// remembers an older life's adverts asks for a newer one (a seqno
	// request), which the router grants.
	seq := route.Seqno(binary.LittleEndian.Uint16(b[:2]))
	if m.cfg.RouteSeqno != nil {
		seq = route.Seqno(*m.cfg.RouteSeqno)
	}
	rt := &routing{m: m, kick: make(chan struct{}, 1), reach: map[uint64]*reachState{}, held: map[uint64]time.Time{},
		r: route.New(route.Config{Self: route.NodeID(m.cfg.Self)}, seq)}
	// Bit 63 set (and 62 clear, for room to count): routed calls' msg ids
	// never equal a transaction's (txMsgIDBit), so a one-shot is never
	// taken for a transaction the table holds.
	rt.callSeq.Store(binary.LittleEndian.Uint64(b[:])&^(3<<62) | callMsgIDBit)
	empty := map[uint64]uint64{}
	rt.fwd.Store(&empty)
	return rt
}

func (rt *routing) poke() {
	select {
	case rt.kick <- struct{}{}:
	default:
	}
}

// cost is the configured cost of the link to peer.
func (rt *routing) cost(peerID uint64) route.Metric {
	if f := rt.m.cfg.LinkCost; f != nil {
		if c := f(peerID); c >= 1 && c < uint16(route.Inf) {
			return route.Metric(c)
		}
	}
	return DefaultLinkCost
}

// linkUp tells the router of a new link to a node: its first (fresh), or
// one that replaces another (both ends dialled) or follows a duplicate's
// end within the grace (held). A replacement is no change of topology:
// the router keeps the routes learned from the node and both ends send
// their whole table again on the new link, since adverts in flight may
// have been lost with the old one (route.Router.LinkReset). Taking the
// link down and up instead would retract every route through it, and a
// leader that saw a member unreachable for that instant removed it.
func (rt *routing) linkUp(l *transport.Link, fresh bool) {
	id := l.Peer().NodeID
	rt.mu.Lock()
	_, held := rt.held[id]
	delete(rt.held, id)
	err := route.ErrNoLink
	if !fresh || held {
		err = rt.r.LinkReset(route.NodeID(id))
	}
	if errors.Is(err, route.ErrNoLink) {
		err = rt.r.LinkUp(route.NodeID(id), rt.cost(id))
	}
	rt.mu.Unlock()
	if err != nil {
		rt.m.log.Warn("routing: link up", "peer_id", id, "err", err)
	}
	rt.poke()
}

// linkDown tells the router a node lost its last link. A link that ended
// as a duplicate has its replacement on the way: the router keeps the
// node's routes for DupGrace (checked at its ticks), so that the other
// nodes see no route come and go.
func (rt *routing) linkDown(id uint64, duplicate bool) {
	rt.mu.Lock()
	if duplicate {
		if _, ok := rt.held[id]; !ok {
			rt.held[id] = rt.m.cfg.Now().Add(dupGrace)
		}
		rt.mu.Unlock()
		return
	}
	delete(rt.held, id)
	rt.r.LinkDown(route.NodeID(id))
	rt.mu.Unlock()
	rt.poke()
}

// expireHeld takes down the links held since a duplicate's end whose
// replacement did not come within the grace.
func (rt *routing) expireHeld(now time.Time) {
	for id, until := range rt.held {
		if !now.Before(until) {
			delete(rt.held, id)
			rt.r.LinkDown(route.NodeID(id))
		}
	}
}

// onFrame takes ROUTES and SEQNO_REQ from a neighbour, on its reader. A
// malformed body ends the link (a peer that sends one is broken); a
// message the router refuses as a whole (route.ErrMalformed: impossible
// metrics) is logged and dropped.
func (rt *routing) onFrame(l *transport.Link, f *proto.Frame) error {
	if f.Target != 0 {
		return proto.Errorf(proto.CodeField, "%s: routing adverts are link-local, this one is for node %d", peer.Ops().Name(f.Opcode), f.Target)
	}
	var msg route.Message
	switch f.Opcode {
	case peer.OpRoutes:
		es, err := peer.ParseRoutes(f.Body)
		if err != nil {
			return err
		}
		msg.Updates = make([]route.Update, len(es))
		for i, e := range es {
			msg.Updates[i] = route.Update{Origin: route.NodeID(e.Origin), Seqno: route.Seqno(e.Seqno), Metric: route.Metric(e.Metric), Hops: e.Hops}
		}
	case peer.OpSeqnoReq:
		q, err := peer.ParseSeqnoReq(f.Body)
		if err != nil {
			return err
		}
		msg.Requests = []route.SeqnoRequest{{Origin: route.NodeID(q.Origin), Seqno: route.Seqno(q.Seqno), HopCount: q.HopCount}}
	default:
		return proto.Errorf(proto.CodeOpcode, "opcode %#04x in the routing range", f.Opcode)
	}
	rt.advertsRecv.Add(1)
	from := l.Peer().NodeID
	rt.mu.Lock()
	err := rt.r.Step(route.NodeID(from), msg)
	rt.mu.Unlock()
	if err != nil {
		// ErrNoLink: the advert raced the link's end; ErrMalformed: the
		// peer's router is broken. Neither is worth ending the link for.
		rt.m.log.Warn("routing: advert refused", "peer_id", from, "err", err)
		return nil
	}
	rt.poke()
	return nil
}

// run drains the router, sends its adverts and ticks it, until ctx ends.
func (rt *routing) run(ctx context.Context, tick time.Duration) {
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-rt.kick:
		case <-t.C:
			rt.mu.Lock()
			rt.expireHeld(rt.m.cfg.Now())
			rt.r.Tick()
			rt.mu.Unlock()
		}
		rt.drain(ctx)
	}
}

// drain applies what the router has ready and sends its messages.
func (rt *routing) drain(ctx context.Context) {
	rt.mu.Lock()
	if !rt.r.HasReady() {
		rt.mu.Unlock()
		return
	}
	rd := rt.r.Ready()
	rt.r.Advance()
	if rd.SeqnoChanged && rt.m.cfg.OnRouteSeqno != nil {
		// Before the adverts that carry it go out: a restart must not
		// start below a seqno a neighbour has seen.
		rt.m.cfg.OnRouteSeqno(uint16(rd.Seqno))
	}
	var events []RouteEvent
	if len(rd.Changes) > 0 {
		next := maps.Clone(*rt.fwd.Load())
		now := rt.m.cfg.Now()
		for _, c := range rd.Changes {
			rt.changes.Add(1)
			d := uint64(c.Dest)
			st := rt.reach[d]
			if st == nil {
				st = &reachState{}
				rt.reach[d] = st
			}
			up := c.NextHop != 0
			if up != st.up {
				st.up, st.since = up, now
				events = append(events, RouteEvent{ID: d, Up: up, NextHop: uint64(c.NextHop)})
			}
			st.route = c
			if up {
				next[d] = uint64(c.NextHop)
			} else {
				delete(next, d)
			}
		}
		rt.fwd.Store(&next)
	}
	rt.mu.Unlock()
	for _, ob := range rd.Msgs {
		rt.send(ctx, uint64(ob.To), ob.Msg)
	}
	for _, ev := range events {
		if rt.m.cfg.OnRoute != nil {
			rt.m.cfg.OnRoute(ev)
		}
	}
}

// send writes one router message to neighbour to: one ROUTES frame per
// MaxRouteEntries updates, then one SEQNO_REQ per request. A neighbour
// whose link is gone is skipped: the router hears of it by linkDown.
func (rt *routing) send(ctx context.Context, to uint64, msg route.Message) {
	l := rt.m.tab.linkTo(to)
	if l == nil {
		return
	}
	var fs []proto.Frame
	for chunk := range slices.Chunk(msg.Updates, peer.MaxRouteEntries) {
		es := make([]peer.RouteEntry, len(chunk))
		for i, u := range chunk {
			es[i] = peer.RouteEntry{Origin: uint64(u.Origin), Seqno: uint16(u.Seqno), Metric: uint16(u.Metric), Hops: u.Hops}
		}
		fs = append(fs, proto.Frame{Header: proto.Header{Opcode: peer.OpRoutes, Flags: proto.FlagCreate | proto.FlagDelete}, Body: peer.AppendRoutes(nil, es)})
	}
	for _, q := range msg.Requests {
		fs = append(fs, proto.Frame{Header: proto.Header{Opcode: peer.OpSeqnoReq, Flags: proto.FlagCreate | proto.FlagDelete},
			Body: peer.AppendSeqnoReq(nil, peer.SeqnoReq{Origin: uint64(q.Origin), Seqno: uint16(q.Seqno), HopCount: q.HopCount})})
	}
	for i := range fs {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		err := l.Send(sctx, &fs[i])
		cancel()
		if err != nil {
			select {
			case <-l.Done():
				// The link ended: the next one starts with the full
				// tables (LinkUp, LinkReset).
				rt.m.log.Debug("routing: advert not sent: the link ended", "peer_id", to, "err", err)
			default:
				// A link that lives on lost it (its queue stayed
				// full): send again what it carried, as the routes
				// stand at the next drain.
				rt.m.log.Info("routing: advert not sent; sending it again", "peer_id", to, "err", err)
				rt.mu.Lock()
				if err := rt.r.Resend(route.NodeID(to), msg); err != nil {
					rt.m.log.Debug("routing: resend", "peer_id", to, "err", err)
				}
				rt.mu.Unlock()
			}
			return
		}
		rt.advertsSent.Add(1)
	}
}

// nextHop is the link a frame for node to leaves on: the direct one, else
// the route's next hop's.
func (rt *routing) nextHop(to uint64) *transport.Link {
	if l := rt.m.tab.linkTo(to); l != nil {
		return l
	}
	if nh, ok := (*rt.fwd.Load())[to]; ok {
		return rt.m.tab.linkTo(nh)
	}
	return nil
}

// forward relays a frame for another node, on the reader of the link it
// came on: the hop count goes down by one. A request whose count runs out,
// or for a node without a route, is answered to its source with
// CREATE|DELETE|REPLY|ABORT CodeHopLimit or CodeNoRoute, so its caller
// fails at once; a reply, an ABORT or a frame that cannot be answered is
// dropped. Drops are counted.
func (rt *routing) forward(f *proto.Frame) {
	if f.Hops <= 1 {
		rt.hopLimit.Add(1)
		rt.bounce(f, proto.CodeHopLimit, "hop limit reached")
		return
	}
	l := rt.nextHop(f.Target)
	if l == nil {
		rt.noRoute.Add(1)
		rt.bounce(f, proto.CodeNoRoute, fmt.Sprintf("no route to node %d", f.Target))
		return
	}
	f.Hops--
	if err := sendSoon(l, f, forwardWait); err != nil {
		rt.relayDrops.Add(1)
		return
	}
	rt.relayed.Add(1)
	rt.relayedBytes.Add(uint64(len(f.Body)))
}

// sendSoon queues f on l, waiting at most d for room. The first try
// has no deadline of its own, so a link with room, the common case,
// costs no timer.
func sendSoon(l *transport.Link, f *proto.Frame, d time.Duration) error {
	err := l.Send(tryCtx, f)
	if !errors.Is(err, context.Canceled) {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return l.Send(ctx, f)
}

// bounce answers a routed request that cannot go on, toward its source.
func (rt *routing) bounce(f *proto.Frame, code proto.Code, text string) {
	if f.Flags&(proto.FlagReply|proto.FlagAbort) != 0 || f.Source == rt.m.cfg.Self {
		return
	}
	l := rt.nextHop(f.Source)
	if l == nil {
		return
	}
	st := proto.Status{Code: code, Text: fmt.Sprintf("node %d: %s", rt.m.cfg.Self, text)}
	r := proto.Frame{Header: proto.Header{Opcode: f.Opcode, MsgID: f.MsgID, Source: rt.m.cfg.Self, Target: f.Source, Hops: proto.HopLimit,
		Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply | proto.FlagAbort}, Body: proto.AppendStatus(nil, &st)}
	ctx, cancel := context.WithTimeout(context.Background(), forwardWait)
	l.Send(ctx, &r) // best effort: the caller's own timeout covers a loss
	cancel()
}

// sendRouted sends f to node to through the route's next hop.
func (rt *routing) sendRouted(ctx context.Context, to uint64, f *proto.Frame) error {
	l := rt.nextHop(to)
	if l == nil {
		return fmt.Errorf("%w %d", ErrNoRoute, to)
	}
	f.Source, f.Target, f.Hops = rt.m.cfg.Self, to, proto.HopLimit
	return l.Send(ctx, f)
}

// call sends the request f to node to over its route and waits for the
// reply, which comes back routed (transport.Link.Reply addresses it to
// the request's source) on whichever link its last hop uses.
func (rt *routing) call(ctx context.Context, to uint64, f *proto.Frame) (*proto.Frame, error) {
	if f.Flags&(proto.FlagReply|proto.FlagAbort) != 0 {
		return nil, fmt.Errorf("mesh: Call with a reply frame (flags %#x)", f.Flags)
	}
	if f.Flags == 0 {
		f.Flags = proto.FlagCreate | proto.FlagDelete
	}
	f.MsgID = rt.callSeq.Add(1)
	k := f.MsgID
	ch := make(chan *proto.Frame, 1)
	rt.calls.Store(k, ch)
	defer rt.calls.Delete(k)
	if err := rt.sendRouted(ctx, to, f); err != nil {
		return nil, err
	}
	rt.routedCalls.Add(1)
	select {
	case r := <-ch:
		if r.Flags&proto.FlagAbort != 0 {
			st, err := proto.ParseStatus(r.Body, "ABORT")
			if err != nil {
				return nil, err
			}
			return nil, st.Err()
		}
		return r, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("mesh: routed call to node %d: %w", to, ctx.Err())
	}
}

// reply hands a routed reply for this node to its waiting call (the
// target's answer, or a relay's refusal); false if none waits (it timed
// out).
func (rt *routing) reply(f *proto.Frame) bool {
	v, ok := rt.calls.LoadAndDelete(f.MsgID)
	if !ok {
		return false
	}
	r := *f
	r.Body = slices.Clone(f.Body) // the reader reuses its buffer
	// Counted before the hand-over: the caller may read the stats as soon
	// as its Call returns.
	rt.routedReplies.Add(1)
	v.(chan *proto.Frame) <- &r
	return true
}

// reachability lists every node with a direct link or a route, and those
// that had one, with when that last changed.
func (rt *routing) reachability() []Reach {
	byID := map[uint64]*Reach{}
	for _, s := range rt.m.tab.all() {
		if s.ID == 0 || s.ID == rt.m.cfg.Self {
			continue
		}
		byID[s.ID] = &Reach{ID: s.ID, Up: s.Up, Direct: s.Up, Since: s.Since, RTT: s.RTT, Replaced: s.Replaced}
		if s.Up {
			byID[s.ID].NextHop = s.ID
		}
	}
	rt.mu.Lock()
	table := rt.r.Table()
	for id, st := range rt.reach {
		r := byID[id]
		if r == nil {
			r = &Reach{ID: id, Since: st.since}
			byID[id] = r
		}
		if r.Direct {
			continue
		}
		// Not linked: reachable while routed; down since the later of the
		// link's and the route's end.
		r.Up = st.up
		if st.since.After(r.Since) {
			r.Since = st.since
		}
	}
	rt.mu.Unlock()
	for _, e := range table {
		r := byID[uint64(e.Dest)]
		if r == nil {
			continue
		}
		if !r.Direct {
			r.NextHop = uint64(e.NextHop)
		}
		r.Alt, r.Metric, r.Hops, r.Seqno = uint64(e.Alt), uint16(e.Metric), e.Hops, uint16(e.Seqno)
	}
	out := make([]Reach, 0, len(byID))
	for _, r := range byID {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b Reach) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (rt *routing) stats() RouteStats {
	return RouteStats{Routes: len(*rt.fwd.Load()), Changes: rt.changes.Load(), Relayed: rt.relayed.Load(),
		RelayedBytes: rt.relayedBytes.Load(), HopLimit: rt.hopLimit.Load(), NoRoute: rt.noRoute.Load(),
		RelayDrops: rt.relayDrops.Load(), AdvertsSent: rt.advertsSent.Load(), AdvertsRecv: rt.advertsRecv.Load(),
		RoutedCalls: rt.routedCalls.Load(), RoutedReplies: rt.routedReplies.Load()}
}

// RouteEvent tells that a node became reachable or unreachable by route
// (OnRoute). A node with a direct link is reachable whatever its route.
type RouteEvent struct {
	ID      uint64
	Up      bool
	NextHop uint64 // Up: the first hop
}
