package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobody is the user the local-access tests run tools as.
func nobody(t *testing.T) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the tools run as another user")
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// openScratch is a scratch dir another user can traverse, with a copy of
// the binary it may run (the test's own temp dirs are 0700).
func openScratch(t *testing.T) (dir, bin string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "corral-local-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "corral")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}

// waitFile waits until path exists.
func waitFile(t *testing.T, path string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, err := os.Lstat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not appear within %v", path, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClientSocketGroup: with --client-socket-group an application of that
// group (here user nobody) reads events from the client socket, while the
// admin socket stays root's; without it the same user gets "permission
// denied" at once, from events (which used to wait for ever) and from the
// admin tools alike.
func TestClientSocketGroup(t *testing.T) {
	cred := nobody(t)
	dir, bin := openScratch(t)
	key := filepath.Join(dir, "cluster.key")
	if out, err := exec.Command(binary, "keygen", "--out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	group := strconv.Itoa(int(cred.Gid))
	open := &node{t: t, id: 1, dir: filepath.Join(dir, "open"), args: []string{"agent", "--id", "1", "--bootstrap", "--bind", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "open"), "--cluster-key-file", key, "--client-socket-group", group}}
	closed := &node{t: t, id: 2, dir: filepath.Join(dir, "closed"), args: []string{"agent", "--id", "2", "--bootstrap", "--bind", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "closed"), "--cluster-key-file", key}}
	for _, nd := range []*node{open, closed} {
		nd.start()
		t.Cleanup(nd.kill)
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("log of agent %d:\n%s", nd.id, nd.log.String())
			}
		})
		waitFile(t, filepath.Join(nd.dir, "client.sock"), 10*time.Second)
	}
	asNobody := func(ctx context.Context, args ...string) *exec.Cmd {
		c := exec.CommandContext(ctx, bin, args...)
		c.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		c.Env = append(os.Environ(), "CORRAL_DATA_DIR=")
		return c
	}

	// A member of the group gets the events.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ev := asNobody(ctx, "events", "--since", "0", "--data-dir", open.dir)
	var evErr syncBuf
	ev.Stderr = &evErr
	out, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	if !sc.Scan() || !strings.Contains(sc.Text(), "NEWVIEW") {
		t.Fatalf("events as a member of the socket's group: first line %q; stderr:\n%s", sc.Text(), evErr.String())
	}
	ev.Process.Kill()
	ev.Wait()

	// The admin socket stays root's, and so does a client socket without
	// a group.
	for _, c := range []struct {
		name string
		args []string
	}{
		{"members on the open node", []string{"members", "--data-dir", open.dir}},
		{"members on the closed node", []string{"members", "--data-dir", closed.dir}},
		{"events on the closed node", []string{"events", "--data-dir", closed.dir}},
		{"events on the closed node's socket", []string{"events", "--data-dir", filepath.Join(closed.dir, "client.sock")}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		b, err := asNobody(ctx, c.args...).CombinedOutput()
		timedOut := ctx.Err() != nil
		cancel()
		if timedOut {
			t.Fatalf("%s: still running after %v (retrying for ever?): %s", c.name, time.Since(start), b)
		}
		if err == nil || !strings.Contains(string(b), "permission denied") || strings.Contains(string(b), "no agent") {
			t.Fatalf("%s: err %v, output %q; want a non-zero exit saying permission denied", c.name, err, b)
		}
	}
}
