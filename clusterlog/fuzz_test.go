package clusterlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// FuzzDecodeEntryRecord feeds arbitrary chunks of the entries bucket to
// the decoder: the input is split into records, each a 1-byte key length,
// the key, a 2-byte big-endian value length and the value. The decoder
// must return an entry or a *CorruptError, never panic, and an entry it
// accepts must be the one its keys name, its chunks re-encoding to the
// same records.
func FuzzDecodeEntryRecord(f *testing.F) {
	rec := func(chunks ...[]byte) []byte {
		var b []byte
		for i := 0; i+1 < len(chunks); i += 2 {
			b = append(b, byte(len(chunks[i])))
			b = append(b, chunks[i]...)
			b = binary.BigEndian.AppendUint16(b, uint16(len(chunks[i+1])))
			b = append(b, chunks[i+1]...)
		}
		return b
	}
	good, _ := proto.Marshal(&raftpb.Entry{Index: new(uint64(7)), Term: new(uint64(2)), Data: []byte("x")})
	big, _ := proto.Marshal(&raftpb.Entry{Index: new(uint64(7)), Term: new(uint64(2)), Data: make([]byte, 1500)})
	f.Add(rec(entryKey(7, 0), good))                                                     // a valid record
	f.Add(rec(entryKey(7, 0), big[:entryChunkLen], entryKey(7, 1), big[entryChunkLen:])) // two chunks
	f.Add(rec(entryKey(7, 0), big[:entryChunkLen], entryKey(7, 2), big[entryChunkLen:])) // chunk 1 missing
	f.Add(rec(entryKey(7, 0), big[:100], entryKey(7, 1), big[100:]))                     // short first chunk
	f.Add(rec(entryKey(8, 0), good))                                                     // key and entry disagree
	f.Add(rec([]byte{0, 7}, good))                                                       // short key
	f.Add(rec(entryKey(7, 0), []byte{0xff, 0xff}))                                       // not protobuf
	f.Add(rec(entryKey(7, 0), good[:len(good)-1]))                                       // truncated value
	f.Add(rec(entryKey(0, 0), []byte{}))                                                 // empty chunk
	f.Add(rec(entryKey(7, 0), append([]byte{0x08, 0x09}, good...)))                      // unknown entry type 9
	f.Fuzz(func(t *testing.T, in []byte) {
		var ks, vs [][]byte
		for len(in) > 0 {
			kl := int(in[0])
			if len(in) < 1+kl+2 {
				break
			}
			k := in[1 : 1+kl]
			vl := int(binary.BigEndian.Uint16(in[1+kl:]))
			in = in[1+kl+2:]
			if len(in) < vl {
				break
			}
			ks, vs = append(ks, k), append(vs, in[:vl])
			in = in[vl:]
		}
		e, err := decodeEntryRecord(ks, vs)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not match ErrCorrupt", err)
			}
			return
		}
		if e.GetTerm() == 0 {
			t.Fatalf("accepted entry %v with term 0", e)
		}
		var joined []byte
		for _, v := range vs {
			joined = append(joined, v...)
		}
		i := 0
		err = appendEntryChunks(e.GetIndex(), joined, func(k, v []byte) error {
			if i >= len(ks) || !bytes.Equal(k, ks[i]) || !bytes.Equal(v, vs[i]) {
				t.Fatalf("accepted entry %v from chunks that are not its own (chunk %d)", e, i)
			}
			i++
			return nil
		})
		if err != nil || i != len(ks) {
			t.Fatalf("entry %v re-encodes to %d chunks, read from %d", e, i, len(ks))
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
