package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// rssKB reads a process's resident set from /proc.
func rssKB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// links returns, for every other node nd has a row of, its link state and
// when that last changed.
func (nd *node) links() (map[uint64]string, error) {
	out, err := exec.Command(binary, "members", "--data-dir", nd.dir, "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("members on n%d: %w", nd.id, err)
	}
	var ms []memberJSON
	if err := json.Unmarshal(out, &ms); err != nil {
		return nil, fmt.Errorf("members on n%d: %w: %s", nd.id, err, out)
	}
	m := make(map[uint64]string)
	for _, x := range ms {
		if x.ID != uint64(nd.id) {
			m[x.ID] = x.State + " since " + x.Since
		}
	}
	return m, nil
}

// raiseNoFile lifts this process's descriptor limit to at least n.
func raiseNoFile(t *testing.T, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		lim.Max = n // fails unless root; then the test cannot run
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("cannot raise RLIMIT_NOFILE to %d: %v", n, err)
	}
}

// 5,000 junk connections to one node's peer port: the links between the
// real peers never flap, the node's memory stays bounded, and its log gets
// a line a second, not one per connection.
func TestJunkConnectionsBounded(t *testing.T) {
	const (
		total   = 5000
		sources = 50 // 127.0.0.10 .. 127.0.0.59
		workers = 64
	)
	raiseNoFile(t, total+1000)
	nodes := formed(t, 3)
	target := nodes[0]
	for _, nd := range nodes {
		for _, other := range nodes {
			if other != nd {
				nd.waitState(uint64(other.id), "up", 15*time.Second)
			}
		}
	}
	before := make(map[int]map[uint64]string)
	for _, nd := range nodes {
		l, err := nd.links()
		if err != nil {
			t.Fatal(err)
		}
		before[nd.id] = l
	}
	pid := target.cmd.Process.Pid
	rssBefore, err := rssKB(pid)
	if err != nil {
		t.Fatal(err)
	}
	logBefore := len(target.log.String())

	// Sample the target's RSS and every node's links while under attack.
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	var peak int
	var flaps []string
	sampler.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if r, err := rssKB(pid); err == nil {
				peak = max(peak, r)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	sampler.Go(func() {
		for {
			for _, nd := range nodes {
				l, err := nd.links()
				if err != nil {
					flaps = append(flaps, err.Error())
				} else if fmt.Sprint(l) != fmt.Sprint(before[nd.id]) {
					flaps = append(flaps, fmt.Sprintf("n%d links %v, before %v", nd.id, l, before[nd.id]))
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})

	// Four in five connections stay silent, the rest send random bytes;
	// all stay open until every one is made.
	start := time.Now()
	var (
		mu      sync.Mutex // guards conns and dialErr
		conns   []net.Conn
		dialErr error
	)
	next := make(chan int)
	var dialers sync.WaitGroup
	for range workers {
		dialers.Go(func() {
			junk := make([]byte, 512)
			for i := range next {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i%sources))}, Timeout: 5 * time.Second}
				c, err := d.Dial("tcp", target.addr)
				if err != nil {
					mu.Lock()
					dialErr = err
					mu.Unlock()
					continue
				}
				if i%5 == 0 {
					for j := range junk {
						junk[j] = byte(rand.N(256))
					}
					c.Write(junk)
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		})
	}
	for i := range total {
		next <- i
	}
	close(next)
	dialers.Wait()
	opened := time.Since(start)
	if dialErr != nil {
		t.Logf("some connections failed: %v", dialErr)
	}
	if len(conns) < total*9/10 {
		t.Fatalf("only %d of %d connections made", len(conns), total)
	}
	// Hold them a while, then let go.
	time.Sleep(time.Second)
	for _, c := range conns {
		c.Close()
	}
	// The links must hold a while after, too: a node that fell behind
	// would show it now.
	time.Sleep(2 * time.Second)
	close(stop)
	sampler.Wait()
	rssAfter, err := rssKB(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The admin connections of the sampler log a line each; the rest is
	// about the junk.
	var kept []string
	for _, l := range strings.SplitAfter(target.log.String()[logBefore:], "\n") {
		if !strings.Contains(l, "subsystem=local") {
			kept = append(kept, l)
		}
	}
	newLog := strings.Join(kept, "")
	lines := strings.Count(newLog, "\n")
	refusedLines := strings.Count(newLog, "refused peer connection")
	t.Logf("n1 log lines by message: %v", byMessage(newLog))
	t.Logf("%d junk connections in %v; n1 RSS before %d KB, peak %d KB, after %d KB; n1 logged %d lines (%d about refused connections)",
		len(conns), opened.Round(time.Millisecond), rssBefore, peak, rssAfter, lines, refusedLines)

	if len(flaps) > 0 {
		t.Errorf("links changed under junk connections: %d times, first %s", len(flaps), flaps[0])
	}
	for _, nd := range nodes {
		if strings.Contains(nd.log.String(), "lost contact") {
			t.Errorf("n%d lost contact with its peers", nd.id)
		}
	}
	if growth := peak - rssBefore; growth > 40<<10 {
		t.Errorf("RSS grew by %d KB under junk connections, want at most 40 MB", growth)
	}
	if refusedLines > 30 || lines > 60 {
		t.Errorf("n1 logged %d lines (%d about refused connections) for %d junk connections:\n%s", lines, refusedLines, len(conns), newLog)
	}
}

// byMessage counts the lines of a text log by their msg.
func byMessage(log string) map[string]int {
	n := make(map[string]int)
	for _, l := range strings.Split(log, "\n") {
		_, rest, ok := strings.Cut(l, " msg=")
		if !ok {
			continue
		}
		msg := rest
		if strings.HasPrefix(rest, `"`) {
			if q, err := strconv.QuotedPrefix(rest); err == nil {
				msg = q
			}
		} else if i := strings.IndexByte(rest, ' '); i >= 0 {
			msg = rest[:i]
		}
		n[msg]++
	}
	return n
}
