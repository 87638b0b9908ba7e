package clusterlog

import (
	"bytes"
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeEntryRecord feeds arbitrary keys and values of the entries
// bucket to the decoder: it must return an entry or a *CorruptError, never
// panic, and an entry it accepts must be the one its key names.
func FuzzDecodeEntryRecord(f *testing.F) {
	good, _ := proto.Marshal(&raftpb.Entry{Index: new(uint64(7)), Term: new(uint64(2)), Data: []byte("x")})
	f.Add(indexKey(7), good)                                // a valid record
	f.Add(indexKey(8), good)                                // key and entry disagree
	f.Add([]byte{0, 7}, good)                               // short key
	f.Add(indexKey(7), []byte{0xff, 0xff})                  // not protobuf
	f.Add(indexKey(7), good[:len(good)-1])                  // truncated value
	f.Add(indexKey(0), []byte{})                            // empty entry: index 0, term 0
	f.Add(indexKey(7), append([]byte{0x08, 0x09}, good...)) // unknown entry type 9
	f.Fuzz(func(t *testing.T, k, v []byte) {
		e, err := decodeEntryRecord(k, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		if !bytes.Equal(indexKey(e.GetIndex()), k) || e.GetTerm() == 0 {
			t.Fatalf("accepted entry %v under key %x", e, k)
		}
	})
}

// FuzzDecodeEnvelope checks that any payload either decodes to a header and
// a payload that re-encode to the same bytes, or is refused with a
// *CorruptError.
func FuzzDecodeEnvelope(f *testing.F) {
	valid := appendEnvelope(nil, proposalID{node: 1, opens: 2, seq: 3})
	f.Add(append(valid, "payload"...)) // header and payload
	f.Add(valid)                       // header only
	f.Add(valid[:10])                  // truncated header
	f.Add([]byte{2, 0, 0})             // unknown envelope version
	f.Add([]byte{})                    // empty
	f.Fuzz(func(t *testing.T, b []byte) {
		id, payload, err := decodeEnvelope(1, b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		if re := append(appendEnvelope(nil, id), payload...); !bytes.Equal(re, b) {
			t.Fatalf("re-encoded %x, want %x", re, b)
		}
	})
}
