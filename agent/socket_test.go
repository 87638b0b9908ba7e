package agent

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
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
	old, err := listenUnix(path, 0o660)
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
	ln, err := listenUnix(path, 0o660)
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
	ln, err := listenUnix(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := listenUnix(path, 0o600); err == nil || !strings.Contains(err.Error(), "in use") {
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
	ln, err := listenUnix(path, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	checkSocket(t, path, 0o600)
}
