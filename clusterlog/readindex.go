package clusterlog

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"

	"go.etcd.io/raft/v3"
)

// readRequest is one ReadIndex call in flight.
type readRequest struct {
	id        uint64      // assigned by the loop
	done      chan uint64 // capacity 1; the loop never blocks on it
	abandoned atomic.Bool // the caller gave up
}

// ReadIndex returns a log index such that every entry committed before the
// call is at or below it (raft's ReadIndex: the leader confirms with a
// quorum that it still leads, then answers its commit index). Once this
// node has applied the returned index, a read of local state reflects every
// write committed before ReadIndex was called. It waits for a leader if
// none is known; when ctx ends first it fails with an error matching
// ErrNoLeader if still none is known, or with the context's error.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	r := &readRequest{done: make(chan uint64, 1)}
	select {
	case n.readc <- r:
	case <-ctx.Done():
		return 0, n.readErr(ctx)
	case <-n.done:
		return 0, n.stoppedErr()
	}
	select {
	case idx := <-r.done:
		return idx, nil
	case <-ctx.Done():
		r.abandoned.Store(true)
		return 0, n.readErr(ctx)
	case <-n.done:
		return 0, n.stoppedErr()
	}
}

func (n *Node) readErr(ctx context.Context) error {
	if n.Status().Leader == 0 {
		return fmt.Errorf("clusterlog: read index: %w: %w", ErrNoLeader, ctx.Err())
	}
	return fmt.Errorf("clusterlog: read index: %w", ctx.Err())
}

// acceptRead registers a ReadIndex request and asks raft. Loop only.
func (n *Node) acceptRead(r *readRequest) {
	l := &n.loop
	l.nextRead++
	r.id = l.nextRead
	l.reads[r.id] = r
	if l.lead != raft.None {
		l.rn.ReadIndex(binary.BigEndian.AppendUint64(nil, r.id))
	}
}

// retryReads asks raft again for every pending read: after a leader change,
// and every election timeout, since a request forwarded to a leader that
// was lost is dropped silently. Loop only.
func (n *Node) retryReads() {
	l := &n.loop
	for id, r := range l.reads {
		if r.abandoned.Load() {
			delete(l.reads, id)
			continue
		}
		if l.lead != raft.None {
			l.rn.ReadIndex(binary.BigEndian.AppendUint64(nil, id))
		}
	}
}

// readStates answers the reads raft has confirmed. Loop only.
func (n *Node) readStates(rs []raft.ReadState) {
	l := &n.loop
	for _, s := range rs {
		if len(s.RequestCtx) != 8 {
			continue
		}
		id := binary.BigEndian.Uint64(s.RequestCtx)
		if r, ok := l.reads[id]; ok {
			delete(l.reads, id)
			r.done <- s.Index
			n.stats.reads.Add(1)
		}
	}
}
