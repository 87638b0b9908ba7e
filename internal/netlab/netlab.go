package netlab

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Subnet is the network of every lab's hosts; host i has Prefix+i.
const (
	Subnet   = "10.251.0.0/24"
	Prefix   = "10.251.0."
	MaxHosts = 250
)

// namePrefix starts the name of every lab, and so of every namespace a lab
// makes.
const namePrefix = "crl"

// Lab is a set of test hosts joined by a switch. Make one with New, or
// with NewGraph, Line or Ring for hosts that reach only their neighbours.
type Lab struct {
	t    testing.TB
	name string
	n    int

	// edges of a graph lab (NewGraph), in the order given, each with
	// a < b; nil for a lab made by New. Set before the lab is returned
	// and never changed.
	edges [][2]int

	// mu guards the fields below.
	mu      sync.Mutex
	made    []string // namespaces created, in order
	bridges int      // extra bridges br1..brN in the switch
}

// New builds n test hosts in network namespaces, each linked to one switch,
// and registers their removal with t.Cleanup. It skips the test when it
// cannot build them here (not root, no ip command, no namespaces).
func New(t testing.TB, n int) *Lab {
	t.Helper()
	l := build(t, n)
	for i := 1; i <= n; i++ {
		l.must("ip", "-n", l.Namespace(i), "addr", "add", l.Addr(i)+"/24", "dev", "eth0")
	}
	return l
}

// build makes the switch and n hosts with eth0 and lo up and no address.
func build(t testing.TB, n int) *Lab {
	t.Helper()
	if n < 1 || n > MaxHosts {
		t.Fatalf("netlab: %d hosts; want 1..%d", n, MaxHosts)
	}
	if os.Geteuid() != 0 {
		t.Skip("netlab: skipped: network namespaces need root (run this test as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("netlab: skipped: the ip command (iproute2) is not installed")
	}
	l := &Lab{t: t, n: n}
	t.Cleanup(l.cleanup)

	// The switch namespace is made first; a name that already exists
	// (another lab drew the same id) is simply drawn again.
	var err error
	for range 5 {
		l.name = namePrefix + randomID()
		if err = run("ip", "netns", "add", l.switchNS()); err == nil {
			break
		}
		if !strings.Contains(err.Error(), "exists") {
			break
		}
	}
	if err != nil {
		t.Skipf("netlab: skipped: cannot create a network namespace here: %v", err)
	}
	l.record(l.switchNS())

	sw := l.switchNS()
	l.must("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
	l.must("ip", "-n", sw, "link", "set", "br0", "up")
	l.must("ip", "-n", sw, "link", "set", "lo", "up")
	for i := 1; i <= n; i++ {
		h := l.Namespace(i)
		l.must("ip", "netns", "add", h)
		l.record(h)
		// Both ends are made inside the lab's namespaces: nothing passes
		// through the root namespace, where names could collide.
		l.must("ip", "-n", sw, "link", "add", port(i), "type", "veth", "peer", "name", "eth0", "netns", h)
		l.must("ip", "-n", sw, "link", "set", port(i), "master", "br0", "up")
		l.must("ip", "-n", h, "link", "set", "eth0", "up")
		l.must("ip", "-n", h, "link", "set", "lo", "up")
	}
	return l
}

// Name is the lab's name, which starts the name of each of its namespaces.
func (l *Lab) Name() string { return l.name }

// N is the number of hosts.
func (l *Lab) N() int { return l.n }

// Addr is host i's IPv4 address.
func (l *Lab) Addr(i int) string {
	l.check(i)
	return Prefix + strconv.Itoa(i)
}

// Namespace is the name of host i's network namespace.
func (l *Lab) Namespace(i int) string {
	l.check(i)
	return l.name + "-h" + strconv.Itoa(i)
}

// Namespaces lists every namespace of the lab: the switch, then the hosts.
func (l *Lab) Namespaces() []string {
	out := []string{l.switchNS()}
	for i := 1; i <= l.n; i++ {
		out = append(out, l.Namespace(i))
	}
	return out
}

// Command returns a command that runs name with args inside host i's
// network namespace. Processes still running there when the test ends are
// killed by the lab's cleanup.
func (l *Lab) Command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", l.Namespace(i), name}, args...)...)
}

// Partition splits the hosts: each group gets a bridge of its own, and
// hosts in different groups cannot reach each other. Hosts named in no
// group form one more group. A later Partition replaces this one.
func (l *Lab) Partition(groups ...[]int) {
	l.t.Helper()
	bridge := make([]int, l.n+1) // bridge of each host; 0 is br0
	for g, hosts := range groups {
		for _, i := range hosts {
			l.check(i)
			if bridge[i] != 0 {
				l.t.Fatalf("netlab: Partition: host %d is in two groups", i)
			}
			bridge[i] = g + 1
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for l.bridges < len(groups) {
		l.bridges++
		br := "br" + strconv.Itoa(l.bridges)
		l.must("ip", "-n", l.switchNS(), "link", "add", br, "type", "bridge")
		l.must("ip", "-n", l.switchNS(), "link", "set", br, "up")
	}
	for i := 1; i <= l.n; i++ {
		l.must("ip", "-n", l.switchNS(), "link", "set", port(i), "master", "br"+strconv.Itoa(bridge[i]))
	}
}

// Heal undoes Partition: every host is back on one bridge.
func (l *Lab) Heal() {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := 1; i <= l.n; i++ {
		l.must("ip", "-n", l.switchNS(), "link", "set", port(i), "master", "br0")
	}
	for ; l.bridges > 0; l.bridges-- {
		l.must("ip", "-n", l.switchNS(), "link", "del", "br"+strconv.Itoa(l.bridges))
	}
}

// Cut takes host i's switch port down: the host loses its carrier and
// reaches nobody until Restore.
func (l *Lab) Cut(i int) {
	l.t.Helper()
	l.check(i)
	l.must("ip", "-n", l.switchNS(), "link", "set", port(i), "down")
}

// Restore brings host i's switch port up again after Cut.
func (l *Lab) Restore(i int) {
	l.t.Helper()
	l.check(i)
	l.must("ip", "-n", l.switchNS(), "link", "set", port(i), "up")
}

func (l *Lab) switchNS() string { return l.name + "-sw" }

func port(i int) string { return "v" + strconv.Itoa(i) }

func (l *Lab) check(i int) {
	if i < 1 || i > l.n {
		l.t.Helper()
		l.t.Fatalf("netlab: host %d does not exist; the lab has hosts 1..%d", i, l.n)
	}
}

func (l *Lab) record(ns string) {
	l.mu.Lock()
	l.made = append(l.made, ns)
	l.mu.Unlock()
}

func (l *Lab) must(name string, args ...string) {
	l.t.Helper()
	if err := run(name, args...); err != nil {
		l.t.Fatalf("netlab %s: %v", l.name, err)
	}
}

// cleanup kills the processes left in the lab's namespaces and deletes the
// namespaces, hosts first. It keeps going after an error.
func (l *Lab) cleanup() {
	l.mu.Lock()
	made := slices.Clone(l.made)
	l.mu.Unlock()
	slices.Reverse(made)
	for _, ns := range made {
		if err := killAll(ns); err != nil {
			l.t.Errorf("netlab: %v", err)
		}
		if err := run("ip", "netns", "del", ns); err != nil {
			l.t.Errorf("netlab: %v", err)
		}
	}
}

// killAll sends SIGKILL to every process in namespace ns, by pid.
func killAll(ns string) error {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return fmt.Errorf("ip netns pids %s: %w", ns, err)
	}
	for _, f := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(f)
		// Never the test process itself: a thread of it may be visiting.
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill %d in %s: %w", pid, ns, err)
		}
	}
	return nil
}

// run runs a command; its error carries the command line and its output.
func run(name string, args ...string) error {
	var out bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

func randomID() string {
	var b [3]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
