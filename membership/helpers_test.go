package membership

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/corralhq/corral/rsm"
)

// rewriting reports the -rewrite flag, which the datadriven package
// defines for its scripts; the hex vectors follow the same flag.
func rewriting() bool {
	f := flag.Lookup("rewrite")
	return f != nil && f.Value.String() == "true"
}

// memTx is an rsm.Tx over a map, with Scan in key order like bbolt.
type memTx map[string][]byte

func (t memTx) Get(k []byte) []byte { return t[string(k)] }
func (t memTx) Put(k, v []byte) error {
	t[string(k)] = bytes.Clone(v)
	return nil
}
func (t memTx) Delete(k []byte) error { delete(t, string(k)); return nil }
func (t memTx) Scan(prefix []byte, fn func(k, v []byte) error) error {
	var keys []string
	for k := range t {
		if strings.HasPrefix(k, string(prefix)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := fn([]byte(k), t[k]); err != nil {
			return err
		}
	}
	return nil
}

var _ rsm.Tx = memTx(nil)

// formatHex renders data as a golden file: comment lines, then offset and
// 16 bytes a line.
func formatHex(comment []string, data []byte) string {
	var sb strings.Builder
	for _, c := range comment {
		sb.WriteString(strings.TrimRight("# "+c, " ") + "\n")
	}
	for off := 0; off < len(data); off += 16 {
		end := min(off+16, len(data))
		fmt.Fprintf(&sb, "%04x: % x\n", off, data[off:end])
	}
	return sb.String()
}

// parseHex reads the bytes of a golden file; offsets must match the bytes
// read so far, which catches a hand edit that drops or adds one.
func parseHex(text string) ([]byte, error) {
	var data []byte
	for i, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		tok := strings.Fields(line)
		if len(tok) == 0 {
			continue
		}
		off, ok := strings.CutSuffix(tok[0], ":")
		n, err := strconv.ParseUint(off, 16, 32)
		if !ok || err != nil || int(n) != len(data) {
			return nil, fmt.Errorf("line %d: offset %q, but %d bytes precede it", i+1, tok[0], len(data))
		}
		for _, t := range tok[1:] {
			c, err := hex.DecodeString(t)
			if err != nil || len(c) != 1 {
				return nil, fmt.Errorf("line %d: %q is not a hex byte", i+1, t)
			}
			data = append(data, c...)
		}
	}
	return data, nil
}

// checkGolden compares want with testdata/name, or writes it with -rewrite,
// and returns the bytes the file holds.
func checkGolden(t *testing.T, name string, comment []string, data []byte) []byte {
	t.Helper()
	path := filepath.Join("testdata", name)
	want := formatHex(comment, data)
	if rewriting() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -rewrite to create it)", err)
	}
	if string(got) != want {
		t.Errorf("%s does not match the encoder (update SPEC.md and run go test -rewrite if intended)\nfile:\n%s\ncode:\n%s", path, got, want)
	}
	b, err := parseHex(string(got))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}
