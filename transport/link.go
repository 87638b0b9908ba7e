package transport

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/internal/stall"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
)

// ackWait bounds how long the reader waits for room for an ACK; the next
// heartbeat tick sends one that did not fit.
const ackWait = 5 * time.Millisecond

// ErrClosed is returned by Send on a link closed by this side.
var ErrClosed = errors.New("transport: link closed")

// Handler receives the frames of a link other than the session frames and
// PING/PONG, which the link answers itself. It runs on the link's reader
// goroutine, so it must not block for long; f and its slices are valid only
// until it returns. An error it returns ends the link with that error.
type Handler func(l *Link, f *proto.Frame) error

// Link is an established, authenticated connection.
type Link struct {
	conn net.Conn
	dec  *proto.Decoder
	cfg  *Config
	info PeerInfo
	ops  *proto.OpSet
	log  *slog.Logger
	q    *sendQueue
	buf  *bufConn // gathers TLS records per batch; nil on local links

	lastRecv atomic.Int64 // unix nanos of the last frame received
	rtt      atomic.Int64 // nanoseconds of the last PING round trip, 0 if none
	msgID    atomic.Uint64
	calls    *calls     // requests of Call waiting for their replies: the link's, or its session's
	ses      *linkState // the link's session; nil below peer version 4

	started atomic.Bool
	done    chan struct{} // closed when the link has ended
	rdone   chan struct{} // closed when the reader has stopped delivering
	wdone   chan struct{} // closed when the writer has stopped
	once    sync.Once
	err     error // why the link ended; read after done is closed
	// closing is the error of a Close in progress: once its GOODBYE is
	// written, the link ends with it whatever the reader sees meanwhile.
	closing atomic.Pointer[error]

	hbWake func() // tests only: runs on each heartbeat wake-up, to starve it
}

func newLink(conn net.Conn, dec *proto.Decoder, cfg *Config, info PeerInfo) *Link {
	l := &Link{
		conn:  conn,
		dec:   dec,
		cfg:   cfg,
		info:  info,
		ops:   cfg.opSet(info.Proto),
		log:   cfg.logger().With("peer", info.Name, "peer_id", info.NodeID, "proto", info.Proto.String()),
		q:     newSendQueue(cfg.queueBytes()),
		done:  make(chan struct{}),
		wdone: make(chan struct{}),
		rdone: make(chan struct{}),
	}
	l.lastRecv.Store(time.Now().UnixNano())
	if info.Proto == proto.ProtoPeer && info.Version >= sessionVersion {
		// Every v4 peer link exchanges SESSION; without a store this
		// end offers none (cookie 0) and the link stays unsequenced.
		if cfg.Sessions != nil {
			l.ses = &linkState{s: cfg.Sessions.Session(info.NodeID), ready: make(chan struct{})}
		} else {
			// Storeless: unsequenced whatever the peer says, so its
			// SESSION goes first, before anything sent before Start.
			l.ses = &linkState{s: &Session{store: &Sessions{limit: cfg.queueBytes(), off: true}, peer: info.NodeID}, ready: make(chan struct{})}
			l.ses.state.Store(lsUnsequenced)
			close(l.ses.ready)
			f := proto.Frame{Header: proto.Header{Opcode: peer.OpSession, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: l.NextMsgID()},
				Body: peer.AppendSession(nil, peer.Session{})}
			l.Send(context.Background(), &f) // an empty queue takes it at once
		}
	}
	l.calls = &calls{}
	if s := l.Session(); s != nil {
		l.calls = s.callTable()
	}
	return l
}

// sessionVersion is the first peer version with sessions.
const sessionVersion = 4

// Session returns the link's session, nil on a link without one.
func (l *Link) Session() *Session {
	if l.ses == nil || l.ses.s.store.off {
		return nil
	}
	return l.ses.s
}

// LastRecv returns when the last frame from the peer arrived (the link's
// start before the first): a caller can judge silence sooner than the
// heartbeat timeout does.
func (l *Link) LastRecv() time.Time { return time.Unix(0, l.lastRecv.Load()) }

// Peer returns what the handshake learned about the other end.
func (l *Link) Peer() PeerInfo { return l.info }

// RTT returns the last measured round trip, 0 before the first PONG.
func (l *Link) RTT() time.Duration { return time.Duration(l.rtt.Load()) }

// Queued returns how many bytes Send accepted that are not yet written to
// the connection: frames in the send queue and the write in progress. A peer that
// stops reading makes it grow until Send blocks (Config.QueueBytes);
// a producer that must not wait for that bounds its lag with it.
func (l *Link) Queued() int { return l.q.bytes() }

// Done is closed when the link has ended.
func (l *Link) Done() <-chan struct{} { return l.done }

// Err returns why the link ended, once Done is closed.
func (l *Link) Err() error {
	<-l.done
	return l.err
}

// NextMsgID returns a fresh message id for a request on this link.
// The links of one session share the counter: a reply resent on a new
// link must not match a new request of the same id.
func (l *Link) NextMsgID() uint64 {
	if l.ses != nil {
		return l.ses.s.msgID.Add(1)
	}
	return l.msgID.Add(1)
}

// Start runs the link's goroutines; h receives its frames. Start may be
// called once.
func (l *Link) Start(h Handler) {
	if !l.started.CompareAndSwap(false, true) {
		panic("transport: Link.Start called twice")
	}
	go l.reader(h)
	go l.writer()
	go l.heartbeat()
}

// Send queues f for the peer. It fills in the protocol and version of the
// link, and blocks while the send queue is full. f's slices are copied
// before Send returns.
func (l *Link) Send(ctx context.Context, f *proto.Frame) error {
	f.Proto, f.Version = l.info.Proto, l.info.Version
	if f.Hops == 0 {
		f.Hops = proto.HopLimit
	}
	if l.ses != nil && peer.Sequenced(f.Opcode) {
		return l.sendSeq(ctx, f)
	}
	return l.q.push(ctx, f, nil)
}

// WaitRoom waits until Send would queue a frame of n bytes (header
// included) without blocking, or ctx ends. It reserves nothing: a
// producer that must not block while it holds a lock waits here first,
// then sends under the lock with a short deadline.
func (l *Link) WaitRoom(ctx context.Context, n int) error {
	var seq *Link
	if l.ses != nil && l.ses.state.Load() == lsSequenced {
		seq = l
	}
	return l.q.room(ctx, n, seq)
}

// Close sends GOODBYE with the given code and text, waits briefly for the
// queue to drain and closes the connection. It returns once the link has
// ended.
func (l *Link) Close(code proto.Code, text string) {
	if code == proto.CodeNone {
		code = proto.CodeShutdown
	}
	st := proto.Status{Code: code, Text: text}
	f := proto.SessionFrame(proto.OpGoodbye, proto.AppendStatus(nil, &st))
	if !l.started.Load() {
		// No writer runs yet: say goodbye directly.
		l.conn.SetWriteDeadline(time.Now().Add(time.Second))
		l.conn.Write(proto.AppendFrame(nil, &f))
		l.end(&proto.Error{Code: code, Detail: "closed by this node: " + text, Err: ErrClosed})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	cerr := error(&proto.Error{Code: code, Detail: "closed by this node: " + text, Err: ErrClosed})
	l.closing.CompareAndSwap(nil, &cerr)
	if l.q.push(ctx, &f, nil) == nil {
		// The writer stops after writing what was queued.
		l.q.close(ErrClosed, true)
		select {
		case <-l.wdone:
			l.linger(ctx)
		case <-ctx.Done():
		}
	}
	l.end(cerr)
	<-l.done
}

// linger half-closes a connection whose GOODBYE was written and waits,
// until ctx ends, for the peer to close its side: a peer still writing
// (a PING) would otherwise get a reset and may lose the GOODBYE unread
// in its receive buffer (a lingering close, as HTTP servers do).
func (l *Link) linger(ctx context.Context) {
	cw, ok := l.conn.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	select {
	case <-l.done: // the reader saw the peer close
	case <-ctx.Done():
	}
}

// end records why the link ended, once, and tears it down.
func (l *Link) end(err error) {
	l.once.Do(func() {
		if c := l.closing.Load(); c != nil {
			err = *c
		}
		l.err = err
		l.calls.ended(l, err)
		l.q.close(err, false)
		l.detach()
		l.conn.Close()
		close(l.done)
	})
}

func (l *Link) reader(h Handler) {
	defer close(l.rdone)
	if l.ses != nil {
		// A Close under way drains its GOODBYE: keep reading meanwhile.
		if err := l.openSession(); err != nil && !errors.Is(err, ErrClosed) {
			l.fail(err)
			return
		}
		l.ses.opened = true
	}
	for {
		for {
			f, ok, err := l.dec.Next()
			if err != nil {
				l.fail(err)
				return
			}
			if !ok {
				break
			}
			l.lastRecv.Store(time.Now().UnixNano())
			if err := l.dispatch(h, &f); err != nil {
				l.fail(err)
				return
			}
		}
		n, err := l.conn.Read(l.dec.Buffer())
		l.dec.Advance(n)
		if err != nil && n == 0 {
			select {
			case <-l.done:
				return // closed by this side
			default:
			}
			if errors.Is(err, io.EOF) {
				if cerr := l.dec.Close(); cerr != nil {
					err = cerr
				} else {
					err = proto.Errorf(proto.CodeEOF, "peer closed the connection without GOODBYE")
				}
			} else {
				err = ioError(proto.CodeSock, "read", err)
			}
			l.fail(err)
			return
		}
	}
}

func (l *Link) dispatch(h Handler, f *proto.Frame) error {
	if f.Proto == proto.ProtoSession {
		if err := proto.CheckSession(&f.Header); err != nil {
			return err
		}
		if f.Opcode == proto.OpReject {
			// The connecting side refuses after our HELLO (Config.Admit).
			rj, err := proto.ParseReject(f.Body)
			if err != nil {
				return err
			}
			l.log.Error("peer refused the link", "code", rj.Code.String(), "reason", rj.Text)
			l.end(rj.Err())
			return nil
		}
		if f.Opcode != proto.OpGoodbye {
			return proto.Errorf(proto.CodeState, "session opcode %#04x after the handshake", f.Opcode)
		}
		st, err := proto.ParseStatus(f.Body, "GOODBYE")
		if err != nil {
			return err
		}
		l.log.Info("peer said goodbye", "code", st.Code.String(), "text", st.Text)
		l.end(&proto.Error{Code: st.Code, Detail: "peer said goodbye: " + st.Text})
		return nil
	}
	if err := l.ops.Check(&f.Header, l.info.Version); err != nil {
		return err
	}
	if ls := l.ses; ls != nil {
		switch {
		case f.Opcode == peer.OpSession:
			return l.onSession(f.Body)
		case f.Opcode == peer.OpAck:
			if ls.state.Load() != lsSequenced {
				return proto.Errorf(proto.CodeState, "ACK on a link without a sequenced session")
			}
			return l.onAck(f.Body)
		case peer.Sequenced(f.Opcode):
			switch ls.state.Load() {
			case lsPending:
				return proto.Errorf(proto.CodeState, "opcode %#04x before SESSION", f.Opcode)
			case lsSequenced:
				if recv, ack := l.received(proto.HeaderSize + len(f.Ext) + len(f.Body)); ack {
					ctx, cancel := context.WithTimeout(context.Background(), ackWait)
					l.sendAck(ctx, recv)
					cancel()
				}
			}
		}
	}
	// Opcodes 1 and 2 are PING and PONG in every sub-protocol.
	switch f.Opcode {
	case proto.OpPing:
		if _, err := proto.ParsePing(f.Body); err != nil {
			return err
		}
		pong := proto.Frame{Header: proto.Header{Opcode: proto.OpPong, Flags: proto.FlagReply | proto.FlagCreate | proto.FlagDelete, MsgID: f.MsgID}, Body: f.Body}
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.heartbeatTimeout())
		defer cancel()
		// A queue closed by Close is still being drained: a PING that
		// arrives meanwhile is not a reason to cut the drain short.
		if err := l.Send(ctx, &pong); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, ErrClosed) {
			return err
		}
		return nil
	case proto.OpPong:
		p, err := proto.ParsePing(f.Body)
		if err != nil {
			return err
		}
		if rtt := p.RTT(time.Now()); rtt >= 0 {
			l.rtt.Store(int64(rtt))
		}
		return nil
	}
	if taken, err := l.calls.route(f); taken || err != nil {
		return err
	}
	return h(l, f)
}

// fail ends the link on a receive or protocol error, telling the peer why
// when the error is the peer's fault and the connection still works.
func (l *Link) fail(err error) {
	var pe *proto.Error
	if errors.As(err, &pe) && pe.Code != proto.CodeSock && pe.Code != proto.CodeEOF && pe.Code != proto.CodeTimeout && !errors.Is(err, ErrClosed) {
		select {
		case <-l.done:
		default:
			l.log.Warn("closing link on bad input", "err", err.Error())
			st := proto.Status{Code: pe.Code, Text: err.Error()}
			f := proto.SessionFrame(proto.OpGoodbye, proto.AppendStatus(nil, &st))
			l.conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			l.conn.Write(proto.AppendFrame(nil, &f))
		}
	}
	l.end(err)
}

func (l *Link) writer() {
	defer close(l.wdone)
	bufs := make([]*[]byte, 0, MaxIOVec)
	iov := make(net.Buffers, 0, MaxIOVec)
	for {
		select {
		case <-l.q.wake:
		case <-l.q.dead:
			// Flush what Close queued before it closed the queue.
		case <-l.done:
			return
		}
		for {
			bufs = l.q.take(bufs[:0])
			if len(bufs) == 0 {
				break
			}
			iov = iov[:0]
			for _, b := range bufs {
				iov = append(iov, *b)
			}
			l.conn.SetWriteDeadline(time.Now().Add(l.cfg.heartbeatTimeout() + time.Second))
			var err error
			if l.buf != nil {
				l.buf.batch()
				_, err = iov.WriteTo(l.conn)
				if ferr := l.buf.flush(); err == nil {
					err = ferr
				}
			} else {
				_, err = iov.WriteTo(l.conn)
			}
			l.q.done(bufs)
			if err != nil {
				l.end(ioError(proto.CodeSock, "write", err))
				return
			}
		}
		select {
		case <-l.q.dead:
			if l.closing.Load() == nil {
				l.end(l.q.closedErr())
			} // else Close lingers, then ends the link
			return
		default:
		}
	}
}

// heartbeat sends PING every interval and ends the link when nothing was
// heard for the timeout. Only time in which this process ran counts: when
// its own timer wakes more than half a timeout late, the process was
// starved or stopped, frames may be waiting unread, and the peer gets a
// fresh timeout from the wake-up instead of the blame.
func (l *Link) heartbeat() {
	interval, timeout := l.cfg.heartbeatInterval(), l.cfg.heartbeatTimeout()
	stalls := stall.New(timeout / 2)
	t := time.NewTimer(interval)
	defer t.Stop()
	due := time.Now().Add(interval) // when this goroutine means to wake
	nextPing := due
	for {
		select {
		case <-l.done:
			return
		case <-t.C:
		}
		if l.hbWake != nil {
			l.hbWake()
		}
		now := time.Now()
		if s, ok := stalls.Woke(due, now); ok {
			l.log.Warn("heartbeat woke late: this process did not run; the peer gets a fresh timeout", "late", s.Duration().Round(time.Millisecond))
		}
		last := time.Unix(0, l.lastRecv.Load())
		if now.After(stalls.Deadline(last, timeout)) {
			silent := now.Sub(last)
			l.fail(proto.Errorf(proto.CodeTimeout, "nothing heard from the peer for %v (timeout %v)", silent.Round(time.Millisecond), timeout))
			return
		}
		if !now.Before(nextPing) {
			ping := proto.Frame{Header: proto.Header{Opcode: proto.OpPing, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: l.NextMsgID()}, Body: proto.AppendPing(nil, proto.Ping{Sent: now.UnixNano()})}
			ctx, cancel := context.WithTimeout(context.Background(), interval)
			err := l.Send(ctx, &ping)
			cancel()
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return
			}
			nextPing = time.Now().Add(interval)
			actx, cancel := context.WithTimeout(context.Background(), interval)
			l.tickAck(actx)
			cancel()
		}
		// Wake for the next ping, or as the timeout runs out if that is
		// sooner: checking only on the ping ticks would declare a silent
		// peer dead up to one interval late.
		due = nextPing
		if d := stalls.Deadline(time.Unix(0, l.lastRecv.Load()), timeout).Add(time.Millisecond); d.Before(due) {
			due = d
		}
		t.Reset(time.Until(due))
	}
}
