package events_test

import (
	"bytes"
	"go/format"
	"os"
	"path/filepath"
	"testing"
)

// TestGofmt keeps the package gofmt-clean without relying on CI.
func TestGofmt(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	more, _ := filepath.Glob("eventstest/*.go")
	for _, name := range append(files, more...) {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := format.Source(src)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if !bytes.Equal(got, src) {
			t.Errorf("%s is not gofmt-ed", name)
		}
	}
}
