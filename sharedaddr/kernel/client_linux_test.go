package kernel

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// outside runs h5's servers: TCP :8080 greets with the client address it
// saw and echoes lines; UDP :5353 answers each datagram with the address
// it came from.
func (l *lab) outside() {
	ln, err := l.lab.Listen(server, "tcp4", ":8080")
	if err != nil {
		l.t.Fatal(err)
	}
	var pc net.PacketConn
	if err := l.dp[server].in(func() (err error) { pc, err = net.ListenPacket("udp4", ":5353"); return err }); err != nil {
		l.t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex // guards conns
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				fmt.Fprintf(c, "%s\n", c.RemoteAddr())
				r := bufio.NewReader(c)
				for {
					s, err := r.ReadString('\n')
					if err != nil {
						return
					}
					c.Write([]byte(s))
				}
			})
		}
	})
	wg.Go(func() {
		buf := make([]byte, 512)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.String()), from)
		}
	})
	l.t.Cleanup(func() {
		ln.Close()
		pc.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
}

// dialOut opens a TCP connection from node i, source VIP:port, to h5.
func (l *lab) dialOut(ctx context.Context, i int, port uint16) (*conn, error) {
	var c net.Conn
	err := l.dp[i].in(func() (err error) {
		d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(vip, port))}
		c, err = d.DialContext(ctx, "tcp4", l.lab.Addr(server)+":8080")
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
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	return &conn{c: c, r: r, node: i, seen: s[:len(s)-1]}, nil
}

// udpOut sends one datagram from node i, source VIP:port, to h5 and
// returns h5's answer: the source it saw.
func (l *lab) udpOut(i int, port uint16) (string, error) {
	var pc net.PacketConn
	if err := l.dp[i].in(func() (err error) {
		pc, err = net.ListenPacket("udp4", netip.AddrPortFrom(vip, port).String())
		return err
	}); err != nil {
		return "", err
	}
	defer pc.Close()
	to, _ := net.ResolveUDPAddr("udp4", l.lab.Addr(server)+":5353")
	buf := make([]byte, 512)
	// A datagram may be lost while h5 resolves the VIP; ask again.
	for try := 0; try < 5; try++ {
		if _, err := pc.WriteTo([]byte("hello"), to); err != nil {
			return "", err
		}
		pc.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
	}
	return "", fmt.Errorf("no answer from h5 to VIP:%d", port)
}

// TestClientSide originates TCP and UDP from the VIP on all three nodes
// at once, each from its own slice of source ports: h5 sees the VIP and
// the port, and its replies, which reach the owner, are forwarded to the
// node that owns the port's slice. A flow from h3 then survives the
// owner's failover.
func TestClientSide(t *testing.T) {
	l := newLab(t, 5)
	ctx := context.Background()
	base := func(i int) uint16 { return uint16(40000 + 1000*(i-1)) }
	for i := 1; i <= 3; i++ {
		for _, proto := range []uint8{TCP, UDP} {
			l.slices = append(l.slices, Slice{Proto: proto, First: base(i), Last: base(i) + 999, Node: uint64(i)})
		}
	}
	l.applyAll(1, even, nil, 1, 2, 3)
	l.outside()

	var wg sync.WaitGroup
	var mu sync.Mutex // guards held
	var held []*conn
	for i := 1; i <= 3; i++ {
		wg.Go(func() {
			for k := range 5 {
				p := base(i) + uint16(k)
				c, err := l.dialOut(ctx, i, p)
				if err != nil {
					t.Errorf("h%d from VIP:%d: %v", i, p, err)
					continue
				}
				if want := netip.AddrPortFrom(vip, p).String(); c.seen != want {
					t.Errorf("h5 saw h%d's flow from %s, want %s", i, c.seen, want)
				}
				if err := c.ping(); err != nil {
					t.Errorf("h%d from VIP:%d: echo: %v", i, p, err)
				}
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
			p := base(i) + 500
			got, err := l.udpOut(i, p)
			if err != nil {
				t.Errorf("h%d udp: %v", i, err)
			} else if want := netip.AddrPortFrom(vip, p).String(); got != want {
				t.Errorf("h5 saw h%d's datagram from %s, want %s", i, got, want)
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, c := range held {
			c.c.Close()
		}
	}()
	if t.Failed() {
		return
	}
	// Control: a source port in no slice, with h2's snat rules (which
	// would map it into the slice) off: h5's SYN-ACK reaches the owner,
	// which has no socket for it, and the connection never opens. The
	// failover's Apply below rebuilds the table, rules included.
	nc, err := l.dp[2].nftConn()
	if err != nil {
		t.Fatal(err)
	}
	nc.FlushChain(snatCh)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	if c, err := l.dialOut(cctx, 2, 45000); err == nil {
		c.c.Close()
		t.Error("h2 connected from VIP:45000, in no slice; want a failure")
	}
	cancel()

	// Failover: h1 fences itself, h2 takes over with the same slices
	// less h1's; h3's flows to h5 keep going.
	if err := l.dp[1].Drop(ctx); err != nil {
		t.Fatal(err)
	}
	var kept []Slice
	for _, s := range l.slices {
		if s.Node != 1 {
			kept = append(kept, s)
		}
	}
	l.slices = kept
	l.applyAll(2, even[1:], nil, 3, 2)
	l.announceTo(ctx, t, 2, server)
	for _, c := range held {
		if c.node == 1 {
			continue
		}
		if err := c.ping(); err != nil {
			t.Errorf("h%d's flow from %v across the failover: %v", c.node, c.local(), err)
		}
	}
	if got, err := l.udpOut(3, base(3)+501); err != nil || got != netip.AddrPortFrom(vip, base(3)+501).String() {
		t.Errorf("h3 udp after failover: %q %v", got, err)
	}
}
