package transport

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
)

// Sessions (proto/peer/SPEC.md, "Sessions and resume"): the sequenced
// frames between two agents form one ordered, lossless stream that may
// span several links. Each side keeps every sequenced frame it sent until
// the peer acknowledges it (ACK) in a replay buffer bounded by the send
// queue's budget; a new link to the same peer exchanges SESSION frames and
// either resumes (each side resends what the other lacks) or starts fresh.

// Errors of sessions.
var (
	// ErrSessionLost is returned by Session.Send when the session was
	// given up (its replay buffer overflowed while disconnected, or the
	// owner expired it): what it carried is lost.
	ErrSessionLost = errors.New("transport: session lost")
	// ErrNoSession is returned by Session.Send before any link opened it.
	ErrNoSession = errors.New("transport: no session with the peer")
)

// Thresholds of acknowledgement: a receiver sends ACK once this many
// frames or bytes are unacked (and on each heartbeat tick if any are).
const (
	ackFrames = 64
	ackBytes  = 256 << 10
)

// SessionStats counts the sessions of a store.
type SessionStats struct {
	Resumes    uint64 // links that resumed a session
	Fresh      uint64 // links that started a fresh session where one was kept and not given up
	Lost       uint64 // sessions given up: overflow or expiry
	Replayed   uint64 // frames resent on resume
	Duplicates uint64 // frames the peer already had, dropped on resume
}

// Sessions is the store of an agent's sessions, one per peer node id.
// Put it in Config.Sessions; a nil store keeps links unsequenced.
type Sessions struct {
	limit int
	off   bool // a link's stand-in store: this end keeps no sessions
	// OnSession, if set, is called from the reader of a link once its
	// SESSION exchange is done: resumed false is a fresh session, whose
	// predecessor's frames are lost. It is set before the first link and
	// must not block for long.
	OnSession func(peer uint64, resumed bool)

	mu     sync.Mutex // guards byPeer
	byPeer map[uint64]*Session

	resumes, fresh, lost, replayed, dups atomic.Uint64
}

// NewSessions makes a store whose replay buffers hold limit bytes each
// (0: DefaultQueueBytes). Use the links' QueueBytes.
func NewSessions(limit int) *Sessions {
	if limit <= 0 {
		limit = DefaultQueueBytes
	}
	return &Sessions{limit: limit, byPeer: map[uint64]*Session{}}
}

// Session returns the session with peer, making it if need be.
func (ss *Sessions) Session(peerID uint64) *Session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byPeer[peerID]
	if s == nil {
		s = &Session{store: ss, peer: peerID, cookie: newCookie()}
		ss.byPeer[peerID] = s
	}
	return s
}

// Lookup returns the session with peer, or nil.
func (ss *Sessions) Lookup(peerID uint64) *Session {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.byPeer[peerID]
}

// Stats returns the store's counters.
func (ss *Sessions) Stats() SessionStats {
	return SessionStats{Resumes: ss.resumes.Load(), Fresh: ss.fresh.Load(), Lost: ss.lost.Load(),
		Replayed: ss.replayed.Load(), Duplicates: ss.dups.Load()}
}

func newCookie() uint64 {
	for {
		var b [8]byte
		crand.Read(b[:])
		if c := binary.LittleEndian.Uint64(b[:]); c != 0 {
			return c
		}
	}
}

// Session is the stream of sequenced frames with one peer.
type Session struct {
	store *Sessions
	peer  uint64
	msgID atomic.Uint64 // request ids of the session's links (Link.NextMsgID)

	// mu guards the fields below. Lock order: a link's send queue mutex,
	// then mu.
	mu          sync.Mutex
	cookie      uint64   // ours; a new one gives the session up
	peerCookie  uint64   // the peer's, 0 before the first exchange
	version     uint8    // peer version the frames in replay are encoded at
	acked       uint64   // frames the peer has; replay[0] is number acked+1
	replay      [][]byte // encoded frames acked+1 .. acked+len(replay)
	replayBytes int
	recv        uint64 // sequenced frames received
	link        *Link  // the link carrying the session, or about to; nil between links
	// last is the latest link attached, ended or not: a new link waits
	// for its reader to stop before it counts what arrived.
	last   *Link
	active bool // link exchanged SESSION: frames go out on it
	lost   bool // given up while no link carried it: Send fails

	calls *calls // the requests of its links awaiting replies (callTable)
}

// callTable returns the session's table of calls, which its links share:
// a request resent on the link that resumes the session has its reply
// matched there.
func (s *Session) callTable() *calls {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = &calls{}
	}
	return s.calls
}

// Peer returns the peer's node id.
func (s *Session) Peer() uint64 { return s.peer }

func (s *Session) sentLocked() uint64 { return s.acked + uint64(len(s.replay)) }

// Resumable reports whether a new link could resume the session: a link
// exchanged cookies with the peer and it was not given up since.
func (s *Session) Resumable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peerCookie != 0 && !s.lost
}

// Active reports whether a link carries the session now.
func (s *Session) Active() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// Expire gives the session up unless a link carries it (it resumed): the
// owner's resume window ran out. It reports whether it gave it up.
//
// A link attached and still exchanging SESSION (the survivor of a dial
// race, a redial within the window) keeps what was queued for it: only
// its predecessors' frames are dropped, and a new cookie stops it from
// resuming, so it starts fresh with those frames first (or, if its
// SESSION offered the old cookie and the peer took it, fails with
// CodeState at once). Dropping its frames too, and failing sends meanwhile,
// left a link up whose first frames (a router's full table) were gone.
func (s *Session) Expire() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.active {
		return false
	}
	if l := s.link; l != nil {
		s.expirePendingLocked(l.ses.pendFrom)
		return true
	}
	s.loseLocked()
	return true
}

// expirePendingLocked gives up the frames before number from, those of
// the links before the pending one, with the cookie they were sent under.
func (s *Session) expirePendingLocked(from uint64) {
	if !s.lost {
		s.store.lost.Add(1)
	}
	s.cookie = newCookie()
	if from > s.acked {
		s.trimLocked(min(from, s.sentLocked()))
	}
	if s.calls != nil {
		s.calls.lost(ErrSessionLost, s.link) // those of the links before
	}
}

// loseLocked gives the session up: a new cookie, so no link resumes it,
// and its frames dropped.
func (s *Session) loseLocked() {
	if !s.lost {
		s.store.lost.Add(1)
	}
	if s.calls != nil {
		// Their requests or replies went with the frames.
		s.calls.lost(ErrSessionLost, s.link)
	}
	s.cookie, s.lost = newCookie(), true
	s.acked += uint64(len(s.replay))
	clear(s.replay)
	s.replay, s.replayBytes = s.replay[:0], 0
}

// Send sends f in the session: on the link that carries it, else into the
// replay buffer for the next link to resend. Between links it does not
// block; a frame that would overflow the buffer gives the session up
// (ErrSessionLost).
func (s *Session) Send(ctx context.Context, f *proto.Frame) error {
	for {
		s.mu.Lock()
		l := s.link
		if l == nil {
			err := s.appendLocked(f)
			s.mu.Unlock()
			return err
		}
		s.mu.Unlock()
		err := l.Send(ctx, f)
		if err == nil || ctx.Err() != nil {
			return err
		}
		s.mu.Lock()
		moved := s.link != l
		s.mu.Unlock()
		if !moved {
			// Its queue is closed: the link is ending, and its session
			// waits for the next once it has.
			select {
			case <-l.done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// The link ended under the send: the frame was not recorded,
		// try again on what carries the session now.
	}
}

// appendLocked encodes f into the replay buffer only.
func (s *Session) appendLocked(f *proto.Frame) error {
	if s.lost {
		return fmt.Errorf("%w with node %d", ErrSessionLost, s.peer)
	}
	if s.peerCookie == 0 && s.link == nil {
		return fmt.Errorf("%w %d", ErrNoSession, s.peer)
	}
	f.Proto, f.Version = proto.ProtoPeer, s.version
	if f.Hops == 0 {
		f.Hops = proto.HopLimit
	}
	b := proto.AppendFrame(nil, f)
	if s.replayBytes > 0 && s.replayBytes+len(b) > s.store.limit {
		s.loseLocked()
		return fmt.Errorf("%w with node %d: replay buffer full (%d bytes) while disconnected", ErrSessionLost, s.peer, s.store.limit)
	}
	s.replay = append(s.replay, b)
	s.replayBytes += len(b)
	return nil
}

// recordLocked appends the encoded frame b, queued on the active link,
// to the replay buffer.
func (s *Session) recordLocked(b []byte) {
	s.replay = append(s.replay, b)
	s.replayBytes += len(b)
}

// roomLocked reports whether n more bytes fit the replay buffer.
func (s *Session) roomLocked(n int) bool {
	return s.replayBytes == 0 || s.replayBytes+n <= s.store.limit
}

// trimLocked drops the frames up to number n, which the peer has.
func (s *Session) trimLocked(n uint64) {
	k := int(n - s.acked)
	for _, b := range s.replay[:k] {
		s.replayBytes -= len(b)
	}
	clear(s.replay[:k])
	s.replay = s.replay[k:]
	s.acked = n
}

// States of a link in its session.
const (
	lsPending     int32 = iota // SESSION exchange not done: sequenced frames wait in the replay buffer
	lsSequenced                // frames are counted, acknowledged and kept for resend
	lsUnsequenced              // an end keeps no sessions: frames go out as on a v3 link
)

// linkState is a link's part in its session.
type linkState struct {
	s     *Session
	state atomic.Int32 // lsPending, …; changes under s.mu
	once  sync.Once    // attach
	old   *Link        // the link the session had when l attached
	sent  peer.Session // our SESSION on this link; reader only
	// pendFrom is the number of frames sent in the session when the link
	// attached: those after it were meant for this link.
	pendFrom uint64
	ready    chan struct{} // closed when the exchange is done
	opened   bool          // our SESSION is queued; reader only
	got      bool          // the peer's SESSION arrived; reader only
	// Reader only: frames and bytes received since the last ACK.
	unackedN, unackedB int
	lastAck            atomic.Uint64 // recv count of the last ACK sent
}

// attach makes l the link of its session, at its first sequenced send or
// its start, whichever comes first. It does not block: the previous link
// is ended by the reader of l (openSession), which waits for it.
func (l *Link) attach() {
	ls := l.ses
	ls.once.Do(func() {
		s := ls.s
		s.mu.Lock()
		ls.old = s.last
		s.link, s.last, s.active = l, l, false
		s.lost = false // frames for this link are buffered from now on
		ls.pendFrom = s.sentLocked()
		if s.replayBytes == 0 {
			s.version = l.info.Version
		}
		s.mu.Unlock()
	})
}

// openSession runs on l's reader before it reads: once the previous link
// of the session has stopped delivering (its owner closes it; after a
// heartbeat timeout l ends it), the counts are final and l sends SESSION.
func (l *Link) openSession() error {
	ls := l.ses
	if ls.state.Load() == lsUnsequenced {
		return nil // storeless: its SESSION went first (newLink)
	}
	l.attach()
	if old := ls.old; old != nil && old != l {
		t := time.NewTimer(l.cfg.heartbeatTimeout())
		select {
		case <-old.done:
		case <-t.C:
			old.end(proto.Errorf(proto.CodeDup, "replaced by a new link of its session"))
		}
		t.Stop()
		if old.started.Load() {
			<-old.rdone
		}
	}
	s := ls.s
	s.mu.Lock()
	if s.replayBytes == 0 {
		s.version = l.info.Version
	}
	ls.sent = peer.Session{Cookie: s.cookie, PeerCookie: s.peerCookie, Recv: s.recv, Sent: s.sentLocked()}
	if s.store.off {
		ls.sent = peer.Session{} // keeps no sessions
	}
	s.mu.Unlock()
	f := proto.Frame{Header: proto.Header{Opcode: peer.OpSession, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: l.NextMsgID()},
		Body: peer.AppendSession(nil, ls.sent)}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.heartbeatTimeout())
	defer cancel()
	return l.Send(ctx, &f)
}

// detach runs when l ends: the session waits for its next link.
func (l *Link) detach() {
	if l.ses == nil {
		return
	}
	s := l.ses.s
	s.mu.Lock()
	if s.link == l {
		s.link, s.active = nil, false
	}
	s.mu.Unlock()
}

// onSession handles the peer's SESSION: resume or fresh, then the replay
// buffer goes out on l, before any frame sent after.
func (l *Link) onSession(body []byte) error {
	ls := l.ses
	if ls.got || !ls.opened {
		return proto.Errorf(proto.CodeState, "SESSION out of turn")
	}
	p, err := peer.ParseSession(body)
	if err != nil {
		return err
	}
	ls.got = true
	if ls.state.Load() == lsUnsequenced {
		if st := ls.s.store; st.OnSession != nil {
			st.OnSession(ls.s.peer, false)
		}
		return nil // this end keeps no sessions: nothing to decide
	}
	a := ls.sent
	resume := a.Cookie != 0 && p.Cookie != 0 && p.PeerCookie == a.Cookie && a.PeerCookie == p.Cookie
	s := ls.s
	st := s.store
	q := l.q
	q.mu.Lock()
	s.mu.Lock()
	if s.link != l {
		s.mu.Unlock()
		q.mu.Unlock()
		return proto.Errorf(proto.CodeDup, "replaced by a new link of its session")
	}
	seq := a.Cookie != 0 && p.Cookie != 0
	if seq {
		switch {
		case resume && (s.cookie != a.Cookie || s.lost):
			s.mu.Unlock()
			q.mu.Unlock()
			return proto.Errorf(proto.CodeState, "session with node %d given up while resuming", s.peer)
		case resume && (p.Recv < s.acked || p.Recv > s.sentLocked() || p.Sent < s.recv || s.version != l.info.Version):
			s.loseLocked()
			s.mu.Unlock()
			q.mu.Unlock()
			return proto.Errorf(proto.CodeState, "cannot resume: peer has %d of our frames, we hold %d..%d; it sent %d, we have %d",
				p.Recv, s.acked+1, s.sentLocked(), p.Sent, s.recv)
		case resume:
			st.dups.Add(p.Recv - s.acked)
			s.trimLocked(p.Recv)
			st.resumes.Add(1)
		default:
			if s.peerCookie != 0 && !s.lost {
				st.fresh.Add(1) // not given up, yet not resumed
			}
			// A fresh session: what was queued for this link before the
			// exchange is its first frames; the rest is lost.
			drop := 0
			if ls.pendFrom >= s.acked {
				drop = min(int(ls.pendFrom-s.acked), len(s.replay))
			}
			for _, b := range s.replay[:drop] {
				s.replayBytes -= len(b)
			}
			clear(s.replay[:drop])
			s.replay = s.replay[drop:]
			s.acked, s.recv, s.peerCookie, s.cookie = 0, 0, p.Cookie, a.Cookie
			s.version = l.info.Version
			if s.calls != nil {
				// The earlier links' requests, or their replies, are
				// lost; this link's went into its first frames.
				s.calls.lost(fmt.Errorf("%w: a fresh session replaced it", ErrSessionLost), l)
			}
		}
	}
	if resume {
		st.replayed.Add(uint64(len(s.replay)))
	}
	for _, b := range s.replay {
		q.appendLocked(b)
	}
	if seq {
		ls.state.Store(lsSequenced)
	} else {
		// Unsequenced: what was buffered for the link goes out as is.
		clear(s.replay)
		s.replay, s.replayBytes, s.acked = s.replay[:0], 0, 0
		ls.state.Store(lsUnsequenced)
	}
	s.active, s.lost = true, false
	ls.lastAck.Store(s.recv)
	close(ls.ready)
	s.mu.Unlock()
	q.mu.Unlock()
	signal(q.wake)
	if st.OnSession != nil {
		st.OnSession(s.peer, resume && seq)
	}
	return nil
}

// onAck trims the replay buffer to what the peer acknowledged.
func (l *Link) onAck(body []byte) error {
	n, err := peer.ParseAck(body)
	if err != nil {
		return err
	}
	s := l.ses.s
	s.mu.Lock()
	if s.link != l {
		s.mu.Unlock()
		return nil
	}
	if n > s.sentLocked() {
		sent := s.sentLocked()
		s.mu.Unlock()
		return proto.Errorf(proto.CodeField, "ACK of %d frames, %d sent", n, sent)
	}
	if n > s.acked {
		s.trimLocked(n)
	}
	s.mu.Unlock()
	signal(l.q.space)
	return nil
}

// received counts a sequenced frame of n bytes delivered from l and says
// whether an ACK is due.
func (l *Link) received(n int) (recv uint64, ack bool) {
	ls := l.ses
	s := ls.s
	s.mu.Lock()
	s.recv++
	recv = s.recv
	s.mu.Unlock()
	ls.unackedN++
	ls.unackedB += n
	if ls.unackedN >= ackFrames || ls.unackedB >= ackBytes {
		ls.unackedN, ls.unackedB = 0, 0
		return recv, true
	}
	return recv, false
}

// sendAck queues an ACK of recv frames if it acknowledges more than the
// last, without waiting long: a later tick tries again.
func (l *Link) sendAck(ctx context.Context, recv uint64) {
	ls := l.ses
	old := ls.lastAck.Load()
	if recv <= old || !ls.lastAck.CompareAndSwap(old, recv) {
		return
	}
	f := proto.Frame{Header: proto.Header{Opcode: peer.OpAck, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: l.NextMsgID()}, Body: peer.AppendAck(nil, recv)}
	if err := l.Send(ctx, &f); err != nil {
		ls.lastAck.CompareAndSwap(recv, old) // unsent: due again
	}
}

// tickAck acknowledges what arrived since the last ACK (heartbeat).
func (l *Link) tickAck(ctx context.Context) {
	ls := l.ses
	if ls == nil || ls.state.Load() != lsSequenced {
		return
	}
	s := ls.s
	s.mu.Lock()
	recv, mine := s.recv, s.link == l && s.active
	s.mu.Unlock()
	if mine && recv > ls.lastAck.Load() {
		l.sendAck(ctx, recv)
	}
}

// sendSeq sends a sequenced frame on l: into the replay buffer while the
// exchange is pending, else queued and recorded.
func (l *Link) sendSeq(ctx context.Context, f *proto.Frame) error {
	ls := l.ses
	l.attach()
	s := ls.s
	for {
		switch ls.state.Load() {
		case lsUnsequenced:
			return l.q.push(ctx, f, nil)
		case lsPending:
			s.mu.Lock()
			if s.link != l {
				s.mu.Unlock()
				return l.replacedErr()
			}
			if ls.state.Load() != lsPending {
				s.mu.Unlock()
				continue
			}
			f.Seal()
			if !s.roomLocked(proto.HeaderSize + f.PayloadLen()) {
				// A burst before the exchange is done waits for it, as
				// for a full queue: only a link that is gone loses.
				s.mu.Unlock()
				select {
				case <-ls.ready:
				case <-l.done:
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			err := s.appendLocked(f)
			s.mu.Unlock()
			return err
		default:
			err := l.q.push(ctx, f, l)
			if errors.Is(err, errMoved) {
				return l.replacedErr()
			}
			return err
		}
	}
}

// errMoved: the session no longer goes out on the link.
var errMoved = errors.New("transport: session moved to another link")

func (l *Link) replacedErr() error {
	select {
	case <-l.done:
		return l.err
	default:
	}
	return fmt.Errorf("%w: its session moved to a newer link", ErrClosed)
}
