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
