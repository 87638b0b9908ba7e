package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/acceptloop"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/transport"
)

// Errors callers branch on.
var (
	// ErrNoRoute is returned by Send and Call when no link leads to the node.
	ErrNoRoute = errors.New("mesh: no route to node")
	// ErrNotRunning is returned by AddPeer before Run or after it returned.
	ErrNotRunning = errors.New("mesh: not running")
	// ErrBadPeer is wrapped by AddPeer for an address that is not host:port.
	ErrBadPeer = errors.New("mesh: bad peer address")
)

// Handler serves one received peer frame. It runs on the reader goroutine
// of the link the frame came on and must not block (see the package doc).
// An error ends the link with that error.
type Handler func(l *transport.Link, f *proto.Frame) error

// LinkState is what the mesh knows of one node's link.
type LinkState struct {
	ID      uint64 // 0 for a configured address no node answered from yet
	Name    string
	Addr    string // the address dialed, or where its link came from
	Version uint8  // last agreed peer protocol version
	Up      bool
	RTT     time.Duration // current, or the last seen before the link went down
	Since   time.Time     // last change of up/down
	// Replaced says the last link ended as a duplicate: its replacement is
	// on its way, so the node is not yet to be taken for down.
	Replaced bool
}

// LinkEvent tells that a node gained its first link or lost its last one.
type LinkEvent struct {
	Peer transport.PeerInfo
	Up   bool
	Err  error // why the last link ended (Up false)
}

// Defaults of the bounds on connections still handshaking.
const (
	DefaultMaxHandshakes      = 256
	DefaultMaxHandshakesPerIP = 32
)

// Config configures a Mesh.
type Config struct {
	Self     uint64
	Link     *transport.Config // for every peer link
	Listener net.Listener      // peer listener; the Mesh closes it when Run returns
	Peers    []string          // addresses to keep a link to
	// ReconnectMax caps the dialers' backoff; default 5s.
	ReconnectMax time.Duration
	// MaxHandshakes and MaxHandshakesPerIP bound the accepted connections
	// that have not authenticated yet, in all and from one source IP;
	// beyond them a connection is closed before any TLS work. Defaults
	// DefaultMaxHandshakes and DefaultMaxHandshakesPerIP.
	MaxHandshakes      int
	MaxHandshakesPerIP int
	// ForgetAfter is how long a node whose links all ended stays in the
	// table (and a dialer for an address added at run time keeps trying
	// it); 0 keeps it for ever.
	ForgetAfter time.Duration
	// OnLink, if set, is called when a node gains its first link or loses
	// its last, from the goroutine serving that link, never with a lock
	// held. It must not block for long.
	OnLink func(LinkEvent)
	// OnRoute, if set, is called when a node becomes reachable or
	// unreachable by route, from the routing goroutine. It must not
	// block for long.
	OnRoute func(RouteEvent)
	// LinkCost is the routing cost of the link to a peer (1..65534);
	// nil, or 0, means DefaultLinkCost.
	LinkCost func(peer uint64) uint16
	// RouteTick is the router's clock; default DefaultRouteTick.
	RouteTick time.Duration
	// RouteSeqno, if set, is this node's routing seqno at start: the
	// persisted one of its last life plus one, so that its adverts only
	// move forward (agent/ROUTESEQNO.md). Nil takes a random one, which
	// a neighbour that remembers an older life's adverts asks to raise.
	RouteSeqno *uint16
	// OnRouteSeqno, if set, is called on the routing goroutine with this
	// node's seqno after the router raised it, for the caller to persist
	// before the next start.
	OnRouteSeqno func(uint16)
	// TxEpoch is this start's transaction epoch, which must differ from
	// every earlier start's (< 1<<23; the mesh takes it modulo that): the
	// caller keeps a counter on disk (the agent: its data dir). 0 picks a
	// random one, which may repeat an earlier start's.
	TxEpoch uint32
	// TxTick is the transaction table's tombstone clock; default
	// DefaultTxTick. TxTombstone is how long an ended transaction's key
	// swallows frames in flight; default 2 × the heartbeat timeout.
	TxTick      time.Duration
	TxTombstone time.Duration
	// TxRelayCap bounds the transactions relayed per link; a CREATE over
	// it is refused with CodeBusy. Default DefaultTxRelayCap; < 0: none.
	TxRelayCap int
	// OnLinkFail, if set, is called when a lost link ended n open
	// transactions at this node with LINKFAIL (as endpoint or relay),
	// never with a lock held. It must not block for long.
	OnLinkFail func(peer uint64, n int)
	// ResumeWindow is how long the transactions pinned to a lost link
	// wait for it to come back (proto/peer/SPEC.md, "Sessions and
	// resume"): a link that reconnects within it resumes its session and
	// they go on with nothing lost; after it they end with LINKFAIL.
	// Routing takes the link for down at once either way. 0 means
	// DefaultResumeWindow; < 0 turns resume off (LINKFAIL at once).
	ResumeWindow time.Duration
	Logger       *slog.Logger
	Now          func() time.Time // default time.Now
}

// Mesh is this node's set of peer links.
type Mesh struct {
	cfg  Config
	log  *slog.Logger
	tab  *table
	mux  mux
	rt   *routing
	tx   *txns
	wg   sync.WaitGroup // every goroutine the mesh started
	runc chan struct{}  // closed when Run starts

	gate *acceptloop.Gate // connections not yet authenticated
	// refused logs refused connections: anyone can cause them at will.
	refused *acceptloop.RateLog
	// refusedHost logs failed handshakes, one line a period per host.
	refusedHost *acceptloop.KeyedRateLog

	// linkMu orders the table's link changes with the router's: a link's
	// end and its replacement reach both in the same order.
	linkMu sync.Mutex

	mu     sync.Mutex      // guards runCtx
	runCtx context.Context // Run's context; nil before Run and after it returned

	res resumes // sessions of lost links within their window
}

// New makes a Mesh. Handlers are added with Handle before Run.
func New(cfg Config) *Mesh {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReconnectMax <= 0 {
		cfg.ReconnectMax = 5 * time.Second
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = DefaultMaxHandshakes
	}
	if cfg.MaxHandshakesPerIP <= 0 {
		cfg.MaxHandshakesPerIP = DefaultMaxHandshakesPerIP
	}
	tab := newTable(cfg.Self, cfg.Peers, cfg.Now, cfg.Logger)
	// Refused connections log at most a line a second in all, and one a
	// period per remote host: anyone can cause them at will.
	refused := acceptloop.NewRateLog(cfg.Logger, time.Second, cfg.Now)
	if cfg.Link != nil {
		// The mesh's own copy: its HELLOs name where it listens, and the
		// table refuses a second node with an id in use.
		lc := *cfg.Link
		if lc.ListenAddr == "" && cfg.Listener != nil {
			lc.ListenAddr = cfg.Listener.Addr().String()
		}
		lc.Admit = tab.admit
		if cfg.ResumeWindow >= 0 && lc.Sessions == nil {
			lc.Sessions = transport.NewSessions(lc.QueueBytes)
		}
		if lc.Refusals == nil {
			ll := lc.Logger
			if ll == nil {
				ll = slog.New(slog.DiscardHandler)
			}
			lc.Refusals = acceptloop.NewKeyedRateLog(ll, refusalPeriod, cfg.Now).Within(acceptloop.NewRateLog(ll, time.Second, cfg.Now))
		}
		cfg.Link = &lc
	}
	tab.forgetAfter = cfg.ForgetAfter
	if cfg.RouteTick <= 0 {
		cfg.RouteTick = DefaultRouteTick
	}
	m := &Mesh{
		cfg: cfg, log: cfg.Logger, tab: tab, runc: make(chan struct{}),
		gate:        acceptloop.NewGate(cfg.MaxHandshakes, cfg.MaxHandshakesPerIP),
		refused:     refused,
		refusedHost: acceptloop.NewKeyedRateLog(cfg.Logger, refusalPeriod, cfg.Now).Within(refused),
	}
	if cfg.TxTick <= 0 {
		m.cfg.TxTick = DefaultTxTick
	}
	switch {
	case cfg.TxRelayCap == 0:
		m.cfg.TxRelayCap = DefaultTxRelayCap
	case cfg.TxRelayCap < 0:
		m.cfg.TxRelayCap = 0
	}
	if cfg.ResumeWindow == 0 {
		m.cfg.ResumeWindow = DefaultResumeWindow
	}
	m.res.init(m)
	m.rt = newRouting(m)
	m.tx = newTxns(m)
	m.mux.add(peer.OpRoutes, peer.OpSeqnoReq, m.rt.onFrame)
	return m
}

// refusalPeriod is how often one host's failed handshakes are logged: a
// peer with a wrong key retries every few seconds, forever.
const refusalPeriod = time.Minute

func hostOf(a net.Addr) string {
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// Handle serves the peer opcodes lo..hi (inclusive) with h. It must be
// called before Run; ranges must not overlap.
func (m *Mesh) Handle(lo, hi uint16, h Handler) {
	select {
	case <-m.runc:
		panic("mesh: Handle after Run")
	default:
	}
	m.mux.add(lo, hi, h)
}

// Addr is the address peers reach this node at.
func (m *Mesh) Addr() net.Addr { return m.cfg.Listener.Addr() }

// Run accepts peers and dials the configured ones until ctx is done. Then
// it closes the listener, says goodbye on every link and returns once every
// goroutine it started has ended.
func (m *Mesh) Run(ctx context.Context) error {
	m.mu.Lock()
	m.runCtx = ctx
	m.mu.Unlock()
	close(m.runc)
	m.wg.Go(func() { m.accept(ctx) })
	m.wg.Go(func() { m.rt.run(ctx, m.cfg.RouteTick) })
	m.wg.Go(func() { m.tx.run(ctx) })
	for _, p := range m.cfg.Peers {
		m.wg.Go(func() { m.dialLoop(ctx, p) })
	}
	<-ctx.Done()
	m.mu.Lock()
	m.runCtx = nil
	m.mu.Unlock()
	m.cfg.Listener.Close()
	var closing sync.WaitGroup
	for _, l := range m.tab.links() {
		closing.Go(func() { l.Close(proto.CodeShutdown, "agent shutting down") })
	}
	closing.Wait()
	m.wg.Wait()
	return nil
}

// AddPeer starts keeping a link to addr (corral join). A known address is
// not added twice.
func (m *Mesh) AddPeer(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrBadPeer, addr, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runCtx == nil {
		return ErrNotRunning
	}
	if !m.tab.configure(addr) {
		return nil
	}
	ctx := m.runCtx
	m.wg.Go(func() { m.dialLoop(ctx, addr) })
	return nil
}

// Link returns the live link to node id, or nil.
func (m *Mesh) Link(id uint64) *transport.Link { return m.tab.linkTo(id) }

// Links returns every live link.
func (m *Mesh) Links() []*transport.Link { return m.tab.links() }

// State returns what is known of node id's link; false if it was never
// linked.
func (m *Mesh) State(id uint64) (LinkState, bool) { return m.tab.state(id) }

// States lists every node ever linked, then configured addresses that no
// node answered from yet.
func (m *Mesh) States() []LinkState { return m.tab.all() }

// Send queues f for node to: on the direct link if there is one, else
// routed (Source this node, Target to) through the route's next hop. It
// does not wait for the frame to leave.
func (m *Mesh) Send(ctx context.Context, to uint64, f *proto.Frame) error {
	if l := m.tab.linkTo(to); l != nil {
		return l.Send(ctx, f)
	}
	return m.rt.sendRouted(ctx, to, f)
}

// Call sends the request f to node to and waits for its reply; an ABORT
// reply is returned as a *proto.Error. Without a direct link the request
// is routed, and so is its reply.
func (m *Mesh) Call(ctx context.Context, to uint64, f *proto.Frame) (*proto.Frame, error) {
	if l := m.tab.linkTo(to); l != nil {
		return l.Call(ctx, f)
	}
	return m.rt.call(ctx, to, f)
}

// Reachable reports whether frames for node id have a way: a direct link
// or a route.
func (m *Mesh) Reachable(id uint64) bool { return m.rt.nextHop(id) != nil }

// Reachability lists every node linked or routed to, now or before, by
// id, with how it is reached.
func (m *Mesh) Reachability() []Reach { return m.rt.reachability() }

// RouteStats returns the routing and forwarding counters.
func (m *Mesh) RouteStats() RouteStats { return m.rt.stats() }

// From is the node a received frame comes from: its Source when it was
// routed, else the link's peer.
func From(l *transport.Link, f *proto.Frame) uint64 {
	if Routed(f) {
		return f.Source
	}
	return l.Peer().NodeID
}

// Routed reports whether a received frame came over more than one hop
// (it carries its source and target).
func Routed(f *proto.Frame) bool { return f.Target != 0 && f.Source != 0 }

// receive serves one frame of a link: a transaction's goes to the
// transaction table, a one-shot for another node is relayed, a routed
// reply goes to its call, the rest to the handlers.
func (m *Mesh) receive(l *transport.Link, f *proto.Frame) error {
	if taken, err := m.tx.receive(l, f); taken {
		return err
	}
	if f.Target != 0 && f.Target != m.cfg.Self {
		m.rt.forward(f)
		return nil
	}
	if f.Target != 0 && f.Flags&proto.FlagReply != 0 {
		// A routed reply answers a routed call of this mesh; one nobody
		// waits for any more is dropped.
		m.rt.reply(f)
		return nil
	}
	if err := proto.CheckTLV(f.Ext, proto.TxExtKnown); err != nil {
		// A critical extension this build does not know: a routed
		// request is refused by its reply (a remote node's frame must
		// not end a relay's link), a link-local frame ends the link.
		if Routed(f) {
			if f.Flags&(proto.FlagReply|proto.FlagAbort) == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), forwardWait)
				l.Abort(ctx, f, err)
				cancel()
			}
			return nil
		}
		return err
	}
	return m.mux.dispatch(l, f)
}

// accept serves the peer listener. Connections beyond the handshake
// bounds are closed at once, before any TLS work, so junk cannot pile up
// goroutines and buffers; authenticated links no longer count.
func (m *Mesh) accept(ctx context.Context) {
	acceptloop.Serve(ctx, m.cfg.Listener, m.log, func(conn net.Conn) {
		release, err := m.gate.Enter(conn.RemoteAddr())
		if err != nil {
			conn.Close()
			m.refused.Log(slog.LevelWarn, "refused peer connection", "remote", conn.RemoteAddr().String(), "err", err.Error())
			return
		}
		m.wg.Go(func() {
			l, err := transport.Accept(ctx, conn, m.cfg.Link)
			release()
			if err != nil {
				m.refusedHost.Log(hostOf(conn.RemoteAddr()), slog.LevelWarn, "refused peer connection", "remote", conn.RemoteAddr().String(), "err", err.Error())
				return
			}
			m.serve(ctx, l, l.Peer().NodeID, "")
		})
	})
}

// serve registers a peer link and serves it until it ends. It returns the
// link that serves the node: l, or the one l was a duplicate of.
func (m *Mesh) serve(ctx context.Context, l *transport.Link, initiator uint64, addr string) *transport.Link {
	if addr == "" {
		addr = l.Peer().Addr.String()
	}
	m.linkMu.Lock()
	kept, displaced, fresh := m.tab.add(l, initiator, addr)
	if kept != l {
		m.linkMu.Unlock()
		l.Close(proto.CodeDup, "a link opened by the node with the smaller id is kept")
		return kept
	}
	// The router hears of the link before its reader starts, so no
	// advert on it can arrive first and be refused.
	m.rt.linkUp(l, fresh)
	m.linkMu.Unlock()
	if displaced != nil {
		m.wg.Go(func() {
			displaced.Close(proto.CodeDup, "a link opened by the node with the smaller id replaces this one")
		})
	}
	if ctx.Err() != nil {
		l.Close(proto.CodeShutdown, "agent shutting down")
	}
	l.Start(m.receive)
	if fresh {
		m.notify(LinkEvent{Peer: l.Peer(), Up: true})
	}
	<-l.Done()
	m.linkMu.Lock()
	last := m.tab.remove(l)
	if last {
		m.rt.linkDown(l.Peer().NodeID, errors.Is(l.Err(), proto.ErrDup))
	}
	m.linkMu.Unlock()
	// Every end, even one a new link replaced: frames of a transaction
	// may have been lost with this one. A session that can resume holds
	// them: its transactions wait for the window (resume.go).
	if !m.res.suspend(ctx, l) {
		m.tx.linkDown(l.Peer().NodeID)
	}
	if last {
		m.notify(LinkEvent{Peer: l.Peer(), Up: false, Err: l.Err()})
	}
	return l
}

func (m *Mesh) notify(ev LinkEvent) {
	if m.cfg.OnLink != nil {
		m.cfg.OnLink(ev)
	}
}

// dialLoop keeps a link to the peer at addr, redialing with backoff.
func (m *Mesh) dialLoop(ctx context.Context, addr string) {
	bo := transport.Backoff{Base: 50 * time.Millisecond, Max: m.cfg.ReconnectMax}
	reason := proto.ReasonJoin
	failing := false
	for ctx.Err() == nil && m.tab.configured(addr) {
		l, err := transport.Dial(ctx, addr, m.cfg.Link, reason)
		m.tab.dialed(addr, err)
		if errors.Is(err, proto.ErrNoPeer) {
			// The node there has this node's id: it is this node itself
			// (its own address in --peers) or a copy; dialing again
			// cannot help.
			m.log.Warn("not dialing a peer with this node's id", "addr", addr, "err", err.Error())
			return
		}
		if errors.Is(err, proto.ErrDupNode) {
			// The peer knows this node's id as another live node's: two
			// agents share an id, and retrying cannot change that.
			m.log.Error("not dialing a peer that has this node's id linked elsewhere", "addr", addr, "err", err.Error())
			return
		}
		if err != nil {
			if !failing && ctx.Err() == nil {
				m.log.Warn("cannot reach peer", "addr", addr, "err", err.Error())
			}
			failing = true
			sleep(ctx, bo.Next())
			continue
		}
		if failing {
			m.log.Info("peer reachable again", "addr", addr)
		}
		failing = false
		bo.Reset()
		reason = proto.ReasonRejoin
		kept := m.serve(ctx, l, m.cfg.Self, addr)
		// Whichever link serves the node, wait for it to end before
		// dialing again.
		select {
		case <-kept.Done():
		case <-ctx.Done():
			return
		}
		sleep(ctx, bo.Next())
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
