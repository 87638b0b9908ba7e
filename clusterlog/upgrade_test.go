package clusterlog

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3/raftpb"
)

// recApp records what a node hands it; it keeps its state in the AppTx.
type recApp struct {
	restored []byte
	data     []string
}

func (a *recApp) Apply(tx *AppTx, e Entry) ([]byte, error) {
	b, err := tx.Bucket([]byte("rec"))
	if err != nil {
		return nil, err
	}
	a.data = append(a.data, string(e.Data))
	return nil, b.Put(indexKey(e.Index), e.Data)
}
func (a *recApp) Snapshot(tx *AppTx, w io.Writer) error { return nil }
func (a *recApp) Restore(tx *AppTx, s SnapshotMeta, r io.Reader) error {
	var err error
	a.restored, err = io.ReadAll(r)
	return err
}
func (a *recApp) Committed(uint64) {}

type dropSender struct{}

func (dropSender) Send([]*raftpb.Message) {}

// TestOpenVersion1 opens testdata/log-v1.db, written by the version 1 code
// (entries 1..5, snapshot "state-at-3" at 3, applied 4, opened twice): it is
// upgraded to version 2 with its applied index kept, and a node on it
// applies entry 5 into its key space: the old snapshot, at or below the
// applied index, is not restored over the state the application brings.
func TestOpenVersion1(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "log-v1.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "log.db")
	must(t, os.WriteFile(path, golden, 0o600))
	s, err := OpenStorage(path, nil)
	if err != nil {
		t.Fatalf("open a version 1 file: %v", err)
	}
	defer s.Close()
	if got := s.Opens(); got != 3 {
		t.Errorf("opens = %d, want 3 (two opens in version 1, one now)", got)
	}
	if applied, cs := s.Applied(); applied != 4 || len(cs.GetVoters()) == 0 {
		t.Errorf("applied after upgrade = %d (conf %v), want 4 and the stored voters", applied, cs)
	}
	app := &recApp{}
	n, err := NewNode(Config{ID: 1, Storage: s, Applier: app, Sender: dropSender{}, TickInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if _, err := n.WaitFor(ctx, func(st Status) bool { return st.Applied >= 5 }); err != nil {
		t.Fatal(err)
	}
	must(t, n.Stop(ctx))
	if app.restored != nil || !slices.Equal(app.data, []string{"five"}) {
		t.Errorf("restored %q, applied %q; want nothing restored, [five]", app.restored, app.data)
	}
	err = s.Update(func(b *Batch) error {
		var got [][]byte
		bk, err := b.App().Bucket([]byte("rec"))
		if err != nil {
			return err
		}
		_ = bk.Scan(nil, func(k, v []byte) error { got = append(got, bytes.Clone(v)); return nil })
		if len(got) != 1 || string(got[0]) != "five" {
			t.Errorf("app bucket holds %q", got)
		}
		if v := b.meta().Get(keyFormat); !bytes.Equal(v, encodeFormat(3)) || b.meta().Get(keyIncarnation) != nil {
			t.Errorf("format %x, incarnation %x after upgrade", v, b.meta().Get(keyIncarnation))
		}
		return nil
	})
	must(t, err)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestOpenVersion2 opens testdata/log-v2.db, written by the version 2 code
// (entries 1..5, entry 4 of 3025 bytes, snapshot "state-at-3" at 3,
// applied 4, commit 5, opened once): it is upgraded to version 3, every
// entry stored again in chunks and read back the same, and a node on it
// applies entry 5.
func TestOpenVersion2(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "log-v2.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "log.db")
	must(t, os.WriteFile(path, golden, 0o600))
	s, err := OpenStorage(path, nil)
	if err != nil {
		t.Fatalf("open a version 2 file: %v", err)
	}
	defer s.Close()
	if got := s.Opens(); got != 2 {
		t.Errorf("opens = %d, want 2", got)
	}
	if applied, _ := s.Applied(); applied != 4 {
		t.Errorf("applied after upgrade = %d, want 4", applied)
	}
	es, err := s.Entries(1, 6, 1<<20)
	must(t, err)
	if len(es) != 5 || len(es[3].GetData()) != 3025 || !bytes.HasSuffix(es[4].GetData(), []byte("five")) {
		t.Fatalf("entries after upgrade: %d, entry 4 of %d bytes", len(es), len(es[3].GetData()))
	}
	chunks := 0
	must(t, s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyFormat); !bytes.Equal(v, encodeFormat(3)) {
			t.Errorf("format %x after upgrade", v)
		}
		return tx.Bucket(bucketEntries).ForEach(func(k, v []byte) error {
			if len(k) != entryKeyLen {
				t.Errorf("key %x after upgrade", k)
			}
			chunks++
			return nil
		})
	}))
	if chunks != 4+4 { // entry 4's 3000-odd bytes in four chunks
		t.Errorf("%d chunks after upgrade, want 8", chunks)
	}
	app := &recApp{}
	n, err := NewNode(Config{ID: 1, Storage: s, Applier: app, Sender: dropSender{}, TickInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := testContext(t)
	if _, err := n.WaitFor(ctx, func(st Status) bool { return st.Applied >= 5 }); err != nil {
		t.Fatal(err)
	}
	must(t, n.Stop(ctx))
	if app.restored != nil || !slices.Equal(app.data, []string{"five"}) {
		t.Errorf("restored %q, applied %q; want nothing restored, [five]", app.restored, app.data)
	}
}
