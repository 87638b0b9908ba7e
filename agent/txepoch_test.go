package agent

import (
	"errors"
	"os"
	"testing"

	"github.com/corralhq/corral/internal/datadir"
)

// Every start gets a new transaction epoch, kept across starts; a file
// that does not hold one is refused rather than reset.
func TestNextTxEpoch(t *testing.T) {
	dir := t.TempDir()
	for want := uint32(1); want <= 3; want++ {
		got, err := nextTxEpoch(dir)
		if err != nil || got != want {
			t.Fatalf("start %d: epoch %d, %v", want, got, err)
		}
	}
	if err := os.WriteFile(datadir.TxEpochFile(dir), []byte("8388607\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := nextTxEpoch(dir); err != nil || got != 1 {
		t.Fatalf("after the last epoch: %d, %v", got, err)
	}
	if err := os.WriteFile(datadir.TxEpochFile(dir), []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := nextTxEpoch(dir); !errors.Is(err, ErrConfig) {
		t.Fatalf("a bad file: %v", err)
	}
}

// The golden file (TXEPOCH.md's layout) is read as the last start's epoch.
func TestTxEpochGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/tx-epoch")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(datadir.TxEpochFile(dir), b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := nextTxEpoch(dir)
	if err != nil || got != 43 {
		t.Fatalf("after the golden file (42): epoch %d, %v", got, err)
	}
	if b, _ := os.ReadFile(datadir.TxEpochFile(dir)); string(b) != "43\n" {
		t.Fatalf("written %q, want %q", b, "43\n")
	}
}
