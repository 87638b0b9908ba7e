package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/dhcp/netio"
	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/files"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

func forModules(t *testing.T, f func(t *testing.T, e *env)) {
	for _, m := range modules {
		t.Run(m, func(t *testing.T) {
			t.Parallel()
			f(t, newEnv(t, m))
		})
	}
}

func u32(t *testing.T, m *dhcpv4.DHCPv4, c dhcpv4.OptionCode) uint32 {
	t.Helper()
	v := m.Options.Get(c)
	if len(v) != 4 {
		t.Fatalf("option %s: %x", c, v)
	}
	return binary.BigEndian.Uint32(v)
}

func TestDORA(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		e.add(10, 5, ownerA, 0)
		_, srv := e.start(ownerA)
		f := e.client.fake(1)
		ack, err := f.dora(srv)
		if err != nil {
			t.Fatal(err)
		}
		// The record was written before the ACK left.
		r := e.rec(f.ip)
		if !bytes.Equal(r.CID, f.CID()) || int64(r.Lease) != e.now.Load()+3600 {
			t.Fatalf("record %+v: want cid %x lease now+3600", r, f.CID())
		}
		if f.ip != ipN(10) || f.sid != ownerA {
			t.Fatalf("ip %s sid %s", f.ip, f.sid)
		}
		if got := ack.Router(); len(got) != 1 || !got[0].Equal(net.IPv4(127, 0, 1, 1)) {
			t.Errorf("router %v", got)
		}
		if got := ack.DNS(); len(got) != 2 || !got[0].Equal(net.IPv4(10, 9, 9, 9)) {
			t.Errorf("dns %v", got)
		}
		if ack.DomainName() != "corral.example" {
			t.Errorf("domain %q", ack.DomainName())
		}
		if ack.SubnetMask().String() != "ffffff00" {
			t.Errorf("mask %v", ack.SubnetMask())
		}
		if l, t1, t2 := u32(t, ack, dhcpv4.OptionIPAddressLeaseTime), u32(t, ack, dhcpv4.OptionRenewTimeValue), u32(t, ack, dhcpv4.OptionRebindingTimeValue); l != 3600 || t1 != 1800 || t2 != 3150 {
			t.Errorf("lease %d T1 %d T2 %d", l, t1, t2)
		}
		if !addr4(ack.GatewayIPAddr).IsValid() || addr4(ack.GatewayIPAddr) != testRelay {
			t.Errorf("giaddr %v", ack.GatewayIPAddr)
		}

		// Renew: the lease runs from the renewal.
		e.advance(1000 * time.Second)
		rn := f.one(t, f.renew(), srv)
		if rn.MessageType() != dhcpv4.MessageTypeAck || addr4(rn.YourIPAddr) != f.ip {
			t.Fatalf("renew: %s", rn.Summary())
		}
		if r := e.rec(f.ip); int64(r.Lease) != e.now.Load()+3600 {
			t.Fatalf("renewed lease %d, want %d", r.Lease, e.now.Load()+3600)
		}

		// Release frees the record.
		f.silent(t, f.release(), srv)
		waitFor(t, "release", func() bool { r := e.rec(f.ip); return len(r.CID) == 1 && r.CID[0] == 0 && r.Lease == 0 })
	})
}

func TestLeaseNeg(t *testing.T) {
	e := newEnv(t, modules[0])
	e.add(10, 2, ownerA, 0)
	_, srv := e.start(ownerA)
	f := e.client.fake(1)
	f.lease = 600
	ack, err := f.dora(srv)
	if err != nil {
		t.Fatal(err)
	}
	if l := u32(t, ack, dhcpv4.OptionIPAddressLeaseTime); l != 600 {
		t.Fatalf("lease %d, want the requested 600", l)
	}
	g := e.client.fake(2)
	g.lease = 7200 // more than LeaseTim: capped
	if ack, err = g.dora(srv); err != nil {
		t.Fatal(err)
	}
	if l := u32(t, ack, dhcpv4.OptionIPAddressLeaseTime); l != 3600 {
		t.Fatalf("lease %d, want LeaseTim 3600", l)
	}
}

func TestDecline(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		e.add(10, 3, ownerA, 0)
		_, srv := e.start(ownerA)
		f := e.client.fake(1)
		if _, err := f.dora(srv); err != nil {
			t.Fatal(err)
		}
		bad := f.ip
		f.silent(t, f.decline(), srv)
		waitFor(t, "decline", func() bool { return e.rec(bad).Flags&dsvc.DNUnusable != 0 })
		if r := e.rec(bad); !bytes.Equal(r.CID, f.CID()) {
			t.Errorf("declined record lost its client id: %+v", r)
		}
		// The client discovers again and gets another address.
		if _, err := f.dora(srv); err != nil {
			t.Fatal(err)
		}
		if f.ip == bad {
			t.Fatalf("declined %s offered again", bad)
		}
	})
}

// A broadcast reaches every SO_REUSEPORT socket: only socket 0's copy is
// answered, so a DECLINE (or a DISCOVER) is handled once, not once per
// socket.
func TestBroadcastCopiesIgnored(t *testing.T) {
	e := newEnv(t, files.Name)
	e.add(10, 3, ownerA, 0)
	s, srv := e.start(ownerA)
	f := e.client.fake(1)
	if _, err := f.dora(srv); err != nil {
		t.Fatal(err)
	}
	decline := f.decline().ToBytes()
	for _, dst := range []string{"255.255.255.255", "127.0.1.255"} {
		s.Handle(context.Background(), &netio.Packet{Data: decline, Dst: netip.MustParseAddr(dst), Socket: 1}, netio.Reply{})
	}
	if r := e.rec(f.ip); r.Flags&dsvc.DNUnusable != 0 {
		t.Fatalf("a copy of a broadcast on socket 1 was handled: %+v", r)
	}
	if st := s.Stats(); st.Duplicates != 2 || st.Declines != 0 {
		t.Fatalf("duplicates %d, declines %d; want 2, 0", st.Duplicates, st.Declines)
	}
	// Socket 0's copy, and a unicast on any socket, are answered.
	s.Handle(context.Background(), &netio.Packet{Data: decline, Dst: netip.MustParseAddr("255.255.255.255"), Socket: 0}, netio.Reply{})
	if r := e.rec(f.ip); r.Flags&dsvc.DNUnusable == 0 {
		t.Fatalf("socket 0's copy was not handled: %+v", r)
	}
	if !s.broadcast(netip.MustParseAddr("127.0.1.255")) || s.broadcast(netip.MustParseAddr("127.0.1.1")) || s.broadcast(netip.Addr{}) {
		t.Fatal("broadcast: wrong classification")
	}
}

// A specific listen address hears no broadcast: a network with an
// interface (local, broadcasting clients) gets a warning saying so.
func TestSpecificListenWarns(t *testing.T) {
	e := newEnv(t, files.Name)
	for _, tc := range []struct {
		listen string
		warn   bool
	}{{"127.0.0.1:0", true}, {":0", false}} {
		var buf bytes.Buffer
		cfg := Config{
			Listen:    tc.listen,
			Owners:    []string{ownerA.String()},
			Datastore: Datastore{Module: e.ds.Module, Location: e.ds.Location},
			Networks:  []Network{{Prefix: testNet.String(), Interface: "lo"}},
		}
		s, err := New(context.Background(), cfg, e.reg, Options{Log: slog.New(slog.NewTextHandler(&buf, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got := strings.Contains(buf.String(), "broadcasting clients on this network are not heard"); got != tc.warn {
			t.Errorf("listen %s: warned %v, want %v: %s", tc.listen, got, tc.warn, buf.String())
		}
	}
}

// A request with ciaddr belongs to ciaddr's network whatever interface it
// came in on: a relayed client renews by unicast straight to the server.
func TestNetworkOfCiaddr(t *testing.T) {
	e := newEnv(t, files.Name)
	other := netip.MustParsePrefix("127.0.2.0/24")
	h, err := e.reg.Open(context.Background(), e.ds, dsvc.Network, other.String(), dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	cfg := Config{
		Listen:    ":0",
		Owners:    []string{ownerA.String()},
		Datastore: Datastore{Module: e.ds.Module, Location: e.ds.Location},
		Networks:  []Network{{Prefix: testNet.String(), Interface: "lo"}, {Prefix: other.String()}},
	}
	s, err := New(context.Background(), cfg, e.reg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ ciaddr, want string }{
		{"127.0.2.5", other.String()},   // a relayed client renewing
		{"0.0.0.0", testNet.String()},   // no address: the interface's
		{"10.9.9.9", testNet.String()},  // an address of no served network
		{"127.0.1.7", testNet.String()}, // the interface's own network
	} {
		m, err := dhcpv4.NewDiscovery(net.HardwareAddr{2, 0, 0, 0, 0, 1}, dhcpv4.WithClientIP(net.ParseIP(tc.ciaddr)))
		if err != nil {
			t.Fatal(err)
		}
		got := "none"
		if n := s.networkOf(m, &netio.Packet{IfIndex: lo.Index}); n != nil {
			got = n.prefix.String()
		}
		if got != tc.want {
			t.Errorf("ciaddr %s on lo: network %s, want %s", tc.ciaddr, got, tc.want)
		}
	}
}

func TestInitReboot(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		e.add(10, 3, ownerA, 0)
		_, srv := e.start(ownerA)
		f := e.client.fake(1)
		if _, err := f.dora(srv); err != nil {
			t.Fatal(err)
		}
		// The address it had: ACK.
		if r := f.one(t, f.initReboot(f.ip), srv); r.MessageType() != dhcpv4.MessageTypeAck || addr4(r.YourIPAddr) != f.ip {
			t.Fatalf("init-reboot, right address: %s", r.Summary())
		}
		// Another address: NAK, with the broadcast flag for the relay.
		r := f.one(t, f.initReboot(ipN(12)), srv)
		if r.MessageType() != dhcpv4.MessageTypeNak || !r.IsBroadcast() || !strings.Contains(r.Message(), "Incorrect") {
			t.Fatalf("init-reboot, wrong address: %s", r.Summary())
		}
		// Off the network: NAK.
		if r := f.one(t, f.initReboot(netip.MustParseAddr("10.1.2.3")), srv); r.MessageType() != dhcpv4.MessageTypeNak {
			t.Fatalf("init-reboot, wrong network: %s", r.Summary())
		}
		// Expired: NAK.
		e.advance(2 * time.Hour)
		if r := f.one(t, f.initReboot(f.ip), srv); r.MessageType() != dhcpv4.MessageTypeNak || !strings.Contains(r.Message(), "expired") {
			t.Fatalf("init-reboot, expired: %s", r.Summary())
		}
		// A client the store does not know: silence.
		g := e.client.fake(2)
		g.silent(t, g.initReboot(ipN(11)), srv)
	})
}

func TestOfferCache(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		e.add(10, 2, ownerA, 0)
		_, srv := e.start(ownerA)
		a, b, c := e.client.fake(1), e.client.fake(2), e.client.fake(3)
		oa := f1(t, a, srv)
		ob := f1(t, b, srv)
		if addr4(oa.YourIPAddr) == addr4(ob.YourIPAddr) {
			t.Fatalf("%s offered to two clients", addr4(oa.YourIPAddr))
		}
		// a asks again: the same offer.
		if again := f1(t, a, srv); addr4(again.YourIPAddr) != addr4(oa.YourIPAddr) {
			t.Fatalf("second offer %s, first %s", addr4(again.YourIPAddr), addr4(oa.YourIPAddr))
		}
		// Both addresses are offered: a third client gets nothing.
		c.silent(t, c.discover(), srv)
		// The offers do not write.
		for _, r := range e.all() {
			if len(r.CID) != 1 || r.CID[0] != 0 {
				t.Fatalf("an offer wrote %+v", r)
			}
		}
		// After the TTL the address is free for another client.
		e.advance(11 * time.Second)
		if oc := f1(t, c, srv); oc.MessageType() != dhcpv4.MessageTypeOffer {
			t.Fatalf("after the TTL: %s", oc.Summary())
		}
	})
}

func f1(t *testing.T, f *fake, srv netip.AddrPort) *dhcpv4.DHCPv4 {
	t.Helper()
	r := f.one(t, f.discover(), srv)
	if r.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("not an offer: %s", r.Summary())
	}
	return r
}

func TestSelectingOtherServer(t *testing.T) {
	e := newEnv(t, modules[0])
	e.add(10, 2, ownerA, 0)
	s, srv := e.start(ownerA)
	f := e.client.fake(1)
	off := f1(t, f, srv)
	req := f.msg(dhcpv4.MessageTypeRequest,
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(otherSIP.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(off.YourIPAddr)))
	f.silent(t, req, srv)
	waitFor(t, "offer dropped", func() bool { return s.nets[0].offers.len() == 0 })
	if r := e.rec(addr4(off.YourIPAddr)); len(r.CID) != 1 {
		t.Fatalf("written: %+v", r)
	}
}

func TestOtherOwner(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		e.add(10, 5, otherSIP, 0)
		e.add(20, 1, ownerA, dsvc.DNManual)
		e.add(21, 1, ownerA, dsvc.DNUnusable)
		e.add(22, 1, ownerA, dsvc.DNBootpOnly)
		e.add(30, 2, ownerA, 0)
		_, srv := e.start(ownerA)
		got := map[netip.Addr]bool{}
		for i := range 2 {
			f := e.client.fake(i)
			if _, err := f.dora(srv); err != nil {
				t.Fatal(err)
			}
			got[f.ip] = true
		}
		if !got[ipN(30)] || !got[ipN(31)] {
			t.Fatalf("allocated %v, want 127.0.1.30 and .31", got)
		}
		// Nothing else is ours to give.
		f := e.client.fake(9)
		f.silent(t, f.discover(), srv)
	})
}

func TestBindingOwnedElsewhere(t *testing.T) {
	e := newEnv(t, modules[0])
	e.add(10, 2, ownerA, 0)
	f := e.client.fake(1)
	// f holds a live lease from another server.
	r := dsvc.DNRecord{CID: f.CID(), CIP: ipN(50), SIP: otherSIP, Lease: uint32(e.now.Load() + 3600)}
	if err := e.h.AddDN(t.Context(), &r); err != nil {
		t.Fatal(err)
	}
	_, srv := e.start(ownerA)
	f.silent(t, f.discover(), srv)
	f.silent(t, f.initReboot(ipN(50)), srv)
	// A renewal is left to the owner until secs reaches the secondary
	// server timeout.
	f.ip = ipN(50)
	f.silent(t, f.renew(), srv)
	f.secs = 20
	ack := f.one(t, f.renew(), srv)
	if ack.MessageType() != dhcpv4.MessageTypeAck || addr4(ack.YourIPAddr) != ipN(50) {
		t.Fatalf("rebind after the timeout: %s", ack.Summary())
	}
	if r := e.rec(ipN(50)); r.SIP != otherSIP || int64(r.Lease) != e.now.Load()+3600 {
		t.Fatalf("record %+v", r)
	}
}

func TestManualBinding(t *testing.T) {
	e := newEnv(t, modules[0])
	e.add(10, 2, ownerA, 0)
	f := e.client.fake(1)
	r := dsvc.DNRecord{CID: f.CID(), Flags: dsvc.DNManual, CIP: ipN(99), SIP: ownerA, Macro: "srv"}
	if err := e.h.AddDN(t.Context(), &r); err != nil {
		t.Fatal(err)
	}
	_, srv := e.start(ownerA)
	if _, err := f.dora(srv); err != nil {
		t.Fatal(err)
	}
	if f.ip != ipN(99) {
		t.Fatalf("got %s, want the manual binding 127.0.1.99", f.ip)
	}
}

func TestInform(t *testing.T) {
	e := newEnv(t, modules[0])
	_, srv := e.start(ownerA)
	f := e.client.fake(1)
	m := f.msg(dhcpv4.MessageTypeInform, dhcpv4.WithClientIP(net.IPv4(127, 0, 1, 200)))
	r := f.one(t, m, srv)
	if r.MessageType() != dhcpv4.MessageTypeAck || !r.YourIPAddr.IsUnspecified() || len(r.Router()) != 1 {
		t.Fatalf("inform: %s", r.Summary())
	}
	if r.Options.Has(dhcpv4.OptionIPAddressLeaseTime) {
		t.Fatal("inform ACK carries a lease")
	}
}

func TestBOOTP(t *testing.T) {
	e := newEnv(t, modules[0])
	e.add(10, 2, ownerA, 0)
	e.add(40, 1, ownerA, dsvc.DNBootpOnly)
	_, srv := e.start(ownerA)
	f := e.client.fake(1)
	r := f.one(t, f.msg(dhcpv4.MessageTypeNone), srv)
	if r.MessageType() != dhcpv4.MessageTypeNone || addr4(r.YourIPAddr) != ipN(40) {
		t.Fatalf("bootp: %s", r.Summary())
	}
	if rec := e.rec(ipN(40)); rec.Lease != dsvc.LeasePermanent || !bytes.Equal(rec.CID, f.CID()) {
		t.Fatalf("record %+v", rec)
	}
	// Again: the same binding.
	if r := f.one(t, f.msg(dhcpv4.MessageTypeNone), srv); addr4(r.YourIPAddr) != ipN(40) {
		t.Fatalf("second bootp: %s", r.Summary())
	}
}

// TestConcurrentClients: 200 clients at once get 200 distinct addresses,
// and the store says the same.
func TestConcurrentClients(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		const n = 200
		e.add(2, 250, ownerA, 0)
		_, srv := e.start(ownerA)
		checkMany(t, e, n, []netip.AddrPort{srv})
	})
}

// TestTwoServersOneStore: two servers on one files location, each owning
// half of the network, never give one address to two clients.
func TestTwoServersOneStore(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		const n = 120
		e.add(2, 70, ownerA, 0)
		e.add(72, 70, ownerB, 0)
		_, a := e.start(ownerA)
		_, b := e.start(ownerB)
		byOwner := checkMany(t, e, n, []netip.AddrPort{a, b})
		if byOwner[ownerA] == 0 || byOwner[ownerB] == 0 {
			t.Errorf("leases by owner %v: each server owns too few for all the clients, both must serve", byOwner)
		}
	})
}

// checkMany runs n clients' DORA at once against srvs (each client sends
// to every server and takes the first offer, as a broadcast client does)
// and checks that the replies and the store agree and no address is
// held twice. It returns the leases per owner.
func checkMany(t *testing.T, e *env, n int, srvs []netip.AddrPort) map[netip.Addr]int {
	t.Helper()
	type got struct {
		ip, sid netip.Addr
		cid     []byte
		err     error
	}
	res := make([]got, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			f := e.client.fake(1000 + i)
			// A client retries as a real one does, and time passes for
			// the servers meanwhile. It must: an offer made to a client
			// that has already chosen the other server (its DISCOVER
			// handled after its REQUEST, which netio serves first) is
			// dropped by nothing but its TTL, and the servers' clock is
			// the test's.
			for attempt := 0; attempt < 12; attempt++ {
				if attempt > 0 {
					e.advance(DefaultOfferTTL + time.Second) // past every offer made so far
				}
				rs, err := f.c.roundTrip(f.discover(), replyWait, 1, srvs...)
				if err != nil {
					res[i].err = err
					continue
				}
				off := rs[0]
				rs, err = f.c.roundTrip(f.selecting(off), replyWait, 1, srvs...)
				if err != nil {
					res[i].err = err
					continue // the commit lost a race: discover again
				}
				if rs[0].MessageType() != dhcpv4.MessageTypeAck {
					res[i].err = errTimeout
					continue
				}
				res[i] = got{ip: addr4(rs[0].YourIPAddr), sid: addr4(rs[0].ServerIdentifier()), cid: f.CID()}
				return
			}
		})
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	byOwner := map[netip.Addr]int{}
	for i, g := range res {
		if g.err != nil {
			t.Fatalf("client %d: %v", i, g.err)
		}
		if j, dup := seen[g.ip]; dup {
			t.Fatalf("%s ACKed to clients %d and %d", g.ip, j, i)
		}
		seen[g.ip] = i
		byOwner[g.sid]++
	}
	stored := 0
	for _, r := range e.all() {
		if len(r.CID) == 1 && r.CID[0] == 0 {
			continue
		}
		stored++
		i, ok := seen[r.CIP]
		if !ok || !bytes.Equal(res[i].cid, r.CID) {
			t.Fatalf("store has %s for %x, the clients disagree", r.CIP, r.CID)
		}
		if res[i].sid != r.SIP {
			t.Fatalf("%s owned by %s ACKed by %s", r.CIP, r.SIP, res[i].sid)
		}
	}
	if stored != n {
		t.Fatalf("%d bound records, want %d", stored, n)
	}
	return byOwner
}

func TestConfigExample(t *testing.T) {
	b, err := os.ReadFile("testdata/example.toml")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != ":67" || c.OfferTTL.Duration != 10*time.Second || c.SecondaryServerTimeout.Duration != 20*time.Second ||
		len(c.Networks) != 2 || c.Networks[1].ServerID != "10.0.0.1" || c.Datastore.Module != "files" || c.ClientPort != 68 || c.RelayPort != 67 {
		t.Fatalf("%+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct{ name, toml, want string }{
		{"unknown key", "listen = \":67\"\nlisten_addr = \"x\"\n[datastore]\nlocation = \"/x\"\n[[network]]\nprefix = \"10.0.0.0/24\"\n", "listen_addr"},
		{"unknown nested key", "[datastore]\nlocation = \"/x\"\nmodul = \"files\"\n[[network]]\nprefix = \"10.0.0.0/24\"\n", "datastore.modul"},
		{"no location", "[[network]]\nprefix = \"10.0.0.0/24\"\n", "location"},
		{"no network", "[datastore]\nlocation = \"/x\"\n", "network"},
		{"host bits", "[datastore]\nlocation = \"/x\"\n[[network]]\nprefix = \"10.0.0.1/24\"\n", "prefix"},
		{"bad owner", "owners = [\"x\"]\n[datastore]\nlocation = \"/x\"\n[[network]]\nprefix = \"10.0.0.0/24\"\n", "owner"},
		{"bad duration", "offer_ttl = \"ten\"\n[datastore]\nlocation = \"/x\"\n[[network]]\nprefix = \"10.0.0.0/24\"\n", "ten"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
}
