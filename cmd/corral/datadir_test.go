package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDataDirFromEnv: with CORRAL_DATA_DIR set the agent and every tool
// agree on the data dir without a flag, and members --wait waits for an
// agent that is still starting instead of failing.
func TestDataDirFromEnv(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	if out, err := exec.Command(binary, "keygen", "--out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	data := filepath.Join(dir, "data")
	env := append(os.Environ(), "CORRAL_DATA_DIR="+data)
	tool := func(ctx context.Context, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, binary, args...)
		c.Env = env
		return c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// members is asked before the agent exists.
	members := tool(ctx, "members", "--json", "--wait", "20s")
	var membersOut syncBuf
	members.Stdout, members.Stderr = &membersOut, &membersOut
	if err := members.Start(); err != nil {
		t.Fatal(err)
	}
	nd := &node{t: t, id: 1, dir: data, args: []string{"agent", "--id", "1", "--bootstrap", "--bind", "127.0.0.1:0", "--cluster-key-file", key},
		wrap: func(args []string) *exec.Cmd { c := exec.Command(binary, args...); c.Env = env; return c }}
	nd.start()
	t.Cleanup(nd.kill)
	if err := members.Wait(); err != nil || !strings.Contains(membersOut.String(), `"state": "self"`) {
		t.Fatalf("members --wait with $CORRAL_DATA_DIR: %v\n%s\nagent log:\n%s", err, membersOut.String(), nd.log.String())
	}
	if _, err := os.Stat(filepath.Join(data, "client.sock")); err != nil {
		t.Fatalf("the agent did not use $CORRAL_DATA_DIR: %v", err)
	}

	ev := tool(ctx, "events", "--since", "0")
	out, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var evErr syncBuf
	ev.Stderr = &evErr
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { ev.Process.Kill(); ev.Wait() }()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.Contains(sc.Text(), "NEWVIEW") {
		t.Fatalf("events with $CORRAL_DATA_DIR: first line %q; stderr:\n%s", sc.Text(), evErr.String())
	}

	// Without the agent, --wait gives up with the reason.
	b, err := tool(ctx, "members", "--data-dir", filepath.Join(dir, "none"), "--wait", "200ms").CombinedOutput()
	if err == nil || !strings.Contains(string(b), "no agent at") {
		t.Fatalf("members --wait with no agent: %v %s", err, b)
	}
}
