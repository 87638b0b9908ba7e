package main

// The user-space fallback with real agents (issue 13 item 7): agents on
// h1–h3 of a netlab lab with --shared-userspace shared and no
// --shared-iface, h4 the outside client. As where a VIP is managed by
// keepalived or the cloud, the test brings the address's packets to the
// owner: the address is on lo of every node (the operator's setup) and h4
// routes it via the owner's own address, a route the test moves after a
// failover. Each node's application listens on its own address behind a
// userspace.Listener and greets with its node number and the client's
// address as the PROXY v2 header gives it. Needs root.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
	"github.com/corralhq/corral/sharedaddr/userspace"
)

// usApp is node i's application on its own address, port saPort.
func usApp(t *testing.T, lab *netlab.Lab, i int) {
	raw, err := lab.Listen(i, "tcp4", net.JoinHostPort(lab.Addr(i), strconv.Itoa(saPort)))
	if err != nil {
		t.Fatalf("h%d: %v", i, err)
	}
	ln := userspace.NewListener(raw)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprintf(c, "%d %s\n", i, c.RemoteAddr())
				io.Copy(c, c)
			})
		}
	})
}

// usDial connects from h4 to the address and reads the greeting: the
// node and the client address it saw, checked against the connection's
// own.
func usDial(ctx context.Context, lab *netlab.Lab) (int, error) {
	c, err := lab.Dial(ctx, saClient, "tcp4", net.JoinHostPort(saVIP, strconv.Itoa(saPort)))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	s, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return 0, fmt.Errorf("greeting: %w", err)
	}
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0, fmt.Errorf("greeting %q", s)
	}
	if f[1] != c.LocalAddr().String() {
		return 0, fmt.Errorf("node %s saw the client as %s, want %s", f[0], f[1], c.LocalAddr())
	}
	return strconv.Atoi(f[0])
}

// routeVIP points h4's route to the address at host h, as keepalived or
// the cloud would move the address to the new owner.
func routeVIP(t *testing.T, lab *netlab.Lab, h int) {
	t.Helper()
	if out, err := exec.Command("ip", "-n", lab.Namespace(saClient), "route", "replace", saVIP+"/32", "via", lab.Addr(h)).CombinedOutput(); err != nil {
		t.Fatalf("route: %v: %s", err, out)
	}
}

// usMetric reads a corral_sharedaddr_userspace_* value from host h's
// agent's /metrics.
func usMetric(t *testing.T, lab *netlab.Lab, h int, name string) float64 {
	t.Helper()
	cl := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		return lab.Dial(ctx, h, "tcp4", addr)
	}}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("http://" + net.JoinHostPort(lab.Addr(h), "9100") + "/metrics")
	if err != nil {
		t.Fatalf("metrics of h%d: %v", h, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("metrics of h%d: no %s", h, name)
	}
	v, _ := strconv.ParseFloat(string(m[1]), 64)
	return v
}

// Connections from h4 split 2:1:1 over the nodes through the owner's
// proxy, each node sees h4's address; kill -9 of the owner moves the
// proxy to the new owner, and new connections succeed within seconds of
// the kill once the address's route follows.
func TestSharedAddrUserspace(t *testing.T) {
	needRoot(t)
	lab := netlab.New(t, 4)
	var addrs []string
	for i := 1; i <= 3; i++ {
		addrs = append(addrs, lab.Addr(i)+":7946")
	}
	nodes := nodesAt(t, addrs, func(i int, args []string) *exec.Cmd {
		args = append(args, "--http-addr", lab.Addr(i)+":9100")
		return lab.Command(i, binary, args...)
	}, "--shared-userspace", "shared", "--shared-stack", "1")
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	for i, nd := range nodes {
		if out, err := exec.Command("ip", "-n", lab.Namespace(i+1), "addr", "add", saVIP+"/32", "dev", "lo").CombinedOutput(); err != nil {
			t.Fatalf("h%d: %v: %s", i+1, err, out)
		}
		usApp(t, lab, i+1)
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	routeVIP(t, lab, 1)
	if out, code := addrTool("addr", "add", saVIP, "--weights", "1=2", "--data-dir", nodes[0].dir); code != 0 {
		t.Fatalf("addr add: exit %d: %s", code, out)
	}
	waitAddrs(t, nodes, 20*time.Second, "owner n1, three listeners on their own addresses, one table", func(as []addrJSON) error {
		if len(as) != 1 || as[0].Owner != 1 || len(as[0].Listeners) != 3 || len(as[0].Tables) != 1 {
			return fmt.Errorf("addresses %+v", as)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err = usDial(ctx, lab); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("no connection through the owner's proxy: %v", err)
	}
	// Nothing of the kernel path: the address is held on lo only, by
	// the test, and no node holds it on eth0.
	for i := 1; i <= 3; i++ {
		out, _ := exec.Command("ip", "-n", lab.Namespace(i), "-br", "addr", "show", "dev", "eth0").CombinedOutput()
		if strings.Contains(string(out), saVIP) {
			t.Errorf("h%d holds the address on eth0: %s", i, out)
		}
	}

	const n = 1200
	count := map[int]int{}
	var mu sync.Mutex // guards count, errs
	var errs []string
	var wg sync.WaitGroup
	next := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for range next {
				node, err := usDial(ctx, lab)
				mu.Lock()
				if err != nil {
					errs = append(errs, err.Error())
				} else {
					count[node]++
				}
				mu.Unlock()
			}
		})
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d of %d connections failed, first: %s", len(errs), n, errs[0])
	}
	checkShares(t, count, map[int]float64{1: 2, 2: 1, 3: 1})
	if got := usMetric(t, lab, 1, "corral_sharedaddr_userspace_connections_total"); got < n {
		t.Errorf("owner's corral_sharedaddr_userspace_connections_total %v, want at least %d", got, n)
	}
	if got := usMetric(t, lab, 1, "corral_sharedaddr_userspace_listeners"); got != 1 {
		t.Errorf("owner's corral_sharedaddr_userspace_listeners %v, want 1", got)
	}
	if got := usMetric(t, lab, 2, "corral_sharedaddr_userspace_listeners"); got != 0 {
		t.Errorf("n2's corral_sharedaddr_userspace_listeners %v, want 0", got)
	}

	// kill -9 of the owner's agent: the survivors agree on a new owner,
	// whose proxy takes the port; the route follows it.
	t0 := time.Now()
	nodes[0].kill()
	var owner uint64
	waitAddrs(t, nodes[1:], 15*time.Second, "a new owner among n2, n3", func(as []addrJSON) error {
		if len(as) != 1 || (as[0].Owner != 2 && as[0].Owner != 3) {
			return fmt.Errorf("addresses %+v", as)
		}
		owner = as[0].Owner
		return nil
	})
	routeVIP(t, lab, int(owner))
	var first time.Duration
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		node, err := usDial(ctx, lab)
		if err == nil && (node == 2 || node == 3) {
			first = time.Since(t0)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection through n%d's proxy within 10 s: node %d, %v", owner, node, err)
		}
	}
	t.Logf("kill -9 of owner n1: n%d owns, first connection through its proxy %v after the kill", owner, first)
	if first > 5*time.Second {
		t.Errorf("first connection %v after the kill, want within 5 s", first)
	}
	after := map[int]int{}
	for range 100 {
		node, err := usDial(ctx, lab)
		if err != nil {
			t.Fatalf("after the failover: %v", err)
		}
		after[node]++
	}
	if after[1] != 0 || after[2] == 0 || after[3] == 0 {
		t.Errorf("after the failover connections went to %v, want n2 and n3 only", after)
	}
}
