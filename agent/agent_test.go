package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	good := func() Config {
		c := Defaults()
		c.Name, c.DataDir = "n1", "/tmp/x"
		return c
	}
	for name, mut := range map[string]func(*Config){
		"no data dir":       func(c *Config) { c.DataDir = "" },
		"bad bind":          func(c *Config) { c.Bind = "nohostport" },
		"bad peer":          func(c *Config) { c.Peers = []string{"1.2.3.4"} },
		"timeout<interval":  func(c *Config) { c.DeadAfter = c.Heartbeat },
		"zero interval":     func(c *Config) { c.Heartbeat = 0 },
		"bad peer versions": func(c *Config) { c.PeerVersions = "3..1" },
		"long name":         func(c *Config) { c.Name = string(make([]byte, 300)) },
		"no cluster":        func(c *Config) { c.Cluster = "" },
	} {
		c := good()
		mut(&c)
		if err := c.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: Validate = %v, want ErrConfig", name, err)
		}
	}
	c := good()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.ClusterKeyFile != filepath.Join("/tmp/x", "cluster.key") {
		t.Errorf("default key file %q", c.ClusterKeyFile)
	}
	c.PeerVersions = "2..3"
	rs, err := c.ranges()
	if err != nil || rs[0].Min != 2 || rs[0].Max != 3 {
		t.Errorf("ranges %v %v", rs, err)
	}
}

func TestNodeIDPersists(t *testing.T) {
	dir := t.TempDir()
	a, err := loadNodeID(dir)
	if err != nil || a == 0 {
		t.Fatal(a, err)
	}
	b, err := loadNodeID(dir)
	if err != nil || a != b {
		t.Fatalf("node id changed across starts: %d then %d (%v)", a, b, err)
	}
	os.WriteFile(filepath.Join(dir, "node-id"), []byte("zero\n"), 0o600)
	if _, err := loadNodeID(dir); !errors.Is(err, ErrConfig) {
		t.Fatalf("corrupt node-id file: %v", err)
	}
}

func TestLoadFileStrict(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	os.WriteFile(p, []byte("name = \"x\"\nheartbeat-interval = \"250ms\"\npeers = [\"127.0.0.2:1\"]\n"), 0o600)
	c := Defaults()
	if err := LoadFile(p, &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "x" || c.Heartbeat != 250*time.Millisecond || len(c.Peers) != 1 {
		t.Fatalf("loaded %+v", c)
	}
	os.WriteFile(p, []byte("heartbeat-intervall = \"1s\"\n"), 0o600)
	if err := LoadFile(p, &c); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown key: %v", err)
	}
	os.WriteFile(p, []byte("name = \n"), 0o600)
	if err := LoadFile(p, &c); !errors.Is(err, ErrConfig) {
		t.Fatalf("syntax error: %v", err)
	}
}
