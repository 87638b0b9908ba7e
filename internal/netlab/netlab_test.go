package netlab_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
)

// The test binary doubles as the helper that runs inside a host: with
// NETLAB_HELPER set it listens, dials or waits instead of running tests.
func TestMain(m *testing.M) {
	switch os.Getenv("NETLAB_HELPER") {
	case "":
		os.Exit(m.Run())
	case "listen": // accept and close connections on NETLAB_ADDR forever
		ln, err := net.Listen("tcp", os.Getenv("NETLAB_ADDR"))
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		fmt.Println("ready")
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(2)
			}
			c.Close()
		}
	case "dial": // exit 0 if a TCP connection to NETLAB_ADDR opens within 1s
		c, err := net.DialTimeout("tcp", os.Getenv("NETLAB_ADDR"), time.Second)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	case "wait": // say so, then block until killed
		fmt.Println("ready")
		select {}
	}
	os.Exit(3)
}

const probePort = "7001"

// helper returns the command that runs this test binary in host i as the
// given helper.
func helper(t *testing.T, lab *netlab.Lab, i int, mode, addr string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := lab.Command(i, self, "-test.run=^$")
	// GORACE: a -race binary otherwise sleeps a second at exit.
	cmd.Env = append(os.Environ(), "NETLAB_HELPER="+mode, "NETLAB_ADDR="+addr, "GORACE=atexit_sleep_ms=0")
	return cmd
}

// startWaiting starts a helper that prints "ready" and keeps running; it
// returns once the helper said so, and a channel closed when it exits.
func startWaiting(t *testing.T, cmd *exec.Cmd) <-chan struct{} {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- strings.TrimSpace(s)
		cmd.Wait()
		close(exited)
	}()
	select {
	case s := <-line:
		if s != "ready" {
			t.Fatalf("helper %v: %q", cmd.Args, s)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("helper %v did not start", cmd.Args)
	}
	return exited
}

// prober tells whether one host reaches another: with ping when it is
// installed, else with a TCP connection to a helper listening in each host.
type prober struct {
	t    *testing.T
	lab  *netlab.Lab
	ping bool
}

func newProber(t *testing.T, lab *netlab.Lab) *prober {
	p := &prober{t: t, lab: lab}
	if _, err := exec.LookPath("ping"); err == nil {
		p.ping = true
		return p
	}
	t.Log("ping is not installed; probing with TCP connections")
	for i := 1; i <= lab.N(); i++ {
		startWaiting(t, helper(t, lab, i, "listen", net.JoinHostPort(lab.Addr(i), probePort)))
	}
	return p
}

func (p *prober) reaches(from, to int) bool {
	p.t.Helper()
	var cmd *exec.Cmd
	if p.ping {
		cmd = p.lab.Command(from, "ping", "-c1", "-W1", p.lab.Addr(to))
	} else {
		cmd = helper(p.t, p.lab, from, "dial", net.JoinHostPort(p.lab.Addr(to), probePort))
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		p.t.Fatalf("probe %d -> %d: %v", from, to, err)
	}
	p.t.Logf("probe %d -> %d: ok=%v in %v %s", from, to, err == nil, time.Since(start).Round(time.Millisecond), strings.TrimSpace(string(out)))
	return err == nil
}

// want checks that from reaches to exactly when reach is set. Reaching may
// take a moment to come back (the neighbour cache), so that case is polled
// up to a deadline; not reaching is checked once.
func (p *prober) want(from, to int, reach bool) {
	p.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := p.reaches(from, to)
		if got == reach {
			return
		}
		if !reach || time.Now().After(deadline) {
			p.t.Fatalf("host %d reaches host %d: %v, want %v", from, to, got, reach)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestPartitionHealCut(t *testing.T) {
	lab := netlab.New(t, 3)
	p := newProber(t, lab)
	for _, pair := range [][2]int{{1, 2}, {2, 3}, {3, 1}} {
		p.want(pair[0], pair[1], true)
	}

	lab.Partition([]int{1, 2}, []int{3})
	p.want(1, 2, true)
	p.want(1, 3, false)
	p.want(3, 2, false)

	lab.Heal()
	p.want(1, 3, true)
	p.want(3, 2, true)

	// Host 3 is named in no group: it stays with nobody else on br0.
	lab.Partition([]int{1}, []int{2})
	p.want(1, 2, false)
	p.want(3, 1, false)
	lab.Heal()
	p.want(1, 2, true)

	lab.Cut(2)
	p.want(1, 2, false)
	p.want(1, 3, true)
	lab.Restore(2)
	p.want(1, 2, true)
}

func TestAddresses(t *testing.T) {
	lab := netlab.New(t, 2)
	out, err := lab.Command(2, "ip", "-4", "-o", "addr", "show", "dev", "eth0").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(string(out), " 10.251.0.2/24 ") {
		t.Errorf("host 2 eth0: %s; want 10.251.0.2/24", out)
	}
	if lab.Addr(1) != "10.251.0.1" {
		t.Errorf("Addr(1) = %q", lab.Addr(1))
	}
}

func TestNamesAreUnique(t *testing.T) {
	a, b := netlab.New(t, 1), netlab.New(t, 1)
	if a.Name() == b.Name() {
		t.Fatalf("two labs named %s", a.Name())
	}
	if !strings.HasPrefix(a.Name(), "crl") || len(a.Name()) != 9 {
		t.Errorf("lab name %q; want crl and a 6-digit id", a.Name())
	}
	list := netnsList(t)
	for _, ns := range append(a.Namespaces(), b.Namespaces()...) {
		if !slices.Contains(list, ns) {
			t.Errorf("namespace %s missing from ip netns list %v", ns, list)
		}
	}
}

// TestCleanup checks that a finished lab, of New or of NewGraph, leaves no
// namespace behind and that processes left running in it are killed.
func TestCleanup(t *testing.T) {
	for _, kind := range []struct {
		name string
		make func(t *testing.T) *netlab.Lab
	}{
		{"switch", func(t *testing.T) *netlab.Lab { return netlab.New(t, 2) }},
		{"ring", func(t *testing.T) *netlab.Lab { return netlab.Ring(t, 3) }},
	} {
		t.Run(kind.name, func(t *testing.T) {
			var names []string
			var exited <-chan struct{}
			t.Run("lab", func(t *testing.T) {
				lab := kind.make(t)
				names = lab.Namespaces()
				exited = startWaiting(t, helper(t, lab, 1, "wait", ""))
			})
			if names == nil {
				t.Skip("the lab was skipped")
			}
			select {
			case <-exited:
			case <-time.After(10 * time.Second):
				t.Error("a process left in the lab still runs after its cleanup")
			}
			list := netnsList(t)
			for _, ns := range names {
				if slices.Contains(list, ns) {
					t.Errorf("namespace %s still exists after cleanup", ns)
				}
			}
			prefix := strings.TrimSuffix(names[0], "-sw")
			for _, ns := range list {
				if strings.HasPrefix(ns, prefix) {
					t.Errorf("namespace %s of the lab still exists after cleanup", ns)
				}
			}
		})
	}
}

// netnsList returns the names in `ip netns list`.
func netnsList(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}
