package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestHandshakeBoundsConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "corral.toml")
	os.WriteFile(conf, []byte("max-handshakes = 100\nmax-handshakes-per-ip = 10\n"), 0o600)
	cfg := Defaults()
	if cfg.MaxHandshakes != 256 || cfg.MaxHandshakesPerIP != 32 {
		t.Fatalf("defaults %d/%d, want 256/32", cfg.MaxHandshakes, cfg.MaxHandshakesPerIP)
	}
	if err := LoadFile(conf, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.DataDir = dir
	if err := cfg.Validate(); err != nil || cfg.MaxHandshakes != 100 || cfg.MaxHandshakesPerIP != 10 {
		t.Fatalf("from the file: %d/%d, %v", cfg.MaxHandshakes, cfg.MaxHandshakesPerIP, err)
	}
	for _, c := range []struct{ total, perIP int }{{0, 1}, {10, 0}, {10, 11}, {-1, -1}} {
		bad := cfg
		bad.MaxHandshakes, bad.MaxHandshakesPerIP = c.total, c.perIP
		if err := bad.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("max-handshakes %d, per IP %d: %v, want ErrConfig", c.total, c.perIP, err)
		}
	}
}
