package server

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

var ownerC = netip.MustParseAddr("127.0.0.3")

// peers3: nodes 1, 2 and 3 own ownerA, ownerB and ownerC.
func peers3(c *Config) {
	c.Cluster.Peers = []Peer{
		{Node: 1, Owners: []string{ownerA.String()}},
		{Node: 2, Owners: []string{ownerB.String()}},
		{Node: 3, Owners: []string{ownerC.String()}},
	}
}

// The survivors of a departed peer share its records by address (node
// order, address mod live peers): each allocates and answers for its
// share only, the record keeps its owner, and the lease is counted as a
// takeover.
func TestTakeoverShare(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		e.tweak = peers3
		e.add(30, 8, ownerC, 0) // .30-.37: node 3's
		// A live lease of node 3's on .31 (odd: node 2's share).
		f := e.client.fake(99)
		bound := dsvc.DNRecord{CID: f.CID(), CIP: ipN(31), SIP: ownerC, Lease: uint32(e.now.Load() + 3600), Macro: "srv"}
		old := e.rec(ipN(31))
		if err := e.h.ModifyDN(t.Context(), &old, &bound); err != nil {
			t.Fatal(err)
		}
		a, srvA := e.start(ownerA)
		b, srvB := e.start(ownerB)
		for _, s := range []*Server{a, b} {
			s.SetView(5, []uint64{1, 2, 3})
		}
		g := e.client.fake(1)
		g.silent(t, g.discover(), srvA, srvB) // nothing is theirs while node 3 is in the view
		f.ip = ipN(31)
		f.silent(t, f.renew(), srvB)

		for _, s := range []*Server{a, b} {
			s.SetView(6, []uint64{1, 2}) // node 3 left
		}
		if v := a.CurrentView(); v.Instance != 6 || v.Live != 2 || v.Index != 0 || len(v.Adopted) != 1 || v.Adopted[0] != ownerC.String() {
			t.Fatalf("A's view %+v", v)
		}
		got := map[netip.Addr]netip.Addr{} // address → server id
		for i, srv := range []netip.AddrPort{srvA, srvA, srvA, srvA, srvB, srvB, srvB} {
			c := e.client.fake(10 + i)
			ack, err := c.dora(srv)
			if err != nil {
				t.Fatalf("client %d at %s: %v", i, srv, err)
			}
			got[c.ip] = addr4(ack.ServerIdentifier())
		}
		for ip, sid := range got {
			a4 := ip.As4()
			if want := map[byte]netip.Addr{0: ownerA, 1: ownerB}[a4[3]%2]; sid != want {
				t.Errorf("%s leased by %s, its share is %s's", ip, sid, want)
			}
			if r := e.rec(ip); r.SIP != ownerC {
				t.Errorf("%s: SIP %s, the record must stay node 3's", ip, r.SIP)
			}
		}
		if len(got) != 7 {
			t.Fatalf("leases %v", got)
		}
		// The shares are used up: .30 .32 .34 .36 by A, .33 .35 .37 by B.
		g.silent(t, g.discover(), srvA, srvB)

		// Node 3's client renews on its share's server at once, the other
		// leaves it (secs 0).
		f.silent(t, f.renew(), srvA)
		ack := f.one(t, f.renew(), srvB)
		if ack.MessageType() != dhcpv4.MessageTypeAck || addr4(ack.YourIPAddr) != ipN(31) || addr4(ack.ServerIdentifier()) != ownerB {
			t.Fatalf("renewal on B: %s", ack.Summary())
		}
		if r := e.rec(ipN(31)); r.SIP != ownerC || string(r.CID) != string(f.CID()) {
			t.Fatalf("renewed record %+v", r)
		}
		if ra, rb := a.Report().Takeovers, b.Report().Takeovers; ra != 4 || rb != 4 {
			t.Errorf("takeovers A %d B %d, want 4 and 4 (B: 3 new leases and the renewal)", ra, rb)
		}
	})
}

// A returning peer owns its records again as soon as the survivors see
// the view with it: they stop offering them, and leave its clients'
// renewals to it.
func TestTakeoverReturn(t *testing.T) {
	e := newEnv(t, modules[0])
	e.tweak = peers3
	e.add(30, 4, ownerC, 0)
	a, srvA := e.start(ownerA)
	a.SetView(6, []uint64{1, 2})
	f := e.client.fake(1)
	if _, err := f.dora(srvA); err != nil {
		t.Fatal(err)
	}
	if f.ip != ipN(30) {
		t.Fatalf("leased %s, want .30 (even: A's share)", f.ip)
	}
	g := e.client.fake(2)
	off := f1(t, g, srvA) // an offer outstanding when node 3 returns
	a.SetView(7, []uint64{1, 2, 3})
	if a.nets[0].offers.len() != 0 {
		t.Fatal("the view change kept offers of node 3's records")
	}
	g.silent(t, g.selecting(off), srvA)
	h := e.client.fake(3)
	h.silent(t, h.discover(), srvA)
	f.silent(t, f.renew(), srvA) // left to node 3, the owner again
	// Node 3's own server answers the client A leased it to.
	c, srvC := e.start(ownerC)
	c.SetView(7, []uint64{1, 2, 3})
	ack := f.one(t, f.renew(), srvC)
	if ack.MessageType() != dhcpv4.MessageTypeAck || addr4(ack.YourIPAddr) != ipN(30) {
		t.Fatalf("renewal on node 3: %s", ack.Summary())
	}
	if c.Report().Takeovers != 0 {
		t.Errorf("node 3 counted its own record as a takeover")
	}
	// An older view arriving late changes nothing.
	a.SetView(6, []uint64{1, 2})
	if v := a.CurrentView(); v.Instance != 7 || len(v.Adopted) != 0 {
		t.Fatalf("a late view applied: %+v", v)
	}
}

// A server whose own node is not in the view takes nothing over: it may
// be the one cut off.
func TestTakeoverNotInView(t *testing.T) {
	e := newEnv(t, modules[0])
	e.tweak = peers3
	e.add(30, 4, ownerC, 0)
	a, srvA := e.start(ownerA)
	a.SetView(8, []uint64{2})
	f := e.client.fake(1)
	f.silent(t, f.discover(), srvA)
	if v := a.CurrentView(); len(v.Adopted) != 0 || v.Live != 0 {
		t.Fatalf("view %+v", v)
	}
	a.SetView(9, []uint64{1, 2})
	if _, err := f.dora(srvA); err != nil {
		t.Fatalf("back in the view: %v", err)
	}
	a.ClearView()
	g := e.client.fake(2)
	g.silent(t, g.discover(), srvA)
}

func TestClusterConfigErrors(t *testing.T) {
	const base = "[datastore]\nlocation = \"/x\"\n[[network]]\nprefix = \"10.0.0.0/24\"\n"
	for _, tc := range []struct{ name, toml, want string }{
		{"no node", "[[cluster.peer]]\nowners = [\"10.0.0.1\"]\n", "node is required"},
		{"node twice", "[[cluster.peer]]\nnode = 1\nowners = [\"10.0.0.1\"]\n[[cluster.peer]]\nnode = 1\nowners = [\"10.0.0.2\"]\n", "node 1 twice"},
		{"no owners", "[[cluster.peer]]\nnode = 1\n", "no owners"},
		{"bad owner", "[[cluster.peer]]\nnode = 1\nowners = [\"x\"]\n", "owner \"x\""},
		{"owner twice", "[[cluster.peer]]\nnode = 1\nowners = [\"10.0.0.1\"]\n[[cluster.peer]]\nnode = 2\nowners = [\"10.0.0.1\"]\n", "on nodes 1 and 2"},
		{"unknown key", "[cluster]\npeers = 3\n", "cluster.peers"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(base + tc.toml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one naming %q", err, tc.want)
			}
		})
	}
	// This server must be one of the peers.
	e := newEnv(t, modules[0])
	cfg := Config{Listen: "127.0.0.1:0", Owners: []string{"127.0.0.7"}, Datastore: Datastore{Module: e.ds.Module, Location: e.ds.Location},
		Networks: []Network{{Prefix: testNet.String()}}}
	peers3(&cfg)
	if _, err := New(t.Context(), cfg, e.reg, Options{}); err == nil || !strings.Contains(err.Error(), "no peer has this server's owners") {
		t.Fatalf("New: %v", err)
	}
	c := Config{Datastore: Datastore{Config: "reads=local, data-dir=/var/lib/corral"}}
	if got := c.AgentPath(); got != "/var/lib/corral" {
		t.Fatalf("AgentPath %q", got)
	}
	c.Cluster.Agent = "/run/a.sock"
	if got := c.AgentPath(); got != "/run/a.sock" {
		t.Fatalf("AgentPath %q", got)
	}
}
