package agent

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/membership"
)

var rewrite = flag.Bool("rewrite", false, "rewrite golden files")

func sampleState() nodeState {
	var v membership.View
	v.Apply(3, membership.Command{Op: membership.OpJoin, ID: 1, Incarnation: 0x11, Name: "n1", Addr: "127.0.0.1:7946", Voter: true})
	v.Apply(4, membership.Command{Op: membership.OpJoin, ID: 2, Incarnation: 0x22, Name: "n2", Addr: "127.0.0.2:7946", Voter: true})
	return nodeState{Applied: 9, Incarnation: 0x22, View: v}
}

func TestStateGolden(t *testing.T) {
	s := sampleState()
	b := s.marshal()
	path := filepath.Join("testdata", "state.hex")
	if *rewrite {
		text := "# Agent state file (STATE.md): applied 9, incarnation 0x22, view 4 with n1 and n2.\n" + hex.Dump(b)
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var want []byte
	for _, line := range strings.Split(string(text), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		// hex.Dump lines: offset, 16 bytes in two groups, |ascii|.
		fields := strings.Fields(strings.SplitN(line, "|", 2)[0])
		for _, f := range fields[1:] {
			c, err := hex.DecodeString(f)
			if err != nil {
				t.Fatalf("golden line %q: %v", line, err)
			}
			want = append(want, c...)
		}
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("state encoding changed; update STATE.md and rerun with -rewrite\ngot  %x\nwant %x", b, want)
	}
	got, err := parseState(want)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("decode golden: %+v %v", got, err)
	}
}

func TestStateRejects(t *testing.T) {
	good := sampleState()
	enc := good.marshal()
	mut := func(f func([]byte)) []byte { b := bytes.Clone(enc); f(b); return b }
	for name, b := range map[string][]byte{
		"short":     enc[:20],
		"magic":     mut(func(b []byte) { b[0] ^= 1 }),
		"version":   mut(func(b []byte) { b[4] = 2 }),
		"crc":       mut(func(b []byte) { b[len(b)-1] ^= 1 }),
		"truncated": enc[:len(enc)-3],
	} {
		if _, err := parseState(b); !errors.Is(err, ErrState) {
			t.Errorf("%s: %v, want ErrState", name, err)
		}
	}
	// A view newer than the applied index cannot be.
	bad := good
	bad.Applied = 2
	if _, err := parseState(bad.marshal()); !errors.Is(err, ErrState) {
		t.Errorf("view after applied: %v", err)
	}
}

func TestStateFileAtomic(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := readState(dir); ok || err != nil {
		t.Fatalf("empty dir: %v %v", ok, err)
	}
	s := sampleState()
	if err := writeState(dir, &s); err != nil {
		t.Fatal(err)
	}
	got, ok, err := readState(dir)
	if !ok || err != nil || !reflect.DeepEqual(got, s) {
		t.Fatalf("read back %+v %v %v", got, ok, err)
	}
	os.WriteFile(filepath.Join(dir, stateFile), []byte("garbage"), 0o600)
	if _, _, err := readState(dir); !errors.Is(err, ErrState) {
		t.Fatalf("garbage state: %v", err)
	}
}

func FuzzParseState(f *testing.F) {
	s := sampleState()
	f.Add(s.marshal())                            // a state with a two-member view
	f.Add((&nodeState{Incarnation: 1}).marshal()) // a new life, empty view
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseState(b)
		if err != nil {
			if !errors.Is(err, ErrState) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if !bytes.Equal(st.marshal(), b) {
			t.Fatal("re-encoded state differs")
		}
	})
}
