package ctl_test

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

// rewrite is datadriven's -rewrite flag: one flag rewrites the scripts and
// the vectors.
func rewrite() bool {
	f := flag.Lookup("rewrite")
	return f != nil && f.Value.String() == "true"
}

var (
	goldenAddr = ctl.Addr{Stack: 0xf0000001, IP: netip.MustParseAddr("192.0.2.10")}
	goldenV6   = ctl.Addr{Stack: 0xf0000001, IP: netip.MustParseAddr("2001:db8::10")}
)

// goldenCmds has every op.
var goldenCmds = []struct {
	name string
	cmd  ctl.Cmd
}{
	{"add", ctl.Cmd{Op: ctl.OpAdd, Addr: goldenAddr, Policy: ctl.Sticky, Affinity: 30 * time.Second,
		Weights: []ctl.Weight{{Node: 1, Weight: 100}, {Node: 2, Weight: 300}}}},
	{"add-replace", ctl.Cmd{Op: ctl.OpAdd, Addr: goldenV6, Replace: true, Policy: ctl.StickyWild}},
	{"del", ctl.Cmd{Op: ctl.OpDel, Addr: goldenV6}},
	{"listen", ctl.Cmd{Op: ctl.OpListen, Addr: goldenAddr, Node: 2, Proto: ctl.TCP, Port: 443}},
	{"unlisten", ctl.Cmd{Op: ctl.OpUnlisten, Addr: goldenAddr, Node: 2, Proto: ctl.UDP, Port: 53}},
	{"lease-slice", ctl.Cmd{Op: ctl.OpLease, Kind: ctl.Slice, Addr: goldenAddr, Node: 3, Proto: ctl.TCP}},
	{"lease-spi", ctl.Cmd{Op: ctl.OpLease, Kind: ctl.SPI, Addr: ctl.Addr{Stack: 0xf0000001}, Node: 3}},
	{"release-ident", ctl.Cmd{Op: ctl.OpRelease, Kind: ctl.Ident, Addr: goldenAddr, Node: 3, Index: 7}},
	{"except", ctl.Cmd{Op: ctl.OpExcept, Addr: goldenAddr, Node: 2, Gen: 2, Flows: []ctl.Flow{
		{Client: netip.MustParseAddrPort("198.51.100.7:40000"), Proto: ctl.TCP, Port: 443},
		{Client: netip.MustParseAddrPort("[2001:db8::7]:40001"), Proto: ctl.TCP, Port: 443}}}},
	{"except-partial-empty", ctl.Cmd{Op: ctl.OpExcept, Addr: goldenAddr, Node: 2, Gen: 3, Partial: true}},
	{"unexcept", ctl.Cmd{Op: ctl.OpUnexcept, Addr: goldenAddr, Node: 2, Flows: []ctl.Flow{
		{Client: netip.MustParseAddrPort("198.51.100.7:40000"), Proto: ctl.TCP, Port: 443}}}},
}

var goldenReplies = []struct {
	name  string
	reply ctl.Reply
}{
	{"reply-ok", ctl.Reply{}},
	{"reply-lease", ctl.Reply{Index: 2, First: 3072, Last: 4095}},
	{"reply-refused", ctl.Reply{Code: ctl.Exhausted, Text: "LEASE: all 63 slice blocks are leased"}},
	{"reply-stale", ctl.Reply{Code: ctl.Stale, Text: "EXCEPT: generation 1 of 192.0.2.10@0xf0000001 is 2"}},
}

// goldenSnapshot is the snapshot of a machine with a record of each kind.
func goldenSnapshot(t *testing.T) []byte {
	n := newNode(0)
	n.view(t, 1, 4, [2]uint64{1, 1}, [2]uint64{2, 3})
	for i, c := range []ctl.Cmd{
		goldenCmds[0].cmd,
		goldenCmds[3].cmd,
		goldenCmds[5].cmd,
		{Op: ctl.OpLease, Kind: ctl.Ident, Addr: goldenAddr, Node: 1},
		goldenCmds[6].cmd,
		goldenCmds[8].cmd,
	} {
		c.Node = min(c.Node, 2)
		if r := n.apply(t, uint64(2+i), c); r.Code != ctl.OK {
			t.Fatalf("%v: %v", c.Op, replyText(r))
		}
	}
	var buf bytes.Buffer
	if err := n.m.Snapshot(n.tx, &buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestGolden(t *testing.T) {
	var buf bytes.Buffer
	fmt.Fprintln(&buf, "# sharedaddr/ctl v3 golden vectors (SPEC.md). Lines: name<TAB>hex.")
	fmt.Fprintln(&buf, "# Regenerate with: go test ./sharedaddr/ctl -run TestGolden -rewrite")
	for _, c := range goldenCmds {
		fmt.Fprintf(&buf, "cmd-%s\t%x\n", c.name, ctl.AppendCmd(nil, c.cmd))
	}
	for _, r := range goldenReplies {
		fmt.Fprintf(&buf, "%s\t%x\n", r.name, ctl.AppendReply(nil, r.reply))
	}
	snap := goldenSnapshot(t)
	fmt.Fprintf(&buf, "snapshot\t%x\n", snap)
	path := filepath.Join("testdata", "sharedaddr-v3.golden")
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
	file := readGolden(t, path)
	// The file decodes to what made it.
	for _, c := range goldenCmds {
		got, err := ctl.ParseCmd(file["cmd-"+c.name])
		if err != nil || !reflect.DeepEqual(got, c.cmd) {
			t.Errorf("ParseCmd(%s) = %+v, %v; want %+v", c.name, got, err, c.cmd)
		}
	}
	for _, r := range goldenReplies {
		got, err := ctl.ParseReply(file[r.name])
		if err != nil || got != r.reply {
			t.Errorf("ParseReply(%s) = %+v, %v; want %+v", r.name, got, err, r.reply)
		}
	}
	n := newNode(0)
	if err := n.m.Restore(n.tx, bytes.NewReader(file["snapshot"])); err != nil {
		t.Fatal(err)
	}
	if a := n.m.Addrs(); len(a) != 1 || a[0].Addr != goldenAddr || len(a[0].Listeners) != 1 || len(a[0].Leases) != 2 || len(n.m.SPILeases()) != 1 ||
		a[0].Gen != 2 || len(a[0].Exceptions) != 2 || len(a[0].Reports) != 1 || a[0].Owner != 1 {
		t.Errorf("restored golden snapshot: %s", n.stateText())
	}
}

// TestGoldenV2: a version 2 snapshot, which records no owner, restores
// with every address owned by the oldest member, as version 2 derived it,
// and the first view change that keeps that member records it.
func TestGoldenV2(t *testing.T) {
	file := readGolden(t, filepath.Join("testdata", "sharedaddr-v2.golden"))
	n := newNode(0)
	if err := n.m.Restore(n.tx, bytes.NewReader(file["snapshot"])); err != nil {
		t.Fatal(err)
	}
	a := n.m.Addrs()
	if len(a) != 1 || a[0].Gen != 2 || len(a[0].Exceptions) != 2 || a[0].Owner != 1 {
		t.Fatalf("restored v2 snapshot: %s", n.stateText())
	}
	n.view(t, 100, 5, [2]uint64{1, 1}, [2]uint64{2, 3}, [2]uint64{9, 9})
	if o, _ := n.m.Owner(goldenAddr); o != 1 {
		t.Fatalf("after a join, owner %d; want 1 (a join moves nothing)", o)
	}
	var buf bytes.Buffer
	if err := n.m.Snapshot(n.tx, &buf); err != nil {
		t.Fatal(err)
	}
	m := newNode(0)
	if err := m.m.Restore(m.tx, &buf); err != nil {
		t.Fatal(err)
	}
	if o, _ := m.m.Owner(goldenAddr); o != 1 {
		t.Fatalf("owner recorded as %d; want 1", o)
	}
}

func readGolden(t *testing.T, path string) map[string][]byte {
	t.Helper()
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
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
	return file
}

// TestGoldenV1: what version 1 wrote still decodes, the same — commands
// and replies are unchanged, and a version 1 snapshot restores (with
// generation 0 and no exceptions).
func TestGoldenV1(t *testing.T) {
	file := readGolden(t, filepath.Join("testdata", "sharedaddr-v1.golden"))
	for _, c := range goldenCmds {
		if c.cmd.Op > ctl.OpRelease {
			continue
		}
		if got := ctl.AppendCmd(nil, c.cmd); !bytes.Equal(got, file["cmd-"+c.name]) {
			t.Errorf("cmd %s: %x, v1 %x", c.name, got, file["cmd-"+c.name])
		}
	}
	for _, r := range goldenReplies[:3] {
		if got := ctl.AppendReply(nil, r.reply); !bytes.Equal(got, file[r.name]) {
			t.Errorf("reply %s: %x, v1 %x", r.name, got, file[r.name])
		}
	}
	n := newNode(0)
	if err := n.m.Restore(n.tx, bytes.NewReader(file["snapshot"])); err != nil {
		t.Fatal(err)
	}
	if a := n.m.Addrs(); len(a) != 1 || len(a[0].Listeners) != 1 || a[0].Gen != 0 || len(a[0].Exceptions) != 0 {
		t.Errorf("restored v1 snapshot: %s", n.stateText())
	}
}
