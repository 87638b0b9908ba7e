package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/proto/peer"
)

// These tests start real agent processes of the corral binary, built once
// in TestMain, on 127.0.0.1, 127.0.0.2 and 127.0.0.3.

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "corral-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "corral")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build corral: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuf collects a process's output.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type node struct {
	t    testing.TB
	id   int
	addr string
	dir  string
	args []string
	cmd  *exec.Cmd
	log  *syncBuf
	exit chan error
	// waited is closed once the process has been waited for (after exit
	// got its error).
	waited chan struct{}
	// wrap, if set, makes the command that runs the agent (in a network
	// namespace, say).
	wrap func(args []string) *exec.Cmd
}

// freePort returns a port that is free on 127.0.0.1 and, very likely, on
// the other loopback addresses.
func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// freePortOn returns a TCP port free on each of 127.0.0.1..n at the time
// of asking: the nodes of a cluster share one port on their own addresses,
// and another process may hold it on one of them only.
func freePortOn(t testing.TB, n int) int {
	t.Helper()
	for range 50 {
		port := freePort(t)
		free := true
		for i := 2; i <= n && free; i++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.%d:%d", i, port))
			if err != nil {
				free = false
				continue
			}
			ln.Close()
		}
		if free {
			return port
		}
	}
	t.Fatalf("no port free on 127.0.0.1..%d in 50 tries", n)
	return 0
}

// cluster makes n nodes on 127.0.0.1..n that list each other as peers;
// extra flags apply to all of them.
func cluster(t testing.TB, n int, extra ...string) []*node {
	t.Helper()
	// One address more: tests add a node at 127.0.0.n+1 on the same port
	// (a joiner, an impostor).
	port := freePortOn(t, n+1)
	var addrs []string
	for i := 1; i <= n; i++ {
		addrs = append(addrs, fmt.Sprintf("127.0.0.%d:%d", i, port))
	}
	return nodesAt(t, addrs, nil, extra...)
}

// nodesAt makes a node per address, each listing the others as peers, with
// a new cluster key; wrap (may be nil) runs each agent's command, by node
// number. The nodes are killed, and their logs shown on failure, at the
// end of the test.
func nodesAt(t testing.TB, addrs []string, wrap func(i int, args []string) *exec.Cmd, extra ...string) []*node {
	t.Helper()
	root := t.TempDir()
	key := filepath.Join(root, "cluster.key")
	if out, err := exec.Command(binary, "keygen", "--out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	nodes := make([]*node, len(addrs))
	for i := range nodes {
		var peers []string
		for j, a := range addrs {
			if j != i {
				peers = append(peers, a)
			}
		}
		nd := &node{t: t, id: i + 1, addr: addrs[i], dir: filepath.Join(root, fmt.Sprintf("n%d", i+1))}
		nd.args = append([]string{"agent", "--id", fmt.Sprint(i + 1), "--name", fmt.Sprintf("n%d", i+1),
			"--bind", addrs[i], "--peers", strings.Join(peers, ","), "--data-dir", nd.dir, "--cluster-key-file", key}, extra...)
		if wrap != nil {
			num := i + 1
			nd.wrap = func(args []string) *exec.Cmd { return wrap(num, args) }
		}
		nodes[i] = nd
	}
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.kill()
		}
		if t.Failed() {
			for _, nd := range nodes {
				if nd.log != nil {
					t.Logf("log of n%d:\n%s", nd.id, nd.log.String())
				}
			}
		}
	})
	return nodes
}

func (nd *node) start() {
	nd.t.Helper()
	nd.log = &syncBuf{}
	if nd.wrap != nil {
		nd.cmd = nd.wrap(nd.args)
	} else {
		nd.cmd = exec.Command(binary, nd.args...)
	}
	nd.cmd.Stdout, nd.cmd.Stderr = nd.log, nd.log
	if err := nd.cmd.Start(); err != nil {
		nd.t.Fatal(err)
	}
	nd.exit = make(chan error, 1)
	nd.waited = make(chan struct{})
	go func(c *exec.Cmd, ch chan error, waited chan struct{}) {
		ch <- c.Wait()
		close(waited)
	}(nd.cmd, nd.exit, nd.waited)
}

// kill ends the process unless it has ended and been waited for; it
// waits on waited, not exit, which a test may have taken, and reads
// nothing Wait writes.
func (nd *node) kill() {
	if nd.cmd == nil {
		return
	}
	select {
	case <-nd.waited:
	default:
		nd.cmd.Process.Kill()
		<-nd.waited
	}
	nd.cmd = nil
}

type member struct {
	ID          uint64   `json:"id"`
	Name        string   `json:"name"`
	Addr        string   `json:"addr"`
	State       string   `json:"state"`
	PeerVersion *int     `json:"peer_version"`
	RTTms       *float64 `json:"rtt_ms"`
}

func (nd *node) members() (map[uint64]member, error) {
	out, err := exec.Command(binary, "members", "--data-dir", nd.dir, "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("members on n%d: %w", nd.id, err)
	}
	var ms []member
	if err := json.Unmarshal(out, &ms); err != nil {
		return nil, fmt.Errorf("members on n%d: %w: %s", nd.id, err, out)
	}
	m := make(map[uint64]member)
	for _, x := range ms {
		m[x.ID] = x
	}
	return m, nil
}

// waitState waits until nd shows node id in state, and returns how long
// that took.
func (nd *node) waitState(id uint64, state string, within time.Duration) time.Duration {
	nd.t.Helper()
	start := time.Now()
	var last map[uint64]member
	var lastErr error
	for time.Since(start) < within {
		ms, err := nd.members()
		if err == nil && ms[id].State == state {
			return time.Since(start)
		}
		last, lastErr = ms, err
		time.Sleep(10 * time.Millisecond)
	}
	nd.t.Fatalf("n%d: node %d not %s within %v; last members %+v err %v", nd.id, id, state, within, last, lastErr)
	return 0
}

func TestThreeNodeMesh(t *testing.T) {
	const timeout = 500 * time.Millisecond // the default heartbeat timeout
	nodes := cluster(t, 3)
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		for _, other := range nodes {
			want := "up"
			if other == nd {
				want = "self"
			}
			nd.waitState(uint64(other.id), want, 15*time.Second)
		}
	}
	// Names, configured addresses, versions and (after the first PING) a
	// round trip on every node.
	for _, nd := range nodes {
		var bad string
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			ms, err := nd.members()
			if err != nil {
				t.Fatal(err)
			}
			bad = ""
			for _, other := range nodes {
				m := ms[uint64(other.id)]
				if other != nd && (m.Name != fmt.Sprintf("n%d", other.id) || m.Addr != other.addr || m.PeerVersion == nil || *m.PeerVersion != int(peer.MaxVersion) || m.RTTms == nil) {
					bad += fmt.Sprintf(" %+v", m)
				}
			}
			if bad == "" {
				break
			}
		}
		if bad != "" {
			t.Errorf("n%d sees%s", nd.id, bad)
		}
	}

	// kill -9 node 3: the others see it down within two heartbeat timeouts.
	killed := time.Now()
	nodes[2].kill()
	var wg sync.WaitGroup
	for _, nd := range nodes[:2] {
		wg.Go(func() {
			nd.waitState(3, "down", 10*time.Second)
			if d := time.Since(killed); d > 2*timeout {
				t.Errorf("n%d saw node 3 down after %v, more than two heartbeat timeouts (%v)", nd.id, d, 2*timeout)
			} else {
				t.Logf("n%d saw node 3 down after %v", nd.id, d)
			}
		})
	}
	wg.Wait()

	// Restart it: up again everywhere.
	nodes[2].start()
	for _, nd := range nodes {
		for _, other := range nodes {
			if other != nd {
				nd.waitState(uint64(other.id), "up", 15*time.Second)
			}
		}
	}
}

func TestGracefulStopSaysGoodbye(t *testing.T) {
	nodes := cluster(t, 2, "--heartbeat-timeout", "5s", "--heartbeat-interval", "1s")
	for _, nd := range nodes {
		nd.start()
	}
	nodes[0].waitState(2, "up", 15*time.Second)
	nodes[1].cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-nodes[1].exit:
		if err != nil {
			t.Fatalf("agent exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("agent did not exit after SIGTERM")
	}
	nodes[1].cmd = nil
	// The goodbye, not the 5 s timeout, takes the link down.
	if d := nodes[0].waitState(2, "down", 10*time.Second); d > 3*time.Second {
		t.Fatalf("link went down %v after SIGTERM: the goodbye was not seen", d)
	}
	if !strings.Contains(nodes[0].log.String(), "agent shutting down") {
		t.Fatalf("n1 did not log the peer's goodbye reason:\n%s", nodes[0].log.String())
	}
	if _, err := os.Stat(filepath.Join(nodes[1].dir, "admin.sock")); !os.IsNotExist(err) {
		t.Fatalf("admin socket left behind: %v", err)
	}
}

func TestWrongVersionRefused(t *testing.T) {
	nodes := cluster(t, 2)
	nodes[1].args = append(nodes[1].args, "--peer-versions", "5..6")
	for _, nd := range nodes {
		nd.start()
	}
	deadline := time.Now().Add(15 * time.Second)
	for _, nd := range nodes {
		for !strings.Contains(nd.log.String(), "peer 4..4") || !strings.Contains(nd.log.String(), "peer 5..6") {
			if time.Now().After(deadline) {
				t.Fatalf("n%d log does not name both version ranges:\n%s", nd.id, nd.log.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	ms, err := nodes[0].members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.State == "up" {
			t.Fatalf("a link came up across versions: %+v", m)
		}
	}
}

func TestBadInputKeepsServing(t *testing.T) {
	nodes := cluster(t, 2)
	for _, nd := range nodes {
		nd.start()
	}
	nodes[0].waitState(2, "up", 15*time.Second)
	// Plain TCP garbage, a silent connection, and garbage on the admin
	// socket: each is refused alone.
	for _, junk := range [][]byte{[]byte("GET / HTTP/1.0\r\n\r\n"), bytes.Repeat([]byte{0}, 4096), nil} {
		c, err := net.Dial("tcp", nodes[0].addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(junk)
		defer c.Close()
	}
	a, err := net.Dial("unix", filepath.Join(nodes[0].dir, "admin.sock"))
	if err != nil {
		t.Fatal(err)
	}
	a.Write([]byte("not a frame at all, just words on the admin socket......................"))
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, _ := io.ReadAll(a) // until the agent closes
	a.Close()
	if !bytes.Contains(reply, []byte("bad magic")) {
		t.Errorf("admin socket garbage: agent answered %q, want a REJECT naming the bad magic", reply)
	}
	ms, err := nodes[0].members()
	if err != nil {
		t.Fatalf("agent stopped serving after bad input: %v", err)
	}
	if ms[2].State != "up" {
		t.Fatalf("peer link lost after bad input: %+v", ms[2])
	}
	if !strings.Contains(nodes[0].log.String(), "refused peer connection") {
		t.Fatalf("no log of the refused connections:\n%s", nodes[0].log.String())
	}
}

func TestConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	if out, err := exec.Command(binary, "keygen", "--out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v %s", err, out)
	}
	if out, err := exec.Command(binary, "keygen", "--out", key).CombinedOutput(); err == nil {
		t.Fatalf("keygen overwrote an existing key: %s", out)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	port := freePort(t)
	conf := filepath.Join(dir, "corral.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf("name = \"from-file\"\nid = 7\nbind = \"127.0.0.1:%d\"\ndata-dir = %q\ncluster-key-file = %q\nheartbeat-interval = \"50ms\"\n", port, filepath.Join(dir, "data"), key)), 0o600)
	nd := &node{t: t, id: 7, dir: filepath.Join(dir, "data"), args: []string{"agent", "--config", conf, "--name", "from-flag"}}
	nd.start()
	t.Cleanup(nd.kill)
	nd.waitState(7, "self", 10*time.Second)
	ms, _ := nd.members()
	if ms[7].Name != "from-flag" {
		t.Fatalf("flag did not override the file: %+v", ms[7])
	}

	bad := filepath.Join(dir, "bad.toml")
	os.WriteFile(bad, []byte("nmae = \"typo\"\n"), 0o600)
	out, err := exec.Command(binary, "agent", "--config", bad, "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown keys nmae") {
		t.Fatalf("misspelt key: err %v, output %s", err, out)
	}
	badKey := filepath.Join(dir, "badkey")
	os.WriteFile(badKey, []byte("not a key\n"), 0o600)
	out, err = exec.Command(binary, "agent", "--data-dir", filepath.Join(dir, "d2"), "--cluster-key-file", badKey, "--bind", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "bad key format") {
		t.Fatalf("bad key: err %v, output %s", err, out)
	}
	out, err = exec.Command(binary, "agent", "--data-dir", filepath.Join(dir, "d3"), "--cluster-key-file", filepath.Join(dir, "missing"), "--bind", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no local key") {
		t.Fatalf("missing key: err %v, output %s", err, out)
	}
}

func TestDevMode(t *testing.T) {
	cmd := exec.Command(binary, "agent", "--dev")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	sc := bufio.NewScanner(stdout)
	var dataDir string
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "data" && f[1] == "dir" {
			dataDir = f[2]
			break
		}
	}
	if dataDir == "" {
		t.Fatalf("--dev did not say where its data dir is; stderr:\n%s", stderr.String())
	}
	nd := &node{t: t, id: 1, dir: dataDir}
	nd.waitState(1, "self", 10*time.Second)
	for sock, mode := range map[string]os.FileMode{"admin.sock": 0o600, "client.sock": 0o660} {
		if st, err := os.Stat(filepath.Join(dataDir, sock)); err != nil || st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v (%v), want %v", sock, st.Mode().Perm(), err, mode)
		}
	}
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dev agent exit: %v\n%s", err, stderr.String())
	}
	if _, err := os.Stat(dataDir); !os.IsNotExist(err) {
		t.Fatalf("dev data dir %s left behind", dataDir)
	}
}

// A frozen process keeps its sockets open, so only heartbeats can tell it
// is gone.
func TestFrozenNodeDetectedByHeartbeat(t *testing.T) {
	const timeout = 500 * time.Millisecond
	nodes := cluster(t, 3)
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes[:2] {
		nd.waitState(3, "up", 15*time.Second)
	}
	stopped := time.Now()
	nodes[2].cmd.Process.Signal(syscall.SIGSTOP)
	defer nodes[2].cmd.Process.Signal(syscall.SIGCONT)
	var wg sync.WaitGroup
	for _, nd := range nodes[:2] {
		wg.Go(func() {
			nd.waitState(3, "down", 10*time.Second)
			d := time.Since(stopped)
			if d < timeout/2 {
				t.Errorf("n%d saw node 3 down after %v, before any heartbeat timeout", nd.id, d)
			}
			if d > 2*timeout {
				t.Errorf("n%d saw node 3 down after %v, more than two heartbeat timeouts (%v)", nd.id, d, 2*timeout)
			}
			t.Logf("n%d saw frozen node 3 down after %v", nd.id, d)
		})
	}
	wg.Wait()
	nodes[2].cmd.Process.Signal(syscall.SIGCONT)
	for _, nd := range nodes {
		for _, other := range nodes {
			if other != nd {
				nd.waitState(uint64(other.id), "up", 15*time.Second)
			}
		}
	}
}
