package rsm

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.golden from the current encoders")

// snapshotVector is a composite snapshot by hand: machine 2 with "ab" in
// one chunk, machine 3 empty, a request table with one record.
func snapshotVector() []byte {
	b := []byte("RSMS\x01")
	b = append(b, 2, 2, 0, 0, 0, 'a', 'b', 0, 0, 0, 0)
	b = append(b, 3, 0, 0, 0, 0)
	rec := []byte{7, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 'o', 'k'}
	b = append(b, 255, byte(len(rec)), 0, 0, 0)
	b = append(b, rec...)
	b = append(b, 0, 0, 0, 0, 0)
	return b
}

func goldenFile(t *testing.T, name string, vectors [][2]string) string {
	t.Helper()
	path := filepath.Join("testdata", name)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# rsm %s golden vectors (SPEC.md). Lines: name<TAB>hex.\n", strings.TrimSuffix(name, ".golden"))
	fmt.Fprintln(&buf, "# Regenerate with: go test ./rsm -run TestGolden -rewrite")
	for _, v := range vectors {
		fmt.Fprintf(&buf, "%s\t%s\n", v[0], v[1])
	}
	if *rewrite {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return buf.String()
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if buf.String() != string(want) {
		t.Errorf("%s differs from the encoders (a format change needs a new version):\n got:\n%s\nwant:\n%s", path, buf.String(), want)
	}
	return string(want)
}

func lines(text string) map[string][]byte {
	out := map[string][]byte{}
	for _, l := range strings.Split(text, "\n") {
		name, hx, ok := strings.Cut(l, "\t")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		b, _ := hex.DecodeString(hx)
		out[name] = b
	}
	return out
}

func TestGolden(t *testing.T) {
	env := AppendEnvelope(nil, Envelope{Machine: Groups, Proposer: 0x0102030405060708, Request: 9, Cmd: []byte("cmd")})
	text := goldenFile(t, "envelope-v1.golden", [][2]string{
		{"envelope machine 2 proposer 0x0102030405060708 request 9 cmd \"cmd\"", hex.EncodeToString(env)},
		{"envelope machine 3 no request, empty cmd", hex.EncodeToString(AppendEnvelope(nil, Envelope{Machine: DataSvc, Proposer: 1}))},
	})
	for name, b := range lines(text) {
		e, err := ParseEnvelope(b)
		if err != nil || !bytes.Equal(AppendEnvelope(nil, e), b) {
			t.Errorf("%s: parsed %+v, %v", name, e, err)
		}
	}

	// The writer's output for the same content matches the hand-built
	// vector.
	var w bytes.Buffer
	must(t, writeSnapshotHeader(&w))
	for _, s := range []struct {
		id   ID
		data []byte
	}{{2, []byte("ab")}, {3, nil}} {
		sw, err := newSectionWriter(&w, s.id)
		must(t, err)
		_, err = sw.Write(s.data)
		must(t, err)
		must(t, sw.Close())
	}
	sw, _ := newSectionWriter(&w, idDedupe)
	must(t, writeDedupeRecord(sw, 7, 9, 42, []byte("ok")))
	must(t, sw.Close())
	w.WriteByte(byte(idEnd))
	if !bytes.Equal(w.Bytes(), snapshotVector()) {
		t.Errorf("writer produced %x, want %x", w.Bytes(), snapshotVector())
	}
	text = goldenFile(t, "snapshot-v1.golden", [][2]string{
		{"snapshot: machine 2 \"ab\", machine 3 empty, request (7, 9) at 42 reply \"ok\"", hex.EncodeToString(snapshotVector())},
	})
	for name, b := range lines(text) {
		got := map[ID]string{}
		err := DecodeSnapshot(bytes.NewReader(b), func(id ID, r io.Reader) error {
			if id == idDedupe {
				return readDedupe(r, func(p, q, i uint64, reply []byte) error {
					got[id] = fmt.Sprintf("%d %d %d %s", p, q, i, reply)
					return nil
				})
			}
			d, err := io.ReadAll(r)
			got[id] = string(d)
			return err
		})
		if err != nil || got[2] != "ab" || got[3] != "" || got[255] != "7 9 42 ok" || len(got) != 3 {
			t.Errorf("%s: decoded %q, %v", name, got, err)
		}
	}
}

func TestSnapshotErrors(t *testing.T) {
	good := snapshotVector()
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"bad magic", append([]byte("XSMS"), good[4:]...)},
		{"version 2", append([]byte("RSMS\x02"), good[5:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"ids not increasing", []byte("RSMS\x01\x03\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00")},
		{"chunk too large", []byte("RSMS\x01\x02\x00\x00\x20\x00")},
	} {
		err := DecodeSnapshot(bytes.NewReader(tc.b), func(ID, io.Reader) error { return nil })
		if !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: %v, want ErrSnapshot", tc.name, err)
		}
	}
}

func TestEnvelopeErrors(t *testing.T) {
	good := AppendEnvelope(nil, Envelope{Machine: Groups, Proposer: 1, Cmd: []byte("x")})
	mod := func(i int, v byte) []byte { b := bytes.Clone(good); b[i] = v; return b }
	for name, b := range map[string][]byte{
		"short":       good[:EnvelopeHeaderLen-1],
		"version":     mod(0, 2),
		"machine 0":   mod(1, 0),
		"machine 255": mod(1, 255),
		"flags":       mod(2, 1),
		"too large":   append(bytes.Clone(good), make([]byte, MaxCommand)...),
	} {
		if _, err := ParseEnvelope(b); !errors.Is(err, ErrEnvelope) {
			t.Errorf("%s: %v, want ErrEnvelope", name, err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
