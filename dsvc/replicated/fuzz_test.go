package replicated_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"strings"
	"testing"

	"github.com/corralhq/corral/dsvc/replicated"
	"github.com/corralhq/corral/rsm"
)

// seeds adds every golden vector, good and refused.
func seeds(f *testing.F) {
	for _, name := range []string{"testdata/replicated-v1.golden", "testdata/errors-v1.golden"} {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if _, hx, ok := strings.Cut(l, "\t"); ok && !strings.HasPrefix(l, "#") {
				if v, err := hex.DecodeString(hx); err == nil {
					f.Add(v)
				}
			}
		}
	}
}

// FuzzParseCommand: no input panics; what parses encodes back to itself;
// two machines with a location, a dhcptab and a network apply any input
// without an Apply error and with the same reply.
func FuzzParseCommand(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		if c, err := replicated.ParseCommand(b); err == nil {
			again, err := replicated.AppendCommand(nil, &c)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("re-encoding %x gives %x (%v)", b, again, err)
			}
		}
		var replies [2][]byte
		for i := range replies {
			m, tx := replicated.New(), newTx()
			for j, c := range goldenCommands()[:3] {
				cb, _ := replicated.AppendCommand(nil, &c)
				if _, err := m.Apply(tx, rsm.Entry{Index: uint64(j + 1), Cmd: cb}); err != nil {
					t.Fatal(err)
				}
			}
			res, err := m.Apply(tx, rsm.Entry{Index: 10, Cmd: b})
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			if _, err := replicated.ParseReply(res.Reply); err != nil {
				t.Fatalf("the machine's reply %x does not parse: %v", res.Reply, err)
			}
			replies[i] = res.Reply
		}
		if !bytes.Equal(replies[0], replies[1]) {
			t.Fatal("replies differ")
		}
	})
}

// FuzzParseReply: no input panics, and what parses encodes back.
func FuzzParseReply(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := replicated.ParseReply(b)
		if err != nil {
			return
		}
		if again := replicated.AppendReply(nil, &r); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gives %x", b, again)
		}
	})
}

// FuzzRestore: no snapshot panics; one that restores snapshots back to
// itself, and a second restore reads the same.
func FuzzRestore(f *testing.F) {
	seeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		m, tx := replicated.New(), newTx()
		if err := m.Restore(tx, bytes.NewReader(b)); err != nil {
			return
		}
		s1 := snapshot(t, m, tx)
		m2, tx2 := replicated.New(), newTx()
		if err := m2.Restore(tx2, bytes.NewReader(s1)); err != nil {
			t.Fatalf("restoring a snapshot of a restored machine: %v", err)
		}
		if s2 := snapshot(t, m2, tx2); !bytes.Equal(s1, s2) {
			t.Fatal("snapshots differ")
		}
		if len(b) > 0 && !bytes.Equal(s1, b) {
			t.Fatalf("snapshot %x restores and snapshots as %x", b, s1)
		}
		if d1, d2 := dump(t, m, "/l"), dump(t, m2, "/l"); d1 != d2 {
			t.Fatal("reads differ")
		}
	})
}
