package clusterlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// smallSegments makes a storage roll to a new segment every few records.
const smallSegments = 4096

func openSmall(t *testing.T, path string) *Storage {
	t.Helper()
	s, err := openStorage(path, nil, smallSegments)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// segNames lists the segment files in s's WAL directory.
func segNames(t *testing.T, s *Storage) []string {
	t.Helper()
	des, err := os.ReadDir(s.walDir)
	must(t, err)
	var out []string
	for _, de := range des {
		out = append(out, de.Name())
	}
	return out
}

// wantLog checks that s holds exactly want, from its first index on.
func wantLog(t *testing.T, s *Storage, want []*raftpb.Entry) {
	t.Helper()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if len(want) == 0 {
		if last != first-1 {
			t.Fatalf("log %d..%d, want empty", first, last)
		}
		return
	}
	if first != want[0].GetIndex() || last != want[len(want)-1].GetIndex() {
		t.Fatalf("log %d..%d, want %d..%d", first, last, want[0].GetIndex(), want[len(want)-1].GetIndex())
	}
	s.mu.Lock()
	s.st.recent = recent{} // read the WAL, not memory
	s.mu.Unlock()
	got, err := s.Entries(first, last+1, 1<<40)
	must(t, err)
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry %d = %v, want %v", want[i].GetIndex(), got[i], want[i])
		}
		if tm, err := s.Term(want[i].GetIndex()); err != nil || tm != want[i].GetTerm() {
			t.Fatalf("Term(%d) = %d %v, want %d", want[i].GetIndex(), tm, err, want[i].GetTerm())
		}
	}
}

// model applies raft's rule to a slice: entries replace the suffix from
// their first index on.
func model(log []*raftpb.Entry, es []*raftpb.Entry) []*raftpb.Entry {
	if len(es) == 0 {
		return log
	}
	k := 0
	for k < len(log) && log[k].GetIndex() < es[0].GetIndex() {
		k++
	}
	return append(log[:k:k], es...)
}

func sized(term, lo, hi uint64, size int) []*raftpb.Entry {
	es := ents(term, lo, hi)
	for _, e := range es {
		e.Data = bytes.Repeat([]byte{byte(e.GetIndex())}, size)
	}
	return es
}

// TestWALReopenAfterManyAppends appends in batches, with conflicting
// suffixes replaced now and then, over many small segments (and entries
// larger than a segment), and checks after every reopen that the log is
// what was written.
func TestWALReopenAfterManyAppends(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	s := openSmall(t, path)
	var want []*raftpb.Entry
	next, term := uint64(1), uint64(1)
	for round := range 40 {
		if round%7 == 6 && next > 5 {
			next -= 3 // a new leader replaces the last three
			term++
		}
		size := 50 + round*13
		if round%11 == 10 {
			size = 3 * smallSegments // bigger than a segment
		}
		es := sized(term, next, next+4, size)
		must(t, s.Append(es))
		want = model(want, es)
		next += 5
		if round%10 == 9 {
			must(t, s.Close())
			s = openSmall(t, path)
		}
		wantLog(t, s, want)
	}
	if n := len(segNames(t, s)); n < 5 {
		t.Errorf("%d segments, want many (the test is about rolling over)", n)
	}
	must(t, s.Close())
}

// TestWALOverwriteByAppend: a conflicting suffix is replaced by appending
// records, and replay applies the same rule.
func TestWALOverwriteByAppend(t *testing.T) {
	s, path := openTemp(t)
	must(t, s.Append(ents(1, 1, 10)))
	must(t, s.Append(ents(2, 6, 8)))
	want := append(ents(1, 1, 5), ents(2, 6, 8)...)
	wantLog(t, s, want)
	sg := s.segs[len(s.segs)-1]
	if sg.end != int64(segHeaderLen)+13*int64(recHeaderLen+len(mustMarshal(ents(1, 1, 1)[0]))) {
		t.Errorf("segment ends at %d: thirteen records appended, nothing rewritten", sg.end)
	}
	must(t, s.Close())
	s2, err := OpenStorage(path, nil)
	must(t, err)
	defer s2.Close()
	wantLog(t, s2, want)
}

// TestWALTornTail: a record cut short at the end of the last segment (a
// write that a crash interrupted) is cut off at open with a warning, the
// rest of the segment zeroed, and new records go where it was.
func TestWALTornTail(t *testing.T) {
	s, path := openTemp(t)
	must(t, s.Append(ents(1, 1, 5)))
	must(t, s.SetHardState(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(5))}))
	sg := s.segs[0]
	end := sg.end
	torn, _, _ := appendEntryRecord(nil, ents(1, 6, 6)[0])
	rec7, _, _ := appendEntryRecord(nil, ents(1, 7, 7)[0])
	// Record 6 lost its last bytes; record 7, of the same write, made it.
	torn = append(torn[:len(torn)-2], 0, 0)
	torn = append(torn, rec7...)
	_, err := sg.f.WriteAt(torn, end)
	must(t, err)
	must(t, s.Close())

	var logs bytes.Buffer
	s2, err := OpenStorage(path, slog.New(slog.NewTextHandler(&logs, nil)))
	must(t, err)
	if !strings.Contains(logs.String(), "torn write") {
		t.Errorf("no warning about the torn write; log:\n%s", logs.String())
	}
	wantLog(t, s2, ents(1, 1, 5))
	if s2.segs[0].end != end {
		t.Errorf("writes continue at %d, want %d", s2.segs[0].end, end)
	}
	b := make([]byte, len(torn))
	_, err = s2.segs[0].f.ReadAt(b, end)
	must(t, err)
	if !bytes.Equal(b, make([]byte, len(b))) {
		t.Error("the torn write's bytes were not zeroed")
	}
	must(t, s2.Append(ents(2, 6, 6)))
	must(t, s2.Close())
	s3, err := OpenStorage(path, nil)
	must(t, err)
	defer s3.Close()
	wantLog(t, s3, append(ents(1, 1, 5), ents(2, 6, 6)...))
}

// TestWALTornTailLosesCommitted: a cut that takes away entries bbolt says
// are committed is not a torn write but damage: refused.
func TestWALTornTailLosesCommitted(t *testing.T) {
	s, path := openTemp(t)
	must(t, s.Append(ents(1, 1, 5)))
	must(t, s.SetHardState(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(5))}))
	p, _ := s.st.index.get(4)
	_, err := s.segs[0].f.WriteAt([]byte{0xff}, p.off+recHeaderLen)
	must(t, err)
	must(t, s.Close())
	_, err = OpenStorage(path, nil)
	if ce, ok := errors.AsType[*CorruptError](err); !ok || ce.Record != `meta/"hardstate"` {
		t.Fatalf("open with committed entries cut: %v, want a CorruptError for the commit index", err)
	}
}

// TestWALCorruptMiddle: a bad record in a segment that is not the last is
// a *CorruptError naming the segment and the record's offset.
func TestWALCorruptMiddle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	s := openSmall(t, path)
	for i := uint64(1); i <= 60; i += 10 {
		must(t, s.Append(sized(1, i, i+9, 100)))
	}
	if len(s.segs) < 2 {
		t.Fatalf("%d segments, want several", len(s.segs))
	}
	sg := s.segs[0]
	p, _ := s.st.index.get(3)
	if p.seg != sg {
		t.Fatal("entry 3 not in the first segment")
	}
	_, err := sg.f.WriteAt([]byte{0xee}, p.off+recHeaderLen+4)
	must(t, err)
	name := sg.hdr.name()
	must(t, s.Close())
	_, err = openStorage(path, nil, smallSegments)
	want := fmt.Sprintf("wal/%s@%d", name, p.off)
	if ce, ok := errors.AsType[*CorruptError](err); !ok || ce.Record != want {
		t.Fatalf("open: %v, want a CorruptError for %s", err, want)
	}
	t.Log(err)

	// A damaged header is refused too, even in the last segment.
	path = filepath.Join(t.TempDir(), "log.db")
	s = openSmall(t, path)
	must(t, s.Append(ents(1, 1, 3)))
	_, err = s.segs[0].f.WriteAt([]byte("X"), 0)
	must(t, err)
	must(t, s.Close())
	if _, err := OpenStorage(path, nil); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "magic") {
		t.Fatalf("open with a damaged header: %v", err)
	}
}

// TestWALCrashBeforeCommit: a crash after the WAL's fdatasync and before
// the bbolt commit (simulated by putting back the bbolt file of before the
// write) leaves the new entries stored and the records of bbolt as they
// were; the log opens and the invariants hold.
func TestWALCrashBeforeCommit(t *testing.T) {
	s, path := openTemp(t)
	must(t, s.Append(ents(1, 1, 5)))
	must(t, s.Update(func(b *Batch) error {
		if err := b.SetHardState(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(5))}); err != nil {
			return err
		}
		return b.SetApplied(3, &raftpb.ConfState{Voters: []uint64{1}})
	}))
	before, err := os.ReadFile(path)
	must(t, err)
	must(t, s.Update(func(b *Batch) error {
		if err := b.Append(ents(1, 6, 9)); err != nil {
			return err
		}
		if err := b.SetHardState(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(9))}); err != nil {
			return err
		}
		return b.SetApplied(9, &raftpb.ConfState{Voters: []uint64{1}})
	}))
	must(t, s.Close())
	must(t, os.WriteFile(path, before, 0o600))
	s2, err := OpenStorage(path, nil)
	must(t, err)
	defer s2.Close()
	wantLog(t, s2, ents(1, 1, 9))
	hs, _, _ := s2.InitialState()
	if applied, _ := s2.Applied(); applied != 3 || hs.GetCommit() != 5 {
		t.Errorf("applied %d, commit %d after the crash; want 3 and 5", applied, hs.GetCommit())
	}
}

// TestWALSnapshotInstall: a snapshot from the leader starts a new
// generation: the old segments go, the entries after the snapshot are in
// the new one, and a reopen sees the same. A crash before the bbolt commit
// of such a write (a segment of the next generation left over) changes
// nothing.
func TestWALSnapshotInstall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	s := openSmall(t, path)
	for i := uint64(1); i <= 40; i += 10 {
		must(t, s.Append(sized(1, i, i+9, 200)))
	}
	// A leftover of a crashed snapshot install: generation 2, never committed.
	junk, _, _ := appendEntryRecord(nil, ents(7, 41, 41)[0])
	sg, err := createSegment(s.walDir, segHeader{gen: 2, seq: 0, first: 41}, junk, 0)
	must(t, err)
	sg.f.Close()
	must(t, s.Close())
	s = openSmall(t, path)
	if got := segNames(t, s); len(got) < 2 || strings.HasPrefix(got[len(got)-1], "0000000000000002") {
		t.Fatalf("segments %v: the uncommitted generation 2 was not removed", got)
	}
	wantLog(t, s, sized(1, 1, 40, 200))

	snap := &raftpb.Snapshot{Data: []byte("state"), Metadata: &raftpb.SnapshotMetadata{
		Index: new(uint64(100)), Term: new(uint64(3)), ConfState: &raftpb.ConfState{Voters: []uint64{1}}}}
	must(t, s.Update(func(b *Batch) error {
		if err := b.ApplySnapshot(snap); err != nil {
			return err
		}
		if err := b.Append(ents(3, 101, 103)); err != nil {
			return err
		}
		if err := b.SetHardState(&raftpb.HardState{Term: new(uint64(3)), Commit: new(uint64(100))}); err != nil {
			return err
		}
		return b.SetApplied(100, snap.GetMetadata().GetConfState())
	}))
	want := []string{segHeader{gen: 2, seq: 0, first: 101}.name()}
	if got := segNames(t, s); !slicesEqual(got, want) {
		t.Errorf("segments after the snapshot %v, want %v", got, want)
	}
	wantLog(t, s, ents(3, 101, 103))
	must(t, s.Append(ents(3, 104, 104)))
	must(t, s.Close())
	s = openSmall(t, path)
	defer s.Close()
	wantLog(t, s, ents(3, 101, 104))
	if s.st.walGen != 2 {
		t.Errorf("generation %d after reopen, want 2", s.st.walGen)
	}
}

func slicesEqual(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }

// TestWALCompaction: compaction removes the leading segments whose
// entries are all compacted, never the last one; a removal a crash
// interrupted is finished at open.
func TestWALCompaction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log.db")
	s := openSmall(t, path)
	for i := uint64(1); i <= 200; i += 10 {
		must(t, s.Append(sized(1, i, i+9, 100)))
	}
	must(t, s.SetHardState(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(200))}))
	before := segNames(t, s)
	p, _ := s.st.index.get(121)
	keep := p.seg.hdr.name() // the segment holding entry 121 stays, those before go
	must(t, s.Update(func(b *Batch) error {
		if _, err := b.CreateSnapshot(150, &raftpb.ConfState{Voters: []uint64{1}}, nil); err != nil {
			return err
		}
		return b.Compact(120)
	}))
	after := segNames(t, s)
	if len(after) >= len(before) || after[0] != keep {
		t.Errorf("segments %v after compacting to 120 (before %v), want them to start at %s", after, before, keep)
	}
	wantLog(t, s, sized(1, 121, 200, 100))

	// Compacting everything keeps the last segment.
	must(t, s.Compact(150))
	must(t, s.Update(func(b *Batch) error {
		if _, err := b.CreateSnapshot(200, &raftpb.ConfState{Voters: []uint64{1}}, nil); err != nil {
			return err
		}
		return b.Compact(200)
	}))
	if got := segNames(t, s); len(got) != 1 || got[0] != before[len(before)-1] {
		t.Errorf("segments %v after compacting all, want only the last %s", got, before[len(before)-1])
	}
	wantLog(t, s, nil)
	must(t, s.Append(ents(1, 201, 202)))
	must(t, s.Close())

	// A compaction cut short by a crash: bbolt says 120, the segments
	// are all there.
	path2 := filepath.Join(t.TempDir(), "log.db")
	s = openSmall(t, path2)
	for i := uint64(1); i <= 200; i += 10 {
		must(t, s.Append(sized(1, i, i+9, 100)))
	}
	n := len(s.segs)
	must(t, s.Update(func(b *Batch) error {
		if err := b.SetHardState(&raftpb.HardState{Term: new(uint64(1)), Commit: new(uint64(200))}); err != nil {
			return err
		}
		if _, err := b.CreateSnapshot(150, &raftpb.ConfState{Voters: []uint64{1}}, nil); err != nil {
			return err
		}
		return b.meta().Put(keyTruncated, encodeTruncated(120, 1)) // no segment removed
	}))
	must(t, s.Close())
	s = openSmall(t, path2)
	defer s.Close()
	if len(s.segs) >= n {
		t.Errorf("%d segments after reopen, %d before: the compaction was not finished", len(s.segs), n)
	}
	wantLog(t, s, sized(1, 121, 200, 100))
}

// TestNewFileDropsOldWAL: a new bbolt file next to an old WAL directory
// (a node starting a new life removed only the file) starts an empty WAL.
func TestNewFileDropsOldWAL(t *testing.T) {
	s, path := openTemp(t)
	must(t, s.Append(ents(1, 1, 5)))
	must(t, s.Close())
	must(t, os.Remove(path))
	s2, err := OpenStorage(path, nil)
	must(t, err)
	defer s2.Close()
	wantLog(t, s2, nil)
}

// TestWALOneWritePerUpdate: an Update that appends entries and sets the
// hard state writes the WAL once and bbolt once; one that only appends
// commits no bbolt transaction.
func TestWALOneWritePerUpdate(t *testing.T) {
	s, path := openTemp(t)
	must(t, s.Append(ents(1, 1, 3)))
	var txid int
	must(t, s.db.View(func(tx *bolt.Tx) error { txid = int(tx.ID()); return nil }))
	must(t, s.Append(ents(1, 4, 6)))
	must(t, s.db.View(func(tx *bolt.Tx) error {
		if int(tx.ID()) != txid {
			t.Errorf("an Update of entries only committed bbolt transaction %d (was %d)", tx.ID(), txid)
		}
		return nil
	}))
	_ = path
	wantLog(t, s, ents(1, 1, 6))
}

// FuzzDecodeSegment feeds arbitrary bytes as a segment file to the header
// decoder and the record scanner: they must never panic, the scanner must
// stop inside the input, and every record it accepts must decode again,
// from its own bytes, to the same entry.
func FuzzDecodeSegment(f *testing.F) {
	var seg []byte
	seg = append(seg, encodeSegHeader(segHeader{1, 0, 1})...)
	for _, e := range append(ents(1, 1, 3), sized(2, 4, 4, 300)...) {
		seg, _, _ = appendEntryRecord(seg, e)
	}
	f.Add(seg)                                           // a good segment
	f.Add(append(bytes.Clone(seg), make([]byte, 64)...)) // preallocated zeros after
	f.Add(seg[:len(seg)-5])                              // torn last record
	bad := bytes.Clone(seg)
	bad[segHeaderLen+12] ^= 1
	f.Add(bad)                // flipped payload byte
	f.Add(seg[:segHeaderLen]) // header only
	f.Add([]byte("CLWALSEG")) // short header
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _ = decodeSegHeader(in)
		prev := int64(-1)
		stop, err := scanRecords(bytes.NewReader(in), int64(len(in)), func(off int64, n int, e *raftpb.Entry) error {
			if off <= prev || off+recHeaderLen+int64(n) > int64(len(in)) {
				t.Fatalf("record at %d (%d bytes) out of order or beyond the input", off, n)
			}
			prev = off
			again, err := decodeRecord(in[off : off+recHeaderLen+int64(n)])
			if err != nil || !proto.Equal(again, e) || e.GetTerm() == 0 {
				t.Fatalf("record at %d: %v decodes again to %v, %v", off, e, again, err)
			}
			re, _, err := appendEntryRecord(nil, e)
			if err != nil {
				t.Fatal(err)
			}
			if back, err := decodeRecord(re); err != nil || !proto.Equal(back, e) {
				t.Fatalf("entry %v re-encodes to a record that decodes to %v, %v", e, back, err)
			}
			return nil
		})
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("scan: %v", err)
		}
		if len(in) >= segHeaderLen && (stop.end < segHeaderLen || stop.end > int64(len(in))) {
			t.Fatalf("scan stopped at %d of %d bytes", stop.end, len(in))
		}
	})
}
