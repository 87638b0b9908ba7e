package groups_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/groups"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/types/event"
)

// rewrite is datadriven's -rewrite flag: one flag rewrites the scripts and
// the vectors.
func rewrite() bool {
	f := flag.Lookup("rewrite")
	return f != nil && f.Value.String() == "true"
}

// goldenCmds is a batch with every op.
var goldenCmds = []groups.Cmd{
	{Op: groups.OpOpen, Key: 0x1122334455667788, Pid: 4242, Name: "worker"},
	{Op: groups.OpJoin, Key: 0x1122334455667788, Group: "locks"},
	{Op: groups.OpPart, Key: 0x1122334455667788, Xfer: 9, Payload: []byte("he")},
	{Op: groups.OpSend, Key: 0x1122334455667788, Kind: 4, Flags: groups.FlagAssembled, Xfer: 9, MsgID: 77, Group: "locks", Payload: []byte("llo")},
	{Op: groups.OpSend, Key: 0x1122334455667788, Kind: 6, Target: 0x0a00000, ReplyTo: 0x0b00001, MsgID: 78, Payload: []byte("ok")},
	{Op: groups.OpLeave, Key: 0x1122334455667788, Group: "locks"},
	{Op: groups.OpClose, Key: 0x1122334455667788, Reason: event.LeaveProcDown},
	{Op: groups.OpReset},
}

var goldenResults = []groups.CmdResult{
	{Member: 0x0a00000},
	{Status: 43, Text: "JOIN: no session"},
	{Delivered: 3, Seq: 0x0a00002, Member: 0x0a00000},
}

// goldenSnapshot is the snapshot of a machine after a few batches.
func goldenSnapshot(t *testing.T) []byte {
	m, tx := groups.NewMachine(nil), memTx{}
	for i, cmds := range [][]groups.Cmd{
		{{Op: groups.OpOpen, Key: 1, Pid: 10, Name: "a"}, {Op: groups.OpOpen, Key: 2}, {Op: groups.OpJoin, Key: 1, Group: "g"}, {Op: groups.OpJoin, Key: 2, Group: "g"}},
		{{Op: groups.OpJoin, Key: 2, Group: "h"}, {Op: groups.OpPart, Key: 2, Xfer: 5, Payload: []byte("part")}},
	} {
		b, err := groups.AppendBatch(nil, groups.Header{Node: 7, Run: 0xabc, N: uint64(i + 1)}, cmds)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Apply(tx, rsm.Entry{Index: uint64(3 + i), Proposer: 7, Cmd: b}); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := m.Snapshot(tx, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	batch, err := groups.AppendBatch(nil, goldenHeader, goldenCmds)
	if err != nil {
		t.Fatal(err)
	}
	snap := goldenSnapshot(t)
	vectors := [][2]string{
		{"batch", hex.EncodeToString(batch)},
		{"results", hex.EncodeToString(groups.AppendResults(nil, goldenResults))},
		{"refusal", hex.EncodeToString(groups.AppendRefusal(nil, goldenRefusal))},
		{"snapshot", hex.EncodeToString(snap)},
	}
	path := filepath.Join("testdata", "groups-v1.golden")
	var buf bytes.Buffer
	fmt.Fprintln(&buf, "# groups v1 golden vectors (SPEC.md). Lines: name<TAB>hex.")
	fmt.Fprintln(&buf, "# Regenerate with: go test ./groups -run TestGolden -rewrite")
	for _, v := range vectors {
		fmt.Fprintf(&buf, "%s\t%s\n", v[0], v[1])
	}
	if rewrite() {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if buf.String() != string(want) {
		t.Errorf("%s differs from the encoders (a format change needs a new version):\n got:\n%s\nwant:\n%s", path, buf.String(), want)
	}
	file := map[string][]byte{}
	for _, l := range strings.Split(string(want), "\n") {
		if name, hx, ok := strings.Cut(l, "\t"); ok && !strings.HasPrefix(l, "#") {
			b, err := hex.DecodeString(hx)
			if err != nil {
				t.Fatal(err)
			}
			file[name] = b
		}
	}
	// The file decodes to what made it.
	h, cmds, err := groups.ParseBatch(file["batch"])
	if err != nil || h != goldenHeader || !reflect.DeepEqual(cmds, goldenCmds) {
		t.Errorf("ParseBatch(file) = %+v, %v\nwant %+v", cmds, err, goldenCmds)
	}
	if _, ref, err := groups.ParseReply(file["refusal"]); err != nil || ref == nil || *ref != goldenRefusal {
		t.Errorf("ParseReply(refusal) = %+v, %v", ref, err)
	}
	rs, err := groups.ParseResults(file["results"])
	if err != nil || !reflect.DeepEqual(rs, goldenResults) {
		t.Errorf("ParseResults(file) = %+v, %v", rs, err)
	}
	m, tx := groups.NewMachine(nil), memTx{}
	if err := m.Restore(tx, bytes.NewReader(file["snapshot"])); err != nil {
		t.Fatalf("Restore(file): %v", err)
	}
	if seq, ms := m.Members("g"); seq != event.SeqOf(4, 0) || len(ms) != 2 || ms[0].Name != "a" || ms[0].Pid != 10 {
		t.Errorf("restored g: %d %+v", seq, ms)
	}
	var again bytes.Buffer
	if err := m.Snapshot(tx, &again); err != nil || !bytes.Equal(again.Bytes(), file["snapshot"]) {
		t.Errorf("the restored machine's snapshot differs (%v)", err)
	}
}

// goldenRefusal is the reply of a batch that overtook one not applied yet.
var goldenRefusal = groups.Refusal{Status: groups.ResultOutOfOrder, Text: "batch 3 out of order"}

// goldenHeader heads the golden batch.
var goldenHeader = groups.Header{Node: 7, Run: 0x0102030405060708, N: 3}

// hdr is a batch header of count commands (node 7, run 1, batch 1).
func hdr(count uint32) []byte {
	b := []byte{1, 0, 0, 0, byte(count), byte(count >> 8), byte(count >> 16), byte(count >> 24)}
	b = append(b, 7, 0, 0, 0, 0, 0, 0, 0)
	b = append(b, 1, 0, 0, 0, 0, 0, 0, 0)
	return append(b, 1, 0, 0, 0, 0, 0, 0, 0)
}

// The decoders refuse what the format does not allow.
func TestParseRefuses(t *testing.T) {
	ok, _ := groups.AppendBatch(nil, goldenHeader, goldenCmds[:1])
	for name, b := range map[string][]byte{
		"empty":          nil,
		"version":        append([]byte{2}, ok[1:]...),
		"reserved":       append([]byte{1, 1}, ok[2:]...),
		"count too big":  hdr(0x10001),
		"count vs bytes": hdr(9),
		"node 0":         {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0},
		"batch 0":        append(append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 7)...), make([]byte, 8)...),
		"unknown op":     append(hdr(1), 8, 0, 0, 0, 0, 0, 0, 0),
		"trailing":       append(bytes.Clone(ok), 0),
		"body trailing":  append(hdr(1), 7, 0, 0, 0, 1, 0, 0, 0, 0),
		"truncated":      ok[:len(ok)-1],
	} {
		if _, _, err := groups.ParseBatch(b); err == nil {
			t.Errorf("%s: ParseBatch accepted %x", name, b)
		}
	}
	if _, err := groups.ParseResults([]byte{1, 0, 0, 0}); err == nil {
		t.Error("ParseResults accepted a truncated list")
	}
	if _, err := groups.AppendBatch(nil, goldenHeader, make([]groups.Cmd, groups.MaxBatch+1)); err == nil {
		t.Error("AppendBatch accepted too many commands")
	}
	// A batch that does not parse is answered with one error for all.
	res, err := groups.NewMachine(nil).Apply(memTx{}, rsm.Entry{Index: 1, Cmd: []byte{9}})
	rs, refused, perr := groups.ParseReply(res.Reply)
	if err != nil || perr != nil || rs != nil || refused == nil || refused.Status != proto.CodeField || len(res.Events) != 0 {
		t.Errorf("bad batch: %+v %+v %v %v", rs, refused, err, perr)
	}
}
