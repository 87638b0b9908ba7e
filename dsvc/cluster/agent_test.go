package cluster_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/cluster"
)

// These tests run against real agent processes of the corral binary,
// built once in TestMain. Helper processes the conformance suite starts
// find the agent through envSocket and build nothing.

const envSocket = "CORRAL_DSVC_CLUSTER_TEST_SOCKET"

var binary string

func TestMain(m *testing.M) {
	if os.Getenv(envSocket) != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "dsvc-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "corral")
	out, err := exec.Command("go", "build", "-o", binary, "github.com/corralhq/corral/cmd/corral").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build corral: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// logBuf collects an agent's output.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// agent is one running agent process.
type agent struct {
	dir  string
	cmd  *exec.Cmd
	log  *logBuf
	exit chan error
}

// socket is the agent's client socket.
func (a *agent) socket() string { return filepath.Join(a.dir, "client.sock") }

// startAgent starts a one-node cluster (it founds it) and waits until the
// data service answers. The agent is killed at the end of the test, its
// log shown if the test failed.
func startAgent(t testing.TB) *agent {
	t.Helper()
	root := t.TempDir()
	key := filepath.Join(root, "cluster.key")
	if out, err := exec.Command(binary, "keygen", "--out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	a := &agent{dir: filepath.Join(root, "n1"), log: &logBuf{}, exit: make(chan error, 1)}
	a.cmd = exec.Command(binary, "agent", "--id", "1", "--name", "n1", "--bootstrap", "--bind", "127.0.0.1:0",
		"--data-dir", a.dir, "--cluster-key-file", key)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exit <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exit
		if t.Failed() {
			t.Logf("agent log:\n%s", a.log.String())
		}
	})
	waitReady(t, a.socket(), a.exit)
	return a
}

// waitReady waits until the agent at socket answers a data-service
// request (a status of a location that does not exist: ErrNoLocation).
func waitReady(t testing.TB, socket string, exit <-chan error) {
	t.Helper()
	m := cluster.New(nil)
	defer m.Close()
	if err := m.Configure("socket=" + socket); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := m.Status(ctx, "/ready")
		cancel()
		if errors.Is(err, dsvc.ErrNoLocation) || err == nil {
			return
		}
		select {
		case e := <-exit:
			t.Fatalf("the agent exited: %v", e)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the data service did not answer in 30 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
