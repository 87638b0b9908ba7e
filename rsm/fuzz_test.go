package rsm

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// FuzzParseEnvelope: any input parses to an envelope that re-encodes to the
// same bytes, or is refused with an *EnvelopeError.
func FuzzParseEnvelope(f *testing.F) {
	good := AppendEnvelope(nil, Envelope{Machine: Groups, Proposer: 3, Request: 4, Cmd: []byte("cmd")})
	f.Add(good)                       // valid
	f.Add(good[:EnvelopeHeaderLen])   // empty command
	f.Add(good[:5])                   // truncated header
	f.Add(append([]byte{2}, good...)) // other version
	f.Add([]byte{1, 0xff, 0})         // reserved machine, short
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := ParseEnvelope(b)
		if err != nil {
			var ee *EnvelopeError
			if !errors.As(err, &ee) || !errors.Is(err, ErrEnvelope) {
				t.Fatalf("error %v is not an *EnvelopeError", err)
			}
			return
		}
		if re := AppendEnvelope(nil, e); !bytes.Equal(re, b) {
			t.Fatalf("re-encoded %x, want %x", re, b)
		}
	})
}

// FuzzDecodeSnapshot: the decoder and the request table reader return nil
// or a *SnapshotError on any input and never panic.
func FuzzDecodeSnapshot(f *testing.F) {
	f.Add(snapshotVector())                           // two machines and a request table
	f.Add([]byte("RSMS\x01\x00"))                     // empty snapshot
	f.Add([]byte("RSMS\x01\x02\x01\x00\x00\x00"))     // truncated chunk
	f.Add([]byte("RSMS\x01\x02\x00\x00\x00\x00\x02")) // repeated id, truncated
	f.Add([]byte("RSMS\x02\x00"))                     // other version
	f.Fuzz(func(t *testing.T, b []byte) {
		err := DecodeSnapshot(bytes.NewReader(b), func(id ID, r io.Reader) error {
			if id == idDedupe {
				return readDedupe(r, func(uint64, uint64, uint64, []byte) error { return nil })
			}
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if err != nil && !errors.Is(err, ErrSnapshot) {
			t.Fatalf("error %v does not match ErrSnapshot", err)
		}
	})
}
