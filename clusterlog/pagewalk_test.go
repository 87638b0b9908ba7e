package clusterlog

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// keyFile writes a bbolt file whose bucket "b" holds keys k000..k199 with
// 64-byte values: several leaf pages under a branch page.
func keyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for i := range 200 {
			if err := b.Put(fmt.Appendf(nil, "k%03d", i), bytes.Repeat([]byte{'v'}, 64)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceInFile replaces the only occurrence of old in the file by new (same
// length).
func replaceInFile(t *testing.T, path, old, new string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(b, []byte(old)) != 1 {
		t.Fatalf("%q occurs %d times", old, bytes.Count(b, []byte(old)))
	}
	if err := os.WriteFile(path, bytes.Replace(b, []byte(old), []byte(new), 1), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWalkKeyOrder: keys out of order in a page, or beyond the bounds
// their parent branch page gives, are refused before bbolt sees them
// (its freelist rebuild would panic on them while its checker goroutine
// still reads the transaction).
func TestWalkKeyOrder(t *testing.T) {
	if err := walkFile(keyFile(t)); err != nil {
		t.Fatalf("an intact file: %v", err)
	}
	// A key in the branch page occurs twice in the file (there and first
	// in its leaf); the others once.
	raw, err := os.ReadFile(keyFile(t))
	if err != nil {
		t.Fatal(err)
	}
	key := func(i int) string { return fmt.Sprintf("k%03d", i) }
	count := func(i int) int { return bytes.Count(raw, []byte(key(i))) }
	var lastOfLeaf, middle, next string
	for i := 1; i < 199; i++ {
		switch {
		case count(i) == 1 && count(i+1) == 2 && lastOfLeaf == "":
			lastOfLeaf = key(i)
		case count(i-1) == 1 && count(i) == 1 && count(i+1) == 1 && middle == "":
			middle, next = key(i), key(i+1)
		}
	}
	if lastOfLeaf == "" || middle == "" {
		t.Fatalf("no leaf boundary among the keys: last of a leaf %q, middle %q", lastOfLeaf, middle)
	}
	for _, c := range []struct {
		name, old, new, want string
	}{
		// A key equal to the next one of its page.
		{"in a page", middle, next, "is not above key"},
		// A leaf's last key at or above the branch key of the next leaf,
		// though still in order in its page.
		{"past the parent's bound", lastOfLeaf, "k999", "is not below the next key of its parent"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := keyFile(t)
			replaceInFile(t, path, c.old, c.new)
			err := walkFile(path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("walk: %v, want %q", err, c.want)
			}
			t.Logf("%s: %v", c.name, err)
			_, err = openBolt(path)
			var ce *CorruptError
			if !errors.As(err, &ce) {
				t.Fatalf("open: %v, want a *CorruptError", err)
			}
		})
	}
}
