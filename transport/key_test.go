package transport

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
)

func TestKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyFile(path, k); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	if err := WriteKeyFile(path, k); err == nil {
		t.Fatal("overwrote an existing key file")
	}
	got, err := ReadKeyFile(path)
	if err != nil || !bytes.Equal(got, k) {
		t.Fatalf("read back %x, %v", got, err)
	}
	if _, err := ReadKeyFile(filepath.Join(dir, "none")); !errors.Is(err, proto.ErrNoLocalKey) {
		t.Fatalf("missing file: %v", err)
	}
	for _, bad := range []string{"", "corral-cluster-key-v1:", "corral-cluster-key-v1:!!!", "corral-cluster-key-v1:AAAA", "corral-cluster-key-v2:" + string(EncodeKey(k)[22:])} {
		if _, err := ParseKey([]byte(bad)); !errors.Is(err, proto.ErrKeyFormat) {
			t.Errorf("ParseKey(%q) = %v, want ErrKeyFormat", bad, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Base: 10 * time.Millisecond, Max: 80 * time.Millisecond}
	for i, ceil := range []time.Duration{10, 20, 40, 80, 80, 80} {
		ceil *= time.Millisecond
		d := b.Next()
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: wait %v outside [%v, %v]", i, d, ceil/2, ceil)
		}
	}
	b.Reset()
	if d := b.Next(); d > 10*time.Millisecond {
		t.Fatalf("after Reset: %v", d)
	}
}
