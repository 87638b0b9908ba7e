package server

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/dhcp/netio"
	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/binfiles"
	"github.com/corralhq/corral/dsvc/dsvctest"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// The test network: relayed from giaddr 127.0.1.1 (a loopback address the
// test client binds, as perfdhcp binds its own), served by servers on
// 127.0.0.1.
var (
	testNet   = netip.MustParsePrefix("127.0.1.0/24")
	testRelay = netip.MustParseAddr("127.0.1.1")
	ownerA    = netip.MustParseAddr("127.0.0.1")
	ownerB    = netip.MustParseAddr("127.0.0.2")
	otherSIP  = netip.MustParseAddr("127.0.0.9")
)

// testDHCPTab: a network macro with the router, a server macro (every
// record's Macro) with DNS, the lease and LeaseNeg.
var testDHCPTab = []dsvc.DTRecord{
	{Key: "127.0.1.0", Type: dsvc.DTMacro, Value: ":Subnet=255.255.255.0:Router=127.0.1.1:Broadcst=127.0.1.255:"},
	{Key: "srv", Type: dsvc.DTMacro, Value: `:LeaseTim=3600:LeaseNeg:DNSserv=10.9.9.9 10.9.9.8:DNSdmain="corral.example":`},
}

var modules = []string{files.Name, binfiles.Name}

// env is a datastore in a temp dir, a clock, and a test relay client.
type env struct {
	t      testing.TB
	reg    *dsvc.Registry
	ds     dsvc.Datastore
	h      *dsvc.Handle // the network container, for checks
	now    atomic.Int64 // unix seconds of the servers' clock
	client *client
	// tweak, if set, changes each server's Config before New.
	tweak func(*Config)
}

func newEnv(t testing.TB, module string) *env {
	t.Helper()
	reg, err := dsvc.NewRegistry(dsvc.Options{Locker: &dsvctest.MemLocker{}}, files.New(), binfiles.New(nil))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, reg: reg, ds: dsvc.Datastore{Module: module, Location: filepath.Join(t.TempDir(), "dsvc"), Version: dsvc.CurrentVersion}}
	e.now.Store(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC).Unix())
	ctx := context.Background()
	if err := reg.MkLocation(ctx, e.ds); err != nil {
		t.Fatal(err)
	}
	dt, err := reg.Open(ctx, e.ds, dsvc.DHCPTab, "dhcptab", dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range testDHCPTab {
		if err := dt.AddDT(ctx, &r); err != nil {
			t.Fatal(err)
		}
	}
	dt.Close()
	e.h, err = reg.Open(ctx, e.ds, dsvc.Network, testNet.String(), dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.h.Close() })
	e.client = newClient(t)
	return e
}

// add adds n free records from 127.0.1.<first>, owned by sip.
func (e *env) add(first, n int, sip netip.Addr, flags dsvc.DNFlags) {
	e.t.Helper()
	for i := range n {
		r := dsvc.DNRecord{CID: []byte{0}, Flags: flags, CIP: ipN(first + i), SIP: sip, Macro: "srv"}
		if err := e.h.AddDN(context.Background(), &r); err != nil {
			e.t.Fatal(err)
		}
	}
}

func ipN(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 1, byte(i)}) }

// rec reads the record of ip.
func (e *env) rec(ip netip.Addr) dsvc.DNRecord {
	e.t.Helper()
	rs, err := e.h.LookupDN(context.Background(), false, dsvc.Query(0).Eq(dsvc.DNQCIP), 1, &dsvc.DNRecord{CIP: ip})
	if err != nil || len(rs) != 1 {
		e.t.Fatalf("record %s: %v %v", ip, rs, err)
	}
	return rs[0]
}

func (e *env) all() []dsvc.DNRecord {
	e.t.Helper()
	rs, err := e.h.LookupDN(context.Background(), false, 0, -1, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return rs
}

func (e *env) advance(d time.Duration) { e.now.Add(int64(d / time.Second)) }

func (e *env) clock() time.Time { return time.Unix(e.now.Load(), 0) }

// server makes a server with owners, not yet serving.
func (e *env) server(owners ...netip.Addr) (*Server, Config) {
	e.t.Helper()
	return e.serverWith(nil, owners...)
}

// serverWith makes a server with owners and cfg changed by e.tweak, then
// by mod, not yet serving.
func (e *env) serverWith(mod func(*Config), owners ...netip.Addr) (*Server, Config) {
	e.t.Helper()
	cfg := Config{
		Listen:    "127.0.0.1:0",
		Sockets:   1,
		Workers:   8,
		Datastore: Datastore{Module: e.ds.Module, Location: e.ds.Location},
		Networks:  []Network{{Prefix: testNet.String()}},
		RelayPort: int(e.client.addr.Port()),
	}
	for _, o := range owners {
		cfg.Owners = append(cfg.Owners, o.String())
	}
	if e.tweak != nil {
		e.tweak(&cfg)
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(context.Background(), cfg, e.reg, Options{Now: e.clock})
	if err != nil {
		e.t.Fatal(err)
	}
	return s, cfg
}

// start runs a server with owners on 127.0.0.1:<free port>.
func (e *env) start(owners ...netip.Addr) (*Server, netip.AddrPort) {
	e.t.Helper()
	return e.startWith(nil, nil, owners...)
}

// startWith runs a server like start, with cfg changed by mod and the
// server changed by hook before it serves.
func (e *env) startWith(mod func(*Config), hook func(*Server), owners ...netip.Addr) (*Server, netip.AddrPort) {
	e.t.Helper()
	s, cfg := e.serverWith(mod, owners...)
	if hook != nil {
		hook(s)
	}
	ns, err := netio.Listen(cfg.NetConfig(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	s.WatchSockets(ns) // Report includes the socket layer's drops
	e.t.Cleanup(func() {
		if e.t.Failed() {
			r := s.Report()
			e.t.Logf("server %v at %s: %+v; drops %v", s.ownerList, ns.Addr(), r.Stats, r.Drops)
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ns.Serve(ctx, s.Handle) }()
	e.t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Error(err)
		}
		s.Close()
	})
	return s, ns.Addr()
}

// client is a DHCP relay as perfdhcp is one: it sends with giaddr set to
// its own address and hops 1, and receives the replies on its port.
type client struct {
	conn *net.UDPConn
	addr netip.AddrPort

	mu      sync.Mutex // guards waiters
	waiters map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	xid     atomic.Uint32
}

func newClient(t testing.TB) *client {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(testRelay, 0)))
	if err != nil {
		t.Fatal(err)
	}
	c := &client{conn: conn, addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), waiters: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, _, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			m, err := dhcpv4.FromBytes(buf[:n])
			if err != nil {
				continue
			}
			c.mu.Lock()
			ch := c.waiters[m.TransactionID]
			c.mu.Unlock()
			if ch != nil {
				select {
				case ch <- m:
				default:
				}
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	return c
}

// fake is one simulated client.
type fake struct {
	c     *client
	mac   net.HardwareAddr
	cid   []byte // option 61; nil: htype+chaddr
	ip    netip.Addr
	sid   netip.Addr
	secs  uint16
	lease uint32 // requested lease, 0 none
}

func (c *client) fake(i int) *fake {
	mac := net.HardwareAddr{0x02, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
	return &fake{c: c, mac: mac}
}

// CID is the client id the server stores.
func (f *fake) CID() []byte {
	if f.cid != nil {
		return f.cid
	}
	return append([]byte{1}, f.mac...)
}

func (f *fake) msg(mt dhcpv4.MessageType, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	var xid dhcpv4.TransactionID
	x := f.c.xid.Add(1)
	xid[0], xid[1], xid[2], xid[3] = byte(x>>24), byte(x>>16), byte(x>>8), byte(x)
	base := []dhcpv4.Modifier{
		dhcpv4.WithTransactionID(xid),
		dhcpv4.WithHwAddr(f.mac),
		dhcpv4.WithRelay(testRelay.AsSlice()),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName),
	}
	if mt != dhcpv4.MessageTypeNone {
		base = append(base, dhcpv4.WithMessageType(mt))
	}
	if f.cid != nil {
		base = append(base, dhcpv4.WithOption(dhcpv4.OptClientIdentifier(f.cid)))
	}
	m, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		panic(err)
	}
	m.NumSeconds = f.secs
	if mt == dhcpv4.MessageTypeNone {
		m.Options = dhcpv4.Options{}
	}
	return m
}

var errTimeout = errors.New("no reply")

// roundTrip sends m to every server and returns the first reply; with
// want > 1 it collects up to want replies within the timeout.
func (c *client) roundTrip(m *dhcpv4.DHCPv4, timeout time.Duration, want int, to ...netip.AddrPort) ([]*dhcpv4.DHCPv4, error) {
	ch := make(chan *dhcpv4.DHCPv4, 8)
	c.mu.Lock()
	c.waiters[m.TransactionID] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, m.TransactionID)
		c.mu.Unlock()
	}()
	b := m.ToBytes()
	for _, a := range to {
		if _, err := c.conn.WriteToUDPAddrPort(b, a); err != nil {
			return nil, err
		}
	}
	var got []*dhcpv4.DHCPv4
	deadline := time.After(timeout)
	for len(got) < want {
		select {
		case r := <-ch:
			got = append(got, r)
		case <-deadline:
			if len(got) == 0 {
				return nil, errTimeout
			}
			return got, nil
		}
	}
	return got, nil
}

const (
	replyWait   = 5 * time.Second        // an answer that must come
	silenceWait = 300 * time.Millisecond // how long silence is listened for
)

func (f *fake) one(t *testing.T, m *dhcpv4.DHCPv4, to netip.AddrPort) *dhcpv4.DHCPv4 {
	t.Helper()
	rs, err := f.c.roundTrip(m, replyWait, 1, to)
	if err != nil {
		t.Fatalf("%s from %s: %v", m.MessageType(), f.mac, err)
	}
	return rs[0]
}

func (f *fake) silent(t *testing.T, m *dhcpv4.DHCPv4, to ...netip.AddrPort) {
	t.Helper()
	if rs, err := f.c.roundTrip(m, silenceWait, 1, to...); err == nil {
		t.Fatalf("%s from %s: want no reply, got %s", m.MessageType(), f.mac, rs[0].Summary())
	}
}

// dora runs DISCOVER, REQUEST against one server; it returns the ACK.
func (f *fake) dora(to netip.AddrPort) (*dhcpv4.DHCPv4, error) {
	rs, err := f.c.roundTrip(f.discover(), replyWait, 1, to)
	if err != nil {
		return nil, err
	}
	off := rs[0]
	if off.MessageType() != dhcpv4.MessageTypeOffer {
		return nil, errors.New("not an offer: " + off.MessageType().String())
	}
	rs, err = f.c.roundTrip(f.selecting(off), replyWait, 1, to)
	if err != nil {
		return nil, err
	}
	ack := rs[0]
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		return nil, errors.New("not an ack: " + ack.MessageType().String())
	}
	f.ip = addr4(ack.YourIPAddr)
	f.sid = addr4(ack.ServerIdentifier())
	return ack, nil
}

func (f *fake) discover() *dhcpv4.DHCPv4 {
	var mods []dhcpv4.Modifier
	if f.lease > 0 {
		mods = append(mods, dhcpv4.WithLeaseTime(f.lease))
	}
	return f.msg(dhcpv4.MessageTypeDiscover, mods...)
}

func (f *fake) selecting(off *dhcpv4.DHCPv4) *dhcpv4.DHCPv4 {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(off.ServerIdentifier())),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(off.YourIPAddr)),
	}
	if f.lease > 0 {
		mods = append(mods, dhcpv4.WithLeaseTime(f.lease))
	}
	return f.msg(dhcpv4.MessageTypeRequest, mods...)
}

func (f *fake) renew() *dhcpv4.DHCPv4 {
	return f.msg(dhcpv4.MessageTypeRequest, dhcpv4.WithClientIP(f.ip.AsSlice()))
}

func (f *fake) initReboot(ip netip.Addr) *dhcpv4.DHCPv4 {
	return f.msg(dhcpv4.MessageTypeRequest, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip.AsSlice())))
}

func (f *fake) release() *dhcpv4.DHCPv4 {
	return f.msg(dhcpv4.MessageTypeRelease, dhcpv4.WithClientIP(f.ip.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(f.sid.AsSlice())))
}

func (f *fake) decline() *dhcpv4.DHCPv4 {
	return f.msg(dhcpv4.MessageTypeDecline, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(f.ip.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(f.sid.AsSlice())))
}

// waitFor polls cond until it holds or the deadline passes (RELEASE and
// DECLINE have no reply to wait on).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(replyWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
