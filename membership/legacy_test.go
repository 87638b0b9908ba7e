package membership

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/rsm"
)

// legacyGolden reads testdata/legacy-state.hex, a copy of the vector the
// agent wrote the file by (agent/testdata/state.hex, hex.Dump lines).
func legacyGolden(t testing.TB) []byte {
	text, err := os.ReadFile("testdata/legacy-state.hex")
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for _, line := range strings.Split(string(text), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(strings.SplitN(line, "|", 2)[0])
		for _, f := range fields[1:] {
			c, err := hex.DecodeString(f)
			if err != nil {
				t.Fatalf("golden line %q: %v", line, err)
			}
			b = append(b, c...)
		}
	}
	return b
}

func legacySample() LegacyState {
	var v View
	v.Apply(3, Command{Op: OpJoin, ID: 1, Incarnation: 0x11, Name: "n1", Addr: "127.0.0.1:7946", Voter: true})
	v.Apply(4, Command{Op: OpJoin, ID: 2, Incarnation: 0x22, Name: "n2", Addr: "127.0.0.2:7946", Voter: true})
	return LegacyState{Applied: 9, Incarnation: 0x22, View: v}
}

func TestLegacyGolden(t *testing.T) {
	b := legacyGolden(t)
	s, err := ParseLegacyState(b)
	if err != nil || !reflect.DeepEqual(s, legacySample()) {
		t.Fatalf("golden: %+v %v", s, err)
	}
	if !bytes.Equal(MarshalLegacyState(s), b) {
		t.Fatal("re-encoded golden differs")
	}
}

func TestLegacyRejects(t *testing.T) {
	enc := MarshalLegacyState(legacySample())
	mut := func(f func([]byte)) []byte { b := bytes.Clone(enc); f(b); return b }
	bad := legacySample()
	bad.Applied = 2 // a view newer than the applied index cannot be
	for name, b := range map[string][]byte{
		"short":        enc[:20],
		"magic":        mut(func(b []byte) { b[0] ^= 1 }),
		"version":      mut(func(b []byte) { b[4] = 2 }),
		"reserved":     mut(func(b []byte) { b[6] = 1 }),
		"crc":          mut(func(b []byte) { b[len(b)-1] ^= 1 }),
		"truncated":    enc[:len(enc)-3],
		"view-ahead":   MarshalLegacyState(bad),
		"incarnation0": MarshalLegacyState(LegacyState{Applied: 1}),
	} {
		if _, err := ParseLegacyState(b); !errors.Is(err, ErrLegacyState) {
			t.Errorf("%s: %v, want ErrLegacyState", name, err)
		}
	}
}

func TestImportLegacy(t *testing.T) {
	s, err := ParseLegacyState(legacyGolden(t))
	if err != nil {
		t.Fatal(err)
	}
	n := newNode()
	inc, imported, err := n.m.ImportLegacy(n.tx, s)
	if err != nil || !imported || inc != 0x22 {
		t.Fatalf("import: %#x %v %v", inc, imported, err)
	}
	if v := n.m.View(); !reflect.DeepEqual(v, s.View) {
		t.Fatalf("imported view %+v", v)
	}
	n.voters = []uint64{0x11, 0x22} // raft's configuration as the log left it
	// The log hands over again entries up to Applied (9): history, skipped
	// and accepted by CheckConf as the old agent did.
	for _, cmd := range []Command{jn(2, 0x22, true), lv(1, 0x11, CauseFailed)} {
		e := rsm.Entry{Index: 9, Cmd: cmd.Marshal(), Conf: &rsm.Conf{}}
		if err := n.m.CheckConf(n.tx, e); err != nil {
			t.Fatalf("CheckConf of a replayed entry: %v", err)
		}
		res, ch, err := n.m.ApplyChange(n.tx, e)
		if err != nil || ch.Index != 0 || res.Events != nil || n.m.View().Instance != 4 {
			t.Fatalf("replayed %s applied: %+v %v", cmd, ch, err)
		}
	}
	// The first entry past Applied takes effect.
	if _, ch, _ := n.apply(t, 10, jn(3, 0x33, true)); ch.Index != 10 || !n.m.State().View.Has(3) {
		t.Fatalf("entry 10: %+v", ch)
	}
	// A second import (the file outlived a crash) keeps the machine's state.
	inc, imported, err = n.m.ImportLegacy(n.tx, s)
	if err != nil || imported || inc != 0x22 || !n.m.State().View.Has(3) {
		t.Fatalf("second import: %#x %v %v", inc, imported, err)
	}
}

func FuzzParseLegacyState(f *testing.F) {
	f.Add(MarshalLegacyState(legacySample()))                  // a state with a two-member view
	f.Add(MarshalLegacyState(LegacyState{Incarnation: 1}))     // a new life, empty view
	f.Add([]byte{0x43, 0x53, 0x54, 0x41, 1, 0, 0, 0, 0, 0, 0}) // truncated header
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseLegacyState(b)
		if err != nil {
			if !errors.Is(err, ErrLegacyState) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if !bytes.Equal(MarshalLegacyState(s), b) {
			t.Fatal("re-encoded state differs")
		}
	})
}
