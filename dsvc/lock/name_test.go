package lock_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/lock"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/*.golden from the current code")

// The lock file names are a protocol between processes of different corral
// versions on one host (SPEC.md): a change to them must show here.
var goldenKeys = []dsvc.LockKey{
	{LocToken: "/var/dhcp", Module: "files", Version: 1, Container: "dhcptab"},
	{LocToken: "/var/dhcp", Module: "files", Version: 1, Container: "10.0.0.0"},
	{LocToken: "/var/dhcp", Module: "files", Version: 2, Container: "10.0.0.0"},
	{LocToken: "/var/dhcp", Module: "binfiles", Version: 1, Container: "192.168.128.0"},
	{LocToken: "/srv/dhcp data", Module: "files", Version: 1, Container: "10.0.0.0"},
	{LocToken: "", Module: "", Version: 0, Container: ""},
	{LocToken: "/x", Module: "m/../..", Version: -1, Container: "a b\x00c"},
	{LocToken: "/x", Module: "files", Version: 1, Container: strings.Repeat("long", 30)},
}

func TestFileNameGolden(t *testing.T) {
	var b strings.Builder
	for _, k := range goldenKeys {
		fmt.Fprintf(&b, "%q %q %d %q\n\t%s\n", k.LocToken, k.Module, k.Version, k.Container, lock.FileName(k))
	}
	path := filepath.Join("testdata", "names.golden")
	if *rewrite {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Fatalf("lock file names changed (a protocol break, SPEC.md):\ngot:\n%s\nwant:\n%s", b.String(), want)
	}
}

// FileName is total: any key gives one plain file name in the directory,
// the same every time.
func FuzzFileName(f *testing.F) {
	for _, k := range goldenKeys {
		f.Add(k.LocToken, k.Module, k.Version, k.Container)
	}
	f.Fuzz(func(t *testing.T, loc, mod string, ver int, con string) {
		k := dsvc.LockKey{LocToken: loc, Module: mod, Version: ver, Container: con}
		n := lock.FileName(k)
		if n != lock.FileName(k) {
			t.Fatal("not deterministic")
		}
		if !strings.HasPrefix(n, "v1-") || !strings.HasSuffix(n, ".lock") || len(n) > 3+64+1+32+5 {
			t.Fatalf("bad name %q", n)
		}
		for i := 0; i < len(n); i++ {
			c := n[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
				t.Fatalf("name %q has byte %q", n, c)
			}
		}
	})
}
