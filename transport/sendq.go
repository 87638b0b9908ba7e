package transport

import (
	"context"
	"slices"
	"sync"

	"github.com/corralhq/corral/proto"
)

// Sizes of the send path.
const (
	// MaxIOVec is how many buffers one vectored write gathers, as in the
	// HAMMER2 iocom this link is modelled on.
	MaxIOVec = 16
	// slabSize is the size of a recycled send buffer. Frames up to
	// packLimit are packed together into slabs, so many small messages
	// leave in one write (and, on TLS, in full records); larger frames get
	// a slab of their own when they fit.
	slabSize  = 128 << 10
	packLimit = 16 << 10
)

var slabPool = sync.Pool{New: func() any { b := make([]byte, 0, slabSize); return &b }}

func getSlab() *[]byte { return slabPool.Get().(*[]byte) }

func putSlab(b *[]byte) {
	if cap(*b) != slabSize {
		return // one-off buffer of a frame larger than a slab
	}
	*b = (*b)[:0]
	slabPool.Put(b)
}

// sendQueue holds encoded frames between Send and the writer goroutine.
type sendQueue struct {
	limit int
	wake  chan struct{} // cap 1: tells the writer there is work
	space chan struct{} // cap 1: tells blocked senders the writer drained bytes
	dead  chan struct{} // closed with the queue

	mu     sync.Mutex // guards the fields below
	bufs   []*[]byte  // encoded frames in order; the last may still be packed into
	open   bool       // the last buf accepts more small frames
	queued int        // bytes in bufs
	err    error      // set when the link is closed; Send fails with it
}

func newSendQueue(limit int) *sendQueue {
	return &sendQueue{limit: limit, wake: make(chan struct{}, 1), space: make(chan struct{}, 1), dead: make(chan struct{})}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// push encodes f into the queue, waiting while the queue is over its limit.
// A sequenced frame of link seq is also recorded in its session's replay
// buffer, in queue order, and waits for room there too (an ACK); errMoved
// says the session no longer goes out on seq.
func (q *sendQueue) push(ctx context.Context, f *proto.Frame, seq *Link) error {
	f.Seal()
	n := proto.HeaderSize + f.PayloadLen()
	var s *Session
	if seq != nil {
		s = seq.ses.s
	}
	for {
		q.mu.Lock()
		if q.err != nil {
			q.mu.Unlock()
			return q.err
		}
		if s != nil {
			s.mu.Lock()
			if s.link != seq || !s.active {
				s.mu.Unlock()
				q.mu.Unlock()
				return errMoved
			}
		}
		if (q.queued == 0 || q.queued+n <= q.limit) && (s == nil || s.roomLocked(n)) {
			break // holding q.mu, and s.mu if s is set
		}
		if s != nil {
			s.mu.Unlock()
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-q.dead:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	var b []byte
	if s != nil && n > packLimit {
		// A large sequenced frame (a raft append) is encoded once, into a
		// buffer the queue and the replay buffer share: neither writes to
		// it, and the queue never recycles it.
		b = q.ownLocked(n)
	} else {
		b = q.reserveLocked(n)
	}
	proto.PutHeader(b, &f.Header)
	copy(b[proto.HeaderSize:], f.Ext)
	copy(b[proto.HeaderSize+len(f.Ext):], f.Body)
	if s != nil {
		if n > packLimit {
			s.recordLocked(b)
		} else {
			s.recordLocked(slices.Clone(b))
		}
		s.mu.Unlock()
	}
	q.mu.Unlock()
	signal(q.wake)
	return nil
}

// reserveLocked returns n bytes at the end of the queue to encode a frame
// into: packed into the last slab when small, else in a buffer of its own.
func (q *sendQueue) reserveLocked(n int) []byte {
	var dst *[]byte
	if last := len(q.bufs) - 1; q.open && n <= packLimit && last >= 0 && len(*q.bufs[last])+n <= slabSize {
		dst = q.bufs[last]
	} else {
		if n <= slabSize {
			dst = getSlab()
		} else {
			b := make([]byte, 0, n)
			dst = &b
		}
		q.bufs = append(q.bufs, dst)
		q.open = n <= packLimit
	}
	off := len(*dst)
	*dst = (*dst)[:off+n]
	q.queued += n
	return (*dst)[off : off+n]
}

// ownLocked queues a buffer of n bytes of its own, which putSlab never
// recycles (its capacity is not a slab's), to encode a frame into.
func (q *sendQueue) ownLocked(n int) []byte {
	c := n
	if c == slabSize {
		c++
	}
	b := make([]byte, n, c)
	q.bufs = append(q.bufs, &b)
	q.open = false
	q.queued += n
	return b
}

// appendLocked queues the encoded frame b, whatever the limit: a resend
// of the replay buffer, which is bounded by it already.
func (q *sendQueue) appendLocked(b []byte) {
	if q.err != nil {
		return
	}
	copy(q.reserveLocked(len(b)), b)
}

// room waits, as push does, until a frame of n bytes would be queued at
// once, without queueing anything. The space signal it may have taken is
// passed on: another sender may be waiting for it.
func (q *sendQueue) room(ctx context.Context, n int, seq *Link) error {
	for {
		q.mu.Lock()
		err, ok := q.err, q.queued == 0 || q.queued+n <= q.limit
		if seq != nil && ok {
			s := seq.ses.s
			s.mu.Lock()
			ok = s.roomLocked(n)
			s.mu.Unlock()
		}
		q.mu.Unlock()
		if err != nil {
			return err
		}
		if ok {
			signal(q.space)
			return nil
		}
		select {
		case <-q.space:
		case <-q.dead:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// take moves up to MaxIOVec buffers into out and closes the last one to
// packing, since the writer now owns it.
func (q *sendQueue) take(out []*[]byte) []*[]byte {
	q.mu.Lock()
	defer q.mu.Unlock()
	n := min(len(q.bufs), MaxIOVec)
	out = append(out, q.bufs[:n]...)
	rest := copy(q.bufs, q.bufs[n:])
	clear(q.bufs[rest:])
	q.bufs = q.bufs[:rest]
	if rest == 0 {
		q.open = false
	}
	return out
}

// done returns written buffers to the pool and wakes blocked senders.
func (q *sendQueue) done(bufs []*[]byte) {
	n := 0
	for _, b := range bufs {
		n += len(*b)
		putSlab(b)
	}
	q.mu.Lock()
	q.queued -= n
	q.mu.Unlock()
	signal(q.space)
}

// close fails later pushes with err. With drain the writer still writes
// what is queued (an orderly close); without, queued frames are dropped.
func (q *sendQueue) close(err error, drain bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.err != nil {
		return
	}
	q.err = err
	if !drain {
		for _, b := range q.bufs {
			putSlab(b)
		}
		q.bufs, q.queued = nil, 0
	}
	close(q.dead)
}

// bytes returns how many bytes are queued or being written.
func (q *sendQueue) bytes() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.queued
}

func (q *sendQueue) closedErr() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}
