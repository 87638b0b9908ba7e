package clusterlog_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/clusterlog"
)

// bigApp keeps its state in the AppTx: command "fill K N" stores N bytes
// derived from K under key K, so a few small entries make a large state.
// It remembers each key's digest to compare nodes.
type bigApp struct {
	mu     sync.Mutex // guards digest
	digest map[string][32]byte
}

var bigBucket = []byte("big")

func (a *bigApp) Apply(tx *clusterlog.AppTx, e clusterlog.Entry) ([]byte, error) {
	if e.Kind != clusterlog.KindData || string(e.Data) == "noop" {
		return nil, nil
	}
	var key string
	var n int
	if _, err := fmt.Sscanf(string(e.Data), "fill %s %d", &key, &n); err != nil {
		return nil, fmt.Errorf("%w: %v", clusterlog.ErrRejected, err)
	}
	v := bytes.Repeat([]byte(key+"."), n/(len(key)+1))
	b, err := tx.Bucket(bigBucket)
	if err != nil {
		return nil, err
	}
	a.set(key, v)
	return nil, b.Put([]byte(key), v)
}

func (a *bigApp) set(k string, v []byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.digest == nil {
		a.digest = make(map[string][32]byte)
	}
	a.digest[k] = sha256.Sum256(v)
}

// Snapshot streams key length, key, value length, value for each key.
func (a *bigApp) Snapshot(tx *clusterlog.AppTx, w io.Writer) error {
	b, err := tx.Bucket(bigBucket)
	if err != nil {
		return err
	}
	return b.Scan(nil, func(k, v []byte) error {
		hdr := binary.LittleEndian.AppendUint32(nil, uint32(len(k)))
		hdr = append(hdr, k...)
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(v)))
		if _, err := w.Write(hdr); err != nil {
			return err
		}
		_, err := w.Write(v)
		return err
	})
}

func (a *bigApp) Restore(tx *clusterlog.AppTx, _ clusterlog.SnapshotMeta, r io.Reader) error {
	a.mu.Lock()
	a.digest = nil
	a.mu.Unlock()
	b, err := tx.Bucket(bigBucket)
	if err != nil {
		return err
	}
	var n [4]byte
	for {
		if _, err := io.ReadFull(r, n[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		k := make([]byte, binary.LittleEndian.Uint32(n[:]))
		if _, err := io.ReadFull(r, k); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, n[:]); err != nil {
			return err
		}
		v := make([]byte, binary.LittleEndian.Uint32(n[:]))
		if _, err := io.ReadFull(r, v); err != nil {
			return err
		}
		a.set(string(k), v)
		if err := b.Put(k, v); err != nil {
			return err
		}
	}
}

func (a *bigApp) Committed(uint64) {}

func (a *bigApp) digests() map[string][32]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return maps.Clone(a.digest)
}

// TestLargeSnapshot builds 64 MiB of state, compacts the log, then adds a
// new node, which can only catch up through a snapshot: it must arrive
// whole through the network and leave the new node with the same state,
// in memory and in its file.
func TestLargeSnapshot(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 64 MiB")
	}
	// A net for a hang, not a speed check: under -race on a loaded
	// 2-core machine moving 64 MiB three times takes a minute or more.
	ctx, cancel := context.WithTimeout(context.Background(), 8*testTimeout)
	defer cancel()
	c := newCluster(t, 3, func(cfg *clusterlog.Config) {
		cfg.SnapshotEvery = 16
		cfg.SnapshotKeep = 0
		// Writing and fsyncing 64 MiB snapshots blocks a node's loop for
		// a while under -race; keep leadership stable through it.
		cfg.TickInterval = 50 * time.Millisecond
		cfg.ElectionTicks = 60
	})
	apps := map[uint64]*bigApp{}
	for _, id := range []uint64{1, 2, 3} {
		// newCluster started the nodes with testApps; restart them on bigApps.
		c.stop(id)
	}
	c.tweakApp = func(id uint64) clusterlog.Applier {
		if apps[id] == nil {
			apps[id] = &bigApp{}
		}
		return apps[id]
	}
	for _, id := range []uint64{1, 2, 3} {
		c.start(id, c.peers)
	}
	// Commands are idempotent, so one whose fate is unknown is retried.
	propose := func(cmd string) {
		t.Helper()
		for {
			lead := c.waitLeader(ctx, 1, 2, 3)
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, _, err := c.nodes[lead].Propose(pctx, []byte(cmd))
			cancel()
			if err == nil {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("propose %q: %v", cmd, err)
			}
		}
	}
	const keys, size = 8, 8 << 20 // 64 MiB
	start := time.Now()
	for i := range keys {
		propose(fmt.Sprintf("fill k%d %d", i, size))
	}
	t.Logf("64 MiB proposed in %v", time.Since(start))
	start = time.Now()
	lead := c.waitLeader(ctx, 1, 2, 3)
	for c.nodes[lead].Status().Applied < 16 {
		propose("noop")
		lead = c.waitLeader(ctx, 1, 2, 3)
	}
	if first, _ := c.stores[lead].FirstIndex(); first < 16 {
		t.Fatalf("log not compacted (first index %d)", first)
	}
	t.Logf("64 MiB applied and snapshotted in %v", time.Since(start))
	start = time.Now()
	// Node 4 is added after the compaction, so the stored snapshot lacks
	// it: the leader takes a fresh one for it.
	for {
		lead = c.waitLeader(ctx, 1, 2, 3)
		_, err := c.nodes[lead].AddLearner(ctx, 4)
		if err == nil {
			break
		}
		if !errors.Is(err, clusterlog.ErrNotLeader) {
			t.Fatal(err)
		}
	}
	c.start(4, nil)
	propose("noop")
	lead = c.waitLeader(ctx, 1, 2, 3)
	c.waitApplied(ctx, c.maxCommit())
	t.Logf("new node caught up in %v", time.Since(start))
	want := apps[lead].digests()
	if len(want) != keys {
		t.Fatalf("leader holds %d keys, want %d", len(want), keys)
	}
	if got := apps[4].digests(); !maps.Equal(got, want) {
		t.Errorf("new node's state differs from the leader's: %d keys vs %d", len(got), len(want))
	}
	if st := c.nodes[4].Stats(); st.Restores != 1 {
		t.Errorf("new node restored %d snapshots, want 1", st.Restores)
	}
	// Its file holds the same state.
	st := c.stores[4]
	c.stop(4)
	reopened, err := clusterlog.OpenStorage(st.Path(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reopened.Close()
	check := &bigApp{}
	err = reopened.Update(func(b *clusterlog.Batch) error {
		var buf bytes.Buffer
		if err := check.Snapshot(b.App(), &buf); err != nil {
			return err
		}
		return check.Restore(b.App(), clusterlog.SnapshotMeta{}, &buf)
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := check.digests(); !maps.Equal(got, want) {
		t.Errorf("new node's file differs from the leader's state: %d keys", len(got))
	}
}
