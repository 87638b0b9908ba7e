package clusterlog

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Disk format constants. FORMAT.md is the specification; keep the two in step.
// All integers in keys and fixed-size values are big-endian, so that bbolt's
// byte-wise key order is numeric order.
const (
	// FormatVersion is the disk format version this build writes. It is
	// stored in meta/format and in every WAL segment's header. A file of
	// version 1, 2 or 3 is upgraded when it is opened (FORMAT.md,
	// "Version history").
	FormatVersion uint32 = 4

	// indexKeyLen is the length of a log index in keys (and of a whole
	// entries key in version 2).
	indexKeyLen = 8
	// entryKeyLen is the length of a key in the entries bucket: the index,
	// then the chunk number (uint32).
	entryKeyLen = indexKeyLen + 4
	// entryChunkLen is the size of every chunk of an entry's encoding but
	// its last (which is 1..entryChunkLen bytes). Four chunks with their
	// 12-byte keys and bbolt's 16-byte element headers fill one 4096-byte
	// page exactly. bbolt rewrites a whole leaf on every change to it and
	// never splits a leaf of four elements or fewer, so whole entries as
	// values made every append rewrite the last three or four entries
	// (5-20 times the bytes appended); with chunks it rewrites at most one
	// page.
	entryChunkLen = 992
	// truncatedLen is the length of meta/truncated: index, term.
	truncatedLen = 16
)

// Bucket and key names.
var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")
	bucketApp     = []byte("app") // since version 2: the application's buckets

	keyFormat      = []byte("format")      // uint32: FormatVersion
	keyHardState   = []byte("hardstate")   // raftpb.HardState
	keyApplied     = []byte("applied")     // uint64: last applied index
	keyConfState   = []byte("confstate")   // raftpb.ConfState as of applied
	keyTruncated   = []byte("truncated")   // uint64 index, uint64 term of the entry before the first stored one
	keySnapshot    = []byte("snapshot")    // raftpb.Snapshot
	keyOpens       = []byte("opens")       // uint64: bumped at every open (since version 2)
	keyWAL         = []byte("wal")         // uint64: the WAL generation (since version 4)
	keyIncarnation = []byte("incarnation") // version 1's name for opens
)

// Entry envelope: the header that Node puts in front of every payload it
// proposes, so that the proposer recognises its own entries when it applies
// them. See FORMAT.md, "Entry payloads".
const (
	envelopeVersion   byte = 1
	envelopeHeaderLen      = 1 + 8 + 8 + 8
)

// proposalID identifies one proposal cluster-wide.
type proposalID struct {
	node  uint64 // proposer's raft ID
	opens uint64 // proposer's storage open count (meta/opens)
	seq   uint64 // per-open counter, from 1
}

func indexKey(i uint64) []byte {
	k := make([]byte, indexKeyLen)
	binary.BigEndian.PutUint64(k, i)
	return k
}

// entryKey is the key of chunk c of entry i.
func entryKey(i uint64, c uint32) []byte {
	k := make([]byte, entryKeyLen)
	binary.BigEndian.PutUint64(k, i)
	binary.BigEndian.PutUint32(k[indexKeyLen:], c)
	return k
}

func recordName(bucket, key []byte) string {
	if string(bucket) == string(bucketEntries) {
		switch len(key) {
		case indexKeyLen:
			return fmt.Sprintf("%s/%d", bucket, binary.BigEndian.Uint64(key))
		case entryKeyLen:
			if c := binary.BigEndian.Uint32(key[indexKeyLen:]); c != 0 {
				return fmt.Sprintf("%s/%d#%d", bucket, binary.BigEndian.Uint64(key), c)
			}
			return fmt.Sprintf("%s/%d", bucket, binary.BigEndian.Uint64(key))
		}
	}
	return fmt.Sprintf("%s/%q", bucket, key)
}

func corrupt(bucket, key []byte, reason string, err error) *CorruptError {
	return &CorruptError{Record: recordName(bucket, key), Reason: reason, Err: err}
}

// decodeEntryKey decodes a key of the entries bucket: index and chunk.
func decodeEntryKey(k []byte) (uint64, uint32, error) {
	if len(k) != entryKeyLen {
		return 0, 0, corrupt(bucketEntries, k, fmt.Sprintf("key is %d bytes, want %d", len(k), entryKeyLen), nil)
	}
	return binary.BigEndian.Uint64(k), binary.BigEndian.Uint32(k[indexKeyLen:]), nil
}

// appendEntryChunks calls put with the key and value of every chunk of
// the encoding v of entry i, in key order.
func appendEntryChunks(i uint64, v []byte, put func(k, v []byte) error) error {
	for c := uint32(0); len(v) > 0; c++ {
		n := min(len(v), entryChunkLen)
		if err := put(entryKey(i, c), v[:n]); err != nil {
			return err
		}
		v = v[n:]
	}
	return nil
}

// entryChunks calls put with the key and value of every chunk of entry
// e's encoding, in key order, and returns the encoding's size. The
// encoding is proto.Marshal's (fields in number order), but built here:
// the chunks after the first are slices of e's Data, not a copy, so they
// must not change until the transaction commits (raft's entries never
// do). An entry with unknown fields is marshalled whole.
func entryChunks(e *raftpb.Entry, put func(k, v []byte) error) (int, error) {
	if len(e.ProtoReflect().GetUnknown()) > 0 {
		v, err := proto.Marshal(e)
		if err != nil {
			return 0, err
		}
		return len(v), appendEntryChunks(e.GetIndex(), v, put)
	}
	h := make([]byte, 0, entryChunkLen)
	if e.Type != nil {
		h = protowire.AppendTag(h, 1, protowire.VarintType)
		h = protowire.AppendVarint(h, uint64(int64(*e.Type)))
	}
	if e.Term != nil {
		h = protowire.AppendTag(h, 2, protowire.VarintType)
		h = protowire.AppendVarint(h, *e.Term)
	}
	if e.Index != nil {
		h = protowire.AppendTag(h, 3, protowire.VarintType)
		h = protowire.AppendVarint(h, *e.Index)
	}
	d := e.Data
	if d != nil {
		h = protowire.AppendTag(h, 4, protowire.BytesType)
		h = protowire.AppendVarint(h, uint64(len(d)))
	}
	size := len(h) + len(d)
	n := min(len(d), entryChunkLen-len(h))
	h, d = append(h, d[:n]...), d[n:]
	if err := put(entryKey(e.GetIndex(), 0), h); err != nil {
		return 0, err
	}
	for c := uint32(1); len(d) > 0; c++ {
		n := min(len(d), entryChunkLen)
		if err := put(entryKey(e.GetIndex(), c), d[:n:n]); err != nil {
			return 0, err
		}
		d = d[n:]
	}
	return size, nil
}

// decodeEntryRecord decodes one entry from its chunks (keys ks, values
// vs, in key order) and checks that they are the chunks 0..n-1 of the
// entry their keys name, every one but the last entryChunkLen bytes long.
func decodeEntryRecord(ks, vs [][]byte) (*raftpb.Entry, error) {
	if len(ks) == 0 || len(ks) != len(vs) {
		return nil, corrupt(bucketEntries, nil, fmt.Sprintf("%d keys for %d chunks", len(ks), len(vs)), nil)
	}
	idx, _, err := decodeEntryKey(ks[0])
	if err != nil {
		return nil, err
	}
	size := 0
	for c, k := range ks {
		i, n, err := decodeEntryKey(k)
		if err != nil {
			return nil, err
		}
		if i != idx || n != uint32(c) {
			return nil, corrupt(bucketEntries, k, fmt.Sprintf("chunk %d of entry %d expected here", c, idx), nil)
		}
		if l := len(vs[c]); l == 0 || l > entryChunkLen || (c < len(vs)-1 && l != entryChunkLen) {
			return nil, corrupt(bucketEntries, k, fmt.Sprintf("chunk is %d bytes", l), nil)
		}
		size += len(vs[c])
	}
	v := vs[0]
	if len(vs) > 1 {
		v = make([]byte, 0, size)
		for _, c := range vs {
			v = append(v, c...)
		}
	}
	return checkEntry(ks[0], idx, v)
}

// decodeEntryV2 decodes a record of a version 2 entries bucket: the
// key is the index, the value the whole encoding.
func decodeEntryV2(k, v []byte) (*raftpb.Entry, error) {
	if len(k) != indexKeyLen {
		return nil, corrupt(bucketEntries, k, fmt.Sprintf("key is %d bytes, want %d", len(k), indexKeyLen), nil)
	}
	return checkEntry(k, binary.BigEndian.Uint64(k), v)
}

// checkEntry decodes v, stored under key k, and checks that it is entry
// idx, of a known type and a term.
func checkEntry(k []byte, idx uint64, v []byte) (*raftpb.Entry, error) {
	e := new(raftpb.Entry)
	if err := proto.Unmarshal(v, e); err != nil {
		return nil, corrupt(bucketEntries, k, "cannot decode raftpb.Entry", err)
	}
	if e.GetIndex() != idx {
		return nil, corrupt(bucketEntries, k, fmt.Sprintf("entry carries index %d", e.GetIndex()), nil)
	}
	if e.GetTerm() == 0 {
		return nil, corrupt(bucketEntries, k, "entry has term 0", nil)
	}
	switch e.GetType() {
	case raftpb.EntryNormal, raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
	default:
		return nil, corrupt(bucketEntries, k, fmt.Sprintf("unknown entry type %d", e.GetType()), nil)
	}
	return e, nil
}

func decodeUint64(key, v []byte) (uint64, error) {
	if len(v) != 8 {
		return 0, corrupt(bucketMeta, key, fmt.Sprintf("value is %d bytes, want 8", len(v)), nil)
	}
	return binary.BigEndian.Uint64(v), nil
}

func encodeUint64(x uint64) []byte {
	return binary.BigEndian.AppendUint64(nil, x)
}

func encodeFormat(v uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, v)
}

func decodeTruncated(v []byte) (index, term uint64, err error) {
	if len(v) != truncatedLen {
		return 0, 0, corrupt(bucketMeta, keyTruncated, fmt.Sprintf("value is %d bytes, want %d", len(v), truncatedLen), nil)
	}
	return binary.BigEndian.Uint64(v[:8]), binary.BigEndian.Uint64(v[8:]), nil
}

func encodeTruncated(index, term uint64) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, truncatedLen), index)
	return binary.BigEndian.AppendUint64(b, term)
}

// decodeProto decodes a meta value that is a marshalled raftpb message.
func decodeProto(key, v []byte, m proto.Message) error {
	if err := proto.Unmarshal(v, m); err != nil {
		return corrupt(bucketMeta, key, fmt.Sprintf("cannot decode %T", m), err)
	}
	return nil
}

// appendEnvelope appends the envelope header for id to b.
func appendEnvelope(b []byte, id proposalID) []byte {
	b = append(b, envelopeVersion)
	b = binary.BigEndian.AppendUint64(b, id.node)
	b = binary.BigEndian.AppendUint64(b, id.opens)
	return binary.BigEndian.AppendUint64(b, id.seq)
}

// putEnvelope writes the envelope header for id into b[:envelopeHeaderLen].
func putEnvelope(b []byte, id proposalID) {
	b[0] = envelopeVersion
	binary.BigEndian.PutUint64(b[1:], id.node)
	binary.BigEndian.PutUint64(b[9:], id.opens)
	binary.BigEndian.PutUint64(b[17:], id.seq)
}

// decodeEnvelope splits an enveloped payload into its proposal ID and the
// application bytes. index names the entry in errors.
func decodeEnvelope(index uint64, b []byte) (proposalID, []byte, error) {
	if len(b) < envelopeHeaderLen {
		return proposalID{}, nil, &CorruptError{
			Record: fmt.Sprintf("entry %d", index),
			Reason: fmt.Sprintf("payload is %d bytes, shorter than the %d-byte envelope header", len(b), envelopeHeaderLen),
		}
	}
	if b[0] != envelopeVersion {
		return proposalID{}, nil, &CorruptError{
			Record: fmt.Sprintf("entry %d", index),
			Reason: fmt.Sprintf("envelope version %d, want %d", b[0], envelopeVersion),
		}
	}
	id := proposalID{
		node:  binary.BigEndian.Uint64(b[1:]),
		opens: binary.BigEndian.Uint64(b[9:]),
		seq:   binary.BigEndian.Uint64(b[17:]),
	}
	return id, b[envelopeHeaderLen:], nil
}
