package cluster

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLifeFile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "life.golden"))
	if err != nil {
		t.Fatal(err)
	}
	inc, err := parseLife(b)
	if err != nil || inc != 0x3f2a9c01d4e5b677 {
		t.Fatalf("golden life file: %#x, %v", inc, err)
	}
	if got := formatLife(inc); string(got) != string(b) {
		t.Errorf("formatLife = %q, want %q", got, b)
	}
	for _, bad := range []string{"", "\n", "3f2a", "3F2A\n", "0\n", "00\n", "g1\n", "12345678901234567\n", "01\n", "3f2a\n\n", " 3f2a\n", "3f2a \n"} {
		if _, err := parseLife([]byte(bad)); !errors.Is(err, ErrLife) {
			t.Errorf("parseLife(%q) = %v, want ErrLife", bad, err)
		}
	}
}

func TestWriteLifeReplaces(t *testing.T) {
	dir := t.TempDir()
	if _, ok, err := readLife(dir); ok || err != nil {
		t.Fatalf("empty dir: ok %v, err %v", ok, err)
	}
	for _, inc := range []uint64{1, 0xffffffffffffffff, 0x42} {
		if err := writeLife(dir, inc); err != nil {
			t.Fatal(err)
		}
		got, ok, err := readLife(dir)
		if !ok || err != nil || got != inc {
			t.Fatalf("after writing %#x: %#x %v %v", inc, got, ok, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, LifeFile+".new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary file left behind: %v", err)
	}
	os.WriteFile(filepath.Join(dir, LifeFile), []byte("zero\n"), 0o600)
	if _, _, err := readLife(dir); !errors.Is(err, ErrLife) {
		t.Errorf("corrupt life file: %v, want ErrLife", err)
	}
}

func FuzzParseLife(f *testing.F) {
	f.Add([]byte("3f2a9c01d4e5b677\n")) // valid
	f.Add([]byte("1\n"))                // smallest
	f.Add([]byte("0\n"))                // zero is refused
	f.Add([]byte("FF\n"))               // upper case is refused
	f.Fuzz(func(t *testing.T, b []byte) {
		inc, err := parseLife(b)
		if err != nil {
			if !errors.Is(err, ErrLife) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if inc == 0 || string(formatLife(inc)) != string(b) {
			t.Fatalf("accepted %q as %#x, which formats as %q", b, inc, formatLife(inc))
		}
	})
}
