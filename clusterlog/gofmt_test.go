package clusterlog_test

import (
	"bytes"
	"go/format"
	"os"
	"path/filepath"
	"testing"
)

// TestGofmt fails if any Go file of the package or its fakes is not gofmt'd.
func TestGofmt(t *testing.T) {
	for _, dir := range []string{".", "clusterlogtest"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range files {
			src, err := os.ReadFile(name)
			if err != nil {
				t.Fatal(err)
			}
			out, err := format.Source(src)
			if err != nil {
				t.Errorf("%s: %v", name, err)
				continue
			}
			if !bytes.Equal(src, out) {
				t.Errorf("%s is not gofmt'd", name)
			}
		}
	}
}
