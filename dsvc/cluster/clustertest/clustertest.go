package clustertest

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

var (
	buildOnce sync.Once
	buildDir  string
	binary    string
	buildErr  error
)

// Binary returns the path of the corral binary, building it on first use
// into a temporary directory that Cleanup removes.
func Binary(tb testing.TB) string {
	tb.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "corral-clustertest-"); buildErr != nil {
			return
		}
		binary = filepath.Join(buildDir, "corral")
		out, err := exec.Command("go", "build", "-o", binary, "github.com/corralhq/corral/cmd/corral").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("build corral: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return binary
}

// Cleanup removes the binary Binary built; call it from TestMain after
// m.Run.
func Cleanup() {
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
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

// Agent is one running agent process.
type Agent struct {
	Dir  string // its data directory
	cmd  *exec.Cmd
	log  *logBuf
	exit chan error
}

// Socket is the agent's client socket.
func (a *Agent) Socket() string { return filepath.Join(a.Dir, "client.sock") }

// Log is what the agent printed so far.
func (a *Agent) Log() string { return a.log.String() }

// HTTPAddrEnv names the environment variable that, when set, gives the
// HOST:PORT the agent Start starts serves /metrics and /debug/pprof/ on.
const HTTPAddrEnv = "CORRAL_CLUSTERTEST_HTTP_ADDR"

// Start starts a one-node cluster (the agent founds it) and waits until
// its data service answers. The agent is killed when tb ends, its log
// shown if tb failed.
func Start(tb testing.TB) *Agent {
	tb.Helper()
	bin := Binary(tb)
	root := tb.TempDir()
	key := filepath.Join(root, "cluster.key")
	if out, err := exec.Command(bin, "keygen", "--out", key).CombinedOutput(); err != nil {
		tb.Fatalf("keygen: %v\n%s", err, out)
	}
	a := &Agent{Dir: filepath.Join(root, "n1"), log: &logBuf{}, exit: make(chan error, 1)}
	a.cmd = exec.Command(bin, "agent", "--id", "1", "--name", "n1", "--bootstrap", "--bind", "127.0.0.1:0",
		"--data-dir", a.Dir, "--cluster-key-file", key)
	if addr := os.Getenv(HTTPAddrEnv); addr != "" {
		// For profiling the agent while a benchmark runs.
		a.cmd.Args = append(a.cmd.Args, "--http-addr", addr)
	}
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	if err := a.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { a.exit <- a.cmd.Wait() }()
	tb.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exit
		if tb.Failed() {
			tb.Logf("agent log:\n%s", a.log.String())
		}
	})
	WaitReady(tb, a.Socket(), a.exit)
	return a
}

// WaitReady waits until the agent at socket answers a data-service
// request (the status of a location that does not exist), or exit says
// the agent ended.
func WaitReady(tb testing.TB, socket string, exit <-chan error) {
	tb.Helper()
	m := cluster.New(nil)
	defer m.Close()
	if err := m.Configure("socket=" + socket); err != nil {
		tb.Fatal(err)
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
			tb.Fatalf("the agent exited: %v", e)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the data service did not answer in 30 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
