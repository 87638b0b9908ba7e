package clusterlog

import (
	"bytes"
	"slices"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// TestRecent checks the in-memory tail of the log against the log it
// mirrors: appends, a conflicting suffix replaced, compaction, the byte
// bound; and that replacing a suffix never writes into an installed copy.
func TestRecent(t *testing.T) {
	e := func(i, term uint64) *raftpb.Entry { return &raftpb.Entry{Index: new(i), Term: new(term)} }
	var r recent
	for i := uint64(5); i <= 9; i++ {
		r = r.add(e(i, 1), 10)
	}
	installed := r
	if got, ok := r.slice(5, 10, 1<<20); !ok || len(got) != 5 || got[0].GetIndex() != 5 {
		t.Fatalf("slice 5..9 = %v, %v", got, ok)
	}
	if got, ok := r.slice(5, 10, 25); !ok || len(got) != 2 {
		t.Errorf("slice 5..9 within 25 bytes = %d entries, want 2", len(got))
	}
	if got, ok := r.slice(5, 10, 1); !ok || len(got) != 1 {
		t.Errorf("slice 5..9 within 1 byte = %d entries, want 1 (at least one)", len(got))
	}
	if _, ok := r.slice(4, 6, 1<<20); ok {
		t.Error("slice 4..5 served, but 4 is not held")
	}
	if _, ok := r.slice(9, 11, 1<<20); ok {
		t.Error("slice 9..10 served, but 10 is not held")
	}
	// A new leader replaces 8 and 9.
	r = r.truncate(8).add(e(8, 2), 10)
	if got, _ := r.entry(8); got.GetTerm() != 2 {
		t.Errorf("entry 8 term %d after the replacement, want 2", got.GetTerm())
	}
	if _, ok := r.entry(9); ok {
		t.Error("entry 9 still held after the suffix from 8 was replaced")
	}
	if got, _ := installed.entry(8); got.GetTerm() != 1 {
		t.Errorf("the installed copy's entry 8 has term %d, want 1: the replacement wrote into it", got.GetTerm())
	}
	r = r.compact(6)
	if _, ok := r.entry(6); ok || r.first != 7 || r.bytes != 20 {
		t.Errorf("after compacting to 6: first %d, %d bytes", r.first, r.bytes)
	}
	if r = r.compact(8); len(r.ents) != 0 {
		t.Errorf("after compacting everything: %d entries held", len(r.ents))
	}
	// The byte bound keeps the newest entries, at least one.
	r = recent{}
	for i := uint64(1); i <= 100; i++ {
		r = r.add(e(i, 1), recentBytes/10)
	}
	if r.bytes > recentBytes || r.first != 91 || len(r.ents) != 10 || r.dead > len(r.ents) {
		t.Errorf("bounded: first %d, %d entries, %d bytes, %d dead slots", r.first, len(r.ents), r.bytes, r.dead)
	}
	if r = r.add(e(101, 1), 2*recentBytes); len(r.ents) != 1 || r.first != 101 {
		t.Errorf("an entry over the bound: %d entries from %d held, want only it", len(r.ents), r.first)
	}
}

// TestEntryChunks checks that the chunks written from an entry without
// copying its Data are those of proto.Marshal's encoding.
func TestEntryChunks(t *testing.T) {
	for _, e := range []*raftpb.Entry{
		{Index: new(uint64(1)), Term: new(uint64(1))},
		{Index: new(uint64(2)), Term: new(uint64(3)), Type: raftpb.EntryNormal.Enum(), Data: []byte{}},
		{Index: new(uint64(1 << 40)), Term: new(uint64(7)), Type: raftpb.EntryConfChangeV2.Enum(), Data: []byte("cc")},
		{Index: new(uint64(9)), Term: new(uint64(2)), Data: bytes.Repeat([]byte{7}, entryChunkLen-10)},
		{Index: new(uint64(9)), Term: new(uint64(2)), Data: bytes.Repeat([]byte{7}, 5*entryChunkLen+3)},
	} {
		want, err := proto.Marshal(e)
		must(t, err)
		var wk, wv, gk, gv [][]byte
		must(t, appendEntryChunks(e.GetIndex(), want, func(k, v []byte) error { wk, wv = append(wk, k), append(wv, v); return nil }))
		size, err := entryChunks(e, func(k, v []byte) error { gk, gv = append(gk, k), append(gv, v); return nil })
		must(t, err)
		if size != len(want) || !slices.EqualFunc(gk, wk, bytes.Equal) || !slices.EqualFunc(gv, wv, bytes.Equal) {
			t.Errorf("entry %d with %d bytes of data: %d chunks of %d bytes, want %d of %d", e.GetIndex(), len(e.GetData()), len(gk), size, len(wk), len(want))
		}
		if got, err := decodeEntryRecord(gk, gv); err != nil || !proto.Equal(got, e) {
			t.Errorf("entry %d decodes to %v, %v", e.GetIndex(), got, err)
		}
	}
}
