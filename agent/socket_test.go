package agent

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

func checkSocket(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != os.ModeSocket || st.Mode().Perm() != mode {
		t.Fatalf("%s: mode %v, want a socket with %v", path, st.Mode(), mode)
	}
	if _, err := os.Lstat(path + ".new"); !os.IsNotExist(err) {
		t.Fatalf("%s.new left behind: %v", path, err)
	}
}

// TestListenUnixReplacesStale: an agent restarting over the socket of one
// that died replaces it in one rename. A client looking for the socket
// meanwhile always finds it (the flaky "no agent at …" of corral events),
// and the new socket has its mode from the first moment it has its name.
func TestListenUnixReplacesStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client.sock")
	old, err := listenUnix(path, 0o660, noGroup)
	if err != nil {
		t.Fatal(err)
	}
	checkSocket(t, path, 0o660)
	if got := old.Addr().String(); got != path {
		t.Fatalf("Addr() = %s, want %s", got, path)
	}
	old.Close() // like a killed agent: the file stays, nobody answers
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("Close removed the socket: %v", err)
	}

	stop := make(chan struct{})
	var watch sync.WaitGroup
	var missing, wrongMode int
	watch.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			st, err := os.Stat(path)
			switch {
			case err != nil:
				missing++
			case st.Mode().Perm() != 0o660:
				wrongMode++
			}
		}
	})
	ln, err := listenUnix(path, 0o660, noGroup)
	close(stop)
	watch.Wait()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if missing > 0 || wrongMode > 0 {
		t.Fatalf("while the socket was replaced it was missing %d times and had another mode %d times", missing, wrongMode)
	}
	checkSocket(t, path, 0o660)
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial the new socket: %v", err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatalf("accept: %v", err)
	}
}

// TestListenUnixInUse: a socket another agent answers on is not taken.
func TestListenUnixInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := listenUnix(path, 0o600, noGroup)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := listenUnix(path, 0o600, noGroup); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second listen: %v, want in use", err)
	}
	checkSocket(t, path, 0o600)
}

// TestListenUnixLeftover: a path+".new" left by an agent that died before
// its rename does not stop the next one.
func TestListenUnixLeftover(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	if err := os.WriteFile(path+".new", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := listenUnix(path, 0o600, noGroup)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	checkSocket(t, path, 0o600)
}

// testGroup is a group the test may give files: nogroup when root (any
// group will do), else this process's own group.
func testGroup(t *testing.T) int {
	t.Helper()
	if os.Geteuid() != 0 {
		return os.Getgid()
	}
	gid, err := lookupGroup("nogroup")
	if err != nil {
		t.Skipf("no group nogroup: %v", err)
	}
	return gid
}

func fileGroup(t *testing.T, path string) int {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(st.Sys().(*syscall.Stat_t).Gid)
}

// TestClientSocketGroup: the socket gets its group and mode on every
// start, so a restart does not undo them, and the data dir lets that
// group (only) through.
func TestClientSocketGroup(t *testing.T) {
	gid := testGroup(t)
	dir := filepath.Join(t.TempDir(), "data")
	if err := openDataDir(dir, 0o660, gid); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o710 || fileGroup(t, dir) != gid {
		t.Fatalf("data dir: mode %v group %d (%v), want 0710 group %d", st.Mode().Perm(), fileGroup(t, dir), err, gid)
	}
	path := filepath.Join(dir, "client.sock")
	for start := range 2 {
		ln, err := listenUnix(path, 0o660, gid)
		if err != nil {
			t.Fatal(err)
		}
		checkSocket(t, path, 0o660)
		if g := fileGroup(t, path); g != gid {
			t.Fatalf("start %d: socket group %d, want %d", start, g, gid)
		}
		ln.Close()
		// A hand-made change is undone by the next start.
		os.Chmod(path, 0o600)
	}
	ln, err := listenUnix(path, 0o640, gid)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	checkSocket(t, path, 0o640)

	// Without a group or others the directory stays as it was.
	plain := filepath.Join(t.TempDir(), "plain")
	if err := openDataDir(plain, 0o660, noGroup); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(plain); st.Mode().Perm() != 0o700 {
		t.Fatalf("data dir without a socket group: mode %v, want 0700", st.Mode().Perm())
	}
}

func TestLookupGroup(t *testing.T) {
	if gid, err := lookupGroup(""); err != nil || gid != noGroup {
		t.Fatalf(`lookupGroup("") = %d, %v`, gid, err)
	}
	if gid, err := lookupGroup("0"); err != nil || gid != 0 {
		t.Fatalf(`lookupGroup("0") = %d, %v`, gid, err)
	}
	if _, err := lookupGroup("no-such-group-corral"); !errors.Is(err, ErrConfig) {
		t.Fatalf("unknown group: %v, want ErrConfig", err)
	}
}

// TestKeyFileMode: a key the group or others may read is refused as ssh
// refuses such a private key, or only warned about when allowed; a
// missing key says how to make one.
func TestKeyFileMode(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	var logged strings.Builder
	log := slog.New(slog.NewTextHandler(&logged, nil))
	err := checkKeyFile(key, false, log)
	if err == nil || !strings.Contains(err.Error(), "corral keygen --out "+key) {
		t.Fatalf("missing key: %v, want a hint to corral keygen --out %s", err, key)
	}
	if err := os.WriteFile(key, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := checkKeyFile(key, false, log); err != nil {
		t.Fatalf("0600 key: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		os.Chmod(key, mode)
		err := checkKeyFile(key, false, log)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "readable by group or others") || !strings.Contains(err.Error(), "--allow-open-key-file") {
			t.Fatalf("mode %04o: %v, want a refusal naming the way out", mode, err)
		}
		logged.Reset()
		if err := checkKeyFile(key, true, log); err != nil {
			t.Fatalf("mode %04o allowed: %v", mode, err)
		}
		if !strings.Contains(logged.String(), "level=WARN") {
			t.Fatalf("mode %04o allowed: no warning logged: %q", mode, logged.String())
		}
	}
}

// TestNewRefusesOpenKey: New itself runs the check.
func TestNewRefusesOpenKey(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "cluster.key")
	os.WriteFile(key, []byte("k\n"), 0o644)
	cfg := Defaults()
	cfg.Name, cfg.DataDir, cfg.Bind, cfg.ClusterKeyFile = "n1", filepath.Join(dir, "d"), "127.0.0.1:0", key
	if _, err := New(cfg, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "readable by group or others") {
		t.Fatalf("New with a 0644 key: %v", err)
	}
	cfg.ClientSocketMode = "0460"
	if err := cfg.Validate(); !errors.Is(err, ErrConfig) {
		t.Fatalf("socket mode without owner rw: %v", err)
	}
}
