package mesh

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/mesh/tx"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/transport"
)

// Streaming transactions (proto/SPEC.md §2.7 "Transactions across
// relays"): the mesh feeds one mesh/tx table from the links and from the
// local Tx calls, and writes what it says to send on the direct link it
// names (a LinkID is the neighbour's node id).
//
// Which routed frames are the table's: every frame with Source and
// Target set that is not a one-shot, i.e. whose CREATE|DELETE is not both
// set (a stream's CREATE, every later frame), and a CREATE|DELETE whose key
// the table holds (a stream's last frame in one, a terminal ABORT). The
// rest (routed requests of Send and Call, their replies and the relays'
// bounces) keep the stateless path of routing.go. Msg ids cannot mix the
// two up: a transaction's have bit 63 clear, a routed call's set.

// Defaults of the transaction configuration.
const (
	DefaultTxTick     = 250 * time.Millisecond // tombstone clock
	DefaultTxRelayCap = 1 << 16                // relayed transactions per link
)

const (
	// txForwardWait bounds how long a frame waits to enter the session
	// of a lost link that may resume: well under a heartbeat timeout,
	// since the reader answers PINGs too.
	txForwardWait = 100 * time.Millisecond
	// txBacklogMax bounds the bytes of transaction frames one link holds
	// behind its full send queue (txns.backlog). Each transaction's
	// window bounds what it can put there, so only many transactions at
	// full speed over a link that stopped moving reach it; beyond it a
	// frame ends its transaction with CodeBusy.
	txBacklogMax = 16 * TxWindow
	// TxWindow is the window of each direction of a transaction (proto
	// SPEC.md §2.7 "Flow control"): the bytes of body a sender may have
	// sent beyond what the receiver's application has consumed.
	TxWindow = 256 << 10
	// callMsgIDBit is set in every routed call's msg id and clear in every
	// transaction's (the tx epoch is < 1<<23).
	callMsgIDBit = uint64(1) << 63
	txEpochLimit = 1 << 23
)

// ErrTxHandler is the text of the ABORT a transaction for an opcode with
// no HandleTx handler gets.
var ErrTxHandler = errors.New("mesh: no transaction handler for the opcode")

// TxHandler serves one incoming transaction. It runs on its own
// goroutine, which the mesh waits for when Run returns: it must return
// once the transaction is over (Recv returns an error, Done is closed).
type TxHandler func(t *Tx)

// TxStats counts transactions at this node.
type TxStats struct {
	Open       int    // open transactions (as initiator, responder or relay)
	Tombstones int    // ended keys still swallowing frames in flight
	Relayed    uint64 // transaction frames forwarded
	// RelayedBytes counts their bodies' bytes.
	RelayedBytes uint64
	Dropped      uint64 // transaction frames swallowed (tombstone, off path, closed direction)
	LinkFails    uint64 // LINKFAILs this node originated: one per transaction a lost link ended here
	SendDrops    uint64 // frames that found no room on their link in time: each ended its transaction (CodeBusy)
	Grants       uint64 // window frames sent
	Waits        uint64 // sends that waited for the receiver's window
	Backlogged   uint64 // frames that found their link's send queue full and waited behind it (txns.send)
	// Resumes and ResumeFails count lost links that came back within the
	// resume window, and those that did not (their transactions failed).
	Resumes, ResumeFails uint64
}

type txRange struct {
	lo, hi uint16
	h      TxHandler
}

type linkFail struct {
	peer uint64
	n    int
}

// txns is the mesh's transaction table and what it delivers to.
type txns struct {
	m        *Mesh
	handlers []txRange // filled before Run, read-only after

	// mu guards tab, open and the scratch slices, and orders the frames
	// the table sends: they are queued on their links under it, so each
	// link gets them in the table's order.
	mu      sync.Mutex
	tab     *tx.Table
	open    map[tx.Key]*Tx // transactions of this node's application
	msgs    []tx.Out
	dels    []tx.Delivery
	starts  []func()   // handlers to start once mu is released
	from    tx.LinkID  // the link of the frame being stepped
	failed  []linkFail // OnLinkFail calls to make once mu is released
	tombTTL int

	sendDrops atomic.Uint64
	grants    atomic.Uint64

	lateMu sync.Mutex                   // guards late
	late   map[*transport.Link]*backlog // frames waiting for room, per link; a key exists while its drainer runs
	waits  atomic.Uint64

	backlogged atomic.Uint64
}

// tryCtx is done from the start: a link Send with it queues the frame if
// there is room now and returns at once otherwise, without the timer a
// deadline costs on every forwarded frame.
var tryCtx = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

func newTxns(m *Mesh) *txns {
	x := &txns{m: m, open: map[tx.Key]*Tx{}}
	epoch := m.cfg.TxEpoch % txEpochLimit
	if epoch == 0 {
		// No epoch kept for this start: a random one, which may repeat
		// an earlier start's (1 in 2^23).
		var b [4]byte
		crand.Read(b[:])
		epoch = binary.LittleEndian.Uint32(b[:])%(txEpochLimit-1) + 1
	}
	ttl := m.cfg.TxTombstone
	if ttl <= 0 {
		hb := transport.DefaultHeartbeatTimeout
		if m.cfg.Link != nil && m.cfg.Link.HeartbeatTimeout > 0 {
			hb = m.cfg.Link.HeartbeatTimeout
		}
		ttl = 2 * hb
	}
	x.tombTTL = int((ttl + m.cfg.TxTick - 1) / m.cfg.TxTick)
	tab, err := tx.New(tx.Config{Self: tx.NodeID(m.cfg.Self), Epoch: epoch, Route: x.route, RelayCap: m.cfg.TxRelayCap, TombstoneTicks: x.tombTTL})
	if err != nil {
		// Only a zero Self gets here: a mesh without an id carries no
		// transactions, and Open says so.
		m.log.Error("mesh: transactions disabled", "err", err)
	}
	x.tab = tab
	return x
}

// route is the table's Route: the neighbour a frame for target leaves to.
func (x *txns) route(target tx.NodeID) (tx.LinkID, bool) {
	l := x.m.rt.nextHop(uint64(target))
	if l == nil {
		return tx.Local, false
	}
	return tx.LinkID(l.Peer().NodeID), true
}

// HandleTx serves incoming transactions whose opcode is in lo..hi
// (inclusive) with h, each on its own goroutine. It must be called before
// Run; ranges must not overlap. A transaction for an opcode without a
// handler is aborted with CodeOpcode. The opcodes must be defined by the
// peer protocol (links refuse others): peer.OpStream is the generic one.
func (m *Mesh) HandleTx(lo, hi uint16, h TxHandler) {
	select {
	case <-m.runc:
		panic("mesh: HandleTx after Run")
	default:
	}
	if lo > hi || h == nil {
		panic("mesh: bad transaction handler range")
	}
	for _, r := range m.tx.handlers {
		if lo <= r.hi && r.lo <= hi {
			panic("mesh: overlapping transaction handler ranges")
		}
	}
	m.tx.handlers = append(m.tx.handlers, txRange{lo, hi, h})
}

func (x *txns) handler(op uint16) TxHandler {
	for _, r := range x.handlers {
		if op >= r.lo && op <= r.hi {
			return r.h
		}
	}
	return nil
}

// Tx is one streaming transaction at one of its ends. Send, Close and
// Abort may be called from any goroutine; Recv from one at a time.
type Tx struct {
	x    *txns
	key  tx.Key
	peer uint64
	op   uint16
	init bool
	hop  tx.LinkID     // the neighbour its frames leave to; set before t is shared
	done chan struct{} // closed when the transaction is over at this node
	wake chan struct{} // cap 1: a frame was queued

	credit chan struct{} // cap 1: the window grew

	mu   sync.Mutex // guards q, end, over, err and the window fields
	q    []txItem   // received, not yet taken by Recv
	end  error      // what Recv returns once q is empty and the other direction is closed; nil while open
	over bool
	err  error // the error that ended the transaction, if any

	// window is what this end may still send (it may go below zero by
	// one frame); unlimited once the other direction is closed, since
	// its end can grant no more. consumed counts the bytes Recv handed
	// out since the last grant; noGrant is set once this end's own
	// direction is closed and grants cannot be sent.
	window    int64
	unlimited bool
	consumed  int
	noGrant   bool
}

type txItem struct {
	f   *proto.Frame
	err error
}

// Key names the transaction cluster-wide: {initiator, msg id}.
func (t *Tx) Key() tx.Key { return t.key }

// Peer is the node at the other end.
func (t *Tx) Peer() uint64 { return t.peer }

// Opcode is the transaction's opcode.
func (t *Tx) Opcode() uint16 { return t.op }

// Initiator reports whether this node opened the transaction.
func (t *Tx) Initiator() bool { return t.init }

// Done is closed when the transaction is over at this node: DELETE passed
// both ways, or an ABORT ended it (Err says which).
func (t *Tx) Done() <-chan struct{} { return t.done }

// Err returns the error that ended the transaction (a *proto.Error:
// errors.Is(err, proto.ErrLinkFail) for a lost link), nil if it ended by
// DELETE both ways or is still open.
func (t *Tx) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.err
}

// Recv returns the next frame the other end sent, in order. A frame with
// ABORT is returned with its error (a *proto.Error); ABORT|DELETE or a
// terminal ABORT (LINKFAIL, …) ends the direction, and every later Recv
// returns that error. DELETE ends the direction: its body, if any, comes
// as a last frame, then Recv returns io.EOF. The frame's Body and Ext
// are the caller's.
func (t *Tx) Recv(ctx context.Context) (*proto.Frame, error) {
	for {
		t.mu.Lock()
		if len(t.q) > 0 {
			it := t.q[0]
			t.q[0] = txItem{}
			t.q = t.q[1:]
			grant := 0
			if it.f != nil && len(it.f.Body) > 0 {
				t.consumed += len(it.f.Body)
				if t.consumed >= TxWindow/2 && !t.noGrant && t.end == nil {
					grant, t.consumed = t.consumed, 0
				}
			}
			t.mu.Unlock()
			if grant > 0 {
				t.grant(ctx, grant)
			}
			if it.f == nil {
				return nil, it.err
			}
			return it.f, it.err
		}
		end := t.end
		t.mu.Unlock()
		if end != nil {
			return nil, end
		}
		select {
		case <-t.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// grant tells the other end it may send n more bytes (a window frame).
// A grant that cannot be sent is not retried: the transaction is ending
// (the table refuses) or ctx ended, and the next Recv grants again.
func (t *Tx) grant(ctx context.Context, n int) {
	f := proto.Frame{Ext: proto.AppendTxExt(nil, proto.TxExt{Window: uint32(n)})}
	err := t.x.local(ctx, t, len(f.Ext), func() error { return t.x.tab.Send(t.key, f) })
	switch {
	case err == nil:
		t.x.grants.Add(1)
	case errors.Is(err, tx.ErrClosed):
		t.mu.Lock()
		t.noGrant = true
		t.mu.Unlock()
	default:
		t.mu.Lock()
		t.consumed += n
		t.mu.Unlock()
	}
}

// reserve takes n bytes of this end's window, waiting while it is used
// up. A transaction that is over does not wait: the table refuses the
// send with the reason.
func (t *Tx) reserve(ctx context.Context, n int) error {
	if n == 0 {
		return nil
	}
	waited := false
	for {
		t.mu.Lock()
		if t.over || t.unlimited || t.window > 0 {
			t.window -= int64(n)
			t.mu.Unlock()
			return nil
		}
		t.mu.Unlock()
		if !waited {
			waited = true
			t.x.waits.Add(1)
		}
		select {
		case <-t.credit:
		case <-t.done:
		case <-ctx.Done():
			return fmt.Errorf("mesh: transaction %v: waiting for the receiver's window: %w", t.key, ctx.Err())
		}
	}
}

// windowFrame reports a frame that only grants window: it is not
// delivered.
func windowFrame(f *proto.Frame) (uint32, bool) {
	if len(f.Body) > 0 || len(f.Ext) == 0 || f.Flags&(proto.FlagDelete|proto.FlagAbort) != 0 {
		return 0, false
	}
	e, err := proto.ParseTxExt(f.Ext)
	if err != nil || e.Window == 0 {
		return 0, false
	}
	return e.Window, true
}

// push queues a delivery for Recv; called under x.mu.
func (t *Tx) push(d *tx.Delivery) {
	if n, ok := windowFrame(&d.Frame); ok && d.Err == nil && !d.Closed {
		t.mu.Lock()
		t.window += int64(n)
		t.mu.Unlock()
		signal(t.credit)
		return
	}
	if d.Frame.Flags&proto.FlagDelete != 0 {
		t.mu.Lock()
		t.unlimited = true
		t.mu.Unlock()
		signal(t.credit)
	}
	f := &proto.Frame{Header: d.Frame.Header}
	if len(d.Frame.Body) > 0 {
		f.Body = slices.Clone(d.Frame.Body)
	}
	if len(d.Frame.Ext) > 0 {
		f.Ext = slices.Clone(d.Frame.Ext)
	}
	t.mu.Lock()
	switch {
	case d.Err != nil:
		t.q = append(t.q, txItem{f, d.Err})
		if f.Flags&proto.FlagDelete != 0 {
			t.end = d.Err
		}
	case f.Flags&proto.FlagDelete != 0:
		if len(f.Body) > 0 {
			t.q = append(t.q, txItem{f: f})
		}
		t.end = io.EOF
	default:
		t.q = append(t.q, txItem{f: f})
	}
	if d.Closed {
		t.finishLocked(d.Err)
	}
	t.mu.Unlock()
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *Tx) finishLocked(err error) {
	if t.over {
		return
	}
	t.over, t.err = true, err
	if t.end == nil {
		t.end = io.EOF
	}
	close(t.done)
}

// Send sends body on the transaction, in this end's direction. It waits
// while the receiver's window is used up (TxWindow, proto SPEC.md §2.7),
// or ctx ends.
func (t *Tx) Send(ctx context.Context, body []byte) error {
	if err := t.reserve(ctx, len(body)); err != nil {
		return err
	}
	return t.x.local(ctx, t, len(body), func() error { return t.x.tab.Send(t.key, proto.Frame{Body: body}) })
}

// CloseWith sends body as this direction's last frame (DATA with DELETE),
// waiting for window as Send does.
func (t *Tx) CloseWith(ctx context.Context, body []byte) error {
	if err := t.reserve(ctx, len(body)); err != nil {
		return err
	}
	return t.x.local(ctx, t, len(body), func() error {
		return t.x.tab.Send(t.key, proto.Frame{Header: proto.Header{Flags: proto.FlagDelete}, Body: body})
	})
}

// Close half-closes this end's direction (DELETE). The transaction is
// over once the other end closed too.
func (t *Tx) Close(ctx context.Context) error {
	return t.x.local(ctx, t, 0, func() error { return t.x.tab.Close(t.key) })
}

// Abort ends this end's direction with an error (ABORT|DELETE with code
// and text), or, when it is closed already, asks the other end to end
// its own (ABORT alone). Codes 44–47 are the mesh's own.
func (t *Tx) Abort(ctx context.Context, code proto.Code, text string) error {
	return t.x.local(ctx, t, 4+len(text), func() error { return t.x.tab.Abort(t.key, code, text) })
}

// Open starts a streaming transaction with node target: a CREATE of
// opcode op with body first, routed (or on the direct link) and pinned to
// the path it takes. With a parent, the new transaction is stacked under
// it, on its path: target must be the parent's other end, and a lost
// link ends the child before the parent. A target without a route is an
// error wrapping ErrNoRoute. The opcode must be one the peer protocol
// defines (peer.OpStream for a generic stream).
func (m *Mesh) Open(ctx context.Context, target uint64, op uint16, first []byte, parent *Tx) (*Tx, error) {
	x := m.tx
	if x.tab == nil {
		return nil, fmt.Errorf("mesh: open: %w", tx.ErrConfig)
	}
	var pk tx.Key
	if parent != nil {
		pk = parent.key
	}
	x.mu.Lock()
	key, err := x.tab.Open(tx.NodeID(target), proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Opcode: op}, Body: first}, pk)
	if err != nil {
		x.mu.Unlock()
		if errors.Is(err, proto.ErrNoRoute) {
			return nil, fmt.Errorf("%w %d: %w", ErrNoRoute, target, err)
		}
		return nil, fmt.Errorf("mesh: open to node %d: %w", target, err)
	}
	t := newTx(x, key, target, op, true)
	if rd := x.tab.Ready(); len(rd.Msgs) > 0 {
		t.hop = rd.Msgs[0].Link // the CREATE's
	}
	x.open[key] = t
	serr := x.flushLocked(ctx)
	x.unlock()
	return t, serr
}

func newTx(x *txns, key tx.Key, peer uint64, op uint16, init bool) *Tx {
	return &Tx{x: x, key: key, peer: peer, op: op, init: init, done: make(chan struct{}), wake: make(chan struct{}, 1),
		credit: make(chan struct{}, 1), window: TxWindow}
}

// local runs a local call on the table and sends what it says. It first
// waits, without the lock, for room for n bytes on the transaction's
// link: mu is never held across a full queue's wait, which would stall
// every link's reader (and so its PONGs) behind one slow peer.
func (x *txns) local(ctx context.Context, t *Tx, n int, op func() error) error {
	if l := x.m.tab.linkTo(uint64(t.hop)); l != nil {
		if err := l.WaitRoom(ctx, proto.HeaderSize+n); err != nil && ctx.Err() != nil {
			return fmt.Errorf("mesh: transaction %v: %w", t.key, err)
		}
	}
	x.mu.Lock()
	err := op()
	serr := x.flushLocked(ctx)
	if !x.tab.Holds(t.key) && x.open[t.key] == t {
		// Removed by this call: DELETE has now passed both ways.
		delete(x.open, t.key)
		t.mu.Lock()
		t.finishLocked(nil)
		t.mu.Unlock()
	}
	x.unlock()
	if err != nil {
		return err
	}
	return serr
}

// receive takes a frame of a link if it is the table's (see the top of
// this file); taken false leaves it to the stateless path.
func (x *txns) receive(l *transport.Link, f *proto.Frame) (taken bool, err error) {
	if f.Source == 0 || f.Target == 0 || x.tab == nil {
		return false, nil
	}
	const cd = proto.FlagCreate | proto.FlagDelete
	x.mu.Lock()
	if f.Flags&cd == cd && !x.tab.Holds(tx.KeyOf(&f.Header)) {
		x.mu.Unlock()
		return false, nil
	}
	from := tx.LinkID(l.Peer().NodeID)
	x.from = from
	if err := x.tab.Step(from, *f); err != nil {
		x.mu.Unlock()
		return true, err
	}
	x.flushLocked(nil)
	x.unlock()
	return true, nil
}

// linkDown ends every transaction whose path uses the link to peer.
func (x *txns) linkDown(peer uint64) {
	if x.tab == nil {
		return
	}
	x.mu.Lock()
	x.linkDownLocked(tx.LinkID(peer))
	x.flushLocked(nil)
	x.unlock()
}

func (x *txns) linkDownLocked(l tx.LinkID) {
	before := x.tab.Stats().LinkFail
	x.tab.LinkDown(l)
	if n := int(x.tab.Stats().LinkFail - before); n > 0 {
		x.failed = append(x.failed, linkFail{uint64(l), n})
	}
}

// run ages the tombstones until ctx ends.
func (x *txns) run(ctx context.Context) {
	if x.tab == nil {
		return
	}
	t := time.NewTicker(x.m.cfg.TxTick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		x.mu.Lock()
		x.tab.Tick()
		x.mu.Unlock()
	}
}

// flushLocked writes the table's frames on their links and hands its
// deliveries to the transactions, until the table has nothing ready. A
// frame never waits for room: one that finds its link full joins the
// link's backlog (txns.send). It returns the first send error.
func (x *txns) flushLocked(ctx context.Context) error {
	var first error
	for x.tab.HasReady() {
		rd := x.tab.Ready()
		x.msgs = append(x.msgs[:0], rd.Msgs...)
		x.dels = append(x.dels[:0], rd.Deliveries...)
		x.tab.Advance()
		for i := range x.msgs {
			if err := x.out(ctx, &x.msgs[i]); err != nil && first == nil {
				first = err
			}
		}
		for i := range x.dels {
			x.deliver(&x.dels[i])
		}
		clear(x.msgs)
		clear(x.dels)
	}
	return first
}

func (x *txns) out(ctx context.Context, o *tx.Out) error {
	l := x.m.tab.linkTo(uint64(o.Link))
	f := o.Frame
	if ctx == nil {
		ctx = context.Background()
	}
	if l == nil {
		// The link went after the table chose it. Its session, if it
		// can resume, keeps the frame for the next link (resume.go);
		// else what it carried is lost, so its transactions end now
		// (again, if its end was reported already: nothing is left on
		// it then but what this batch added).
		if err := x.suspended(ctx, o.Link, &f); err == nil {
			return nil
		}
		x.linkDownLocked(o.Link)
		return fmt.Errorf("%w: link to node %d is gone", proto.ErrLinkFail, o.Link)
	}
	err := x.send(l, &f)
	if err == nil {
		return nil
	}
	if errors.Is(err, errBacklogFull) {
		// The link has not moved for txBacklogMax bytes of frames: this
		// one is lost, so its transaction ends at both ends rather than
		// go on with a hole.
		x.sendDrops.Add(1)
		x.tab.Unsent(o.Link, o.Frame)
		return fmt.Errorf("%w: no room on the link to node %d: %w", proto.ErrBusy, o.Link, err)
	}
	// The link is ending: its queue fails before Done is closed, with
	// the link's error (a heartbeat timeout, a reset). A session that
	// can resume takes the frame; else the link's transactions end now,
	// as its end will end them.
	if x.suspended(ctx, o.Link, &f) == nil {
		return nil
	}
	x.linkDownLocked(o.Link)
	return fmt.Errorf("%w: link to node %d is ending: %w", proto.ErrLinkFail, o.Link, err)
}

// errBacklogFull: a link's backlog holds txBacklogMax bytes already.
var errBacklogFull = errors.New("mesh: the link's backlog is full")

// backlog is what waits for room on one link: frames that found its send
// queue full, in the order sent, and any frame after them (a
// transaction's frames must not overtake each other).
type backlog struct {
	frames []proto.Frame
	bytes  int // of frames, for txBacklogMax
}

// send queues a transaction's frame on l without waiting: on the link if
// there is room and nothing waits before it, else in the link's backlog,
// which a goroutine per link drains, blocking, until it is empty or the
// link ends (its transactions then end by its end: LINKFAIL, or the
// session resends). Called under mu, so the frames of one transaction
// reach send in order. A terminal ABORT always joins the backlog — the
// far end must learn the end, exactly once per transaction, and a link
// failure ends 100k of them at once, more than a send queue holds; other
// frames up to txBacklogMax bytes per link (errBacklogFull). A reader
// therefore never waits for a slow next link, and a link that stops
// moving (a silent cut) holds its transactions' frames until its
// heartbeat timeout ends it, when they end with LINKFAIL.
func (x *txns) send(l *transport.Link, f *proto.Frame) error {
	x.lateMu.Lock()
	defer x.lateMu.Unlock()
	q := x.late[l]
	if q == nil {
		err := l.Send(tryCtx, f)
		if !errors.Is(err, context.Canceled) {
			return err // sent, or the link is ending
		}
	}
	n := len(f.Ext) + len(f.Body) + proto.HeaderSize
	if q != nil && !tx.Terminal(f) && q.bytes+n > txBacklogMax {
		return errBacklogFull
	}
	if q == nil {
		if x.late == nil {
			x.late = map[*transport.Link]*backlog{}
		}
		q = &backlog{}
		x.late[l] = q
		x.m.wg.Go(func() { x.drainLate(l) })
	}
	g := *f
	g.Ext, g.Body = slices.Clone(f.Ext), slices.Clone(f.Body)
	q.frames = append(q.frames, g)
	q.bytes += n
	x.backlogged.Add(1)
	return nil
}

func (x *txns) drainLate(l *transport.Link) {
	for {
		x.lateMu.Lock()
		q := x.late[l]
		fs := q.frames
		if len(fs) == 0 {
			delete(x.late, l)
			x.lateMu.Unlock()
			return
		}
		q.frames, q.bytes = nil, 0
		x.lateMu.Unlock()
		for i := range fs {
			// Blocks while the queue is full; fails only once the link
			// ended. Its transactions end with it then (LINKFAIL), or
			// its session keeps what follows for the next link.
			if err := l.Send(context.Background(), &fs[i]); err != nil {
				x.lateLost(l, fs[i:], err)
				break
			}
		}
	}
}

// lateLost hands the frames of an ended link's backlog to its session,
// if it can resume; else they are lost with the link, whose end fails
// their transactions.
func (x *txns) lateLost(l *transport.Link, fs []proto.Frame, err error) {
	peer := tx.LinkID(l.Peer().NodeID)
	for i := range fs {
		if x.suspended(context.Background(), peer, &fs[i]) != nil {
			x.m.log.Debug("mesh: backlog not sent: the link ended", "peer", peer, "frames", len(fs)-i, "err", err)
			return
		}
	}
}

// suspended sends f in the session of the lost link to peer, which
// resends it if the link resumes; an error if it cannot.
func (x *txns) suspended(ctx context.Context, peer tx.LinkID, f *proto.Frame) error {
	s := x.m.res.session(uint64(peer))
	if s == nil {
		return transport.ErrNoSession
	}
	sctx, cancel := context.WithTimeout(ctx, txForwardWait)
	defer cancel()
	return s.Send(sctx, f)
}

// deliver hands one delivery to its transaction, making the Tx of a new
// incoming one.
func (x *txns) deliver(d *tx.Delivery) {
	t := x.open[d.Key]
	if t == nil {
		if d.Frame.Flags&(proto.FlagCreate|proto.FlagReply) != proto.FlagCreate || d.Key.Initiator == tx.NodeID(x.m.cfg.Self) {
			return // its Tx ended here already
		}
		h := x.handler(d.Frame.Opcode)
		if h == nil {
			x.tab.Abort(d.Key, proto.CodeOpcode, fmt.Sprintf("node %d: %v %#04x", x.m.cfg.Self, ErrTxHandler, d.Frame.Opcode))
			return
		}
		if err := proto.CheckTLV(d.Frame.Ext, proto.TxExtKnown); err != nil {
			x.tab.Abort(d.Key, proto.CodeField, fmt.Sprintf("node %d: %v", x.m.cfg.Self, err))
			return
		}
		t = newTx(x, d.Key, uint64(d.Key.Initiator), d.Frame.Opcode, false)
		t.hop = x.from // only a stepped CREATE opens one here
		x.open[d.Key] = t
		x.starts = append(x.starts, func() { h(t) })
	} else if err := proto.CheckTLV(d.Frame.Ext, proto.TxExtKnown); err != nil && d.Err == nil {
		x.tab.Abort(d.Key, proto.CodeField, fmt.Sprintf("node %d: %v", x.m.cfg.Self, err))
		return
	}
	t.push(d)
	if d.Closed {
		delete(x.open, d.Key)
	}
}

// unlock releases mu, then starts the handlers and calls the hooks that
// the locked call queued.
func (x *txns) unlock() {
	starts, failed := x.starts, x.failed
	x.starts, x.failed = nil, nil
	x.mu.Unlock()
	for _, s := range starts {
		x.m.wg.Go(s)
	}
	if h := x.m.cfg.OnLinkFail; h != nil {
		for _, f := range failed {
			h(f.peer, f.n)
		}
	}
}

// TxStats returns the transaction counters.
func (m *Mesh) TxStats() TxStats {
	x := m.tx
	if x.tab == nil {
		return TxStats{}
	}
	x.mu.Lock()
	st, n, dead := x.tab.Stats(), x.tab.Len(), x.tab.Tombstones()
	x.mu.Unlock()
	res, fails := m.res.counts()
	return TxStats{Open: n, Tombstones: dead, Relayed: st.Relayed, RelayedBytes: st.RelayedBytes, Dropped: st.Dropped, LinkFails: st.LinkFail,
		SendDrops: x.sendDrops.Load(), Grants: x.grants.Load(), Waits: x.waits.Load(), Backlogged: x.backlogged.Load(), Resumes: res, ResumeFails: fails}
}

// TxEntries lists the transactions at this node (for tests and admin).
func (m *Mesh) TxEntries() []tx.Entry {
	x := m.tx
	if x.tab == nil {
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.tab.Entries()
}

// signal wakes a waiter on c (cap 1) without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
