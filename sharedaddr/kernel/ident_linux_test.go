package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
	"golang.org/x/sys/unix"
)

// The fragmentation test's traffic: datagrams of identSize bytes (three
// fragments on the lab's 1500-byte links) from VIP to h5:identPort.
const (
	identSize   = 3000
	identPort   = 7000
	identWindow = 64 // datagrams a node may have in flight: under every queue's limit
	identRun    = 2 * time.Second
	identMax    = 20000 // datagrams per node and run at most
	// alive is how close in time two first fragments with one id must
	// reach h5 to count as datagrams alive together: the reassembly
	// timeout (net.ipv4.ipfrag_time), for which a datagram that lost a
	// fragment waits in h5's queue, and into which any later datagram
	// with its id is merged. On the lab's links the fragments of one
	// datagram arrive back to back, so the harm is rarely seen there;
	// on a real path it is.
	alive = 30 * time.Second
)

// identPayload is datagram seq of node: its node, its seq, and bytes
// that follow from both, so a datagram built of two nodes' fragments
// shows.
func identPayload(node int, seq uint32) []byte {
	b := make([]byte, identSize)
	b[0] = byte(node)
	binary.BigEndian.PutUint32(b[1:], seq)
	for i := 5; i < len(b); i++ {
		b[i] = byte(uint32(node)*131 + seq*7 + uint32(i))
	}
	return b
}

type firstFrag struct {
	node int
	seq  uint32
	id   uint16
	at   time.Time
}

// identResult is what h5 saw in one run.
type identResult struct {
	sent, got, corrupt [4]int // by node
	firsts             []firstFrag
	captureDrops       uint32
}

// crossNode counts the ids h5 saw from more than one node, and the
// pairs of first fragments from different nodes with one id that
// arrived within alive of each other.
func (r *identResult) crossNode() (ids, together int) {
	by := map[uint16][]firstFrag{}
	for _, f := range r.firsts {
		by[f.id] = append(by[f.id], f)
	}
	for _, fs := range by {
		multi := false
		for i, a := range fs {
			for _, b := range fs[i+1:] {
				if a.node == b.node {
					continue
				}
				multi = true
				if d := a.at.Sub(b.at); d < alive && d > -alive {
					together++
				}
			}
		}
		if multi {
			ids++
		}
	}
	return ids, together
}

func (r *identResult) String() string {
	ids, together := r.crossNode()
	s := fmt.Sprintf("first fragments %d (capture drops %d); ids from several nodes %d, pairs alive together %d;",
		len(r.firsts), r.captureDrops, ids, together)
	for i := 1; i <= 3; i++ {
		s += fmt.Sprintf(" h%d sent %d reassembled %d corrupt %d;", i, r.sent[i], r.got[i], r.corrupt[i])
	}
	return s
}

// identRun sends fragmentable datagrams from the VIP on h1–h3 to h5 at
// once for identRun, each node keeping identWindow in flight, and
// returns what h5 received: every first fragment (by a packet socket)
// and every datagram the stack reassembled.
func (l *lab) identRun(t *testing.T) *identResult {
	t.Helper()
	res := &identResult{}
	link, err := l.dp[server].nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	var pfd int
	var pc net.PacketConn
	if err := l.dp[server].in(func() (err error) {
		if pfd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_IP))); err != nil {
			return err
		}
		if err = unix.SetsockoptInt(pfd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
			return err
		}
		if err = unix.Bind(pfd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: link.Attrs().Index}); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", identPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pfd)
	defer pc.Close()
	if err := pc.(*net.UDPConn).SetReadBuffer(32 << 20); err != nil {
		t.Fatal(err)
	}
	raw, _ := pc.(*net.UDPConn).SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20) })

	var highest [4]atomic.Int64 // by node: the highest seq reassembled, -1 before any
	var notify [4]chan struct{}
	for i := range highest {
		highest[i].Store(-1)
		notify[i] = make(chan struct{}, 1)
	}
	var mu sync.Mutex // guards res.got, res.corrupt, res.firsts while the readers run
	var total atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() { // reassembled datagrams
		buf := make([]byte, 65536)
		for {
			pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				select {
				case <-stop:
					return
				default:
					continue
				}
			}
			node := int(buf[0])
			if n < 5 || node < 1 || node > 3 {
				continue
			}
			seq := binary.BigEndian.Uint32(buf[1:])
			mu.Lock()
			if n != identSize || !bytes.Equal(buf[:n], identPayload(node, seq)) {
				res.corrupt[node]++
			} else {
				res.got[node]++
			}
			mu.Unlock()
			total.Add(1)
			if int64(seq) > highest[node].Load() {
				highest[node].Store(int64(seq))
			}
			select {
			case notify[node] <- struct{}{}:
			default:
			}
		}
	})
	wg.Go(func() { // first fragments, as they arrive
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		unix.SetsockoptTimeval(pfd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		buf := make([]byte, 2048)
		for {
			n, _, err := unix.Recvfrom(pfd, buf, 0)
			if err != nil {
				select {
				case <-stop:
					return
				default:
					continue
				}
			}
			at := time.Now()
			if n < 20 || buf[0]>>4 != 4 || buf[9] != unix.IPPROTO_UDP {
				continue
			}
			ihl := int(buf[0]&0xf) * 4
			frag := binary.BigEndian.Uint16(buf[6:])
			if frag&0x1fff != 0 || n < ihl+13 || binary.BigEndian.Uint16(buf[ihl+2:]) != identPort ||
				netip.AddrFrom4([4]byte(buf[12:16])) != vip {
				continue
			}
			f := firstFrag{node: int(buf[ihl+8]), seq: binary.BigEndian.Uint32(buf[ihl+9:]), id: binary.BigEndian.Uint16(buf[4:]), at: at}
			mu.Lock()
			res.firsts = append(res.firsts, f)
			mu.Unlock()
		}
	})

	to := &net.UDPAddr{IP: net.ParseIP(l.lab.Addr(server)), Port: identPort}
	var sent [4]atomic.Int64
	var swg sync.WaitGroup
	start := make(chan struct{})
	for i := 1; i <= 3; i++ {
		var c net.PacketConn
		if err := l.dp[i].in(func() (err error) {
			c, err = net.ListenPacket("udp4", netip.AddrPortFrom(vip, uint16(identPort+i)).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raw, _ := c.(*net.UDPConn).SyscallConn()
		var serr error
		raw.Control(func(fd uintptr) {
			// DF clear: the datagram is fragmented here and its id matters.
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
		})
		if serr != nil {
			t.Fatal(serr)
		}
		swg.Go(func() {
			<-start
			end := time.Now().Add(identRun)
			for seq := uint32(0); seq < identMax && time.Now().Before(end); seq++ {
				// A window, so no queue on the path overflows; a lost
				// datagram costs one wait, not the run.
				for int64(seq)-highest[i].Load() > identWindow {
					select {
					case <-notify[i]:
						continue
					case <-time.After(200 * time.Millisecond):
					}
					break
				}
				if _, err := c.WriteTo(identPayload(i, seq), to); err != nil {
					t.Errorf("h%d send %d: %v", i, seq, err)
					return
				}
				sent[i].Add(1)
			}
		})
	}
	close(start)
	swg.Wait()
	want := sent[1].Load() + sent[2].Load() + sent[3].Load()
	// The tail: until every datagram is in, or none came for a second.
	for last, lastAt := total.Load(), time.Now(); total.Load() < want; {
		if n := total.Load(); n != last {
			last, lastAt = n, time.Now()
		} else if time.Since(lastAt) > time.Second {
			break
		}
		select {
		case <-notify[1]:
		case <-notify[2]:
		case <-notify[3]:
		case <-time.After(50 * time.Millisecond):
		}
	}
	close(stop)
	wg.Wait()
	for i := 1; i <= 3; i++ {
		res.sent[i] = int(sent[i].Load())
	}
	if st, err := unix.GetsockoptTpacketStats(pfd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
		res.captureDrops = st.Drops
	} else if !errors.Is(err, unix.ENOPROTOOPT) {
		t.Logf("packet statistics: %v", err)
	}
	return res
}

// TestIPIdent: h1–h3 hold the VIP (h1 owner, h2 and h3 on lo) and send
// fragmented UDP from it to h5 at once. With each node's ident block
// from ctl's leases, h5 never sees one id from two nodes, every id of a
// node is in its block and counts up, and every datagram reassembles
// intact. Two controls: the kernel's own ids (rule off), whose
// collisions are reported; and every node given the same block, which
// must collide.
func TestIPIdent(t *testing.T) {
	l := newLab(t, 5)
	run := func(name string, ident map[int]Ident) *identResult {
		t.Helper()
		l.ident = ident
		l.applyAll(1, even, nil, 1, 2, 3)
		r := l.identRun(t)
		t.Logf("%s: %v", name, r)
		return r
	}

	off := run("rule off", nil)
	offIDs, offTogether := off.crossNode()

	blocks := map[int]Ident{}
	for i := 1; i <= 3; i++ {
		first, last := ctl.Ident.Range(uint16(i - 1))
		blocks[i] = Ident{Base: uint16(first), Len: last - first + 1}
	}
	on := run("rule on", blocks)
	if ids, together := on.crossNode(); ids != 0 || together != 0 {
		t.Errorf("rule on: %d ids seen from several nodes (%d pairs alive together), want 0", ids, together)
	}
	var outside, jumps int
	for _, f := range on.firsts {
		b := blocks[f.node]
		if uint32(f.id) < uint32(b.Base) || uint32(f.id) >= uint32(b.Base)+b.Len {
			outside++
		}
		// numgen counts from 0 when the rule is made, one per datagram.
		if want := b.Base + uint16(f.seq%b.Len); f.id != want {
			jumps++
		}
	}
	if outside != 0 || jumps != 0 {
		t.Errorf("rule on: %d ids outside their node's block, %d not base + seq mod len", outside, jumps)
	}
	for i := 1; i <= 3; i++ {
		if on.sent[i] == 0 || on.got[i] != on.sent[i] || on.corrupt[i] != 0 {
			t.Errorf("rule on: h%d sent %d, %d reassembled intact, %d corrupt; want all intact", i, on.sent[i], on.got[i], on.corrupt[i])
		}
	}
	if n := on.sent[1] + on.sent[2] + on.sent[3]; len(on.firsts) < n*9/10 {
		t.Errorf("rule on: h5 captured %d first fragments of %d datagrams: the check saw too little", len(on.firsts), n)
	}

	same := map[int]Ident{1: blocks[1], 2: blocks[1], 3: blocks[1]}
	sr := run("one block for all", same)
	if ids, together := sr.crossNode(); ids == 0 || together == 0 {
		t.Errorf("one block for all: %d ids from several nodes, %d pairs alive together; want collisions", ids, together)
	}
	t.Logf("rule off: %d ids from several nodes, %d pairs alive together", offIDs, offTogether)

	// Drop takes the rule with the table: ids are the kernel's again.
	if err := l.dp[2].Drop(t.Context()); err != nil {
		t.Fatal(err)
	}
	c, err := l.dp[2].nftConn()
	if err != nil {
		t.Fatal(err)
	}
	tabs, err := c.ListTablesOfFamily(table.Family)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tabs {
		if tb.Name == TableName {
			t.Errorf("after Drop h2 still holds table %s", TableName)
		}
	}
}

// TestIPIdentOwnFragments: a datagram a sender cut into fragments itself
// (a raw socket, the case Hooks.IPIdent serves) keeps its id through the
// rule, so h5 reassembles it.
func TestIPIdentOwnFragments(t *testing.T) {
	l := newLab(t, 5)
	first, last := ctl.Ident.Range(1)
	l.ident = map[int]Ident{2: {Base: uint16(first), Len: last - first + 1}}
	l.applyAll(1, even, nil, 1, 2, 3)
	var pc net.PacketConn
	if err := l.dp[server].in(func() (err error) { pc, err = net.ListenPacket("udp4", ":7100"); return err }); err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var fd int
	if err := l.dp[2].in(func() (err error) {
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	const id = 0xbeef // outside h2's block: the rule would have replaced it
	data := identPayload(2, 1)[:1992]
	udp := binary.BigEndian.AppendUint16(nil, 7101)
	udp = binary.BigEndian.AppendUint16(udp, 7100)
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(data)))
	udp = append(udp, 0, 0) // no checksum (IPv4 allows it)
	udp = append(udp, data...)
	dst := netip.MustParseAddr(l.lab.Addr(server)).As4()
	to := &unix.SockaddrInet4{Addr: dst}
	for _, part := range []struct {
		off  int
		more bool
	}{{0, true}, {1480, false}} {
		body := udp[part.off:min(len(udp), part.off+1480)]
		h := make([]byte, 20, 20+len(body))
		h[0], h[8], h[9] = 0x45, 64, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(body)))
		binary.BigEndian.PutUint16(h[4:], id)
		frag := uint16(part.off / 8)
		if part.more {
			frag |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:], frag)
		v := vip.As4()
		copy(h[12:], v[:])
		copy(h[16:], dst[:])
		if err := unix.Sendto(fd, append(h, body...), 0, to); err != nil {
			t.Fatal(err)
		}
	}
	pc.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4096)
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("h5 reassembled no datagram from h2's own fragments: %v", err)
	}
	if !bytes.Equal(buf[:n], data) {
		t.Errorf("h5 reassembled %d bytes, not the %d sent", n, len(data))
	}
}
