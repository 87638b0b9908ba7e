package ctl_test

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/sharedaddr/ctl"
)

func seeds(f *testing.F) {
	for _, name := range []string{"testdata/sharedaddr-v1.golden", "testdata/sharedaddr-v2.golden", "testdata/sharedaddr-v3.golden"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if _, hx, ok := strings.Cut(l, "\t"); ok {
				if v, err := hex.DecodeString(hx); err == nil {
					f.Add(v)
				}
			}
		}
	}
}

// FuzzParseCmd: no input panics, what parses encodes back to itself, and
// the machine answers any input without failing Apply.
func FuzzParseCmd(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		n := newNode(251)
		n.view(t, 1, 1, [2]uint64{1, 1}, [2]uint64{2, 2}, [2]uint64{3, 3})
		if _, err := n.m.Apply(n.tx, rsm.Entry{Index: 2, Cmd: b}); err != nil {
			t.Fatal(err)
		}
		c, err := ctl.ParseCmd(b)
		if err != nil {
			return
		}
		if again := ctl.AppendCmd(nil, c); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gives %x", b, again)
		}
	})
}

// FuzzParseReply: no input panics, and what parses encodes back.
func FuzzParseReply(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ctl.ParseReply(b)
		if err != nil {
			return
		}
		if again := ctl.AppendReply(nil, r); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gives %x", b, again)
		}
	})
}

// FuzzParseSnapshot: no input panics; a snapshot that parses encodes
// back to itself, restores, and the restored machine snapshots the same.
// The input's last 4 bytes are replaced by its CRC, so the fuzzer reaches
// the records.
func FuzzParseSnapshot(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) >= 4 {
			body := b[:len(b)-4]
			b = binary.LittleEndian.AppendUint32(slices.Clip(body), crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
		}
		kvs, err := ctl.ParseSnapshot(b)
		if err != nil {
			return
		}
		// An older snapshot encodes back as the present version, its CRC anew.
		if b[3] < ctl.SnapshotVersion {
			b = ctl.AppendSnapshot(nil, kvs)
		}
		if again := ctl.AppendSnapshot(nil, kvs); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gives %x", b, again)
		}
		n := newNode(251)
		if err := n.m.Restore(n.tx, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if err := n.m.Snapshot(n.tx, &buf); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf.Bytes(), b) {
			t.Fatalf("restored machine snapshots %x, not %x", buf.Bytes(), b)
		}
	})
}
