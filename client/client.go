package client

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// SocketName is the name of the client socket in an agent's data
// directory.
const SocketName = datadir.ClientSocketName

// Defaults for Options fields left zero.
const (
	DefaultMinBackoff = 50 * time.Millisecond
	DefaultMaxBackoff = 2 * time.Second
	// Heartbeats as the agent's local sockets use them.
	heartbeatInterval = time.Second
	heartbeatTimeout  = 10 * time.Second
	handshakeTimeout  = 5 * time.Second
)

// ErrClosed is returned by a Client's methods after Close.
var ErrClosed = errors.New("client: closed")

// Options configures a Client.
type Options struct {
	// Logger receives the client's log (links lost and regained, gaps);
	// nil discards it.
	Logger *slog.Logger
	// Classes are the event classes to receive; empty means all three.
	Classes []events.Class
	// Service receives the events. Nil makes a new one, which Events
	// returns and Close closes. Pass your own to register and activate
	// handles before Dial: events are delivered only to handles active
	// when their dispatch starts (seed §2.3), so a handle activated after
	// Dial misses what arrived before.
	Service *events.Service
	// Resume makes the first subscription resume after After: the agent
	// first sends the cluster-wide events above After it still holds. An
	// application that saved LastSeq resumes across its own restarts this
	// way. Without it the client receives the events published after
	// Dial.
	Resume bool
	After  uint64
	// Name identifies the client in the agent's log; default: the
	// program's name.
	Name string
	// MinBackoff and MaxBackoff space reconnection attempts: the wait
	// doubles from MinBackoff up to MaxBackoff, with jitter.
	MinBackoff, MaxBackoff time.Duration
	// OnGap, if set, is called when the agent reports that events after
	// the client's resume point may be lost (its history no longer holds
	// them). It runs on the link's reader goroutine before any event of
	// that link is delivered; keep it short.
	OnGap func(Gap)
	// OnDisconnect, if set, is called with the reason each time a link to
	// the agent ends (not on Close); the client then reconnects. It runs
	// on the client's goroutine; keep it short.
	OnDisconnect func(error)
	// Dial opens a connection to the socket at path; nil dials a unix
	// socket.
	Dial func(ctx context.Context, path string) (net.Conn, error)
	// OnSessionLost, if set, is called when the client's member session
	// ends without its asking: the agent restarted, or closed the session
	// because the client fell behind further than the agent holds events.
	// Its Members are gone (ErrSessionLost); the client may Join again. It
	// runs on the client's goroutine or a link's reader, without the
	// client's lock; keep it short.
	OnSessionLost func(member uint64, err error)
	// GroupBuffer, if positive, makes Deliveries a channel of that
	// capacity that receives every group event too, in seq order. A
	// full channel stops the client reading; the agent then drops the
	// link as too far behind, and the client attaches and resumes.
	GroupBuffer int
	// MaxVersion, if set, is the highest client protocol version the
	// client offers (at least 2 for group messaging): a program pinned to
	// an older protocol, or a test of an agent serving old clients. 0
	// offers every version this build speaks.
	MaxVersion uint8
}

// Gap is what the agent said when the client resumed after a sequence
// number it no longer holds the events after.
type Gap struct {
	After  uint64 // the client's resume point: the last Seq it delivered
	Floor  uint64 // the agent holds only the cluster-wide events above Floor
	Latest uint64 // the agent's latest Seq
}

func (g Gap) String() string {
	return fmt.Sprintf("events %d..%d may be lost (agent holds events after %d, latest %d)", g.After+1, g.Floor, g.Floor, g.Latest)
}

// Client is an application's connection to the agent on its node. It
// feeds the cluster events the agent sends into an events.Service and
// reconnects, resuming where it left off, when the link drops or the agent
// restarts. Its methods are safe for concurrent use.
type Client struct {
	path string
	opts Options
	log  *slog.Logger
	svc  *events.Service
	own  bool // svc was made by Dial: Close closes it
	cfg  *transport.Config
	mask wire.ClassMask

	ctx    context.Context // the client's lifetime; cancelled by Close
	cancel context.CancelFunc
	done   chan struct{} // closed when run has returned

	mu     sync.Mutex // guards the fields below
	closed bool
	cur    *transport.Link // the link whose EVENTs are delivered; nil between links
	link   *transport.Link // cur, once its subscription is confirmed; nil otherwise
	linkUp chan struct{}   // closed when link becomes non-nil
	sub    *subscribing    // the SUBSCRIBE waiting for its reply
	subID  uint64          // msg id of cur's SUBSCRIBE, which its EVENTs carry
	last   uint64          // highest Seq published into svc (or skipped by asking for new events only)
	resume bool            // the next SUBSCRIBE resumes after last

	// Group messaging (groups.go), guarded by mu.
	session  *session // the member session, once a JOIN or SEND opened it
	window   int      // sends this client keeps in flight at most
	inflight int      // sends in flight
	// windowBytes bounds the payload of the sends in flight, as the
	// agent's window does; inflightBytes is it now.
	windowBytes, inflightBytes int
	space                      chan struct{} // closed and replaced when a send ends, if spaceWanted
	spaceWanted                bool          // a send waits on space
	waits                      atomic.Uint64 // sends that waited for (or were refused by) a full window
	batches, batched           atomic.Uint64 // GROUP_SEND_BATCHes sent, and the messages they carried

	// The send path (sendbatch.go).
	smu      sync.Mutex     // guards sendQ and lastSend
	sendQ    []*Sending     // sends for the flusher, in the order they were started
	lastSend *Sending       // the send started last
	sendKick chan struct{}  // cap 1: sendQ has work
	sendWG   sync.WaitGroup // the flusher and the waiters of its batches

	deliveries chan events.Event // nil unless Options.GroupBuffer > 0
	dmu        sync.Mutex        // held by the reader delivering an event; taken before mu

	// The node-wide dispatch (dispatch.go).
	fmu     sync.Mutex                         // guards fifo and sentCB; taken after the service's lock and mu, never before
	fifo    []published                        // events handed to the service, oldest first, until completed and reported
	fnext   int                                // fifo[:fnext] are all done: where completed looks first
	fwait   int                                // entries of fifo flagged awaited: with none, nothing is left to report
	sentCB  map[*transport.Link]wire.Callbacks // what each v3 link was last told
	kick    chan struct{}                      // cap 1: the reporter has work
	reports sync.WaitGroup                     // the reporter goroutine
}

// subscribing is a SUBSCRIBE in flight on link l.
type subscribing struct {
	l      *transport.Link
	msgID  uint64
	resume bool
	after  uint64         // with resume: the resume point asked for
	reply  chan subResult // cap 1
}

type subResult struct {
	rep wire.SubscribeReply
	err error
}

// Dial connects to the agent whose data directory, or client socket, is
// path, subscribes to the classes of opts and returns the running client.
// Events published after Dial returns are delivered (and with
// opts.Resume, those after opts.After the agent still holds). It fails if
// the first connection or subscription fails; after that the client
// reconnects by itself until Close. An error from a socket this process
// may not open matches fs.ErrPermission (errors.Is) and says "permission
// denied": retrying will not help.
func Dial(ctx context.Context, path string, opts Options) (*Client, error) {
	path = SocketPath(path)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Name == "" {
		opts.Name = filepath.Base(os.Args[0])
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff < opts.MinBackoff {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Dial == nil {
		opts.Dial = func(ctx context.Context, path string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
	}
	mask := wire.AllClasses
	if len(opts.Classes) > 0 {
		for _, cl := range opts.Classes {
			if !cl.Valid() {
				return nil, fmt.Errorf("client: %w: %d", events.ErrBadClass, cl)
			}
		}
		mask = wire.MaskOf(opts.Classes...)
	}
	log := opts.Logger.With("subsystem", "client", "socket", path)
	c := &Client{
		path:   path,
		opts:   opts,
		log:    log,
		svc:    opts.Service,
		mask:   mask,
		done:   make(chan struct{}),
		linkUp: make(chan struct{}),
		last:   opts.After,
		resume: opts.Resume,
		window: defaultWindow, windowBytes: defaultWindowBytes,
		space: make(chan struct{}), sendKick: make(chan struct{}, 1),
		cfg: &transport.Config{NodeName: opts.Name, Protocols: protos.All(), HandshakeTimeout: handshakeTimeout,
			HeartbeatInterval: heartbeatInterval, HeartbeatTimeout: heartbeatTimeout, Logger: log},
	}
	if opts.MaxVersion != 0 {
		c.cfg.Ranges = protos.Ranges()
		for i := range c.cfg.Ranges {
			if r := &c.cfg.Ranges[i]; r.Proto == proto.ProtoClient {
				r.Max = min(max(opts.MaxVersion, r.Min), r.Max)
			}
		}
	}
	if c.svc == nil {
		c.svc, c.own = events.New(events.Options{Logger: opts.Logger}), true
	}
	if opts.GroupBuffer > 0 {
		c.deliveries = make(chan events.Event, opts.GroupBuffer)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.startReports()
	l, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		c.reports.Wait()
		if c.own {
			c.svc.Close()
		}
		return nil, err
	}
	c.sendWG.Add(1)
	go c.flusher()
	go c.run(l)
	return c, nil
}

// dialError says why the socket at path could not be dialed. A
// permission error is not a missing agent: it names what to change, and
// matches fs.ErrPermission so callers stop retrying.
func dialError(path string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return &proto.Error{Code: proto.CodeSock, Detail: "permission denied on " + path +
			" (the agent's client socket: run as a member of its --client-socket-group)", Err: err}
	}
	return &proto.Error{Code: proto.CodeSock, Detail: "no agent at " + path, Err: err}
}

// SocketPath returns the client socket of the agent whose data directory
// is path, or path itself if it is not a directory.
func SocketPath(path string) string {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return datadir.ClientSocket(path)
	}
	return path
}

// Events returns the service the client feeds: register handles, set
// callbacks and activate them as package events describes.
func (c *Client) Events() *events.Service { return c.svc }

// LastSeq returns the highest cluster-wide sequence number the client has
// handed to its service: the point it resumes after. An application that
// saves it can resume there after its own restart (Options.Resume).
func (c *Client) LastSeq() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last
}

// Close ends the link to the agent (GOODBYE), stops reconnecting and, if
// Dial made the service, closes it. It returns ErrClosed if called twice.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	<-c.done
	c.sendWG.Wait()
	c.reports.Wait()
	if c.own {
		c.svc.Close()
	}
	return nil
}

// connect opens a link, subscribes and waits for the reply. On success the
// link is the client's current one.
func (c *Client) connect(ctx context.Context) (*transport.Link, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*handshakeTimeout)
	defer cancel()
	conn, err := c.opts.Dial(ctx, c.path)
	if err != nil {
		return nil, dialError(c.path, err)
	}
	l, err := transport.Connect(ctx, conn, c.cfg, proto.ReasonClient)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		l.Close(proto.CodeShutdown, "client closing")
		return nil, ErrClosed
	}
	sub := &subscribing{l: l, msgID: l.NextMsgID(), resume: c.resume, reply: make(chan subResult, 1)}
	req := wire.Subscribe{Classes: c.mask}
	if sub.resume {
		req.Flags, req.After = wire.SubResume, c.last
		sub.after = c.last
	}
	c.cur, c.sub, c.subID = l, sub, sub.msgID
	c.mu.Unlock()

	dec := new(wire.EventDecoder) // the link's: only its reader decodes
	l.Start(func(l *transport.Link, f *proto.Frame) error { return c.handle(l, dec, f) })
	if err := c.reattach(ctx, l); err != nil {
		l.Close(proto.CodeShutdown, "attach failed")
		return nil, err
	}
	// Version 3: take part in the node-wide dispatch before the first
	// event, so that none arrives outside it.
	if err := c.sendCallbacks(ctx, l); err != nil {
		l.Close(proto.CodeShutdown, "CALLBACKS failed")
		return nil, err
	}
	f := proto.Frame{Header: proto.Header{Opcode: wire.OpSubscribe, MsgID: sub.msgID, Flags: proto.FlagCreate | proto.FlagDelete},
		Body: wire.AppendSubscribe(nil, &req)}
	var res subResult
	if err := l.Send(ctx, &f); err != nil {
		res.err = err
	} else {
		select {
		case res = <-sub.reply:
		case <-l.Done():
			res.err = fmt.Errorf("client: agent closed the link before answering SUBSCRIBE: %w", l.Err())
		case <-ctx.Done():
			res.err = &proto.Error{Code: proto.CodeTimeout, Detail: "no answer to SUBSCRIBE", Err: ctx.Err()}
		}
	}
	if res.err != nil {
		c.mu.Lock()
		if c.cur == l {
			c.cur, c.sub = nil, nil
		}
		c.mu.Unlock()
		l.Close(proto.CodeShutdown, "subscription failed")
		return nil, res.err
	}
	rep := res.rep
	c.log.Debug("subscribed", "classes", fmt.Sprint(c.mask.Classes()), "resume", sub.resume, "after", req.After, "latest", rep.Latest, "floor", rep.Floor)
	if sub.resume && rep.Latest != 0 && rep.Latest < req.After {
		c.log.Warn("the agent's latest seq is below the resume point: was the cluster re-created? events at or below the resume point will be dropped", "after", req.After, "latest", rep.Latest)
	}
	c.mu.Lock()
	if c.cur == l {
		c.link = l
		close(c.linkUp)
	}
	c.mu.Unlock()
	return l, nil
}

// run keeps the client connected until Close: when the link ends it
// reconnects with backoff and resumes after the last seq delivered.
func (c *Client) run(l *transport.Link) {
	defer close(c.done)
	bo := transport.Backoff{Base: c.opts.MinBackoff, Max: c.opts.MaxBackoff}
	for {
		select {
		case <-l.Done():
		case <-c.ctx.Done():
			l.Close(proto.CodeShutdown, "client closing")
			c.lost(l)
			return
		}
		err := l.Err()
		c.lost(l)
		c.log.Info("link to the agent lost; reconnecting", "err", err.Error())
		if c.opts.OnDisconnect != nil {
			c.opts.OnDisconnect(err)
		}
		for failing := false; ; failing = true {
			if !sleep(c.ctx, bo.Next()) {
				return
			}
			nl, err := c.connect(c.ctx)
			if err == nil {
				l = nl
				bo.Reset()
				c.log.Info("reconnected to the agent", "resume_after", c.LastSeq())
				break
			}
			if c.ctx.Err() != nil {
				return
			}
			if !failing {
				c.log.Warn("cannot reach the agent; retrying", "err", err.Error())
			}
		}
	}
}

// lost forgets link l. The link fails the queries waiting on it.
func (c *Client) lost(l *transport.Link) {
	c.mu.Lock()
	if c.cur == l {
		c.cur, c.sub = nil, nil
	}
	if c.link == l {
		c.link = nil
		c.linkUp = make(chan struct{})
	}
	c.mu.Unlock()
	c.fmu.Lock()
	delete(c.sentCB, l)
	c.fmu.Unlock()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// handle receives the frames of the client's links, on each link's reader
// goroutine, which decodes events with the link's dec. A frame the agent
// should not have sent ends that link.
func (c *Client) handle(l *transport.Link, dec *wire.EventDecoder, f *proto.Frame) error {
	isReply := f.Flags&proto.FlagReply != 0
	switch {
	case f.Opcode == wire.OpEvent && !isReply:
		ev, flags, err := dec.Event(l.Peer().Version, f.Body)
		if err != nil {
			return err
		}
		return c.deliver(l, f.MsgID, ev, flags&wire.EventAwaitDone != 0)
	case f.Opcode == wire.OpEventBatch && !isReply:
		// The opcode table refuses it on links before version 5.
		evs, err := dec.Batch(l.Peer().Version, f.Body)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			if err := c.deliver(l, f.MsgID, ev, false); err != nil {
				return err
			}
		}
		return nil
	case f.Opcode == wire.OpSubscribe && isReply:
		res := subResult{}
		if f.Flags&proto.FlagAbort != 0 {
			st, err := proto.ParseStatus(f.Body, "SUBSCRIBE failure")
			if err != nil {
				return err
			}
			res.err = fmt.Errorf("client: agent refused SUBSCRIBE: %w", st.Err())
		} else if res.rep, res.err = wire.ParseSubscribeReply(f.Body); res.err != nil {
			return res.err
		}
		c.mu.Lock()
		sub := c.sub
		if sub == nil || sub.l != l || sub.msgID != f.MsgID {
			c.mu.Unlock()
			return proto.Errorf(proto.CodeState, "SUBSCRIBE reply with msg id %d, none pending", f.MsgID)
		}
		if res.err == nil {
			if !sub.resume {
				// The client asked for the events after Latest: it has
				// seen everything before, as far as resuming goes.
				c.last = max(c.last, res.rep.Latest)
			}
			c.resume = true
		}
		c.sub = nil
		c.mu.Unlock()
		if res.err == nil && res.rep.Gap() {
			// Here, on the link's reader, so that the gap is reported
			// before any event of this link is delivered.
			g := Gap{After: sub.after, Floor: res.rep.Floor, Latest: res.rep.Latest}
			c.log.Warn("the agent no longer holds some events after the resume point", "gap", g.String())
			if c.opts.OnGap != nil {
				c.opts.OnGap(g)
			}
		}
		sub.reply <- res
		return nil
	}
	// Query replies go to Link.Call; one that reaches here answers
	// nothing asked.
	return proto.Errorf(proto.CodeState, "the agent sent %s with flags %#x, which a client does not expect", opName(f.Opcode), f.Flags)
}

func opName(op uint16) string { return wire.Ops().Name(op) }

// deliver hands an event of link l to the service, once: a cluster-wide
// event at or below the last Seq delivered is dropped (the service would
// refuse it too).
func (c *Client) deliver(l *transport.Link, msgID uint64, ev events.Event, awaited bool) error {
	// One reader at a time delivers, so an old link's reader still
	// waiting on Deliveries keeps its place before the new link's events.
	c.dmu.Lock()
	defer c.dmu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur != l {
		return nil // a late frame of a link being replaced
	}
	if c.sub != nil || msgID != c.subID {
		return proto.Errorf(proto.CodeState, "EVENT with msg id %d before or outside the subscription (msg id %d)", msgID, c.subID)
	}
	if !c.mask.Has(ev.Desc.Class()) {
		return proto.Errorf(proto.CodeState, "EVENT %v of a class the client did not subscribe to", ev.Desc)
	}
	p := published{l: l, msgID: msgID, seq: ev.Seq, desc: ev.Desc, awaited: awaited}
	if ev.Seq != 0 && ev.Seq <= c.last {
		c.log.Debug("dropping an event already delivered", "event", ev.String(), "last", c.last)
		c.report(p) // complete: the service had it
		return nil
	}
	c.pushPublished(p)
	err := c.svc.Publish(ev)
	if err != nil {
		c.refused() // never in the service: complete at once
	}
	switch {
	case err == nil:
	case errors.Is(err, events.ErrStaleSeq):
		c.log.Debug("the service already had this event", "event", ev.String())
	default:
		c.log.Warn("the service refused an event", "event", ev.String(), "err", err)
		return nil
	}
	if ev.Seq != 0 {
		c.last = ev.Seq
	}
	if g := ev.Group(); g != nil && ev.Desc == events.GSLeave && c.session != nil && g.From.Member == c.session.member && g.Reason != events.LeaveLeft {
		// The agent closed this client's session (it fell behind past
		// what the agent holds): its Members are gone.
		c.log.Warn("the agent closed this client's member session", "member", g.From.Member, "reason", g.Reason.String())
		c.session = nil
		if c.opts.OnSessionLost != nil {
			// Without the lock: the callback may call the client.
			c.mu.Unlock()
			c.opts.OnSessionLost(g.From.Member, fmt.Errorf("%w: LEAVE, reason %v", ErrSessionLost, g.Reason))
			c.mu.Lock()
		}
	}
	if c.deliveries != nil && ev.Desc.Class() == events.ClassGroup {
		// In order: only this link's reader delivers. Waiting here is
		// the back-pressure a slow consumer gives the agent.
		c.mu.Unlock()
		select {
		case c.deliveries <- ev:
		case <-c.ctx.Done():
		}
		c.mu.Lock()
	}
	return nil
}

// Deliveries returns the channel of group events (Options.GroupBuffer),
// or nil. It is never closed.
func (c *Client) Deliveries() <-chan events.Event { return c.deliveries }

// reattach adopts the client's member session on the new link l before
// it subscribes, so that the resumed stream carries the member's events.
// A session the agent no longer has is lost: the Members of it fail
// with ErrSessionLost and the client joins anew.
func (c *Client) reattach(ctx context.Context, l *transport.Link) error {
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s == nil {
		return nil
	}
	if s.token == 0 {
		// A session a send opened has no token to attach with.
		c.mu.Lock()
		c.session = nil
		c.mu.Unlock()
		return nil
	}
	err := c.attach(ctx, l, *s)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, proto.ErrNoMember):
		c.log.Warn("the agent no longer has this client's member session; join again", "member", s.member, "err", err.Error())
		c.mu.Lock()
		if c.session == s {
			c.session = nil
		}
		c.mu.Unlock()
		if c.opts.OnSessionLost != nil {
			c.opts.OnSessionLost(s.member, err)
		}
		return nil
	}
	return fmt.Errorf("client: attach member %#x: %w", s.member, err)
}

// waitLink returns the current subscribed link, waiting for one while the
// client reconnects.
func (c *Client) waitLink(ctx context.Context) (*transport.Link, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		l, up := c.link, c.linkUp
		c.mu.Unlock()
		if l != nil {
			return l, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

func (c *Client) query(ctx context.Context, op uint16) (events.Data, error) {
	l, err := c.waitLink(ctx)
	if err != nil {
		return nil, err
	}
	// Close ends the wait too.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()
	rep, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: op}})
	switch {
	case err == nil:
	case c.ctx.Err() != nil:
		return nil, ErrClosed
	case errors.Is(err, transport.ErrClosed):
		return nil, fmt.Errorf("client: link to the agent lost: %w", err)
	case ctx.Err() != nil:
		return nil, err
	default:
		return nil, fmt.Errorf("client: agent refused %s: %w", opName(op), err)
	}
	if op == wire.OpQueryMembership {
		m, err := wire.ParseMembership(rep.Body)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	cn, err := wire.ParseConnectivity(rep.Body)
	if err != nil {
		return nil, err
	}
	return cn, nil
}

// Membership asks the agent for the current view (the seed's consensus
// list of members with their relative age, BornOn), with the nodes that
// joined and left in the change that made it. Instance 0 means the agent
// has no view yet. The answer reflects the agent's state when it arrived
// there, which may be ahead of the events delivered so far. While the
// client reconnects it waits for the link, up to ctx.
func (c *Client) Membership(ctx context.Context) (*events.Membership, error) {
	d, err := c.query(ctx, wire.OpQueryMembership)
	if err != nil {
		return nil, err
	}
	return d.(*events.Membership), nil
}

// Connectivity asks the agent for the seed's connectivity lists: known
// local interfaces with their health and known nodes with their current
// connection state (Interfaces and Peers; the subject fields are empty).
func (c *Client) Connectivity(ctx context.Context) (*events.Connectivity, error) {
	d, err := c.query(ctx, wire.OpQueryConnectivity)
	if err != nil {
		return nil, err
	}
	return d.(*events.Connectivity), nil
}
