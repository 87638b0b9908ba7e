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
		if v := b.meta().Get(keyFormat); !bytes.Equal(v, encodeFormat(4)) || b.meta().Get(keyIncarnation) != nil {
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
// applied 4, commit 5, opened once): it is upgraded to version 3 and then
// 4, every entry read back the same from the WAL, and a node on it applies
// entry 5.
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
	checkUpgradedTo4(t, s, 5)
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

// checkUpgradedTo4 checks that s was upgraded to version 4: format 4,
// generation 1, no entries bucket, and its last entries in the one segment
// of the WAL.
func checkUpgradedTo4(t *testing.T, s *Storage, last uint64) {
	t.Helper()
	must(t, s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyFormat); !bytes.Equal(v, encodeFormat(4)) {
			t.Errorf("format %x after upgrade", v)
		}
		if v := tx.Bucket(bucketMeta).Get(keyWAL); !bytes.Equal(v, encodeUint64(1)) {
			t.Errorf("wal generation %x after upgrade", v)
		}
		if tx.Bucket(bucketEntries) != nil {
			t.Error("entries bucket left after upgrade")
		}
		return nil
	}))
	des, err := os.ReadDir(s.walDir)
	must(t, err)
	if len(des) != 1 || des[0].Name() != (segHeader{1, 0, 1}).name() {
		t.Errorf("WAL after upgrade holds %v", des)
	}
	if p, ok := s.st.index.get(last); !ok || p.seg == nil {
		t.Errorf("entry %d not in the WAL after upgrade", last)
	}
}

// TestOpenVersion3 opens testdata/log-v3.db, written by the version 3 code
// (entry 1 the founding ConfChange, 2..5 with entry 4 of 3025 bytes in
// four chunks, snapshot "state-at-3" at 3, applied 4, commit 5): it is
// upgraded to version 4, every entry read back the same from the WAL; an
// upgrade cut short (the WAL written, the bbolt transaction never
// committed) leaves a version 3 file that upgrades again.
func TestOpenVersion3(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "log-v3.db"))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "log.db")
	must(t, os.WriteFile(path, golden, 0o600))
	// The crash: a WAL of a half-done upgrade, with junk, is there.
	must(t, os.MkdirAll(path+walDirSuffix, 0o700))
	must(t, os.WriteFile(filepath.Join(path+walDirSuffix, (segHeader{1, 0, 1}).name()), []byte("half-written"), 0o600))
	s, err := OpenStorage(path, nil)
	if err != nil {
		t.Fatalf("open a version 3 file: %v", err)
	}
	defer s.Close()
	if applied, _ := s.Applied(); applied != 4 {
		t.Errorf("applied after upgrade = %d, want 4", applied)
	}
	es, err := s.Entries(1, 6, 1<<20)
	must(t, err)
	if len(es) != 5 || es[0].GetType() != raftpb.EntryConfChange || len(es[3].GetData()) != 3025 || !bytes.HasSuffix(es[4].GetData(), []byte("five")) {
		t.Fatalf("entries after upgrade: %v", es)
	}
	checkUpgradedTo4(t, s, 5)
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
	if !slices.Equal(app.data, []string{"five"}) {
		t.Errorf("applied %q; want [five]", app.data)
	}
}

// TestOpenVersion4 opens testdata/log-v4.db and its WAL log-v4.db.wal/,
// written by this code (with -rewrite): entries 1..5 of term 1, entries
// 4..6 replaced by term 2 (overwrite by append), commit 5, applied 3,
// snapshot "state-at-3" at 3 and compacted to 2. A reopen reads exactly
// that back.
func TestOpenVersion4(t *testing.T) {
	src := filepath.Join("testdata", "log-v4.db")
	if *rewrite {
		must(t, os.RemoveAll(src+walDirSuffix))
		_ = os.Remove(src)
		s, err := openStorage(src, nil, 0)
		must(t, err)
		must(t, s.Append(ents(1, 1, 5)))
		must(t, s.Append(ents(2, 4, 6)))
		cs := &raftpb.ConfState{Voters: []uint64{1}}
		must(t, s.Update(func(b *Batch) error {
			if err := b.SetHardState(&raftpb.HardState{Term: new(uint64(2)), Vote: new(uint64(1)), Commit: new(uint64(5))}); err != nil {
				return err
			}
			if err := b.SetApplied(3, cs); err != nil {
				return err
			}
			if _, err := b.CreateSnapshot(3, cs, []byte("state-at-3")); err != nil {
				return err
			}
			return b.Compact(2)
		}))
		must(t, s.Close())
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "log.db")
	b, err := os.ReadFile(src)
	must(t, err)
	must(t, os.WriteFile(path, b, 0o600))
	must(t, os.Mkdir(path+walDirSuffix, 0o700))
	des, err := os.ReadDir(src + walDirSuffix)
	must(t, err)
	for _, de := range des {
		b, err := os.ReadFile(filepath.Join(src+walDirSuffix, de.Name()))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(path+walDirSuffix, de.Name()), b, 0o600))
	}
	s, err := OpenStorage(path, nil)
	must(t, err)
	defer s.Close()
	wantLog(t, s, append(ents(1, 3, 3), ents(2, 4, 6)...))
	hs, _, _ := s.InitialState()
	applied, _ := s.Applied()
	snap, _ := s.Snapshot()
	if hs.GetCommit() != 5 || applied != 3 || string(snap.GetData()) != "state-at-3" || s.Opens() != 2 {
		t.Errorf("commit %d, applied %d, snapshot %q, opens %d", hs.GetCommit(), applied, snap.GetData(), s.Opens())
	}
}
