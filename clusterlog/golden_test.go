package clusterlog

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.golden from the current encoders")

// goldenVectorsV4 are the byte-exact encodings of version 4 that FORMAT.md
// specifies. Each name says what is encoded; the value is produced by this
// build's encoder and must match testdata/format-v4.golden.
func goldenVectorsV4(t *testing.T) [][2]string {
	rec := func(e *raftpb.Entry) string {
		b, _, err := appendEntryRecord(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(b)
	}
	env := appendEnvelope(nil, proposalID{node: 1, opens: 2, seq: 3})
	return [][2]string{
		{"meta/format version 4", hex.EncodeToString(encodeFormat(FormatVersion))},
		{"meta/wal generation 1", hex.EncodeToString(encodeUint64(1))},
		{"meta/applied 42", hex.EncodeToString(encodeUint64(42))},
		{"meta/truncated index 7 term 3", hex.EncodeToString(encodeTruncated(7, 3))},
		{"segment name of generation 1 sequence 2 first index 42, ASCII", hex.EncodeToString([]byte(segHeader{1, 2, 42}.name()))},
		{"segment header of generation 1 sequence 0 first index 5", hex.EncodeToString(encodeSegHeader(segHeader{1, 0, 5}))},
		{"record of Entry{Index 5, Term 2, Normal, Data \"x\"}", rec(&raftpb.Entry{
			Index: new(uint64(5)), Term: new(uint64(2)), Type: raftpb.EntryNormal.Enum(), Data: []byte("x")})},
		{"record of Entry{Index 6, Term 3, ConfChangeV2, Data \"cc\"}", rec(&raftpb.Entry{
			Index: new(uint64(6)), Term: new(uint64(3)), Type: raftpb.EntryConfChangeV2.Enum(), Data: []byte("cc")})},
		{"envelope node 1 incarnation 2 seq 3, payload \"hi\"", hex.EncodeToString(append(env, "hi"...))},
	}
}

// TestGoldenFormatV4 checks the version 4 encodings against
// testdata/format-v4.golden and decodes the golden bytes back.
func TestGoldenFormatV4(t *testing.T) {
	want := checkGolden(t, "format-v4.golden", "v4", goldenVectorsV4(t))
	for _, line := range strings.Split(want, "\n") {
		name, hx, ok := strings.Cut(line, "\t")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		switch {
		case strings.HasPrefix(name, "segment name"):
			if h, ok := parseSegName(string(b)); !ok || h != (segHeader{1, 2, 42}) {
				t.Errorf("%s: parsed %v %v", name, h, ok)
			}
		case strings.HasPrefix(name, "segment header"):
			if h, err := decodeSegHeader(b); err != nil || h != (segHeader{1, 0, 5}) {
				t.Errorf("%s: decoded %v %v", name, h, err)
			}
		case strings.HasPrefix(name, "record of Entry{Index 5"):
			if e, err := decodeRecord(b); err != nil || string(e.GetData()) != "x" || e.GetTerm() != 2 || e.GetIndex() != 5 {
				t.Errorf("%s: decoded %v, %v", name, e, err)
			}
		case strings.HasPrefix(name, "record of Entry{Index 6"):
			if e, err := decodeRecord(b); err != nil || e.GetType() != raftpb.EntryConfChangeV2 || e.GetIndex() != 6 {
				t.Errorf("%s: decoded %v, %v", name, e, err)
			}
		}
	}
}

// checkGolden compares vectors with testdata/file (or rewrites it) and
// returns the file's contents.
func checkGolden(t *testing.T, file, version string, vectors [][2]string) string {
	t.Helper()
	path := filepath.Join("testdata", file)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# clusterlog disk format %s golden vectors (FORMAT.md). Lines: name<TAB>hex.\n", version)
	fmt.Fprintf(&buf, "# Regenerate with: go test -run TestGoldenFormat -rewrite\n")
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
	if got := buf.String(); got != string(want) {
		t.Errorf("encodings differ from %s (a disk format change needs a new FormatVersion):\n got:\n%s\nwant:\n%s", path, got, want)
	}
	return string(want)
}

// goldenVectors are the byte-exact encodings of version 3, which the
// upgrade to version 4 reads: they must match testdata/format-v3.golden.
func goldenVectors(t *testing.T) [][2]string {
	entry, err := proto.MarshalOptions{Deterministic: true}.Marshal(&raftpb.Entry{
		Index: new(uint64(5)), Term: new(uint64(2)), Type: raftpb.EntryNormal.Enum(), Data: []byte("x"),
	})
	if err != nil {
		t.Fatal(err)
	}
	env := appendEnvelope(nil, proposalID{node: 1, opens: 2, seq: 3})
	big, err := proto.MarshalOptions{Deterministic: true}.Marshal(&raftpb.Entry{
		Index: new(uint64(6)), Term: new(uint64(2)), Type: raftpb.EntryNormal.Enum(), Data: bytes.Repeat([]byte("y"), 1000),
	})
	if err != nil {
		t.Fatal(err)
	}
	var chunks []string
	must(t, appendEntryChunks(6, big, func(k, v []byte) error {
		chunks = append(chunks, hex.EncodeToString(k)+":"+hex.EncodeToString(v))
		return nil
	}))
	return [][2]string{
		{"meta/format version 3", hex.EncodeToString(encodeFormat(3))},
		{"entries key for index 42 chunk 0", hex.EncodeToString(entryKey(42, 0))},
		{"entries key for index 42 chunk 3", hex.EncodeToString(entryKey(42, 3))},
		{"meta/applied 42", hex.EncodeToString(encodeUint64(42))},
		{"meta/truncated index 7 term 3", hex.EncodeToString(encodeTruncated(7, 3))},
		{"entries value of one chunk, key index 5 chunk 0: Entry{Index 5, Term 2, Normal, Data \"x\"}", hex.EncodeToString(entry)},
		{"entries chunks (key:value) of Entry{Index 6, Term 2, Normal, Data 1000 \"y\"}", strings.Join(chunks, " ")},
		{"envelope node 1 incarnation 2 seq 3, payload \"hi\"", hex.EncodeToString(append(env, "hi"...))},
	}
}

func TestGoldenFormat(t *testing.T) {
	want := checkGolden(t, "format-v3.golden", "v3", goldenVectors(t))

	// The decoders read the golden bytes back.
	for _, line := range strings.Split(want, "\n") {
		name, hx, ok := strings.Cut(line, "\t")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(name, "entries chunks") {
			var ks, vs [][]byte
			for _, kv := range strings.Fields(hx) {
				kh, vh, _ := strings.Cut(kv, ":")
				k, err1 := hex.DecodeString(kh)
				v, err2 := hex.DecodeString(vh)
				if err1 != nil || err2 != nil {
					t.Fatalf("%s: %v %v", name, err1, err2)
				}
				ks, vs = append(ks, k), append(vs, v)
			}
			if e, err := decodeEntryRecord(ks, vs); err != nil || len(ks) != 2 || !bytes.Equal(e.GetData(), bytes.Repeat([]byte("y"), 1000)) || e.GetIndex() != 6 {
				t.Errorf("%s: decoded %d chunks to %v, %v", name, len(ks), e, err)
			}
			continue
		}
		b, err := hex.DecodeString(hx)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		switch {
		case strings.HasPrefix(name, "entries value"):
			if e, err := decodeEntryRecord([][]byte{entryKey(5, 0)}, [][]byte{b}); err != nil || string(e.GetData()) != "x" || e.GetTerm() != 2 {
				t.Errorf("%s: decoded %v, %v", name, e, err)
			}
		case strings.HasPrefix(name, "envelope"):
			id, payload, err := decodeEnvelope(1, b)
			if err != nil || id != (proposalID{1, 2, 3}) || string(payload) != "hi" {
				t.Errorf("%s: decoded %v %q %v", name, id, payload, err)
			}
		case strings.HasPrefix(name, "meta/truncated"):
			if i, tm, err := decodeTruncated(b); err != nil || i != 7 || tm != 3 {
				t.Errorf("%s: decoded %d %d %v", name, i, tm, err)
			}
		}
	}
}
