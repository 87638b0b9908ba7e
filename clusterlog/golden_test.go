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

// goldenVectors are the byte-exact encodings FORMAT.md specifies. Each name
// says what is encoded; the value is produced by this build's encoder and
// must match testdata/format-v3.golden.
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
		{"meta/format version 3", hex.EncodeToString(encodeFormat(FormatVersion))},
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
	path := filepath.Join("testdata", "format-v3.golden")
	var buf bytes.Buffer
	fmt.Fprintln(&buf, "# clusterlog disk format v3 golden vectors (FORMAT.md). Lines: name<TAB>hex.")
	fmt.Fprintln(&buf, "# Regenerate with: go test -run TestGoldenFormat -rewrite")
	for _, v := range goldenVectors(t) {
		fmt.Fprintf(&buf, "%s\t%s\n", v[0], v[1])
	}
	if *rewrite {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := buf.String(); got != string(want) {
		t.Errorf("encodings differ from %s (a disk format change needs a new FormatVersion):\n got:\n%s\nwant:\n%s", path, got, want)
	}

	// The decoders read the golden bytes back.
	for _, line := range strings.Split(string(want), "\n") {
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
