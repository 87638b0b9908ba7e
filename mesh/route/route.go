package route

import (
	"errors"
	"fmt"
	"slices"
)

// NodeID names a node; 0 is no node.
type NodeID uint64

// Metric is the sum of the link costs along a route, saturating at Inf.
type Metric uint16

// Inf is the metric of an unreachable destination; an advert carrying it
// is a retraction.
const Inf Metric = 0xFFFF

// add returns a+b, saturating at Inf.
func add(a, b Metric) Metric {
	if s := uint32(a) + uint32(b); s < uint32(Inf) {
		return Metric(s)
	}
	return Inf
}

// Seqno is an origin's advert sequence number, compared modulo 2^16.
type Seqno uint16

// Newer reports whether s is newer than t modulo 2^16 (RFC 8966 §3.2.1):
// t+1 .. t+32767 are newer, t+32768 .. t-1 older.
func (s Seqno) Newer(t Seqno) bool { return s != t && uint16(s-t) < 0x8000 }

// Specification constants: defaults for a zero Config field.
const (
	DefaultMaxHops       = 17 // proto.HopLimit+1: a frame sent with 16 travels 16 hops, so routes of 16 are usable
	DefaultSeqnoReqHops  = 16 // the longest route: a request reaches any origin a route can
	DefaultReqRetryTicks = 2
	DefaultSourceGCTicks = 180 // RFC 8966's 3 minutes at one tick per second
	DefaultResetTicks    = 2   // a replaced link's neighbour repeats its routes within this, or they go
	reqTries             = 3   // an originated seqno request is sent at most this often
)

// Config parameterises a Router. Zero fields take the defaults above;
// Hysteresis 0 means none.
type Config struct {
	Self          NodeID
	MaxHops       uint8  // routes with this many hops or more are refused and not advertised; at most 17
	SeqnoReqHops  uint8  // hop count a seqno request starts with
	ReqRetryTicks int    // resend an unanswered request after this many ticks, doubling, reqTries tries
	SourceGCTicks int    // forget an origin's FD this many ticks after its route was last selected
	Hysteresis    Metric // keep the current route while its metric is within this of the best
	ResetTicks    int    // after LinkReset, drop a route the neighbour has not advertised again within this many ticks
}

// Errors returned by the inputs. The router's state is unchanged when an
// input returns an error.
var (
	ErrCost      = errors.New("route: link cost must be 1..65534")
	ErrPeer      = errors.New("route: peer must be another node than self, not 0")
	ErrLinkUp    = errors.New("route: link already up")
	ErrNoLink    = errors.New("route: no link to peer")
	ErrMalformed = errors.New("route: malformed message")
)

// Update is one advert: the sender reaches Origin at Metric over Hops
// links, with Origin's seqno Seqno. Metric Inf retracts the route.
type Update struct {
	Origin NodeID
	Seqno  Seqno
	Metric Metric
	Hops   uint8
}

// SeqnoRequest asks for an advert of Origin with seqno Seqno or newer; a
// node without one forwards it towards Origin while HopCount allows.
type SeqnoRequest struct {
	Origin   NodeID
	Seqno    Seqno
	HopCount uint8
}

// Message is what one router tells one neighbour: adverts (the peer
// protocol's ROUTES) and requests (SEQNO_REQ). The receiver handles
// Updates before Requests, as the sender produced them.
type Message struct {
	Updates  []Update       // sorted by Origin, at most one per origin
	Requests []SeqnoRequest // sorted by Origin, at most one per origin
}

// Outbound is a message for the neighbour To.
type Outbound struct {
	To  NodeID
	Msg Message
}

// Change is the new state of the route to Dest: its next hop (0 when Dest
// became unreachable), feasible alternate next hop (0 if none) and metric.
type Change struct {
	Dest, NextHop, Alt NodeID
	Metric             Metric
}

// Ready is what the caller must do: persist Seqno if SeqnoChanged, send
// Msgs and apply Changes. Msgs and Changes are sorted (by To, by Dest).
type Ready struct {
	Msgs         []Outbound
	Changes      []Change
	Seqno        Seqno // this node's own seqno
	SeqnoChanged bool  // it changed since the last Advance
}

// Route is one selected route, as Table lists it.
type Route struct {
	Dest      NodeID
	NextHop   NodeID
	Metric    Metric
	Hops      uint8
	Seqno     Seqno
	Alt       NodeID // 0: no feasible alternate
	AltMetric Metric // Inf when Alt is 0
}

// Source is one feasibility distance: the best (seqno, metric) this node
// has advertised for Origin.
type Source struct {
	Origin NodeID
	Seqno  Seqno
	Metric Metric
}

// entry is a route to one destination as one neighbour advertised it.
type entry struct {
	seqno Seqno
	adv   Metric // the neighbour's metric, without our link cost
	hops  uint8  // the neighbour's hops + 1
}

// dest is what the router knows about one destination.
type dest struct {
	via      map[NodeID]entry // by neighbour
	sel, alt NodeID           // selected and alternate next hop, 0 for none
	metric   Metric           // of sel (Inf if none)
	seqno    Seqno            // of sel, as selected
	hops     uint8            // of sel, as selected
	wants    bool             // the best route is unfeasible: a seqno request is due
	altM     Metric           // of alt (Inf if none)
	reported Change           // the state last put into Ready's changes
}

type source struct {
	seqno  Seqno
	metric Metric
	used   uint64 // tick at which the origin last had a selected route
}

// request is an outstanding seqno request for one origin: one this node
// sent because it starves (tries > 0, retried), or one it forwarded (kept
// only to suppress duplicates until expires).
type request struct {
	seqno Seqno
	to    NodeID // the neighbour it was sent to
	tries int    // originated: sends so far; 0: forwarded
	due   uint64 // originated: tick of the next retry; forwarded: tick it expires
}

// Router is the routing state of one node. It is not safe for concurrent
// use: one owner feeds it inputs and drains Ready.
type Router struct {
	cfg   Config
	seqno Seqno
	now   uint64 // ticks since New

	links   map[NodeID]Metric            // live links and their cost
	dests   map[NodeID]*dest             // by destination, never Self
	sources map[NodeID]*source           // FD by origin
	reqs    map[NodeID]*request          // outstanding seqno requests by origin
	told    map[NodeID]map[NodeID]Update // by neighbour, origin: finite adverts it has from us
	stale   map[NodeID]map[NodeID]uint64 // by neighbour, origin: a route learned before LinkReset, and the tick it goes

	// Work of the current input, done by flush.
	reselect map[NodeID]bool // destinations to select again
	dirty    map[NodeID]bool // origins whose advert may have changed, for every neighbour
	dump     map[NodeID]bool // neighbours that need the full table

	// Output waiting for Advance.
	out          map[NodeID]*pending
	changes      map[NodeID]Change
	seqnoChanged bool
}

type pending struct {
	updates map[NodeID]Update
	reqs    map[NodeID]SeqnoRequest
}

// New returns the router of cfg.Self, whose own seqno starts at seqno (the
// persisted value plus one, so that a restarted node's adverts are new).
func New(cfg Config, seqno Seqno) *Router {
	if cfg.MaxHops == 0 || cfg.MaxHops > DefaultMaxHops {
		cfg.MaxHops = DefaultMaxHops // the peer protocol refuses longer routes
	}
	if cfg.SeqnoReqHops == 0 {
		cfg.SeqnoReqHops = DefaultSeqnoReqHops
	}
	if cfg.ReqRetryTicks <= 0 {
		cfg.ReqRetryTicks = DefaultReqRetryTicks
	}
	if cfg.SourceGCTicks <= 0 {
		cfg.SourceGCTicks = DefaultSourceGCTicks
	}
	if cfg.ResetTicks <= 0 {
		cfg.ResetTicks = DefaultResetTicks
	}
	return &Router{
		cfg:      cfg,
		seqno:    seqno,
		links:    map[NodeID]Metric{},
		dests:    map[NodeID]*dest{},
		sources:  map[NodeID]*source{},
		reqs:     map[NodeID]*request{},
		told:     map[NodeID]map[NodeID]Update{},
		stale:    map[NodeID]map[NodeID]uint64{},
		reselect: map[NodeID]bool{},
		dirty:    map[NodeID]bool{},
		dump:     map[NodeID]bool{},
		out:      map[NodeID]*pending{},
		changes:  map[NodeID]Change{},
	}
}

// Config returns the router's configuration with defaults filled in.
func (r *Router) Config() Config { return r.cfg }

// Seqno returns this node's own seqno; persist it when it changes.
func (r *Router) Seqno() Seqno { return r.seqno }

// Lookup returns the next hop and metric towards dest.
func (r *Router) Lookup(dest NodeID) (next NodeID, m Metric, ok bool) {
	d := r.dests[dest]
	if d == nil || d.sel == 0 {
		return 0, Inf, false
	}
	return d.sel, d.metric, true
}

// Alternate returns the best feasible next hop towards dest other than
// the selected one: where to switch when the selected link dies.
func (r *Router) Alternate(dest NodeID) (next NodeID, m Metric, ok bool) {
	d := r.dests[dest]
	if d == nil || d.alt == 0 {
		return 0, Inf, false
	}
	return d.alt, d.altM, true
}

// Table returns the selected routes, sorted by destination.
func (r *Router) Table() []Route {
	var t []Route
	for _, id := range sortedKeys(r.dests) {
		d := r.dests[id]
		if d.sel == 0 {
			continue
		}
		e := d.via[d.sel]
		t = append(t, Route{Dest: id, NextHop: d.sel, Metric: d.metric, Hops: e.hops, Seqno: e.seqno, Alt: d.alt, AltMetric: d.altM})
	}
	return t
}

// Sources returns the feasibility distances, sorted by origin.
func (r *Router) Sources() []Source {
	var s []Source
	for _, id := range sortedKeys(r.sources) {
		src := r.sources[id]
		s = append(s, Source{Origin: id, Seqno: src.seqno, Metric: src.metric})
	}
	return s
}

// Starving returns the destinations whose best route this node may not
// use (it is unfeasible: none is feasible, or a better one is not), sorted.
// They wait for a seqno request to be answered, or, if its tries ran out,
// for the routes to change or the FD to be forgotten.
func (r *Router) Starving() []NodeID {
	var s []NodeID
	for _, id := range sortedKeys(r.dests) {
		if r.dests[id].wants {
			s = append(s, id)
		}
	}
	return s
}

// Unconfirmed counts the routes learned over links since reset
// (LinkReset) that their neighbour has not advertised again yet; they go
// at a later Tick unless it does.
func (r *Router) Unconfirmed() int {
	n := 0
	for _, st := range r.stale {
		n += len(st)
	}
	return n
}

// HasReady reports whether Ready has anything to do.
func (r *Router) HasReady() bool { return len(r.out) > 0 || len(r.changes) > 0 || r.seqnoChanged }

// Ready returns the messages to send and the route changes since the last
// Advance.
func (r *Router) Ready() Ready {
	rd := Ready{Seqno: r.seqno, SeqnoChanged: r.seqnoChanged}
	for _, to := range sortedKeys(r.out) {
		p := r.out[to]
		var m Message
		for _, o := range sortedKeys(p.updates) {
			m.Updates = append(m.Updates, p.updates[o])
		}
		for _, o := range sortedKeys(p.reqs) {
			m.Requests = append(m.Requests, p.reqs[o])
		}
		rd.Msgs = append(rd.Msgs, Outbound{To: to, Msg: m})
	}
	for _, id := range sortedKeys(r.changes) {
		rd.Changes = append(rd.Changes, r.changes[id])
	}
	return rd
}

// Advance acknowledges the last Ready: its messages are sent, its changes
// applied.
func (r *Router) Advance() {
	clear(r.out)
	clear(r.changes)
	r.seqnoChanged = false
}

func sortedKeys[V any](m map[NodeID]V) []NodeID {
	ks := make([]NodeID, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func (u Update) String() string {
	if u.Metric == Inf {
		return fmt.Sprintf("%d:s%d/inf", u.Origin, u.Seqno)
	}
	return fmt.Sprintf("%d:s%d/m%d/h%d", u.Origin, u.Seqno, u.Metric, u.Hops)
}

func (q SeqnoRequest) String() string {
	return fmt.Sprintf("%d:s%d/hc%d", q.Origin, q.Seqno, q.HopCount)
}
