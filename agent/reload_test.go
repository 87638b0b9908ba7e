package agent

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestReloadDialsNewPeers: a peer added to the list by a reload is dialed
// while the agent runs, without a restart.
func TestReloadDialsNewPeers(t *testing.T) {
	a := startAgentConfig(t, "", func(c *Config) { c.Bootstrap = true }, nil)
	b := startAgentConfig(t, "", func(c *Config) {
		c.Name, c.ClusterKeyFile = "n2", a.cfg.ClusterKeyFile
	}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := b.cfg
	cfg.Peers = []string{a.Addr().String()}
	if err := b.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, ok := b.mesh.State(a.ID())
		if ok && st.Up {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no link to the reloaded peer %s within 10s: %+v", a.Addr(), b.mesh.States())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Reloading the same list again is no change.
	if err := b.Reload(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if n := len(b.mesh.States()); n != 1 {
		t.Fatalf("after a second reload b knows %d nodes, want 1: %+v", n, b.mesh.States())
	}
}

func TestNeedRestart(t *testing.T) {
	run := Defaults()
	run.Name, run.DataDir = "n1", "/d"
	c := run
	c.Peers, c.LogLevel = []string{"127.0.0.2:1"}, "debug"
	if got := needRestart(run, c); len(got) != 0 {
		t.Fatalf("peers and log level need no restart, got %v", got)
	}
	c.Bind, c.ClientSocketGroup = "127.0.0.1:1", "adm"
	if got := needRestart(run, c); !slices.Equal(got, []string{"bind", "client-socket-group"}) {
		t.Fatalf("needRestart = %v, want bind, client-socket-group", got)
	}
}
