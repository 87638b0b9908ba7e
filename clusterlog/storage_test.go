package clusterlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func ents(term uint64, lo, hi uint64) []*raftpb.Entry {
	var out []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		out = append(out, &raftpb.Entry{Index: new(i), Term: new(term), Data: []byte{byte(i)}})
	}
	return out
}

func openTemp(t *testing.T) (*Storage, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.db")
	s, err := OpenStorage(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantTerm(t *testing.T, s *Storage, i, want uint64, wantErr error) {
	t.Helper()
	got, err := s.Term(i)
	if err != wantErr || got != want {
		t.Errorf("Term(%d) = %d, %v; want %d, %v", i, got, err, want, wantErr)
	}
}

func TestStorageAppendAndRead(t *testing.T) {
	s, _ := openTemp(t)
	if f, _ := s.FirstIndex(); f != 1 {
		t.Errorf("FirstIndex of empty log = %d, want 1", f)
	}
	if l, _ := s.LastIndex(); l != 0 {
		t.Errorf("LastIndex of empty log = %d, want 0", l)
	}
	wantTerm(t, s, 0, 0, nil)
	hs, cs, err := s.InitialState()
	if err != nil || !raft.IsEmptyHardState(hs) || len(cs.GetVoters()) != 0 {
		t.Errorf("InitialState of empty log = %v, %v, %v", hs, cs, err)
	}

	must(t, s.Append(ents(1, 1, 5)))
	got, err := s.Entries(1, 6, 1<<20)
	if err != nil || len(got) != 5 {
		t.Fatalf("Entries(1, 6) = %d entries, %v", len(got), err)
	}
	for i, e := range got {
		if e.GetIndex() != uint64(i+1) || e.GetData()[0] != byte(i+1) {
			t.Errorf("entry %d = %v", i+1, e)
		}
	}
	if got, _ := s.Entries(2, 6, 1); len(got) != 1 {
		t.Errorf("Entries with maxSize 1 returned %d entries, want 1", len(got))
	}
	wantTerm(t, s, 3, 1, nil)
	wantTerm(t, s, 6, 0, raft.ErrUnavailable)

	// A conflicting append replaces the suffix.
	must(t, s.Append(ents(2, 4, 6)))
	wantTerm(t, s, 3, 1, nil)
	wantTerm(t, s, 4, 2, nil)
	wantTerm(t, s, 6, 2, nil)
	// A shorter conflicting append drops what follows it.
	must(t, s.Append(ents(3, 5, 5)))
	if l, _ := s.LastIndex(); l != 5 {
		t.Errorf("LastIndex after truncating append = %d, want 5", l)
	}
	if _, err := s.Entries(1, 7, 1<<20); err != raft.ErrUnavailable {
		t.Errorf("Entries beyond the end: %v, want ErrUnavailable", err)
	}
	if err := s.Append(ents(3, 9, 9)); !errors.Is(err, ErrLogGap) {
		t.Errorf("Append with a gap: %v, want ErrLogGap", err)
	}

	hs = &raftpb.HardState{Term: new(uint64(3)), Vote: new(uint64(2)), Commit: new(uint64(4))}
	must(t, s.SetHardState(hs))
	got2, _, _ := s.InitialState()
	if !proto.Equal(got2, hs) {
		t.Errorf("InitialState hard state = %v, want %v", got2, hs)
	}
}

func TestStorageSnapshotAndCompact(t *testing.T) {
	s, _ := openTemp(t)
	must(t, s.Append(ents(1, 1, 10)))
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	snap, err := s.CreateSnapshot(6, cs, []byte("state@6"))
	if err != nil {
		t.Fatal(err)
	}
	if snap.GetMetadata().GetIndex() != 6 || snap.GetMetadata().GetTerm() != 1 {
		t.Errorf("snapshot metadata = %v", snap.GetMetadata())
	}
	if _, err := s.CreateSnapshot(5, cs, nil); err != raft.ErrSnapOutOfDate {
		t.Errorf("older CreateSnapshot: %v, want ErrSnapOutOfDate", err)
	}
	if err := s.Compact(7); !errors.Is(err, ErrCompactUnsnapshotted) {
		t.Errorf("Compact beyond the snapshot: %v, want ErrCompactUnsnapshotted", err)
	}
	must(t, s.Compact(4))
	if f, _ := s.FirstIndex(); f != 5 {
		t.Errorf("FirstIndex after Compact(4) = %d, want 5", f)
	}
	wantTerm(t, s, 4, 1, nil)
	wantTerm(t, s, 3, 0, raft.ErrCompacted)
	if _, err := s.Entries(4, 6, 1<<20); err != raft.ErrCompacted {
		t.Errorf("Entries of compacted index: %v, want ErrCompacted", err)
	}
	if err := s.Compact(4); err != raft.ErrCompacted {
		t.Errorf("Compact twice: %v, want ErrCompacted", err)
	}
	got, err := s.Snapshot()
	if err != nil || string(got.GetData()) != "state@6" || !slices.Equal(got.GetMetadata().GetConfState().GetVoters(), []uint64{1, 2, 3}) {
		t.Errorf("Snapshot() = %v, %v", got, err)
	}

	// A snapshot from the leader replaces the whole log.
	recv := &raftpb.Snapshot{Data: []byte("state@20"), Metadata: &raftpb.SnapshotMetadata{
		Index: new(uint64(20)), Term: new(uint64(4)), ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}},
	}}
	must(t, s.ApplySnapshot(recv))
	if f, _ := s.FirstIndex(); f != 21 {
		t.Errorf("FirstIndex after ApplySnapshot = %d, want 21", f)
	}
	if l, _ := s.LastIndex(); l != 20 {
		t.Errorf("LastIndex after ApplySnapshot = %d, want 20", l)
	}
	wantTerm(t, s, 20, 4, nil)
	if err := s.ApplySnapshot(recv); err != raft.ErrSnapOutOfDate {
		t.Errorf("ApplySnapshot again: %v, want ErrSnapOutOfDate", err)
	}
	must(t, s.Append(ents(4, 21, 22)))
	wantTerm(t, s, 22, 4, nil)
}

func TestStorageReopen(t *testing.T) {
	s, path := openTemp(t)
	must(t, s.Append(ents(1, 1, 3)))
	must(t, s.Append(ents(2, 4, 8)))
	hs := &raftpb.HardState{Term: new(uint64(2)), Vote: new(uint64(1)), Commit: new(uint64(7))}
	must(t, s.SetHardState(hs))
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	if _, err := s.CreateSnapshot(5, cs, []byte("five")); err != nil {
		t.Fatal(err)
	}
	must(t, s.Compact(3))
	must(t, s.SetApplied(6, cs))
	inc := s.Opens()
	must(t, s.Close())

	s, err := OpenStorage(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	gotHS, gotCS, _ := s.InitialState()
	if !proto.Equal(gotHS, hs) {
		t.Errorf("hard state after reopen = %v, want %v", gotHS, hs)
	}
	if !slices.Equal(gotCS.GetVoters(), cs.Voters) || !slices.Equal(gotCS.GetLearners(), cs.Learners) {
		t.Errorf("conf state after reopen = %v, want %v", gotCS, cs)
	}
	if applied, _ := s.Applied(); applied != 6 {
		t.Errorf("applied after reopen = %d, want 6", applied)
	}
	if f, _ := s.FirstIndex(); f != 4 {
		t.Errorf("FirstIndex after reopen = %d, want 4", f)
	}
	if l, _ := s.LastIndex(); l != 8 {
		t.Errorf("LastIndex after reopen = %d, want 8", l)
	}
	wantTerm(t, s, 3, 1, nil)
	wantTerm(t, s, 4, 2, nil)
	if snap, _ := s.Snapshot(); snap.GetMetadata().GetIndex() != 5 || string(snap.GetData()) != "five" {
		t.Errorf("snapshot after reopen = %v", snap)
	}
	if got := s.Opens(); got != inc+1 {
		t.Errorf("opens = %d, want %d", got, inc+1)
	}
	if got := s.WriteTxns(); got != 1 {
		t.Errorf("WriteTxns after open = %d, want 1", got)
	}
}

func TestStorageOneFsyncPerWrite(t *testing.T) {
	s, _ := openTemp(t)
	before := s.WriteTxns()
	must(t, s.Append(ents(1, 1, 3)))
	must(t, s.SetHardState(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(3))}))
	if got := s.WriteTxns() - before; got != 2 {
		t.Errorf("two writes made %d transactions", got)
	}
	before = s.WriteTxns()
	must(t, s.Update(func(b *Batch) error {
		if err := b.Append(ents(1, 4, 6)); err != nil {
			return err
		}
		if err := b.SetHardState(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(6))}); err != nil {
			return err
		}
		return b.SetApplied(6, &raftpb.ConfState{Voters: []uint64{1}})
	}))
	if got := s.WriteTxns() - before; got != 1 {
		t.Errorf("one Update made %d transactions", got)
	}
	// A failing Update changes nothing.
	errBoom := errors.New("boom")
	err := s.Update(func(b *Batch) error {
		if err := b.Append(ents(1, 7, 9)); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Errorf("Update returned %v", err)
	}
	if l, _ := s.LastIndex(); l != 6 {
		t.Errorf("LastIndex after a rolled back Update = %d, want 6", l)
	}
}

// TestStorageCorruptOnOpen damages one record at a time and checks that
// OpenStorage refuses the file with a typed error naming the record.
func TestStorageCorruptOnOpen(t *testing.T) {
	del := func(bucket, key []byte) func(*bolt.Tx) error {
		return func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete(key) }
	}
	tests := []struct {
		name       string
		damage     func(*bolt.Tx) error
		wantRecord string
	}{
		{"entries bucket of version 3", func(tx *bolt.Tx) error { _, err := tx.CreateBucket(bucketEntries); return err }, `entries/""`},
		{"wal generation missing", del(bucketMeta, keyWAL), `meta/"wal"`},
		{"wal generation wrong size", put(bucketMeta, keyWAL, []byte{1}), `meta/"wal"`},
		{"hard state garbage", put(bucketMeta, keyHardState, []byte{0x0a}), `meta/"hardstate"`},
		{"applied wrong size", put(bucketMeta, keyApplied, []byte{1}), `meta/"applied"`},
		{"truncated missing", del(bucketMeta, keyTruncated), `meta/"truncated"`},
		{"commit beyond log", put(bucketMeta, keyHardState, mustMarshal(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(99))})), `meta/"hardstate"`},
		{"format missing", del(bucketMeta, keyFormat), `meta/"format"`},
		{"conf state garbage", put(bucketMeta, keyConfState, []byte{0x08}), `meta/"confstate"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeSampleLog(t)
			damageFile(t, path, tt.damage)
			_, err := OpenStorage(path, nil)
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("OpenStorage: %v, want ErrCorrupt", err)
			}
			var ce *CorruptError
			if !errors.As(err, &ce) || ce.Record != tt.wantRecord {
				t.Fatalf("OpenStorage: %v, want a CorruptError for %s", err, tt.wantRecord)
			}
			t.Logf("%v", err)
		})
	}
}

func TestStorageFormatVersion(t *testing.T) {
	path := writeSampleLog(t)
	damageFile(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyFormat, binary.BigEndian.AppendUint32(nil, 99))
	})
	_, err := OpenStorage(path, nil)
	var fe *FormatVersionError
	if !errors.Is(err, ErrFormatVersion) || !errors.As(err, &fe) || fe.Found != 99 || fe.Supported != FormatVersion {
		t.Fatalf("OpenStorage of version 99: %v", err)
	}
	t.Logf("%v", err)

	// A bbolt file that is not a log at all.
	path = filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	must(t, db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("users")); return err }))
	must(t, db.Close())
	if _, err := OpenStorage(path, nil); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("OpenStorage of a foreign bbolt file: %v, want ErrCorrupt", err)
	}
}

// TestStorageCorruptAfterOpen damages an entry's record behind an open
// Storage's back: reads report a typed error naming it instead of
// panicking.
func TestStorageCorruptAfterOpen(t *testing.T) {
	s, _ := openTemp(t)
	must(t, s.Append(ents(1, 1, 5)))
	p, _ := s.st.index.get(2)
	if _, err := p.seg.f.WriteAt([]byte{0xff}, p.off+recHeaderLen); err != nil {
		t.Fatal(err)
	}
	s.st.recent = recent{} // else entries just appended are read from memory
	_, err := s.Entries(1, 4, 1<<20)
	if ce, ok := errors.AsType[*CorruptError](err); !ok || !strings.HasPrefix(ce.Record, "wal/") || !strings.HasSuffix(ce.Record, fmt.Sprintf("@%d", p.off)) {
		t.Errorf("Entries over a damaged entry: %v, want a CorruptError for its record at %d", err, p.off)
	}
}

func put(bucket, key, val []byte) func(*bolt.Tx) error {
	return func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put(key, val) }
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// writeSampleLog writes a small valid log: entries 1..5 (5 in three
// chunks), commit 3, applied 2.
func writeSampleLog(t *testing.T) string {
	t.Helper()
	s, path := openTemp(t)
	must(t, s.Append(ents(1, 1, 4)))
	// Entry 5 is stored in three chunks.
	must(t, s.Append([]*raftpb.Entry{{Index: new(uint64(5)), Term: new(uint64(1)), Data: make([]byte, 2*entryChunkLen)}}))
	must(t, s.SetHardState(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(3))}))
	must(t, s.SetApplied(2, &raftpb.ConfState{Voters: []uint64{1}}))
	must(t, s.Close())
	return path
}

func damageFile(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	must(t, err)
	must(t, db.Update(fn))
	must(t, db.Close())
}

func TestEnvelopeRoundTrip(t *testing.T) {
	id := proposalID{node: 3, opens: 7, seq: 1 << 40}
	b := appendEnvelope(nil, id)
	b = append(b, "payload"...)
	got, payload, err := decodeEnvelope(1, b)
	if err != nil || got != id || string(payload) != "payload" {
		t.Errorf("decodeEnvelope = %v %q %v", got, payload, err)
	}
	for _, bad := range [][]byte{nil, b[:envelopeHeaderLen-1], append([]byte{9}, b[1:]...)} {
		if _, _, err := decodeEnvelope(1, bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeEnvelope(%x): %v, want ErrCorrupt", bad, err)
		}
	}
}

// TestStorageStaleSnapshot: while a Node asks for requests, a stored
// snapshot that predates an applied configuration change is refused with
// raft.ErrSnapshotTemporarilyUnavailable and one request is signalled,
// without blocking however often raft asks; without a requester, or once
// the snapshot is fresh again, the stored snapshot is returned.
func TestStorageStaleSnapshot(t *testing.T) {
	s, _ := openTemp(t)
	must(t, s.Append(ents(1, 1, 10)))
	three := &raftpb.ConfState{Voters: []uint64{1, 2, 3}}
	four := &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	must(t, s.SetApplied(6, three))
	if _, err := s.CreateSnapshot(6, three, []byte("state@6")); err != nil {
		t.Fatal(err)
	}
	req := make(chan struct{}, 1)
	s.requestSnapshots(req)
	// The same configuration, listed in another order, is not stale.
	must(t, s.SetApplied(8, &raftpb.ConfState{Voters: []uint64{3, 1, 2}}))
	if _, err := s.Snapshot(); err != nil {
		t.Fatalf("Snapshot with an unchanged configuration: %v", err)
	}
	if len(req) != 0 {
		t.Fatal("request signalled for a snapshot that is not stale")
	}

	must(t, s.SetApplied(9, four))
	for range 3 {
		if _, err := s.Snapshot(); err != raft.ErrSnapshotTemporarilyUnavailable {
			t.Fatalf("Snapshot after a conf change: %v, want ErrSnapshotTemporarilyUnavailable", err)
		}
	}
	if len(req) != 1 {
		t.Fatalf("%d requests pending, want 1", len(req))
	}
	<-req

	s.requestSnapshots(nil)
	if got, err := s.Snapshot(); err != nil || string(got.GetData()) != "state@6" {
		t.Errorf("Snapshot without a requester = %v, %v; want the stored one", got, err)
	}
	s.requestSnapshots(req)
	if _, err := s.CreateSnapshot(9, four, []byte("state@9")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Snapshot(); err != nil || string(got.GetData()) != "state@9" {
		t.Errorf("Snapshot after the fresh one = %v, %v", got, err)
	}
	if len(req) != 0 {
		t.Error("request signalled for the fresh snapshot")
	}
}
