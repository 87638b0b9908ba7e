package replicated_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/replicated"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.golden from the current encoders")

type vector struct{ name, hex string }

func goldenFile(t *testing.T, name string, vectors []vector) string {
	t.Helper()
	path := filepath.Join("testdata", name)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# dsvc/replicated %s golden vectors (SPEC.md). Lines: name<TAB>hex.\n", strings.TrimSuffix(name, ".golden"))
	fmt.Fprintln(&buf, "# Regenerate with: go test ./dsvc/replicated -run TestGolden -rewrite")
	for _, v := range vectors {
		fmt.Fprintf(&buf, "%s\t%s\n", v.name, v.hex)
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

func lines(text string) []vector {
	var out []vector
	for _, l := range strings.Split(text, "\n") {
		name, hx, ok := strings.Cut(l, "\t")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, vector{name, hx})
	}
	return out
}

func goldenCommands() []replicated.Command {
	rec := dsvc.DNRecord{CID: []byte{1, 0xaa, 0xbb}, Flags: dsvc.DNManual, CIP: ip("10.0.0.5"), SIP: ip("10.0.0.1"),
		Lease: 0x01020304, Macro: "m", Comment: "c", Sig: 0x0007000000000002}
	rec2 := rec
	rec2.CIP, rec2.Sig = ip("10.0.0.6"), 0
	return []replicated.Command{
		mkloc("/l"),
		{Op: replicated.OpCreate, Loc: "/l", Kind: dsvc.DHCPTab, Container: "c1_dhcptab"},
		{Op: replicated.OpCreate, Loc: "/l", Kind: dsvc.Network, Container: "c1_10.0.0.0", Prefix: netip.MustParsePrefix("10.0.0.0/24")},
		{Op: replicated.OpRemove, Loc: "/l", Kind: dsvc.Network, Container: "c1_10.0.0.0"},
		{Op: replicated.OpAdd, Loc: "/l", Kind: dsvc.DHCPTab, Container: "c1_dhcptab", Gen: 0xbeef, DT: []dsvc.DTRecord{dt('m', "Locale", ":a=1:", 0)}},
		{Op: replicated.OpAdd, Loc: "/l", Kind: dsvc.Network, Container: "c1_10.0.0.0", Gen: 7, DN: []dsvc.DNRecord{rec2}},
		{Op: replicated.OpModify, Loc: "/l", Kind: dsvc.DHCPTab, Container: "c1_dhcptab", DT: []dsvc.DTRecord{dt('m', "Locale", "", 0xbeef000000000001), dt('s', "Locale", "v", 0)}},
		{Op: replicated.OpModify, Loc: "/l", Kind: dsvc.Network, Container: "c1_10.0.0.0", DN: []dsvc.DNRecord{rec, rec2}},
		{Op: replicated.OpDelete, Loc: "/l", Kind: dsvc.DHCPTab, Container: "c1_dhcptab", DT: []dsvc.DTRecord{dt('s', "Locale", "", 0)}},
		{Op: replicated.OpDelete, Loc: "/l", Kind: dsvc.Network, Container: "c1_10.0.0.0", DN: []dsvc.DNRecord{{CIP: ip("10.0.0.5"), Sig: 9}}},
		{Op: replicated.OpImport, Loc: "/l", Kind: dsvc.DHCPTab, Container: "c1_dhcptab", Gen: 2, DT: []dsvc.DTRecord{dt('m', "a", "", 5), dt('s', "b", "x", 0)}},
		{Op: replicated.OpImport, Loc: "/l", Kind: dsvc.Network, Container: "c1_10.0.0.0", Gen: 3, DN: []dsvc.DNRecord{rec}},
	}
}

func goldenReplies() []replicated.Reply {
	return []replicated.Reply{
		{},
		{Sig: 0xbeef000000000001},
		{Prefix: netip.MustParsePrefix("10.0.0.0/24")},
		{Code: dsvc.CodeCollision, Message: "m \"Locale\" changed since it was read"},
		{Code: dsvc.CodeTableExists, Message: "container \"c1_dhcptab\" exists"},
	}
}

// goldenState is the state whose snapshot is a vector: every item kind.
func goldenState(t *testing.T) *pair {
	p := newPair(t)
	p.want(success, mkloc("/l"))
	for _, c := range goldenCommands()[1:3] {
		p.want(success, c)
	}
	for _, c := range goldenCommands()[10:] {
		p.want(success, c)
	}
	return p
}

func TestGolden(t *testing.T) {
	var vs []vector
	for _, c := range goldenCommands() {
		b, err := replicated.AppendCommand(nil, &c)
		must(t, err)
		vs = append(vs, vector{fmt.Sprintf("command %v kind %d %s", c.Op, c.Kind, c.Container), hex.EncodeToString(b)})
	}
	for _, r := range goldenReplies() {
		pf := "none"
		if r.Prefix.IsValid() {
			pf = r.Prefix.String()
		}
		vs = append(vs, vector{fmt.Sprintf("reply code %d sig %#x prefix %s %q", r.Code, r.Sig, pf, r.Message), hex.EncodeToString(replicated.AppendReply(nil, &r))})
	}
	p := goldenState(t)
	vs = append(vs, vector{"snapshot /l: dhcptab with m a, s b; network 10.0.0.0/24 with 10.0.0.5", hex.EncodeToString(snapshot(t, p.m(), p.txs[0]))})
	text := goldenFile(t, "replicated-v1.golden", vs)

	cmds, replies := goldenCommands(), goldenReplies()
	for _, v := range lines(text) {
		b, err := hex.DecodeString(v.hex)
		must(t, err)
		switch {
		case strings.HasPrefix(v.name, "command "):
			c, err := replicated.ParseCommand(b)
			want := cmds[0]
			cmds = cmds[1:]
			again, _ := replicated.AppendCommand(nil, &c)
			if err != nil || !bytes.Equal(again, b) || !sameCommand(c, want) {
				t.Errorf("%s: parsed %+v, %v", v.name, c, err)
			}
		case strings.HasPrefix(v.name, "reply "):
			r, err := replicated.ParseReply(b)
			if err != nil || !reflect.DeepEqual(r, replies[0]) {
				t.Errorf("%s: parsed %+v, %v", v.name, r, err)
			}
			replies = replies[1:]
		case strings.HasPrefix(v.name, "snapshot "):
			m, tx := replicated.New(), newTx()
			must(t, m.Restore(tx, bytes.NewReader(b)))
			if d, want := dump(t, m, "/l"), dump(t, p.m(), "/l"); d != want {
				t.Errorf("%s restores to\n%s\nwant\n%s", v.name, d, want)
			}
		}
	}
}

// sameCommand compares as the encoding does: an unset address is 0.0.0.0.
func sameCommand(a, b replicated.Command) bool {
	norm := func(c *replicated.Command) {
		for i := range c.DN {
			r := &c.DN[i]
			if !r.SIP.IsValid() {
				r.SIP = netip.AddrFrom4([4]byte{})
			}
			if r.CID == nil {
				r.CID = []byte{}
			}
		}
	}
	norm(&a)
	norm(&b)
	return reflect.DeepEqual(a, b)
}

// TestGoldenErrors: each refused encoding, kept as a vector, is refused
// with the typed error.
func TestGoldenErrors(t *testing.T) {
	cmd := func(i int) []byte {
		c := goldenCommands()[i]
		b, _ := replicated.AppendCommand(nil, &c)
		return b
	}
	set := func(b []byte, i int, v byte) []byte { b = bytes.Clone(b); b[i] = v; return b }
	add := cmd(4)
	imp := cmd(11)
	reply := replicated.AppendReply(nil, &replicated.Reply{Code: 1, Message: "x"})
	vs := []vector{
		{"command empty", ""},
		{"command version 2", hex.EncodeToString(set(cmd(0), 0, 2))},
		{"command op 0", hex.EncodeToString(set(cmd(0), 1, 0))},
		{"command op 8", hex.EncodeToString(set(cmd(0), 1, 8))},
		{"command MKLOC of kind 1", hex.EncodeToString(set(cmd(0), 2, 1))},
		{"command ADD of kind 3", hex.EncodeToString(set(add, 2, 3))},
		{"command reserved byte 3", hex.EncodeToString(set(add, 3, 1))},
		{"command REMOVE with a generation", hex.EncodeToString(set(cmd(3), 4, 1))},
		{"command MKLOC with a container", hex.EncodeToString(append(bytes.Clone(cmd(0)[:len(cmd(0))-2]), 1, 0, 'x'))},
		{"command CREATE prefix length 33", hex.EncodeToString(set(cmd(2), len(cmd(2))-1, 33))},
		{"command ADD truncated", hex.EncodeToString(add[:len(add)-1])},
		{"command ADD trailing byte", hex.EncodeToString(append(bytes.Clone(add), 0))},
		{"command ADD reserved byte after the type", hex.EncodeToString(set(add, 6+4+12+1, 1))},
		{"command IMPORT of 0 records", hex.EncodeToString(append(bytes.Clone(imp[:6+4+13]), 0, 0, 0, 0))},
		{"command IMPORT of 65537 records", hex.EncodeToString(append(bytes.Clone(imp[:6+4+13]), 1, 0, 1, 0))},
		{"command location of 1025 bytes", hex.EncodeToString(append([]byte{1, 1, 0, 0, 0, 0, 1, 4}, make([]byte, 1025+2)...))},
		{"reply empty", ""},
		{"reply code 26", hex.EncodeToString(set(reply, 0, 26))},
		{"reply success with a message", hex.EncodeToString(set(reply, 0, 0))},
		{"reply prefix length 33", hex.EncodeToString(set(reply, 13, 33))},
		{"reply truncated", hex.EncodeToString(reply[:len(reply)-1])},
		{"reply trailing byte", hex.EncodeToString(append(bytes.Clone(reply), 0))},
	}
	text := goldenFile(t, "errors-v1.golden", vs)
	for _, v := range lines(text) {
		b, _ := hex.DecodeString(v.hex)
		if strings.HasPrefix(v.name, "command ") {
			_, err := replicated.ParseCommand(b)
			var ce *replicated.CommandError
			if !errors.Is(err, replicated.ErrCommand) || !errors.As(err, &ce) || ce.Reply {
				t.Errorf("%s: %v, want a *CommandError of a command", v.name, err)
			}
		} else if _, err := replicated.ParseReply(b); !errors.Is(err, replicated.ErrReply) {
			t.Errorf("%s: %v, want ErrReply", v.name, err)
		}
	}
}

func TestAppendCommandRefuses(t *testing.T) {
	for name, c := range map[string]replicated.Command{
		"op 0":              {Loc: "/l"},
		"MKLOC with kind":   {Op: replicated.OpMkLoc, Loc: "/l", Kind: dsvc.DHCPTab},
		"ADD kind 0":        {Op: replicated.OpAdd, Loc: "/l", DT: []dsvc.DTRecord{{}}},
		"ADD two records":   dtCmd(OpAdd, 0, dsvc.DTRecord{}, dsvc.DTRecord{}),
		"MODIFY one record": dtCmd(OpMod, 0, dsvc.DTRecord{}),
		"IMPORT none":       dtCmd(OpImp, 0),
		"DELETE with gen":   dtCmd(OpDel, 1, dsvc.DTRecord{}),
		"wrong kind":        {Op: replicated.OpAdd, Loc: "/l", Kind: dsvc.Network, Container: "c", DT: []dsvc.DTRecord{{}}},
		"CREATE no prefix":  {Op: replicated.OpCreate, Loc: "/l", Kind: dsvc.Network, Container: "c"},
		"IPv6 client":       dnCmd(OpAdd, 0, dsvc.DNRecord{CIP: ip("::1")}),
		"long key":          dtCmd(OpAdd, 0, dsvc.DTRecord{Key: strings.Repeat("k", 129)}),
		"long location":     mkloc(strings.Repeat("l", 1025)),
	} {
		if _, err := replicated.AppendCommand(nil, &c); !errors.Is(err, replicated.ErrCommand) {
			t.Errorf("%s: %v, want ErrCommand", name, err)
		}
	}
}
