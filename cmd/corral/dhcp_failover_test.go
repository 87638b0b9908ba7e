package main

// DHCP failover on the cluster module with real processes: hosts 1-3 of
// a netlab lab each run an agent and `corral dhcp serve` next to it,
// every server owning a part of one network's records and knowing the
// others as [cluster] peers; hosts 4 and 5 are ISC dhclient clients.
// Needs root and isc-dhcp-client (.ci/run installs it).

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
)

// foLab is the failover lab: three nodes of agent and server, clients
// on the other hosts.
type foLab struct {
	t     *testing.T
	lab   *netlab.Lab
	nodes []*node
	ds    *dsvcEnv // the tools, through node 1's agent (then any survivor's)
	dir   string
	srvs  []*exec.Cmd // the servers, by node index
	logs  []*syncBuf
	cfgs  []string
}

// foPools: the records each node's server owns in dhcpNet.
var foPools = map[int][]string{
	1: {"10.251.0.100", "10.251.0.101", "10.251.0.102", "10.251.0.103"},
	2: {"10.251.0.110", "10.251.0.111", "10.251.0.112", "10.251.0.113"},
	3: {"10.251.0.120", "10.251.0.121", "10.251.0.122", "10.251.0.123"},
}

// newFoLab starts the agents (removing a member 2 s after its links
// go), fills the store, and starts a server on each node. pools gives
// each node's records; lease is the network's lease time in seconds.
func newFoLab(t *testing.T, hosts int, pools map[int][]string, lease int, reads string) *foLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: the failover lab runs in network namespaces, which need root (CI runs as root)")
	}
	if _, err := exec.LookPath("dhclient"); err != nil {
		t.Skip("skipped: dhclient is not installed (Debian isc-dhcp-client; .ci/run installs it)")
	}
	lab := netlab.New(t, hosts)
	var addrs []string
	for i := 1; i <= 3; i++ {
		addrs = append(addrs, lab.Addr(i)+":7946")
	}
	nodes := nodesAt(t, addrs, func(i int, args []string) *exec.Cmd { return lab.Command(i, binary, args...) },
		"--remove-after", "2s")
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	waitDsvc(t, nodes[0])
	root := t.TempDir()
	d := &foLab{t: t, lab: lab, nodes: nodes, dir: root,
		ds: &dsvcEnv{t: t, module: "cluster", path: "/dsvc", lockDir: filepath.Join(root, "locks"), data: nodes[0].dir}}
	for i := 4; i <= hosts; i++ {
		d.must(i, "ip", "addr", "flush", "dev", "eth0") // clients start without an address
	}
	d.ds.ok("dhtadm", "-C")
	d.ds.ok("dhtadm", "-A", "-m", dhcpNet, "-d", fmt.Sprintf(":Subnet=255.255.255.0:Router=%s:LeaseTim=%d:", dhcpRouter, lease))
	d.ds.ok("pntadm", "-C", dhcpNet+"/24")
	for n := 1; n <= 3; n++ {
		for _, ip := range pools[n] {
			d.ds.ok("pntadm", "-A", ip, "-s", lab.Addr(n), dhcpNet)
		}
	}
	var peers strings.Builder
	for n := 1; n <= 3; n++ {
		fmt.Fprintf(&peers, "\n[[cluster.peer]]\nnode = %d\nowners = [%q]\n", n, lab.Addr(n))
	}
	for i, nd := range nodes {
		cfg := filepath.Join(root, fmt.Sprintf("dhcp%d.toml", i+1))
		writeFile(t, cfg, fmt.Sprintf(`listen = ":67"
owners = [%q]
http = "127.0.0.1:9167"
offer_ttl = "5s"
sockets = 1

[datastore]
module = "cluster"
location = "/dsvc"
config = "data-dir=%s,reads=%s"

[[network]]
prefix = "%s/24"
interface = "eth0"
%s`, lab.Addr(i+1), nd.dir, reads, dhcpNet, peers.String()))
		d.cfgs = append(d.cfgs, cfg)
		d.logs = append(d.logs, &syncBuf{})
		d.srvs = append(d.srvs, nil)
		d.startServer(i)
	}
	t.Cleanup(func() {
		for i, s := range d.srvs {
			if s != nil {
				s.Process.Signal(syscall.SIGTERM)
				s.Wait()
			}
			if t.Failed() {
				t.Logf("server %d log:\n%s", i+1, d.logs[i].String())
			}
		}
	})
	for i := range nodes {
		d.waitStats(i, "the first view", func(r dhcpReport) bool { return r.View.Live == 3 })
	}
	return d
}

func (d *foLab) must(i int, name string, args ...string) string {
	d.t.Helper()
	out, err := d.lab.Command(i, name, args...).CombinedOutput()
	if err != nil {
		d.t.Fatalf("host %d: %s %v: %v\n%s", i, name, args, err, out)
	}
	return string(out)
}

func (d *foLab) startServer(i int) {
	d.t.Helper()
	srv := d.lab.Command(i+1, binary, "dhcp", "serve", "--config", d.cfgs[i], "--log-level", "debug")
	srv.Stdout, srv.Stderr = d.logs[i], d.logs[i]
	if err := srv.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.srvs[i] = srv
}

// kill ends node i's server and agent with SIGKILL: the node is gone.
func (d *foLab) kill(i int) {
	d.t.Helper()
	if s := d.srvs[i]; s != nil {
		s.Process.Kill()
		s.Wait()
		d.srvs[i] = nil
	}
	d.nodes[i].kill()
}

// dhcpReport is what corral dhcp stats --json says of a server.
type dhcpReport struct {
	Received  map[string]uint64
	Sent      map[string]uint64
	Commits   uint64
	Takeovers uint64
	View      struct {
		Instance uint64
		Adopted  []string
		Live     int
		Index    int
	}
}

// stats runs corral dhcp stats in node i's namespace (its /stats is on
// that namespace's loopback).
func (d *foLab) stats(i int) (dhcpReport, error) {
	out, err := d.lab.Command(i+1, binary, "dhcp", "stats", "--config", d.cfgs[i], "--json").Output()
	if err != nil {
		return dhcpReport{}, fmt.Errorf("dhcp stats: %v: %s", err, out)
	}
	var r dhcpReport
	if err := json.Unmarshal(out, &r); err != nil {
		return dhcpReport{}, fmt.Errorf("dhcp stats: %v: %s", err, out)
	}
	return r, nil
}

func (d *foLab) waitStats(i int, what string, cond func(dhcpReport) bool) dhcpReport {
	d.t.Helper()
	var r dhcpReport
	eventually(d.t, 30*time.Second, fmt.Sprintf("server %d: %s", i+1, what), func() error {
		var err error
		if r, err = d.stats(i); err != nil {
			return err
		}
		if !cond(r) {
			return fmt.Errorf("report %+v", r)
		}
		return nil
	})
	return r
}

// foClient is ISC dhclient on one host, in the foreground (-d), so its
// log is the test's: it tries once (-1) and, bound, keeps renewing.
type foClient struct {
	d    *foLab
	h    int
	args []string
	ev   hookLog
	out  *syncBuf
	cmd  *exec.Cmd
	exit chan error
}

// dhclient makes host h's client; timeout is how long -1 tries before it
// gives up. Retransmissions are at most 2 s apart (backoff-cutoff), so a
// short test lease still sees RENEW at T1 and REBIND after T2 (the
// default backoff, from 10 s and doubling, skips past them).
func (d *foLab) dhclient(h, timeout int) *foClient {
	dir := filepath.Join(d.dir, fmt.Sprintf("client%d", h))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		d.t.Fatal(err)
	}
	conf := filepath.Join(dir, "dhclient.conf")
	writeFile(d.t, conf, fmt.Sprintf("request subnet-mask, routers;\ntimeout %d;\ninitial-interval 1;\nbackoff-cutoff 2;\n", timeout))
	script := filepath.Join(dir, "dhclient.sh")
	c := &foClient{d: d, h: h, out: &syncBuf{},
		ev:   scriptVars(d.t, script, filepath.Join(dir, "events"), "$reason", dhclientVars, dhclientConfigure),
		args: []string{"-d", "-1", "-v", "-cf", conf, "-sf", script, "-lf", filepath.Join(dir, "leases"), "-pf", filepath.Join(dir, "pid"), "eth0"}}
	d.t.Cleanup(func() {
		c.stop()
		if d.t.Failed() {
			d.t.Logf("dhclient on host %d:\n%s", h, c.out.String())
		}
	})
	return c
}

func (c *foClient) start() {
	c.d.t.Helper()
	c.cmd = c.d.lab.Command(c.h, "dhclient", c.args...)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		c.d.t.Fatal(err)
	}
	c.exit = make(chan error, 1)
	go func(cmd *exec.Cmd, ch chan error) { ch <- cmd.Wait() }(c.cmd, c.exit)
}

func (c *foClient) stop() {
	if c.cmd != nil {
		c.cmd.Process.Kill()
		<-c.exit
		c.cmd = nil
	}
}

// sharer is the node whose server takes over ip of a departed node
// among the live ones (dhcp/server takeover.go: address mod live, in
// node id order).
func sharer(ip string, live []int) int {
	a := netip.MustParseAddr(ip).As4()
	slices.Sort(live)
	return live[int(uint32(a[0])<<24|uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3]))%len(live)]
}

// kill -9 the node that granted a client's lease: the client, unable to
// renew with it, rebinds by broadcast, and the survivor whose share the
// address is extends it: same address, no acknowledged lease lost, the
// record still the dead node's.
func TestDhcpFailoverKill(t *testing.T) {
	const lease = 24 // T1 12 s, T2 21 s
	d := newFoLab(t, 4, foPools, lease, "linearizable")
	cl := d.dhclient(4, 20)
	cl.start()
	ev := cl.ev
	bound, n := ev.wait(t, 0, "BOUND")
	ip, sid := bound["new_ip_address"], bound["new_dhcp_server_identifier"]
	victim := slices.IndexFunc(d.nodes, func(nd *node) bool { return d.lab.Addr(nd.id) == sid })
	if victim < 0 {
		t.Fatalf("bound by %s, not one of the nodes: %v", sid, bound)
	}
	cid := "01" + strings.ReplaceAll(strings.TrimSpace(d.must(4, "cat", "/sys/class/net/eth0/address")), ":", "")
	first := d.boundRecord(ip, cid)
	if first.ServerIP != sid {
		t.Fatalf("record %s owned by %s, ACKed by %s", ip, first.ServerIP, sid)
	}

	d.kill(victim)
	var live []int
	for i, nd := range d.nodes {
		if i != victim {
			live = append(live, nd.id)
			d.ds.data = nd.dir
		}
	}
	want := sharer(ip, live)
	d.waitStats(want-1, "the view without the killed node", func(r dhcpReport) bool {
		return r.View.Live == 2 && slices.Contains(r.View.Adopted, sid)
	})

	// The REQUESTs unicast to the dead server from T1 go unanswered;
	// after T2 they are broadcast and the sharer answers. (dhclient
	// 4.4 tells its script RENEW for that ACK too: the state it began the
	// renewal in.)
	got, _ := ev.wait(t, n+1, "RENEW", "REBIND", "EXPIRE", "FAIL", "BOUND")
	if (got["event"] != "REBIND" && got["event"] != "RENEW") || got["new_ip_address"] != ip {
		t.Fatalf("after the kill: %s %s, want the lease of %s extended: %v", got["event"], got["new_ip_address"], ip, got)
	}
	if s := got["new_dhcp_server_identifier"]; s != d.lab.Addr(want) {
		t.Errorf("rebound by %s, the address is %s's share", s, d.lab.Addr(want))
	}
	again := d.boundRecord(ip, cid)
	if again.Lease <= first.Lease {
		t.Errorf("the rebind did not extend the lease: %d, then %d", first.Lease, again.Lease)
	}
	if again.ServerIP != sid {
		t.Errorf("record %s moved to %s: it stays the dead node's %s", ip, again.ServerIP, sid)
	}
	if r, err := d.stats(want - 1); err != nil || r.Takeovers == 0 {
		t.Errorf("sharer's takeovers %d (%v), want at least 1", r.Takeovers, err)
	}
	text := d.must(want, binary, "dhcp", "stats", "--config", d.cfgs[want-1])
	if !regexp.MustCompile(`(?m)^taken over +`+regexp.QuoteMeta(sid)+` `).MatchString(text) || !strings.Contains(text, "2 live, share") {
		t.Errorf("dhcp stats on the sharer does not show the takeover of %s:\n%s", sid, text)
	}
}

// boundRecord requires ip bound to cid in the store and returns it.
func (d *foLab) boundRecord(ip, cid string) dnJSON {
	d.t.Helper()
	for _, r := range d.ds.dn(dhcpNet) {
		if r.ClientIP == ip {
			if !strings.EqualFold(r.ClientID, cid) || r.Lease == 0 {
				d.t.Fatalf("record %s: %+v, want it bound to %s", ip, r, cid)
			}
			return r
		}
	}
	d.t.Fatalf("no record of %s", ip)
	return dnJSON{}
}

// A node cut off from the others with a client of its own: it still
// reads its replica (reads=local) and offers its addresses, but cannot
// commit without a majority, so it ACKs nothing, while the majority,
// having removed it, leases its addresses to a client on the other side.
// No address is leased twice; after the heal the node's client gets
// another one.
func TestDhcpFailoverPartition(t *testing.T) {
	const victim = 2 // node 3: not the founder, whose tools' agent we keep
	// Only the victim's records are free: both sides can only hand out
	// those two addresses.
	pools := map[int][]string{3: {"10.251.0.120", "10.251.0.121"}}
	d := newFoLab(t, 5, pools, 600, "local")
	before, err := d.stats(victim)
	if err != nil {
		t.Fatal(err)
	}
	d.lab.Partition([]int{3, 5}) // node 3 and client host 5 on one side
	defer d.lab.Heal()
	for _, i := range []int{0, 1} {
		d.waitStats(i, "node 3's addresses taken over", func(r dhcpReport) bool {
			return r.View.Live == 2 && slices.Contains(r.View.Adopted, d.lab.Addr(3))
		})
	}

	majority, minority := d.dhclient(4, 20), d.dhclient(5, 20)
	evB := minority.ev
	minority.start()
	majority.start()
	a, _ := majority.ev.wait(t, 0, "BOUND")
	ipA := a["new_ip_address"]
	if !slices.Contains(pools[3], ipA) || a["new_dhcp_server_identifier"] == d.lab.Addr(3) {
		t.Fatalf("majority client bound %s by %s: %v", ipA, a["new_dhcp_server_identifier"], a)
	}
	// The cut-off node hears its client ask again and again (its
	// workers are not held by the commits that cannot finish).
	d.waitStats(victim, "its client's REQUESTs", func(r dhcpReport) bool {
		return r.Received["REQUEST"] >= before.Received["REQUEST"]+4
	})
	minority.stop()
	for _, e := range evB.all() {
		if e["event"] == "BOUND" {
			t.Fatalf("minority client bound: %v", e)
		}
	}
	after, err := d.stats(victim)
	if err != nil {
		t.Fatal(err)
	}
	if after.Commits != before.Commits {
		t.Errorf("the cut-off node committed %d leases", after.Commits-before.Commits)
	}
	// It heard its client and offered from its replica, but ACKed nothing.
	if after.Sent["OFFER"] == before.Sent["OFFER"] || after.Received["REQUEST"] == before.Received["REQUEST"] {
		t.Errorf("the cut-off node offered %d and was asked %d times: the test did not exercise it",
			after.Sent["OFFER"]-before.Sent["OFFER"], after.Received["REQUEST"]-before.Received["REQUEST"])
	}
	if after.Sent["ACK"] != before.Sent["ACK"] {
		t.Errorf("the cut-off node sent %d ACKs", after.Sent["ACK"]-before.Sent["ACK"])
	}

	d.lab.Heal()
	for _, nd := range d.nodes {
		nd.waitView(ids(d.nodes), 60*time.Second)
	}
	d.waitStats(victim, "back in the view", func(r dhcpReport) bool { return r.View.Live == 3 && len(r.View.Adopted) == 0 })
	minority.start()
	b, _ := evB.wait(t, 0, "BOUND")
	ipB := b["new_ip_address"]
	if ipB == ipA || !slices.Contains(pools[3], ipB) {
		t.Fatalf("after the heal the second client bound %s; the first holds %s", ipB, ipA)
	}
	// Back in the view, node 3 owns its records again: it is the one
	// that leases the other.
	if sid := b["new_dhcp_server_identifier"]; sid != d.lab.Addr(3) {
		t.Errorf("after the heal %s was leased by %s, not by its owner node 3", ipB, sid)
	}
	bound := 0
	for _, r := range d.ds.dn(dhcpNet) {
		if r.ClientID != "00" {
			bound++
			if r.ClientIP != ipA && r.ClientIP != ipB {
				t.Errorf("record %s bound to %s: no client was given it", r.ClientIP, r.ClientID)
			}
		}
	}
	if bound != 2 {
		t.Errorf("%d bound records, want 2", bound)
	}
}
