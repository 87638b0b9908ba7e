package agent

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/datadir"
)

// The routing seqno moves forward by one per start, wraps at 2^16, is
// written before use and on every raise, and a bad file stops the agent.
func TestNextRouteSeqno(t *testing.T) {
	dir := t.TempDir()
	first, err := nextRouteSeqno(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		got, err := nextRouteSeqno(dir)
		if err != nil || got != first+uint16(i) {
			t.Fatalf("start %d: %d %v, want %d", i+1, got, err, first+uint16(i))
		}
	}
	if err := saveRouteSeqno(dir, 65535); err != nil {
		t.Fatal(err)
	}
	if got, err := nextRouteSeqno(dir); err != nil || got != 0 {
		t.Fatalf("after a raise to 65535: %d %v, want 0", got, err)
	}
	b, err := os.ReadFile(datadir.RouteSeqnoFile(dir))
	if err != nil || string(b) != "0\n" {
		t.Fatalf("file holds %q %v, want the seqno in use", b, err)
	}
	for _, bad := range []string{"x\n", "65536\n", "-1\n", ""} {
		if err := os.WriteFile(datadir.RouteSeqnoFile(dir), []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := nextRouteSeqno(dir); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "route-seqno") {
			t.Errorf("file %q: %v, want ErrConfig naming the file", bad, err)
		}
	}
}

// The golden file of agent/ROUTESEQNO.md reads as its seqno.
func TestRouteSeqnoGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/route-seqno")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(datadir.RouteSeqnoFile(dir), b, 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := nextRouteSeqno(dir); err != nil || got != 41208 {
		t.Fatalf("golden %q: next %d %v, want 41208", b, got, err)
	}
}
