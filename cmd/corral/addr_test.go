package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/sharedaddr"
)

// addrList runs corral addr list --json on nd.
func (nd *node) addrList() ([]addrJSON, string, error) {
	out, err := exec.Command(binary, "addr", "list", "--data-dir", nd.dir, "--json").Output()
	if err != nil {
		return nil, "", fmt.Errorf("addr list on n%d: %w", nd.id, err)
	}
	var as []addrJSON
	if err := json.Unmarshal(out, &as); err != nil {
		return nil, "", fmt.Errorf("addr list on n%d: %w: %s", nd.id, err, out)
	}
	return as, string(out), nil
}

// addrTool runs the tool with args and returns its output and exit code.
func addrTool(args ...string) (string, int) {
	out, err := exec.Command(binary, args...).CombinedOutput()
	var xe *exec.ExitError
	if errors.As(err, &xe) {
		return string(out), xe.ExitCode()
	}
	if err != nil {
		return err.Error(), -1
	}
	return string(out), 0
}

// holdsAll says whether node holds one TCP slice, one UDP slice, one
// ident block and one SPI block in a.
func holdsAll(a addrJSON, node uint64) bool {
	n := map[string]int{}
	for _, l := range a.Leases {
		if l.Node == node {
			n[l.Kind+"/"+l.Proto]++
		}
	}
	return n["slice/tcp"] == 1 && n["slice/udp"] == 1 && n["ident/"] == 1 && n["spi/"] == 1 && len(n) == 4
}

// waitAddrs polls addr list on every node until check accepts every
// node's list and all lists are the same; it returns the list.
func waitAddrs(t *testing.T, nodes []*node, within time.Duration, what string, check func([]addrJSON) error) []addrJSON {
	t.Helper()
	var last string
	var err error
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var first string
		var as []addrJSON
		err = nil
		for _, nd := range nodes {
			var out string
			if as, out, err = nd.addrList(); err == nil {
				err = check(as)
			}
			if err == nil && first != "" && out != first {
				err = fmt.Errorf("n%d's list differs from n%d's:\n%s\n%s", nd.id, nodes[0].id, out, first)
			}
			if err != nil {
				last = out
				break
			}
			first = out
		}
		if err == nil {
			return as
		}
	}
	t.Fatalf("%s within %v: %v\n%s", what, within, err, last)
	return nil
}

// TestAddrThreeNodes: an address added on one node shows on every node
// with the same owner, weights, listeners and table shares, and every
// node's leases; bad input is refused with a clear error and the agent
// keeps serving; kill -9 of the owner makes the survivors agree on a new
// one and drops the dead node's leases and listener; a closed server is
// withdrawn; del removes the address everywhere.
func TestAddrThreeNodes(t *testing.T) {
	nodes := formed(t, 3)
	const ip = "192.0.2.10"

	for _, bad := range []struct {
		args []string
		want string
	}{
		{[]string{"addr", "add", "300.1.2.3"}, "is not an IP address"},
		{[]string{"addr", "add", ip, "--policy", "round-robin"}, "want weighted, sticky or sticky-wild"},
		{[]string{"addr", "add", ip, "--weights", "2=x"}, "is not a whole number"},
		{[]string{"addr", "add", ip, "--weights", "nosuchnode=1"}, "neither a node id nor the name"},
		{[]string{"addr", "add", ip, "--stack", "no-such-netns"}, "--stack"},
		// The machine's refusals come back typed, with its reason.
		{[]string{"addr", "add", ip, "--weights", "2=70000"}, "bad-field: ADD: weight 70000 of node 2 above 65536"},
		{[]string{"addr", "add", "127.0.0.1"}, "cannot be shared"},
		{[]string{"addr", "del", "192.0.2.99"}, "no-addr"},
	} {
		out, code := addrTool(append(bad.args, "--data-dir", nodes[1].dir)...)
		if code != 1 || !strings.Contains(out, bad.want) {
			t.Errorf("corral %s: exit %d, %q; want exit 1 and %q", strings.Join(bad.args, " "), code, out, bad.want)
		}
	}

	if out, code := addrTool("addr", "add", ip, "--weights", "2=3,n3=2", "--data-dir", nodes[1].dir); code != 0 {
		t.Fatalf("addr add: exit %d: %s", code, out)
	}
	if out, code := addrTool("addr", "add", ip, "--data-dir", nodes[2].dir); code != 1 || !strings.Contains(out, "exists") {
		t.Errorf("second addr add: exit %d, %q; want exists", code, out)
	}
	// A server listening on the shared address: the agents share this
	// test's network namespace, so each sees it and lists itself.
	ln := listenFreebind(t, ip+":0")
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	as := waitAddrs(t, nodes, 20*time.Second, "every node lists the address with every node's leases and listener", func(as []addrJSON) error {
		if len(as) != 1 || as[0].IP != ip {
			return fmt.Errorf("addresses %+v", as)
		}
		for _, id := range []uint64{1, 2, 3} {
			if !holdsAll(as[0], id) {
				return fmt.Errorf("node %d's leases incomplete: %+v", id, as[0].Leases)
			}
		}
		if len(as[0].Listeners) != 3 || len(as[0].Tables) != 1 {
			return fmt.Errorf("listeners %+v, tables %+v", as[0].Listeners, as[0].Tables)
		}
		return nil
	})
	a := as[0]
	// The owner is chosen by the machine (ctl SPEC.md, Owner) from the
	// stack, which is this namespace's inode: any member, the same on all.
	owner := a.Owner
	if owner < 1 || owner > 3 || a.OwnerName != fmt.Sprintf("n%d", owner) || a.Policy != "weighted" ||
		fmt.Sprint(a.Weights) != "[{2 3} {3 2}]" || a.Stack == 0 {
		t.Fatalf("address %+v: want an owner of n1-n3, weighted, weights 2=3 3=2, the agents' stack", a)
	}
	// Weights 1 (n1, unnamed), 3, 2 of 65537 buckets: 1/6, 1/2, 1/3.
	tb := a.Tables[0]
	if tb.Proto != "tcp" || tb.Port != port || tb.Buckets != 65537 || len(tb.Shares) != 3 {
		t.Fatalf("table %+v", tb)
	}
	for i, w := range []float64{1, 3, 2} {
		if got, want := float64(tb.Shares[i].Buckets), w/6*65537; got < want*0.99 || got > want*1.01 {
			t.Errorf("node %d holds %v buckets, want about %.0f", tb.Shares[i].Node, got, want)
		}
	}
	text, _ := addrTool("addr", "list", "--data-dir", nodes[0].dir)
	if !strings.Contains(text, ip) || !strings.Contains(text, fmt.Sprintf("%d (n%d)", owner, owner)) || !strings.Contains(text, "2=3,3=2") {
		t.Errorf("addr list table:\n%s", text)
	}
	t.Logf("corral addr list on n1:\n%s", text)

	// kill -9 the owner.
	killed := time.Now()
	nodes[owner-1].kill()
	var rest []*node
	for _, nd := range nodes {
		if uint64(nd.id) != owner {
			rest = append(rest, nd)
		}
	}
	as = waitAddrs(t, rest, 10*time.Second, "survivors agree on a new owner without the old owner's leases", func(as []addrJSON) error {
		if len(as) != 1 {
			return fmt.Errorf("addresses %+v", as)
		}
		if as[0].Owner == owner || as[0].Owner == 0 {
			return fmt.Errorf("owner %d", as[0].Owner)
		}
		if slices.ContainsFunc(as[0].Leases, func(l addrLeaseJSON) bool { return l.Node == owner }) {
			return fmt.Errorf("node %d still holds %+v", owner, as[0].Leases)
		}
		if !holdsAll(as[0], uint64(rest[0].id)) || !holdsAll(as[0], uint64(rest[1].id)) {
			return fmt.Errorf("leases %+v", as[0].Leases)
		}
		if len(as[0].Tables) != 1 || len(as[0].Tables[0].Shares) != 2 {
			return fmt.Errorf("tables %+v", as[0].Tables)
		}
		return nil
	})
	t.Logf("kill -9 of owner n%d: survivors agree on owner %d after %v", owner, as[0].Owner, time.Since(killed))

	// The server closes: every node withdraws its listener.
	ln.Close()
	waitAddrs(t, rest, 10*time.Second, "the closed listener is withdrawn", func(as []addrJSON) error {
		if len(as) != 1 || len(as[0].Listeners) != 0 || len(as[0].Tables) != 0 {
			return fmt.Errorf("addresses %+v", as)
		}
		return nil
	})

	if out, code := addrTool("addr", "del", ip, "--data-dir", rest[1].dir); code != 0 {
		t.Fatalf("addr del: exit %d: %s", code, out)
	}
	waitAddrs(t, rest, 10*time.Second, "the address is gone everywhere", func(as []addrJSON) error {
		if len(as) != 0 {
			return fmt.Errorf("addresses %+v", as)
		}
		return nil
	})
}

// TestAddrOldAgent: against an agent of admin version 2, corral addr says
// the agent is too old and exits 2.
func TestAddrOldAgent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	oldAgent(t, dir)
	out, code := addrTool("addr", "list", "--data-dir", dir)
	if code != exitTooOld || !strings.Contains(out, "too old for shared addresses") {
		t.Fatalf("addr list against a v2 agent: exit %d, %q", code, out)
	}
}

// listenFreebind listens on addr, an address no interface has
// (IP_FREEBIND): a server bound to the shared address, as on a node that
// serves it, without changing the host's addresses.
func listenFreebind(t *testing.T, addr string) net.Listener {
	t.Helper()
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1) }); err != nil {
			return err
		}
		return serr
	}}
	ln, err := lc.Listen(context.Background(), "tcp4", addr)
	if err != nil {
		t.Fatalf("listen on %s with IP_FREEBIND: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// TestAddrFlags: --stack resolves a namespace path to its nsfs inode,
// as the agent's own is (stack 0 on the wire when not given); --weights
// takes ids and names, sorted, and refuses what it cannot mean.
func TestAddrFlags(t *testing.T) {
	own, err := sharedaddr.Current(nil, nil)
	if err != nil {
		t.Skip("no network namespaces here:", err)
	}
	if st, err := parseStack("/proc/self/ns/net"); err != nil || st != uint64(own.ID()) {
		t.Errorf("parseStack(/proc/self/ns/net) = %#x, %v; want %#x", st, err, own.ID())
	}
	if st, err := parseStack(""); err != nil || st != 0 {
		t.Errorf("parseStack(\"\") = %#x, %v; want 0 (the agent's own)", st, err)
	}
	if _, err := parseStack("surely-not-a-netns"); err == nil || !strings.Contains(err.Error(), "/run/netns/surely-not-a-netns") {
		t.Errorf("parseStack of a missing name: %v", err)
	}
	ws, err := parseAddrWeights("7=1, web=0,3=65536", map[string]uint64{"web": 5})
	if err != nil || fmt.Sprint(ws) != "[{3 65536} {5 0} {7 1}]" {
		t.Errorf("parseAddrWeights = %v, %v", ws, err)
	}
	for _, bad := range []string{"3", "3=-1", "3=1,3=2", "0=1", "x=1", "3=4294967296"} {
		if _, err := parseAddrWeights(bad, nil); err == nil {
			t.Errorf("parseAddrWeights(%q) accepted", bad)
		}
	}
}
