package cluster

import (
	"errors"
	"fmt"
	"sync"

	"github.com/corralhq/corral/proto/peer"
)

// Reassembly errors. Each comes wrapped in a *ChunkError naming the peer,
// snapshot id and chunk; after any of them the partial message is dropped.
var (
	ErrChunkOrder       = errors.New("cluster: snapshot chunk out of order")
	ErrChunkOverlap     = errors.New("cluster: snapshot chunk overlaps bytes already received")
	ErrChunkGap         = errors.New("cluster: snapshot chunk leaves a gap")
	ErrChunkTotal       = errors.New("cluster: snapshot chunk states another total length")
	ErrChunkBounds      = errors.New("cluster: snapshot chunk is empty, over 1 MiB or runs past its total")
	ErrSnapshotTooLarge = errors.New("cluster: chunked message exceeds the size limit")
)

// ChunkError is a chunk the Reassembler refused.
type ChunkError struct {
	From   uint64 // the sending node
	SnapID uint64
	Index  uint32
	Detail string
	Err    error // one of the ErrChunk… sentinels or ErrSnapshotTooLarge
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("%v: node %d, snapshot %#x, chunk %d: %s", e.Err, e.From, e.SnapID, e.Index, e.Detail)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// SplitMessage cuts raw, a marshalled raft message, into chunks of at most
// chunk bytes (chunk <= 0 or over peer.MaxChunkSize means MaxChunkSize),
// all under snapshot id id. The chunks' Data alias raw. An empty raw gives
// no chunks.
func SplitMessage(id uint64, raw []byte, chunk int) []peer.SnapChunk {
	if chunk <= 0 || chunk > peer.MaxChunkSize {
		chunk = peer.MaxChunkSize
	}
	out := make([]peer.SnapChunk, 0, (len(raw)+chunk-1)/chunk)
	for off := 0; off < len(raw); off += chunk {
		end := min(off+chunk, len(raw))
		out = append(out, peer.SnapChunk{
			SnapID: id, Index: uint32(len(out)), Total: uint64(len(raw)), Offset: uint64(off),
			Data: raw[off:end:end],
		})
	}
	return out
}

// preallocMax bounds what the first chunk of a message reserves: a peer's
// claimed total is believed only as far as its bytes arrive.
const preallocMax = 64 << 20

// Reassembler joins the RAFTCHUNKs of each peer into whole messages. It
// keeps one message in flight per peer: a chunk of a new snapshot id from
// the same peer drops the old one, so memory is bounded by the number of
// peers times the size cap. It does no I/O and is safe for concurrent use
// by the links' receive paths.
type Reassembler struct {
	max uint64 // cap on a message's total length

	mu       sync.Mutex // guards inflight
	inflight map[uint64]*partial
}

// partial is a message being reassembled.
type partial struct {
	id    uint64
	total uint64
	next  uint64 // index the next chunk must have
	buf   []byte // bytes received so far
}

// NewReassembler returns a Reassembler that refuses messages longer than
// maxTotal bytes; 0 means peer.DefaultMaxMessage.
func NewReassembler(maxTotal uint64) *Reassembler {
	if maxTotal == 0 {
		maxTotal = peer.DefaultMaxMessage
	}
	return &Reassembler{max: maxTotal, inflight: make(map[uint64]*partial)}
}

// Add takes chunk c from node from. It returns the whole message when c
// completes it, nil while more chunks are due, and a *ChunkError when c
// does not continue the message in flight, after dropping that message.
// c.Data is copied; the caller may reuse it.
func (r *Reassembler) Add(from uint64, c peer.SnapChunk) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fail := func(err error, format string, args ...any) ([]byte, error) {
		delete(r.inflight, from)
		return nil, &ChunkError{From: from, SnapID: c.SnapID, Index: c.Index, Detail: fmt.Sprintf(format, args...), Err: err}
	}
	n := uint64(len(c.Data))
	if n == 0 || n > peer.MaxChunkSize || c.Offset > c.Total || n > c.Total-c.Offset {
		return fail(ErrChunkBounds, "%d bytes at offset %d of %d", n, c.Offset, c.Total)
	}
	p := r.inflight[from]
	if p == nil || p.id != c.SnapID {
		// A new message; whatever was in flight from this peer is stale.
		delete(r.inflight, from)
		if c.Total > r.max {
			return fail(ErrSnapshotTooLarge, "total %d bytes, limit %d", c.Total, r.max)
		}
		if c.Index != 0 || c.Offset != 0 {
			return fail(ErrChunkOrder, "a message starts with chunk 0 at offset 0, got offset %d", c.Offset)
		}
		p = &partial{id: c.SnapID, total: c.Total, buf: make([]byte, 0, min(c.Total, preallocMax))}
		r.inflight[from] = p
	} else {
		got := uint64(len(p.buf))
		switch {
		case c.Total != p.total:
			return fail(ErrChunkTotal, "total %d, the message's is %d", c.Total, p.total)
		case c.Offset < got:
			return fail(ErrChunkOverlap, "offset %d, %d bytes received", c.Offset, got)
		case c.Offset > got:
			return fail(ErrChunkGap, "offset %d, %d bytes received", c.Offset, got)
		case uint64(c.Index) != p.next:
			return fail(ErrChunkOrder, "want chunk %d", p.next)
		}
	}
	p.buf = append(p.buf, c.Data...)
	p.next++
	if uint64(len(p.buf)) < p.total {
		return nil, nil
	}
	delete(r.inflight, from)
	return p.buf, nil
}

// Drop forgets the message in flight from node from, if any: its link
// went down, or raft gave up on the snapshot.
func (r *Reassembler) Drop(from uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.inflight, from)
}

// Pending reports the message in flight from node from: its snapshot id
// and how many of its total bytes have arrived.
func (r *Reassembler) Pending(from uint64) (id, received, total uint64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.inflight[from]
	if p == nil {
		return 0, 0, 0, false
	}
	return p.id, uint64(len(p.buf)), p.total, true
}
