package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/rsm"
)

// blobMachine keeps every command it is given, by index: state as large as
// a test wants.
type blobMachine struct {
	mu  sync.Mutex // guards sum
	sum [32]byte   // hash of the state, updated on every change
}

const blobID rsm.ID = 200

func (m *blobMachine) ID() rsm.ID { return blobID }

func (m *blobMachine) Apply(tx rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	if err := tx.Put(binary.BigEndian.AppendUint64(nil, e.Index), e.Cmd); err != nil {
		return rsm.Result{}, err
	}
	return rsm.Result{}, m.rehash(tx)
}

func (m *blobMachine) rehash(tx rsm.Tx) error {
	h := sha256.New()
	err := tx.Scan(nil, func(k, v []byte) error {
		h.Write(k)
		h.Write(v)
		return nil
	})
	m.mu.Lock()
	copy(m.sum[:], h.Sum(nil))
	m.mu.Unlock()
	return err
}

func (m *blobMachine) hash() [32]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sum
}

func (m *blobMachine) Snapshot(tx rsm.Tx, w io.Writer) error {
	return tx.Scan(nil, func(k, v []byte) error {
		var hdr [12]byte
		copy(hdr[:8], k)
		binary.BigEndian.PutUint32(hdr[8:], uint32(len(v)))
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		_, err := w.Write(v)
		return err
	})
}

func (m *blobMachine) Restore(tx rsm.Tx, r io.Reader) error {
	for {
		var hdr [12]byte
		if _, err := io.ReadFull(r, hdr[:]); err == io.EOF {
			return m.rehash(tx)
		} else if err != nil {
			return err
		}
		v := make([]byte, binary.BigEndian.Uint32(hdr[8:]))
		if _, err := io.ReadFull(r, v); err != nil {
			return err
		}
		if err := tx.Put(hdr[:8], v); err != nil {
			return err
		}
	}
}

// TestLargeStateReachesNewNode fills a machine with 64 MiB on a one-node
// cluster whose log is then compacted, and adds a node: the snapshot,
// far larger than a peer frame, travels in RAFTCHUNK pieces over the mesh
// and the new node ends with the same state.
func TestLargeStateReachesNewNode(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 64 MiB through the log; skipped with -short")
	}
	h := newHarness(t, 2)
	blobs := []*blobMachine{{}, {}}
	for i, nd := range h.nodes {
		nd.machines = []rsm.Machine{blobs[i]}
		nd.snapEvery = 4
	}
	n1, n2 := h.nodes[0], h.nodes[1]
	h.start(n1, true)
	eventually(t, 10*time.Second, "the founder a member", func() bool { return viewIs(n1, 1) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const piece, total = 4 << 20, 64 << 20
	for i := range total / piece {
		cmd := bytes.Repeat([]byte{byte(i)}, piece)
		if _, _, err := n1.cl.Proposer().Propose(ctx, blobID, cmd); err != nil {
			t.Fatal(err)
		}
	}
	if n1.cl.Stats().Snapshots == 0 {
		t.Fatal("no snapshot taken on the founder")
	}
	h.start(n2, false, n1)
	eventually(t, 90*time.Second, "the new node has the same state", func() bool {
		return blobs[1].hash() == blobs[0].hash() && viewIs(n2, 1, 2)
	})
	if !bytes.Contains([]byte(n1.log.String()), []byte("sent a large raft message")) {
		t.Error("the snapshot did not go in RAFTCHUNK pieces")
	}
}

// TestSlowDiskKeepsLinks stalls the leader's log for 2 s on every write
// for a while: the raft loop waits, the link readers do not, so no link is
// declared dead (heartbeat timeout 1 s).
func TestSlowDiskKeepsLinks(t *testing.T) {
	h := newHarness(t, 3)
	for _, nd := range h.nodes {
		nd.machines = []rsm.Machine{&blobMachine{}}
	}
	var slow atomic.Bool
	h.nodes[0].onFsync = func(time.Duration) {
		if slow.Load() {
			time.Sleep(2 * time.Second)
		}
	}
	h.form()
	for _, nd := range h.nodes {
		for len(nd.linkDown) > 0 {
			<-nd.linkDown // handovers while forming
		}
	}
	slow.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 3 {
		// Writes that the stalled log must take; their fate does not matter.
		wg.Go(func() { h.nodes[0].cl.Proposer().Propose(ctx, blobID, []byte(fmt.Sprint(i))) })
	}
	time.Sleep(5 * time.Second) // the window under test: 5 s of a stalled log
	slow.Store(false)
	wg.Wait()
	for _, nd := range h.nodes {
		for len(nd.linkDown) > 0 {
			// A link closed as a duplicate of another is a handover,
			// not a link declared dead.
			if ev := <-nd.linkDown; !errors.Is(ev.Err, proto.ErrDup) {
				t.Errorf("node %d's link to node %d ended while node 1's disk was slow: %v", nd.id, ev.Peer.NodeID, ev.Err)
			}
		}
		for _, other := range h.nodes {
			if other != nd && nd.mesh.Link(other.id) == nil {
				t.Errorf("node %d has no link to node %d after the slow disk", nd.id, other.id)
			}
		}
	}
}
