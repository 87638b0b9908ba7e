package kernel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// The lab of the data-path tests: h1–h3 are nodes 1–3, h4 the client,
// h5 (when there is one) an outside server.
const (
	client = 4
	server = 5
	tableM = 251
	port   = 80
)

var vip = netip.MustParseAddr("10.251.0.100")

type lab struct {
	t     *testing.T
	lab   *netlab.Lab
	dp    [6]*Dataplane // by host; dp[4] and dp[5] are outside hosts', for their namespaces
	macs  [6]net.HardwareAddr
	nodes []Node
	// policy of the plans; Weighted unless a test sets it.
	policy ctl.Policy
	// slices of the plans' client side.
	slices []Slice
	// ident is each node's ident block, by host.
	ident map[int]Ident
	// affinity is the plans' affinity timeout.
	affinity time.Duration
}

func newLab(t *testing.T, n int) *lab {
	l := &lab{t: t, lab: netlab.New(t, n), policy: ctl.Weighted}
	for i := 1; i <= n; i++ {
		d, err := Open("/var/run/netns/"+l.lab.Namespace(i), "eth0", nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		l.dp[i] = d
		link, err := d.nl.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		l.macs[i] = link.Attrs().HardwareAddr
		if i <= 3 {
			l.nodes = append(l.nodes, Node{ID: uint64(i), IP: netip.MustParseAddr(l.lab.Addr(i)), MAC: l.macs[i]})
		}
	}
	for i := 1; i <= 3; i++ {
		l.serve(i)
	}
	return l
}

// serve runs node i's server on :80: it sends "ID CLIENT\n", then echoes
// lines. Its goroutines end with the test.
func (l *lab) serve(i int) { l.serveOn(i, port) }

// serveOn runs node i's server on :p.
func (l *lab) serveOn(i int, p uint16) {
	ln, err := l.lab.Listen(i, "tcp4", ":"+strconv.Itoa(int(p)))
	if err != nil {
		l.t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				fmt.Fprintf(c, "%d %s\n", i, c.RemoteAddr())
				r := bufio.NewReader(c)
				for {
					s, err := r.ReadString('\n')
					if err != nil {
						c.Close()
						return
					}
					c.Write([]byte(s))
				}
			}()
		}
	}()
	l.t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// plan is node self's plan with owner dispatching over weights.
func (l *lab) plan(self, owner int, weights []ctl.Weight, exc []Exception) Plan {
	p := Plan{Self: uint64(self), Nodes: l.nodes}
	// Every node holds the tables, as each derives them from the log.
	a := Addr{VIP: vip, Policy: l.policy, Owner: self == owner, Serve: true, Slices: l.slices,
		Services: []Service{{Proto: TCP, Port: port, Table: ctl.Build(weights, tableM)}}, Exceptions: exc,
		Ident: l.ident[self], Affinity: l.affinity}
	if l.policy == ctl.StickyWild {
		a.Services[0].Port = 0 // one table for every port
	}
	p.Addrs = []Addr{a}
	return p
}

func (l *lab) applyAll(owner int, weights []ctl.Weight, exc []Exception, hosts ...int) {
	l.t.Helper()
	for _, i := range hosts {
		if err := l.dp[i].Apply(context.Background(), l.plan(i, owner, weights, exc)); err != nil {
			l.t.Fatalf("apply on h%d: %v", i, err)
		}
	}
}

// conn is a connection from the client through the VIP.
type conn struct {
	c    net.Conn
	r    *bufio.Reader
	node int
	seen string // the client address the server saw
}

func (l *lab) dial(ctx context.Context) (*conn, error) { return l.dialFrom(ctx, 0) }

// dialFrom dials from the client's source port from, 0 for any.
func (l *lab) dialFrom(ctx context.Context, from uint16) (*conn, error) {
	return l.dialTo(ctx, from, port)
}

// dialTo dials VIP:to from the client's source port from, 0 for any.
func (l *lab) dialTo(ctx context.Context, from, to uint16) (*conn, error) {
	var c net.Conn
	err := l.dp[client].in(func() (err error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{Port: int(from)}}
		c, err = d.DialContext(ctx, "tcp4", netip.AddrPortFrom(vip, to).String())
		return err
	})
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(c)
	s, err := r.ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("read id: %w", err)
	}
	f := strings.Fields(s)
	if len(f) != 2 {
		c.Close()
		return nil, fmt.Errorf("greeting %q", s)
	}
	n, _ := strconv.Atoi(f[0])
	return &conn{c: c, r: r, node: n, seen: f[1]}, nil
}

func (c *conn) local() netip.AddrPort { return c.c.LocalAddr().(*net.TCPAddr).AddrPort() }

// ping sends a line and reads it back.
func (c *conn) ping() error {
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.c.Write([]byte("ping\n")); err != nil {
		return err
	}
	s, err := c.r.ReadString('\n')
	if err == nil && s != "ping\n" {
		err = fmt.Errorf("echo %q", s)
	}
	return err
}

// predict is the node the kernel must pick for c under table.
func predict(table []uint64, exc []Exception, c netip.AddrPort) int {
	return predictBy(ctl.Weighted, table, exc, c)
}

func predictBy(p ctl.Policy, table []uint64, exc []Exception, c netip.AddrPort) int {
	for _, e := range exc {
		if e.Client == c {
			return int(e.Node)
		}
	}
	if len(table) == 0 {
		return 0
	}
	return int(table[Bucket(p, c, len(table))])
}

// spread opens n connections (4 at a time) and closes them; it returns
// the count per node, failing on any connection whose node is not the
// one Bucket predicts under table (nil: no prediction).
func (l *lab) spread(n int, table []uint64) map[int]int {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex // guards count, bad, errs
	count := map[int]int{}
	var bad, errs []string
	var wg sync.WaitGroup
	next := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for range next {
				c, err := l.dial(ctx)
				mu.Lock()
				if err != nil {
					errs = append(errs, err.Error())
				} else {
					count[c.node]++
					if want := predictBy(l.policy, table, nil, c.local()); len(table) > 0 && want != c.node {
						bad = append(bad, fmt.Sprintf("%v: node %d, predicted %d", c.local(), c.node, want))
					}
				}
				mu.Unlock()
				if c != nil {
					c.c.Close()
				}
			}
		})
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		l.t.Fatalf("%d of %d connections failed, first: %s", len(errs), n, errs[0])
	}
	if len(bad) > 0 {
		l.t.Fatalf("%d of %d connections not where Bucket predicts, first: %s", len(bad), n, bad[0])
	}
	return count
}

// arpAnswers asks for the VIP from the client and returns the MACs that
// answer within the capture window.
func (l *lab) arpAnswers() map[string]bool {
	l.t.Helper()
	got := map[string]bool{}
	d := l.dp[client]
	link, err := d.nl.LinkByName("eth0")
	if err != nil {
		l.t.Fatal(err)
	}
	err = d.in(func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: link.Attrs().Index}); err != nil {
			return err
		}
		req := garp(link.Attrs().HardwareAddr, vip)
		copy(req[28:32], netip.MustParseAddr(l.lab.Addr(client)).AsSlice()) // sender: the client
		to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: link.Attrs().Index, Halen: 6,
			Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		if err := unix.Sendto(fd, req, 0, to); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		// The window is what is observed, not a synchronisation: a second
		// answer would arrive within it.
		buf := make([]byte, 128)
		for end := time.Now().Add(500 * time.Millisecond); time.Now().Before(end); {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if n >= 42 && buf[21] == 2 && netip.AddrFrom4([4]byte(buf[28:32])) == vip {
				got[net.HardwareAddr(buf[22:28]).String()] = true
			}
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("arp probe: %v", err)
	}
	return got
}

// announceTo has h announce the VIP and waits until host peer's
// neighbour entry for it names h's MAC.
func (l *lab) announceTo(ctx context.Context, t *testing.T, h, peer int) {
	t.Helper()
	if err := l.dp[h].Announce(ctx, vip); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Second); l.neighOf(peer) != l.macs[h].String(); {
		if time.Now().After(deadline) {
			t.Fatalf("h%d's neighbour entry for the VIP is %q, want h%d's %s", peer, l.neighOf(peer), h, l.macs[h])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// neigh is the client's neighbour entry for the VIP: its MAC, "" if none.
func (l *lab) neigh() string { return l.neighOf(client) }

func (l *lab) neighOf(host int) string {
	out, _ := exec.Command("ip", "-n", l.lab.Namespace(host), "neigh", "show", vip.String()).Output()
	f := strings.Fields(string(out))
	for i, w := range f {
		if w == "lladdr" && i+1 < len(f) {
			return f[i+1]
		}
	}
	return ""
}

// state is what corral holds in host i, as text, for comparisons.
func (l *lab) state(i int) string {
	var b strings.Builder
	ns := l.lab.Namespace(i)
	for _, args := range [][]string{{"rule"}, {"route", "show", "table", "all"}, {"-4", "addr"}} {
		out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			l.t.Fatalf("ip %v: %v: %s", args, err, out)
		}
		b.Write(out)
	}
	c, err := l.dp[i].nftConn()
	if err != nil {
		l.t.Fatal(err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		l.t.Fatal(err)
	}
	for _, ch := range chains {
		if ch.Table.Name != TableName {
			continue
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			l.t.Fatal(err)
		}
		for _, r := range rules {
			fmt.Fprintf(&b, "nft %s handle %d exprs %d\n", ch.Name, r.Handle, len(r.Exprs))
		}
	}
	return b.String()
}

func isReset(err error) bool {
	return errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
}
