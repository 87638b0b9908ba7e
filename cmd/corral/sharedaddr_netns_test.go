package main

// The shared-address data path with real agents (issue 13 items 3 and 5,
// research notes §5.9 tests 1, 2, 6 and 7): agents on h1–h3 of a netlab lab
// with --shared-iface eth0, h4 the outside client. An echo server in each
// node's namespace listens on the address (IP_FREEBIND) and greets with its
// node number; the agents observe it and list the node as a listener.
// Needs root.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/internal/netlab"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/kernel"
	nodeevent "github.com/corralhq/corral/types/event"
)

const (
	// saVIP is owned by n1 (the tests below kill and cut off h1 as the
	// owner): among members 1-3 in stack 1 (--shared-stack 1) the machine
	// gives it to n1 (TestSharedAddrVIPOwner).
	saVIP    = "10.251.0.105"
	saPort   = 80
	saClient = 4
)

// saLab is a three-agent cluster serving saVIP, and the client h4.
type saLab struct {
	t      *testing.T
	lab    *netlab.Lab
	nodes  []*node
	macs   map[string]int // eth0 MAC → host
	echo   map[int]*echoServer
	client int
}

// steadyMembership are agent flags for tests of the data path that are
// not about failure detection: a heartbeat timeout of 2 s, so a host
// starved of CPU for half a second (heartbeats here wake up to 0.5 s late
// under load) is not taken for dead, and the table does not change under
// the test.
var steadyMembership = []string{"--heartbeat-timeout", "2s"}

func newSALab(t *testing.T, extra ...string) *saLab {
	t.Helper()
	needRoot(t)
	lab := netlab.New(t, 4)
	var addrs []string
	for i := 1; i <= 3; i++ {
		addrs = append(addrs, lab.Addr(i)+":7946")
	}
	args := append([]string{"--shared-iface", "eth0", "--shared-stack", "1"}, extra...)
	nodes := nodesAt(t, addrs, func(i int, args []string) *exec.Cmd { return lab.Command(i, binary, args...) }, args...)
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	if os.Getenv("CORRAL_SA_LOGS") != "" {
		t.Cleanup(func() {
			for _, nd := range nodes {
				t.Logf("log of n%d:\n%s", nd.id, nd.log.String())
			}
		})
	}
	l := &saLab{t: t, lab: lab, nodes: nodes, macs: map[string]int{}, echo: map[int]*echoServer{}, client: saClient}
	l.readMACs()
	for i := 1; i <= 3; i++ {
		l.echo[i] = l.serveEcho(i)
	}
	if out, code := addrTool("addr", "add", saVIP, "--data-dir", nodes[0].dir); code != 0 {
		t.Fatalf("addr add: exit %d: %s", code, out)
	}
	waitAddrs(t, nodes, 20*time.Second, "every node lists the address, owner n1, three listeners", func(as []addrJSON) error {
		if len(as) != 1 || as[0].Owner != 1 || len(as[0].Listeners) != 3 || len(as[0].Tables) != 1 {
			return fmt.Errorf("addresses %+v", as)
		}
		return nil
	})
	// The owner installs the table a moment after the state has it; until
	// then it serves every flow itself.
	seen := map[int]bool{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A node's own data path takes the address onto lo a moment after
	// the state lists its listener, so a first connection may be refused
	// until every node has applied its plan.
	var lastErr error
	for len(seen) < 3 {
		c, err := l.dial(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("connections reached nodes %v only: %v", seen, lastErr)
			}
			lastErr = err
			time.Sleep(20 * time.Millisecond)
			continue
		}
		seen[c.node] = true
		c.c.Close()
	}
	return l
}

// readMACs learns every host's eth0 MAC.
func (l *saLab) readMACs() {
	for i := 1; i <= l.lab.N(); i++ {
		var mac string
		l.in(i, func() error {
			ifc, err := net.InterfaceByName("eth0")
			if err == nil {
				mac = ifc.HardwareAddr.String()
			}
			return err
		})
		l.macs[mac] = i
	}
}

// in runs fn on a thread in host i's network namespace. Sockets made there
// stay in it.
func (l *saLab) in(i int, fn func() error) {
	l.t.Helper()
	if err := inNetns(l.lab.Namespace(i), fn); err != nil {
		l.t.Fatalf("in h%d: %v", i, err)
	}
}

func inNetns(name string, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread stays locked, and so dies with this goroutine.
		return fmt.Errorf("restore namespace: %w", err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// echoServer is node i's server on saVIP:saPort: "I\n", then echoes lines.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup
	mu sync.Mutex // guards conns
	// conns are the accepted connections, closed by close.
	conns []net.Conn
}

func (l *saLab) serveEcho(i int) *echoServer { return l.serveEchoPort(i, saPort) }

// serveEchoPort is node i's echo server on saVIP:port.
func (l *saLab) serveEchoPort(i, port int) *echoServer {
	e := &echoServer{}
	l.in(i, func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1) }); err != nil {
				return err
			}
			return serr
		}}
		var err error
		e.ln, err = lc.Listen(context.Background(), "tcp4", net.JoinHostPort(saVIP, strconv.Itoa(port)))
		return err
	})
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := e.ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				fmt.Fprintf(c, "%d\n", i)
				r := bufio.NewReader(c)
				for {
					s, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(s)); err != nil {
						return
					}
				}
			}()
		}
	}()
	l.t.Cleanup(e.close)
	return e
}

func (e *echoServer) close() {
	e.ln.Close()
	e.mu.Lock()
	for _, c := range e.conns {
		c.Close()
	}
	e.conns = nil
	e.mu.Unlock()
	e.wg.Wait()
}

// saConn is a connection from the client to the address.
type saConn struct {
	c    net.Conn
	r    *bufio.Reader
	node int
}

func (l *saLab) dial(ctx context.Context) (*saConn, error) {
	return l.dialFrom(ctx, netip.Addr{}, saPort)
}

// dialFrom connects from the client's address from (any if invalid) to
// saVIP:port.
func (l *saLab) dialFrom(ctx context.Context, from netip.Addr, port int) (*saConn, error) {
	var c net.Conn
	err := inNetns(l.lab.Namespace(l.client), func() (err error) {
		var d net.Dialer
		if from.IsValid() {
			d.LocalAddr = &net.TCPAddr{IP: from.AsSlice()}
		}
		c, err = d.DialContext(ctx, "tcp4", net.JoinHostPort(saVIP, strconv.Itoa(port)))
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
		return nil, fmt.Errorf("greeting: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting %q", s)
	}
	return &saConn{c: c, r: r, node: n}, nil
}

func (c *saConn) ping(within time.Duration) error {
	c.c.SetDeadline(time.Now().Add(within))
	if _, err := c.c.Write([]byte("ping\n")); err != nil {
		return err
	}
	s, err := c.r.ReadString('\n')
	if err == nil && s != "ping\n" {
		err = fmt.Errorf("echo %q", s)
	}
	return err
}

func isConnReset(err error) bool {
	return errors.Is(err, unix.ECONNRESET) || errors.Is(err, unix.EPIPE)
}

// split opens n connections from the client, 8 at a time, and counts them
// by node.
func (l *saLab) split(n int) map[int]int {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex // guards count, errs
	count := map[int]int{}
	var errs []string
	var wg sync.WaitGroup
	next := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			for range next {
				c, err := l.dial(ctx)
				mu.Lock()
				if err != nil {
					errs = append(errs, err.Error())
				} else {
					count[c.node]++
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
	return count
}

func checkShares(t *testing.T, count map[int]int, weights map[int]float64) {
	t.Helper()
	total, wsum := 0, 0.0
	for _, c := range count {
		total += c
	}
	for _, w := range weights {
		wsum += w
	}
	for node, w := range weights {
		got, want := float64(count[node])/float64(total), w/wsum
		if got < want-0.05 || got > want+0.05 {
			t.Errorf("node %d took %.1f%% of %d connections, want %.1f%% ± 5 points (counts %v)", node, 100*got, total, 100*want, count)
		}
	}
	t.Logf("split over %d connections: %v", total, count)
}

// arpAnswers asks for the address from the client and returns the hosts
// whose MACs answer within the window.
func (l *saLab) arpAnswers(window time.Duration) map[int]bool {
	l.t.Helper()
	got := map[int]bool{}
	cap := l.capture()
	defer cap.stop()
	cap.request()
	deadline := time.Now().Add(window)
	for time.Now().Before(deadline) {
		cap.wait(time.Until(deadline), func(ev []arpEvent) bool { return false })
	}
	for _, e := range cap.events() {
		if e.reply {
			got[l.macs[e.mac]] = true
		}
	}
	return got
}

// arpEvent is an ARP frame seen at the client whose sender is the address:
// an answer to a request, or a gratuitous ARP.
type arpEvent struct {
	at    time.Time
	mac   string
	reply bool // an ARP reply; else a request (gratuitous)
}

// arpCapture records the ARP frames for saVIP the client receives.
type arpCapture struct {
	fd      int
	ifindex int
	mac     net.HardwareAddr
	done    chan struct{}
	mu      sync.Mutex // guards evs
	evs     []arpEvent
	changed chan struct{} // buffered 1: a new event
}

func (l *saLab) capture() *arpCapture {
	l.t.Helper()
	c := &arpCapture{done: make(chan struct{}), changed: make(chan struct{}, 1)}
	l.in(l.client, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		c.ifindex, c.mac = ifc.Index, ifc.HardwareAddr
		c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons16(unix.ETH_P_ARP)))
		if err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons16(unix.ETH_P_ARP), Ifindex: c.ifindex})
	})
	tv := unix.NsecToTimeval((50 * time.Millisecond).Nanoseconds())
	unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	vip := netip.MustParseAddr(saVIP).As4()
	go func() {
		defer close(c.done)
		buf := make([]byte, 128)
		for {
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				return // closed
			}
			if n < 42 || [4]byte(buf[28:32]) != vip {
				continue
			}
			e := arpEvent{at: time.Now(), mac: net.HardwareAddr(buf[22:28]).String(), reply: buf[21] == 2}
			c.mu.Lock()
			c.evs = append(c.evs, e)
			c.mu.Unlock()
			select {
			case c.changed <- struct{}{}:
			default:
			}
		}
	}()
	return c
}

// request sends an ARP request for the address from the client.
func (c *arpCapture) request() {
	f := make([]byte, 42)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], c.mac)
	f[12], f[13] = 0x08, 0x06
	f[14], f[15], f[16], f[17], f[18], f[19], f[20], f[21] = 0, 1, 8, 0, 6, 4, 0, 1
	copy(f[22:28], c.mac)
	copy(f[28:32], netip.MustParseAddr(netlab.Prefix+strconv.Itoa(saClient)).AsSlice())
	vip := netip.MustParseAddr(saVIP).As4()
	copy(f[38:42], vip[:])
	to := &unix.SockaddrLinklayer{Protocol: htons16(unix.ETH_P_ARP), Ifindex: c.ifindex, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	unix.Sendto(c.fd, f, 0, to)
}

func (c *arpCapture) events() []arpEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]arpEvent(nil), c.evs...)
}

// wait waits up to d for cond over the events; it reports whether cond held.
func (c *arpCapture) wait(d time.Duration, cond func([]arpEvent) bool) bool {
	deadline := time.After(d)
	for {
		if cond(c.events()) {
			return true
		}
		select {
		case <-c.changed:
		case <-deadline:
			return cond(c.events())
		}
	}
}

func (c *arpCapture) stop() {
	unix.Shutdown(c.fd, unix.SHUT_RDWR)
	unix.Close(c.fd)
	<-c.done
}

func htons16(v uint16) uint16 { return v<<8 | v>>8 }

// owner is the address's owner in n's list.
func (l *saLab) owner(nd *node) uint64 {
	as, _, err := nd.addrList()
	if err != nil || len(as) != 1 {
		return 0
	}
	return as[0].Owner
}

// waitOneMAC waits until an ARP request from the client is answered by
// host want's MAC alone.
func (l *saLab) waitOneMAC(want int, within time.Duration) {
	l.t.Helper()
	var got map[int]bool
	for deadline := time.Now().Add(within); time.Now().Before(deadline); {
		got = l.arpAnswers(300 * time.Millisecond)
		if len(got) == 1 && got[want] {
			return
		}
	}
	l.t.Fatalf("ARP for %s answered by hosts %v, want h%d alone", saVIP, got, want)
}

func percentiles(ds []time.Duration) (p50, p99 time.Duration) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0, 0
	}
	at := func(q float64) time.Duration {
		i := int(q*float64(len(s))+0.999999) - 1
		return s[max(0, min(i, len(s)-1))]
	}
	return at(0.50), at(0.99)
}

// ARP for the address is answered by the owner's MAC alone; 3000
// connections split 1:1:1; weights 2:1:1 set online give the new split,
// and held connections keep going.
func TestSharedAddrSplit(t *testing.T) {
	l := newSALab(t, steadyMembership...)
	l.waitOneMAC(1, 10*time.Second)
	if got := l.arpAnswers(500 * time.Millisecond); len(got) != 1 || !got[1] {
		t.Fatalf("ARP answered by hosts %v, want h1 alone", got)
	}
	checkShares(t, l.split(3000), map[int]float64{1: 1, 2: 1, 3: 1})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var held []*saConn
	for range 60 {
		c, err := l.dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		defer c.c.Close()
	}
	// The owner's dispatch tables before the change: the split below is
	// measured once the owner's kernel holds new ones. The owner applies
	// them once every node has reported the held flows whose bucket moved,
	// with those flows as exceptions: none of the held connections is
	// reset.
	owner, err := kernel.Open("/run/netns/"+l.lab.Namespace(1), "eth0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	old, err := owner.Installed()
	if err != nil || old == "" {
		t.Fatalf("owner's installed tables: %q, %v", old, err)
	}
	if out, code := addrTool("addr", "add", saVIP, "--replace", "--weights", "1=2", "--data-dir", l.nodes[1].dir); code != 0 {
		t.Fatalf("addr add --replace: exit %d: %s", code, out)
	}
	waitAddrs(t, l.nodes, 10*time.Second, "the new weights' table everywhere", func(as []addrJSON) error {
		if len(as) != 1 || len(as[0].Tables) != 1 || len(as[0].Tables[0].Shares) != 3 {
			return fmt.Errorf("addresses %+v", as)
		}
		if sh := as[0].Tables[0].Shares[0]; sh.Node != 1 || float64(sh.Buckets) < 0.45*float64(as[0].Tables[0].Buckets) {
			return fmt.Errorf("shares %+v", as[0].Tables[0].Shares)
		}
		return nil
	})
	// The owner applies the table a moment after it commits.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		now, err := owner.Installed()
		if err == nil && now != "" && now != old {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner's kernel still holds the old tables (%v)", err)
		}
	}
	checkShares(t, l.split(3000), map[int]float64{1: 2, 2: 1, 3: 1})
	resets, moved := 0, map[int]int{}
	for _, c := range held {
		if err := c.ping(3 * time.Second); err != nil {
			if !isConnReset(err) {
				t.Errorf("held connection to n%d: %v", c.node, err)
			}
			resets++
			moved[c.node]++
		}
	}
	if resets > 0 {
		t.Errorf("weights 2:1:1 online: %d of %d held connections reset (by node of origin %v), want 0", resets, len(held), moved)
	}
	t.Logf("weights 2:1:1 online: %d of %d held connections reset; the owner holds %d exceptions", resets, len(held), l.exceptions(1))
}

// exceptions counts the flow exceptions host h's kernel holds (the
// elements of the kernel table's exception maps, x0, x1, …).
func (l *saLab) exceptions(h int) int {
	l.t.Helper()
	ns, err := netns.GetFromPath("/run/netns/" + l.lab.Namespace(h))
	if err != nil {
		l.t.Fatal(err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		l.t.Fatal(err)
	}
	tbl := &nftables.Table{Name: kernel.TableName, Family: nftables.TableFamilyIPv4}
	// The sets and their elements are read in two requests: a plan
	// applied between them replaces the sets, and the read starts again.
	var lastErr error
	for range 20 {
		sets, err := c.GetSets(tbl)
		if err != nil {
			return 0 // no table: no exception
		}
		n := 0
		for _, set := range sets {
			if !strings.HasPrefix(set.Name, "x") {
				continue
			}
			es, err := c.GetSetElements(set)
			if err != nil {
				lastErr = err
				n = -1
				break
			}
			n += len(es)
		}
		if n >= 0 {
			return n
		}
	}
	l.t.Fatalf("the exception maps of h%d: %v", h, lastErr)
	return 0
}

// A node that stops listening drains: n2 closes its listener while its
// held connections stay open; its share goes, new connections never reach
// it, the held ones keep working through exceptions to n2, and once they
// close the exceptions go.
func TestSharedAddrUnlistenDrains(t *testing.T) {
	l := newSALab(t, steadyMembership...)
	l.waitOneMAC(1, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var held []*saConn
	byNode := map[int]int{}
	for range 60 {
		c, err := l.dial(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		byNode[c.node]++
		defer c.c.Close()
	}
	if byNode[2] == 0 {
		t.Fatalf("no held connection reached n2 (%v)", byNode)
	}
	l.echo[2].ln.Close()
	waitAddrs(t, l.nodes, 10*time.Second, "n2 no longer listens", func(as []addrJSON) error {
		if len(as) != 1 || len(as[0].Listeners) != 2 || len(as[0].Tables) != 1 || len(as[0].Tables[0].Shares) != 2 {
			return fmt.Errorf("addresses %+v", as)
		}
		return nil
	})
	// The owner installs the new table with n2's held flows as
	// exceptions once every node has reported.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if n := l.exceptions(1); n >= byNode[2] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the owner holds %d exceptions, want n2's %d held flows", l.exceptions(1), byNode[2])
		}
	}
	if got := l.split(300); got[2] != 0 {
		t.Errorf("new connections reached n2, which no longer listens: %v", got)
	}
	for _, c := range held {
		if err := c.ping(3 * time.Second); err != nil {
			t.Errorf("held connection to n%d after n2 stopped listening: %v", c.node, err)
		}
	}
	// The table without n2 may move a few buckets between n1 and n3 too
	// (Maglev's small disruption): their held flows there are excepted
	// as well, and stay.
	total := l.exceptions(1)
	for _, c := range held {
		if c.node == 2 {
			c.c.Close()
		}
	}
	// At most: other excepted flows may go too (a connection in
	// TIME_WAIT that the walk excepted ends its exception when it ends).
	for deadline := time.Now().Add(15 * time.Second); l.exceptions(1) > total-byNode[2]; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the owner holds %d exceptions after n2's %d held connections closed, want at most %d", l.exceptions(1), byNode[2], total-byNode[2])
		}
	}
	for _, c := range held {
		if c.node != 2 {
			if err := c.ping(3 * time.Second); err != nil {
				t.Errorf("held connection to n%d: %v", c.node, err)
			}
		}
	}
	t.Logf("drain: %d held connections to n2 kept working and their exceptions went once closed (held %v, %d exceptions of n1 and n3 stay)", byNode[2], byNode, total-byNode[2])
}

// pinger is a connection from the client pinged every 20 ms until stop;
// it records the longest wait for an echo and the first error.
type pinger struct {
	c        *saConn
	ok       chan struct{} // buffered 1: a ping was answered
	done     chan struct{}
	stopped  chan struct{}
	mu       sync.Mutex // guards maxStall, err
	maxStall time.Duration
	err      error
}

func (l *saLab) streamTo(ctx context.Context, not int) *pinger {
	l.t.Helper()
	// The owner installs a new table a moment after the state has it,
	// and serves every flow itself meanwhile.
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		c, err := l.dial(ctx)
		if err != nil {
			l.t.Fatal(err)
		}
		if c.node == not {
			c.c.Close()
			continue
		}
		s := &pinger{c: c, ok: make(chan struct{}, 1), done: make(chan struct{}), stopped: make(chan struct{})}
		go s.run()
		l.t.Cleanup(s.stop)
		return s
	}
	l.t.Fatalf("no connection to a node other than n%d within 15 s", not)
	return nil
}

func (s *pinger) run() {
	defer close(s.stopped)
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		start := time.Now()
		err := s.c.ping(10 * time.Second)
		s.mu.Lock()
		s.maxStall = max(s.maxStall, time.Since(start))
		if err != nil && s.err == nil {
			s.err = err
		}
		s.mu.Unlock()
		if err != nil {
			return
		}
		select {
		case s.ok <- struct{}{}:
		default:
		}
	}
}

// answered waits up to within for a ping answered after the call.
func (s *pinger) answered(within time.Duration) bool {
	select {
	case <-s.ok: // may be from before the call
	default:
	}
	select {
	case <-s.ok:
		return true
	case <-s.stopped:
		return false
	case <-time.After(within):
		return false
	}
}

func (s *pinger) stop() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	<-s.stopped
	s.c.c.Close()
}

func (s *pinger) result() (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxStall, s.err
}

// failover is what the client saw after the owner's host died.
type failover struct {
	garp, synack time.Duration // from the kill to the first gratuitous ARP of another MAC, and to the first connection
	newOwner     int
}

// killHost takes host h off the wire and kill -9s its agent: a dead host,
// which can neither drop its address nor answer. Meanwhile the client
// starts a connection every 20 ms; killHost returns when one succeeded
// and a gratuitous ARP of another host was seen, or fails after within.
func (l *saLab) killHost(h int, within time.Duration) failover {
	l.t.Helper()
	return l.killWith(h, within, func() { l.nodes[h-1].kill() })
}

// killWith is killHost with kill stopping what runs on host h.
func (l *saLab) killWith(h int, within time.Duration, kill func()) failover {
	l.t.Helper()
	cap := l.capture()
	defer cap.stop()
	deadMAC := ""
	for mac, i := range l.macs {
		if i == h {
			deadMAC = mac
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var mu sync.Mutex // guards connected
	var connected time.Time
	got := make(chan struct{})
	var attempts sync.WaitGroup
	t0 := time.Now()
	l.lab.Cut(h)
	kill()
	l.echo[h].close()
	attempts.Add(1)
	go func() {
		defer attempts.Done()
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			attempts.Add(1)
			go func() {
				defer attempts.Done()
				actx, acancel := context.WithTimeout(ctx, 3*time.Second)
				defer acancel()
				var c net.Conn
				err := inNetns(l.lab.Namespace(l.client), func() (err error) {
					var d net.Dialer
					c, err = d.DialContext(actx, "tcp4", net.JoinHostPort(saVIP, strconv.Itoa(saPort)))
					return err
				})
				if err != nil {
					return
				}
				now := time.Now()
				c.Close()
				mu.Lock()
				if connected.IsZero() {
					connected = now
					close(got)
				}
				mu.Unlock()
			}()
			select {
			case <-ctx.Done():
				return
			case <-got:
				return
			case <-t.C:
			}
		}
	}()
	var r failover
	var garpAt time.Time
	ok := cap.wait(within, func(evs []arpEvent) bool {
		for _, e := range evs {
			if !e.reply && e.mac != deadMAC && e.at.After(t0) {
				garpAt, r.newOwner = e.at, l.macs[e.mac]
				return true
			}
		}
		return false
	})
	select {
	case <-got:
	case <-ctx.Done():
	}
	cancel()
	attempts.Wait()
	if !ok {
		l.t.Fatalf("no gratuitous ARP from another host within %v of killing h%d; ARP seen %+v", within, h, cap.events())
	}
	mu.Lock()
	defer mu.Unlock()
	if connected.IsZero() {
		l.t.Fatalf("no connection within %v of killing h%d", within, h)
	}
	r.garp, r.synack = garpAt.Sub(t0), connected.Sub(t0)
	return r
}

// kill -9 the owner's host: h4 sees a gratuitous ARP with the new owner's
// MAC, a new connection succeeds within 2 s, and a pinger to a surviving
// node continues without reset, stalled less than 1.5 s. The dead host's echo server is closed with
// it (off the wire, it can say nothing).
func TestSharedAddrKillOwner(t *testing.T) {
	l := newSALab(t)
	l.waitOneMAC(1, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := l.streamTo(ctx, 1)
	r := l.killHost(1, 10*time.Second)
	t.Logf("kill -9 of owner h1: gratuitous ARP of h%d after %v, first connection after %v", r.newOwner, r.garp, r.synack)
	if r.newOwner != 2 && r.newOwner != 3 {
		t.Fatalf("gratuitous ARP from host %d", r.newOwner)
	}
	if r.synack > 2*time.Second {
		t.Errorf("first new connection %v after the kill, want within 2 s", r.synack)
	}
	// The stream's pings are answered again.
	if !s.answered(10 * time.Second) {
		_, err := s.result()
		t.Fatalf("stream to n%d not answered after the failover: %v", s.c.node, err)
	}
	s.stop()
	stall, err := s.result()
	if err != nil {
		t.Fatalf("stream to n%d: %v (reset: %v)", s.c.node, err, isConnReset(err))
	}
	t.Logf("stream to n%d: longest stall %v, no reset", s.c.node, stall)
	if stall >= 1500*time.Millisecond {
		t.Errorf("stream to n%d stalled %v across the failover, want under 1.5 s", s.c.node, stall)
	}
	if as, _, err := l.nodes[r.newOwner-1].addrList(); err != nil || len(as) != 1 || as[0].Owner != uint64(r.newOwner) {
		t.Errorf("n%d lists %+v (%v), want itself owner", r.newOwner, as, err)
	}
	if got := l.arpAnswers(500 * time.Millisecond); len(got) != 1 || !got[r.newOwner] {
		t.Errorf("ARP answered by hosts %v after the failover, want h%d alone", got, r.newOwner)
	}
}

// holdsVIP reports, every 5 ms until stop, whether host h holds the
// address on eth0; dropped is when it first did not after start.
type vipWatch struct {
	stop    func()
	mu      sync.Mutex // guards dropped
	dropped time.Time
}

func (l *saLab) watchVIP(h int) *vipWatch {
	l.t.Helper()
	ns, err := netns.GetFromName(l.lab.Namespace(h))
	if err != nil {
		l.t.Fatal(err)
	}
	nl, err := netlink.NewHandleAt(ns)
	ns.Close()
	if err != nil {
		l.t.Fatal(err)
	}
	w := &vipWatch{}
	done, stopped := make(chan struct{}), make(chan struct{})
	w.stop = func() {
		select {
		case <-done:
		default:
			close(done)
		}
		<-stopped
		nl.Close()
	}
	vip := net.ParseIP(saVIP)
	go func() {
		defer close(stopped)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		for {
			link, err := nl.LinkByName("eth0")
			if err == nil {
				as, err := nl.AddrList(link, netlink.FAMILY_V4)
				if err == nil && !slices.ContainsFunc(as, func(a netlink.Addr) bool { return a.IP.Equal(vip) }) {
					w.mu.Lock()
					if w.dropped.IsZero() {
						w.dropped = time.Now()
					}
					w.mu.Unlock()
				}
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	l.t.Cleanup(w.stop)
	return w
}

func (w *vipWatch) droppedAt() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dropped
}

// The owner cut off from the majority drops the address (fencing) before
// the new owner announces it, so two hosts never hold it at once; after
// the heal the old owner, rejoining, never announces it or answers for
// it, and the owner stays.
func TestSharedAddrPartitionFence(t *testing.T) {
	l := newSALab(t)
	l.waitOneMAC(1, 10*time.Second)
	w := l.watchVIP(1)
	if !w.droppedAt().IsZero() {
		t.Fatal("h1 does not hold the address before the cut")
	}
	cap := l.capture()
	defer cap.stop()
	h1MAC := ""
	for mac, i := range l.macs {
		if i == 1 {
			h1MAC = mac
		}
	}
	t0 := time.Now()
	l.lab.Partition([]int{1}) // h1 alone; h2, h3 and the client together
	var announced time.Time
	newOwner := 0
	if !cap.wait(10*time.Second, func(evs []arpEvent) bool {
		for _, e := range evs {
			if !e.reply && e.mac != h1MAC && e.at.After(t0) {
				announced, newOwner = e.at, l.macs[e.mac]
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no gratuitous ARP from another host within 10 s of the cut")
	}
	dropped := time.Time{}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && dropped.IsZero(); {
		cap.wait(20*time.Millisecond, func([]arpEvent) bool { return false })
		dropped = w.droppedAt()
	}
	if dropped.IsZero() {
		t.Fatal("the cut-off owner h1 still holds the address")
	}
	t.Logf("partition of owner h1: it dropped the address %v after the cut, h%d announced it %v after (%v later)",
		dropped.Sub(t0), newOwner, announced.Sub(t0), announced.Sub(dropped))
	if !dropped.Before(announced) {
		t.Errorf("h1 dropped the address %v after h%d announced it: two hosts held it", dropped.Sub(announced), newOwner)
	}

	healed := time.Now()
	l.lab.Heal()
	waitAddrs(t, l.nodes, 30*time.Second, "h1 back as a listener, the new owner kept", func(as []addrJSON) error {
		if len(as) != 1 || as[0].Owner != uint64(newOwner) || len(as[0].Listeners) != 3 {
			return fmt.Errorf("addresses %+v", as)
		}
		return nil
	})
	if got := l.arpAnswers(500 * time.Millisecond); len(got) != 1 || !got[newOwner] {
		t.Errorf("ARP answered by hosts %v after the heal, want h%d alone", got, newOwner)
	}
	for _, e := range cap.events() {
		if e.at.After(healed) && e.mac == h1MAC {
			t.Errorf("h1 sent ARP for the address %v after the heal (reply %v)", e.at.Sub(healed), e.reply)
		}
		if e.at.After(t0) && e.mac != h1MAC && l.macs[e.mac] != newOwner {
			t.Errorf("h%d sent ARP for the address after the cut, owner is h%d", l.macs[e.mac], newOwner)
		}
	}
	t.Logf("after the heal: h%d alone answers ARP, h1 serves again and never announced", newOwner)
}

// TestSharedAddrVIPOwner: the machine owns saVIP by n1 in the lab's
// cluster, as the tests above assume (no agent needed).
func TestSharedAddrVIPOwner(t *testing.T) {
	m := ctl.NewMachine(nil, ctl.Options{TableSize: 251})
	tx := memTx{}
	v := &events.Membership{Instance: 1}
	for i := uint64(1); i <= 3; i++ {
		v.Members = append(v.Members, nodeevent.Node{ID: i, BornOn: i})
	}
	if _, err := m.ApplyView(tx, rsm.Entry{Index: 1}, v); err != nil {
		t.Fatal(err)
	}
	a := ctl.Addr{Stack: 1, IP: netip.MustParseAddr(saVIP)}
	if _, err := m.Apply(tx, rsm.Entry{Index: 2, Cmd: ctl.AppendCmd(nil, ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: ctl.Weighted})}); err != nil {
		t.Fatal(err)
	}
	if o, ok := m.Owner(a); !ok || o != 1 {
		t.Fatalf("owner of %v is %d; the lab's tests need n1 (pick another saVIP)", a, o)
	}
}

// memTx is an in-memory rsm.Tx.
type memTx map[string][]byte

func (t memTx) Get(k []byte) []byte { return t[string(k)] }
func (t memTx) Put(k, v []byte) error {
	t[string(k)] = slices.Clone(v)
	return nil
}
func (t memTx) Delete(k []byte) error {
	delete(t, string(k))
	return nil
}
func (t memTx) Scan(prefix []byte, fn func(k, v []byte) error) error {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if strings.HasPrefix(k, string(prefix)) {
			if err := fn([]byte(k), t[k]); err != nil {
				return err
			}
		}
	}
	return nil
}
