package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// output is a process's stdout and stderr, in the order it wrote them.
type output struct {
	mu    sync.Mutex // guards lines
	lines []string
}

func (o *output) all() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.lines...)
}

// wait returns the index of the first line containing s, waiting up to
// within.
func (o *output) wait(t *testing.T, s string, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for i, l := range o.all() {
			if strings.Contains(l, s) {
				return i
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %q within %v; output:\n%s", s, within, strings.Join(o.all(), "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startWithOutput starts the binary with stdout and stderr on one pipe.
func startWithOutput(t *testing.T, args ...string) (*exec.Cmd, *output, chan error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	o := &output{}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			o.mu.Lock()
			o.lines = append(o.lines, sc.Text())
			o.mu.Unlock()
		}
	}()
	exit := make(chan error, 1) // the exit status, for the test
	done := make(chan struct{}) // closed once the process was waited for
	go func() {
		<-read
		exit <- cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("output of %v:\n%s", args, strings.Join(o.all(), "\n"))
		}
	})
	return cmd, o, exit
}

// TestDevSignals: a --dev agent prints its banner after its startup logs,
// with an export line and a try line that work; SIGHUP reloads and the
// agent runs on; SIGINT, SIGTERM (also after a SIGHUP) stop it with its
// temporary dir removed.
func TestDevSignals(t *testing.T) {
	for _, sigs := range [][]syscall.Signal{{syscall.SIGTERM}, {syscall.SIGINT}, {syscall.SIGHUP, syscall.SIGHUP, syscall.SIGTERM}} {
		t.Run(fmt.Sprint(sigs), func(t *testing.T) {
			cmd, out, exit := startWithOutput(t, "agent", "--dev")
			try := out.wait(t, "try:", 10*time.Second)
			lines := out.all()
			banner := out.wait(t, "corral agent (dev)", 0)
			if running := out.wait(t, "agent running", 0); running > banner {
				t.Fatalf("banner (line %d) before the startup log (line %d)", banner, running)
			}
			if leader := out.wait(t, "role=StateLeader", 0); leader > banner {
				t.Fatalf("banner (line %d) before the node led its view (line %d)", banner, leader)
			}
			var dataDir string
			for _, l := range lines[banner:] {
				if v, ok := strings.CutPrefix(strings.TrimSpace(l), "for the tools:    export CORRAL_DATA_DIR="); ok {
					dataDir = v
				}
			}
			if dataDir == "" {
				t.Fatalf("no export CORRAL_DATA_DIR line in the banner")
			}
			// The try line runs as printed: this binary is neither in
			// PATH nor built by go run, so it names its path.
			f := strings.Fields(strings.TrimSpace(lines[try]))
			if len(f) < 3 || f[1] != binary || f[2] != "members" {
				t.Fatalf("try line %q, want %s members ...", lines[try], binary)
			}
			if b, err := exec.Command(f[1], f[2:]...).CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", lines[try], err, b)
			}
			for _, s := range sigs {
				// Count the lines before signalling: the agent may log the
				// reload before this goroutine looks again.
				n := len(out.all())
				if err := cmd.Process.Signal(s); err != nil {
					t.Fatal(err)
				}
				if s == syscall.SIGHUP {
					deadline := time.Now().Add(10 * time.Second)
					for !strings.Contains(strings.Join(out.all()[n:], "\n"), "SIGHUP: reloaded") {
						if time.Now().After(deadline) {
							t.Fatal("no reload logged after SIGHUP")
						}
						time.Sleep(10 * time.Millisecond)
					}
					if b, err := exec.Command(binary, "members", "--data-dir", dataDir).CombinedOutput(); err != nil {
						t.Fatalf("after SIGHUP the agent does not answer: %v\n%s", err, b)
					}
				}
			}
			select {
			case err := <-exit:
				if err != nil {
					t.Fatalf("exit: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("the agent did not stop")
			}
			if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
				t.Fatalf("dev data dir %s left behind after %v: %v", dataDir, sigs, err)
			}
		})
	}
}

// TestReloadPeers: SIGHUP re-reads the config file: a peer added there is
// dialed and the new log level applies, without a restart.
func TestReloadPeers(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if out, err := exec.Command(binary, "keygen", "--out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	port := freePort(t)
	a := &node{t: t, id: 1, dir: filepath.Join(dir, "a"), args: []string{"agent", "--id", "1", "--name", "a", "--bootstrap",
		"--bind", fmt.Sprintf("127.0.0.1:%d", port), "--data-dir", filepath.Join(dir, "a"), "--cluster-key-file", key}}
	a.start()
	t.Cleanup(a.kill)
	conf := filepath.Join(dir, "b.toml")
	write := func(peers, level string) {
		if err := os.WriteFile(conf, []byte(fmt.Sprintf("id = 2\nname = \"b\"\nbind = \"127.0.0.2:%d\"\ndata-dir = %q\ncluster-key-file = %q\npeers = [%s]\nlog-level = %q\n",
			port, filepath.Join(dir, "b"), key, peers, level)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("", "info")
	cmd, out, _ := startWithOutput(t, "agent", "--config", conf)
	b := &node{t: t, id: 2, dir: filepath.Join(dir, "b")}
	b.waitState(2, "self", 10*time.Second)
	if ms, err := b.members(); err != nil || len(ms) != 1 {
		t.Fatalf("b before the reload: %v %v", ms, err)
	}
	write(fmt.Sprintf("%q", fmt.Sprintf("127.0.0.1:%d", port)), "debug")
	cmd.Process.Signal(syscall.SIGHUP)
	out.wait(t, "SIGHUP: reloaded", 10*time.Second)
	b.waitState(1, "up", 10*time.Second)
	out.wait(t, "level=DEBUG", 10*time.Second)
}

func TestSelfCommand(t *testing.T) {
	for arg0, want := range map[string]string{
		"/tmp/go-build1234/b001/exe/corral": "go run ./cmd/corral",
		"corral":                            "corral",
		"./corral":                          "./corral",
		"/opt/x/corral":                     "/opt/x/corral",
	} {
		if got := selfCommand(arg0); got != want {
			t.Errorf("selfCommand(%q) = %q, want %q", arg0, got, want)
		}
	}
}
