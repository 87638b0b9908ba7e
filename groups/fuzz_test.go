package groups_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/groups"
)

func seeds(f *testing.F) {
	b, err := os.ReadFile("testdata/groups-v1.golden")
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

// FuzzParseBatch: no input panics, and what parses encodes back to itself.
func FuzzParseBatch(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, cmds, err := groups.ParseBatch(b)
		if err != nil {
			return
		}
		again, err := groups.AppendBatch(nil, h, cmds)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gives %x (%v)", b, again, err)
		}
		// The machine takes any batch that parses without failing.
		if _, err := groups.NewMachine(nil).Apply(memTx{}, groupsEntry(b)); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzParseResults: no input panics, and what parses encodes back, as a
// results list or a refusal.
func FuzzParseResults(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, refused, err := groups.ParseReply(b)
		if err != nil {
			return
		}
		again := groups.AppendResults(nil, rs)
		if refused != nil {
			again = groups.AppendRefusal(nil, *refused)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gives %x", b, again)
		}
	})
}

// FuzzRestore: no snapshot panics; one that restores snapshots back to
// itself and restores again to the same state.
func FuzzRestore(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, tx := groups.NewMachine(nil), memTx{}
		if err := m.Restore(tx, bytes.NewReader(b)); err != nil {
			return
		}
		var s1 bytes.Buffer
		if err := m.Snapshot(tx, &s1); err != nil {
			t.Fatal(err)
		}
		m2, tx2 := groups.NewMachine(nil), memTx{}
		if err := m2.Restore(tx2, bytes.NewReader(s1.Bytes())); err != nil {
			t.Fatalf("restoring a snapshot of a restored machine: %v", err)
		}
		var s2 bytes.Buffer
		if err := m2.Snapshot(tx2, &s2); err != nil || !bytes.Equal(s1.Bytes(), s2.Bytes()) {
			t.Fatalf("snapshots differ (%v)", err)
		}
		if !reflect.DeepEqual(m.Groups(), m2.Groups()) {
			t.Fatal("groups differ")
		}
	})
}
