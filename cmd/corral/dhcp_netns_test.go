package main

// Real DHCP clients (busybox udhcpc, ISC dhclient) against `corral dhcp
// serve` in network namespaces: host 1 of a netlab lab is the server,
// host 2 the client (its lab address removed), host 3 a squatter for the
// decline test or the router with ISC dhcrelay for the relayed one. Needs
// root and the Debian packages busybox, isc-dhcp-client, isc-dhcp-relay
// and dhcping (.ci/run installs them). More client states are in
// dhcp_states_netns_test.go.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/internal/netlab"
)

const (
	dhcpNet    = "10.251.0.0" // netlab.Subnet's container
	dhcpServer = "10.251.0.1" // lab host 1
	dhcpRouter = "10.251.0.254"
	dhcpDNS    = "10.251.0.53"
	dhcpDomain = "lab.corral.example"
	dhcpLease  = 600
)

// The relayed network: a second segment between host 3 (the router,
// relayRouter on its eth1) and host 2's eth1.
const (
	relayNet    = "10.252.0.0"
	relayRouter = "10.252.0.1"
)

// dhcpPool and relayPool are the addresses the server may hand out.
var (
	dhcpPool  = []string{"10.251.0.100", "10.251.0.101", "10.251.0.102", "10.251.0.103"}
	relayPool = []string{"10.252.0.100", "10.252.0.101"}
)

// dhcpLab is a lab with a server on host 1 over a files datastore.
type dhcpLab struct {
	t   *testing.T
	lab *netlab.Lab
	ds  *dsvcEnv
	dir string
	log *syncBuf // the server's stderr
	srv *exec.Cmd
}

// newDhcpLab builds the lab and the datastore and starts the server. It
// skips without root or without the client named by need.
func newDhcpLab(t *testing.T, need ...string) *dhcpLab {
	t.Helper()
	return newDhcpLabWith(t, "", need...)
}

// newDhcpLabWith is newDhcpLab with extra top-level keys in the server's
// configuration.
func newDhcpLabWith(t *testing.T, extraConfig string, need ...string) *dhcpLab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: real DHCP clients run in network namespaces, which need root")
	}
	for _, c := range need {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("skipped: %s is not installed (Debian: busybox for udhcpc, isc-dhcp-client for dhclient, isc-dhcp-relay for dhcrelay, dhcping; .ci/run installs them)", c)
		}
	}
	if netlab.Subnet != dhcpNet+"/24" {
		t.Fatalf("netlab.Subnet is %s; this test serves %s/24", netlab.Subnet, dhcpNet)
	}
	// Two sockets on the port (SO_REUSEPORT), as on any multi-core host:
	// every broadcast reaches both.
	d := &dhcpLab{t: t, lab: netlab.New(t, 3), ds: newDsvcEnv(t, "files"), dir: t.TempDir(), log: &syncBuf{}}
	// The client starts without an address, as a real one does.
	d.must(2, "ip", "addr", "flush", "dev", "eth0")

	d.ds.ok("pntadm", "-C", dhcpNet+"/24")
	for _, ip := range dhcpPool {
		d.ds.ok("pntadm", "-A", ip, "-s", dhcpServer, "-m", "srv", dhcpNet)
	}
	d.ds.ok("dhtadm", "-C")
	d.ds.ok("dhtadm", "-A", "-m", dhcpNet, "-d",
		fmt.Sprintf(":Subnet=255.255.255.0:Router=%s:Broadcst=10.251.0.255:", dhcpRouter))
	// The relayed network, behind host 3 (TestDhcpRelayed).
	d.ds.ok("pntadm", "-C", relayNet+"/24")
	for _, ip := range relayPool {
		d.ds.ok("pntadm", "-A", ip, "-s", dhcpServer, "-m", "srv", relayNet)
	}
	d.ds.ok("dhtadm", "-A", "-m", relayNet, "-d", fmt.Sprintf(":Subnet=255.255.255.0:Router=%s:", relayRouter))
	d.ds.ok("dhtadm", "-A", "-m", "srv", "-d",
		fmt.Sprintf(":LeaseTim=%d:DNSserv=%s:DNSdmain=%q:", dhcpLease, dhcpDNS, dhcpDomain))

	cfg := filepath.Join(d.dir, "dhcp.toml")
	writeFile(t, cfg, fmt.Sprintf(`listen = ":67"
owners = [%q]
lock_dir = %q
offer_ttl = "5s"
sockets = 2
%s
[datastore]
module = "files"
location = %q

[[network]]
prefix = "%s/24"
interface = "eth0"

[[network]]
prefix = "%s/24"
`, dhcpServer, d.ds.lockDir, extraConfig, d.ds.path, dhcpNet, relayNet))
	srv := d.lab.Command(1, binary, "dhcp", "serve", "--config", cfg, "--log-level", "debug")
	srv.Stdout, srv.Stderr = d.log, d.log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	d.srv = srv
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		srv.Wait()
		if t.Failed() {
			t.Logf("server log:\n%s", d.log.String())
		}
	})
	eventually(t, 10*time.Second, "the server serving", func() error {
		if strings.Contains(d.log.String(), "serving") {
			return nil
		}
		return fmt.Errorf("log so far: %s", d.log.String())
	})
	return d
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
}

// must runs a command in host i.
func (d *dhcpLab) must(i int, name string, args ...string) string {
	d.t.Helper()
	out, err := d.lab.Command(i, name, args...).CombinedOutput()
	if err != nil {
		d.t.Fatalf("host %d: %s %v: %v\n%s", i, name, args, err, out)
	}
	return string(out)
}

// mac is the hardware address of host i's interface dev (default eth0)
// as hex, no colons.
func (d *dhcpLab) mac(i int, dev ...string) string {
	d.t.Helper()
	ifname := "eth0"
	if len(dev) > 0 {
		ifname = dev[0]
	}
	return strings.ReplaceAll(strings.TrimSpace(d.must(i, "cat", "/sys/class/net/"+ifname+"/address")), ":", "")
}

// record is the store's record of ip.
func (d *dhcpLab) record(ip string) dnJSON {
	d.t.Helper()
	network := dhcpNet
	if strings.HasPrefix(ip, "10.252.") {
		network = relayNet
	}
	for _, r := range d.ds.dn(network) {
		if r.ClientIP == ip {
			return r
		}
	}
	d.t.Fatalf("no record of %s in %s", ip, network)
	return dnJSON{}
}

// checkBound requires the store to hold ip for client id cid with about
// the configured lease from now.
func (d *dhcpLab) checkBound(ip, cid string) dnJSON {
	d.t.Helper()
	return d.checkLease(ip, cid, dhcpLease)
}

// checkLease requires the store to hold ip for client id cid with about
// lease seconds from now.
func (d *dhcpLab) checkLease(ip, cid string, lease int64) dnJSON {
	d.t.Helper()
	r := d.record(ip)
	if !strings.EqualFold(r.ClientID, cid) {
		d.t.Errorf("record %s: client id %s, want %s", ip, r.ClientID, cid)
	}
	now := time.Now().Unix()
	if exp := int64(r.Lease); exp < now+lease-min(lease/2, 30) || exp > now+lease+5 {
		d.t.Errorf("record %s: lease expires at %d, want about now (%d) + %d", ip, exp, now, lease)
	}
	if dsvc.DNFlags(r.Flags)&dsvc.DNUnusable != 0 {
		d.t.Errorf("record %s: UNUSABLE after a lease: flags %#x", ip, r.Flags)
	}
	return r
}

// checkFree requires ip's record to be free: client id 00, no lease.
func (d *dhcpLab) checkFree(ip string) {
	d.t.Helper()
	eventually(d.t, 10*time.Second, "record "+ip+" free", func() error {
		r := d.record(ip)
		if r.ClientID != "00" || r.Lease != 0 {
			return fmt.Errorf("client id %s, lease %d", r.ClientID, r.Lease)
		}
		return nil
	})
}

// hookLog is what a client's hook script recorded: one map of variables
// per line, the event under "event".
type hookLog struct {
	path string
}

// scriptVars writes a hook script that appends one line per event to
// path: the event ($1 for udhcpc, $reason for dhclient) and vars.
func scriptVars(t *testing.T, script, out, event string, vars []string, configure string) hookLog {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "line=\"event=%s\"\n", event)
	for _, v := range vars {
		fmt.Fprintf(&b, "line=\"$line|%s=$%s\"\n", v, v)
	}
	fmt.Fprintf(&b, "echo \"$line\" >> %s\n", out)
	b.WriteString(configure)
	b.WriteString("exit 0\n")
	writeFile(t, script, b.String())
	return hookLog{path: out}
}

func (e hookLog) all() []map[string]string {
	f, err := os.Open(e.path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		m := map[string]string{}
		for _, kv := range strings.Split(sc.Text(), "|") {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		out = append(out, m)
	}
	return out
}

// wait returns the first event named one of names after the first skip
// events.
func (e hookLog) wait(t *testing.T, skip int, names ...string) (map[string]string, int) {
	t.Helper()
	var got map[string]string
	var at int
	eventually(t, 30*time.Second, "client event "+strings.Join(names, "/"), func() error {
		evs := e.all()
		for i := skip; i < len(evs); i++ {
			for _, n := range names {
				if evs[i]["event"] == n {
					got, at = evs[i], i
					return nil
				}
			}
		}
		return fmt.Errorf("events so far: %v", evs)
	})
	return got, at
}

// The udhcpc hook script configures the interface the way busybox's
// default script does, so that renewals are unicast from the address.
const udhcpcConfigure = `case "$1" in
deconfig) ip addr flush dev "$interface" ;;
bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/$mask" dev "$interface"
	[ -n "$router" ] && ip route replace default via "$router" dev "$interface" ;;
esac
`

var udhcpcVars = []string{"ip", "subnet", "mask", "router", "dns", "domain", "lease", "serverid"}

func checkOptions(t *testing.T, who string, got map[string]string, keys map[string]string) {
	t.Helper()
	for k, want := range keys {
		if strings.TrimSpace(got[k]) != want {
			t.Errorf("%s: %s = %q, want %q (all: %v)", who, k, got[k], want, got)
		}
	}
}

// udhcpc: a lease with the configured options, the binding in the store,
// a renewal (SIGUSR1) that extends it, a release (SIGUSR2) that frees it.
func TestDhcpUdhcpc(t *testing.T) {
	d := newDhcpLab(t, "busybox")
	script := filepath.Join(d.dir, "udhcpc.sh")
	ev := scriptVars(t, script, filepath.Join(d.dir, "udhcpc.events"), "$1", udhcpcVars, udhcpcConfigure)
	cl := d.lab.Command(2, "busybox", "udhcpc", "-i", "eth0", "-f", "-s", script, "-t", "5", "-T", "1", "-A", "1")
	out := &syncBuf{}
	cl.Stdout, cl.Stderr = out, out
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cl.Process.Signal(syscall.SIGTERM)
		cl.Wait()
		t.Logf("udhcpc:\n%s", out.String())
	}()

	bound, n := ev.wait(t, 0, "bound")
	ip := bound["ip"]
	checkOptions(t, "udhcpc bound", bound, map[string]string{
		"subnet": "255.255.255.0", "mask": "24", "router": dhcpRouter, "dns": dhcpDNS, "domain": dhcpDomain,
		"lease": strconv.Itoa(dhcpLease), "serverid": dhcpServer,
	})
	cid := "01" + d.mac(2) // udhcpc sends option 61: htype 1 and the MAC
	first := d.checkBound(ip, cid)

	// Renew once the clock has moved on, so the extended lease is later.
	eventually(t, 3*time.Second, "the next second", func() error {
		if time.Now().Unix() > int64(first.Lease)-dhcpLease+1 {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	cl.Process.Signal(syscall.SIGUSR1)
	renew, n := ev.wait(t, n+1, "renew", "bound")
	if renew["ip"] != ip {
		t.Errorf("renewal got %s, the lease was %s", renew["ip"], ip)
	}
	checkOptions(t, "udhcpc renew", renew, map[string]string{"router": dhcpRouter, "lease": strconv.Itoa(dhcpLease)})
	if again := d.checkBound(ip, cid); again.Lease <= first.Lease {
		t.Errorf("renewal did not extend the lease: %d, then %d", first.Lease, again.Lease)
	}

	cl.Process.Signal(syscall.SIGUSR2)
	ev.wait(t, n+1, "deconfig")
	d.checkFree(ip)
}

var dhclientVars = []string{"new_ip_address", "new_subnet_mask", "new_routers", "new_domain_name_servers", "new_domain_name", "new_dhcp_lease_time", "new_dhcp_server_identifier"}

// dhclientConfigure sets the address up as dhclient-script does.
const dhclientConfigure = `case "$reason" in
BOUND|RENEW|REBIND|REBOOT) ip addr flush dev "$interface"; ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface" ;;
RELEASE|EXPIRE|FAIL|STOP) ip addr flush dev "$interface" ;;
esac
`

// dhclient returns a runner of dhclient on host 2's eth0 with script,
// its own configuration, lease and pid files.
func (d *dhcpLab) dhclient(script string) func(args ...string) string {
	conf := filepath.Join(d.dir, "dhclient.conf")
	writeFile(d.t, conf, "request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers;\ntimeout 20;\n")
	leases, pid := filepath.Join(d.dir, "dhclient.leases"), filepath.Join(d.dir, "dhclient.pid")
	return func(args ...string) string {
		d.t.Helper()
		full := append([]string{"-v", "-cf", conf, "-sf", script, "-lf", leases, "-pf", pid}, args...)
		return d.must(2, "dhclient", append(full, "eth0")...)
	}
}

// dhclient: a lease with the options; a second run with the lease file
// reboots (INIT-REBOOT) onto the same address; -r releases it.
func TestDhcpDhclient(t *testing.T) {
	d := newDhcpLab(t, "dhclient")
	script := filepath.Join(d.dir, "dhclient.sh")
	ev := scriptVars(t, script, filepath.Join(d.dir, "dhclient.events"), "$reason", dhclientVars, dhclientConfigure)
	dhclient := d.dhclient(script)
	want := map[string]string{
		"new_subnet_mask": "255.255.255.0", "new_routers": dhcpRouter, "new_domain_name_servers": dhcpDNS,
		"new_domain_name": dhcpDomain, "new_dhcp_lease_time": strconv.Itoa(dhcpLease),
		"new_dhcp_server_identifier": dhcpServer,
	}
	cid := "01" + d.mac(2) // no option 61 from dhclient: htype and chaddr

	t.Logf("dhclient -1:\n%s", dhclient("-1"))
	bound, n := ev.wait(t, 0, "BOUND")
	ip := bound["new_ip_address"]
	checkOptions(t, "dhclient BOUND", bound, want)
	first := d.checkBound(ip, cid)

	// The client host crashes: its daemon is killed, no release. Started
	// again, dhclient asks for the address in its lease file with no
	// server id (INIT-REBOOT).
	b, err := os.ReadFile(filepath.Join(d.dir, "dhclient.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("dhclient pid file: %q", b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill dhclient %d: %v", pid, err)
	}
	d.must(2, "ip", "addr", "flush", "dev", "eth0")
	eventually(t, 3*time.Second, "the next second", func() error {
		if time.Now().Unix() > int64(first.Lease)-dhcpLease+1 {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	t.Logf("dhclient -1 again:\n%s", dhclient("-1"))
	reboot, _ := ev.wait(t, n+1, "REBOOT", "BOUND")
	if reboot["event"] != "REBOOT" {
		t.Errorf("second run: %s, want REBOOT (INIT-REBOOT ACKed): %v", reboot["event"], reboot)
	}
	if reboot["new_ip_address"] != ip {
		t.Errorf("second run got %s, the lease was %s", reboot["new_ip_address"], ip)
	}
	checkOptions(t, "dhclient REBOOT", reboot, want)
	if again := d.checkBound(ip, cid); again.Lease <= first.Lease {
		t.Errorf("reboot did not extend the lease: %d, then %d", first.Lease, again.Lease)
	}

	t.Logf("dhclient -r:\n%s", dhclient("-r"))
	d.checkFree(ip)
}

// dhclient renews at T1 by unicast: a macro named by its client id (the
// last in the macro order) gives it an 8 s lease and another DNS server,
// read by the running server on SIGHUP.
func TestDhcpDhclientRenew(t *testing.T) {
	d := newDhcpLab(t, "dhclient")
	cid := strings.ToUpper("01" + d.mac(2))
	const lease, dns = 8, "10.251.0.54"
	d.ds.ok("dhtadm", "-A", "-m", cid, "-d", fmt.Sprintf(":LeaseTim=%d:DNSserv=%s:", lease, dns))
	d.srv.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the dhcptab reread", func() error {
		if strings.Contains(d.log.String(), "dhcptab reread") {
			return nil
		}
		return fmt.Errorf("not in the log yet")
	})

	script := filepath.Join(d.dir, "dhclient.sh")
	ev := scriptVars(t, script, filepath.Join(d.dir, "dhclient.events"), "$reason", dhclientVars, dhclientConfigure)
	dhclient := d.dhclient(script)
	want := map[string]string{"new_routers": dhcpRouter, "new_domain_name_servers": dns, "new_dhcp_lease_time": strconv.Itoa(lease)}
	t.Logf("dhclient -1:\n%s", dhclient("-1"))
	bound, n := ev.wait(t, 0, "BOUND")
	ip := bound["new_ip_address"]
	checkOptions(t, "dhclient BOUND", bound, want)
	first := d.checkLease(ip, cid, lease)

	renew, _ := ev.wait(t, n+1, "RENEW", "REBIND", "EXPIRE", "FAIL")
	if renew["event"] != "RENEW" {
		t.Fatalf("dhclient at T1: %s, want RENEW: %v", renew["event"], renew)
	}
	if renew["new_ip_address"] != ip {
		t.Errorf("renewal got %s, the lease was %s", renew["new_ip_address"], ip)
	}
	checkOptions(t, "dhclient RENEW", renew, want)
	if again := d.checkLease(ip, cid, lease); again.Lease <= first.Lease {
		t.Errorf("renewal did not extend the lease: %d, then %d", first.Lease, again.Lease)
	}
	t.Logf("dhclient -r:\n%s", dhclient("-r"))
	d.checkFree(ip)
}

// udhcpc -a checks the ACKed address with ARP; host 3 holds it already,
// so the client declines it: the record becomes UNUSABLE and the client
// gets another address.
func TestDhcpUdhcpcDecline(t *testing.T) {
	d := newDhcpLab(t, "busybox")
	taken := dhcpPool[0]
	d.must(3, "ip", "addr", "add", taken+"/24", "dev", "eth0")
	script := filepath.Join(d.dir, "udhcpc.sh")
	ev := scriptVars(t, script, filepath.Join(d.dir, "udhcpc.events"), "$1", udhcpcVars, udhcpcConfigure)
	// -r asks for the taken address, which is free in the store, so the
	// server offers it.
	cl := d.lab.Command(2, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-a", "-r", taken,
		"-s", script, "-t", "5", "-T", "1", "-A", "1")
	out, err := cl.CombinedOutput()
	t.Logf("udhcpc:\n%s", out)
	if err != nil {
		t.Fatalf("udhcpc: %v", err)
	}
	if !strings.Contains(string(out), "declining") {
		t.Errorf("udhcpc did not decline %s", taken)
	}
	bound, _ := ev.wait(t, 0, "bound")
	if bound["ip"] == taken {
		t.Fatalf("client bound the taken address %s", taken)
	}
	d.checkBound(bound["ip"], "01"+d.mac(2))
	r := d.record(taken)
	if dsvc.DNFlags(r.Flags)&dsvc.DNUnusable == 0 {
		t.Errorf("declined %s: flags %#x, want UNUSABLE", taken, r.Flags)
	}
	// The DECLINE is broadcast and reaches both sockets of the server:
	// it is handled once.
	if n := strings.Count(d.log.String(), "address declined"); n != 1 {
		t.Errorf("the server logged %d declines, want 1:\n%s", n, d.log.String())
	}
}

// A relayed client: udhcpc on host 2's eth1, a segment of its own behind
// host 3, which runs ISC dhcrelay (Debian isc-dhcp-relay) towards the
// server. The server answers through giaddr; the renewal and the release
// come straight from the client's address, through host 3's routing.
func TestDhcpRelayed(t *testing.T) {
	d := newDhcpLab(t, "busybox", "dhcrelay")
	d.must(3, "ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", d.lab.Namespace(2))
	d.must(3, "ip", "addr", "add", relayRouter+"/24", "dev", "eth1")
	d.must(3, "ip", "link", "set", "eth1", "up")
	d.must(3, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	d.must(2, "ip", "link", "set", "eth1", "up")
	d.must(1, "ip", "route", "add", relayNet+"/24", "via", d.lab.Addr(3))

	relay := d.lab.Command(3, "dhcrelay", "-d", "-4", "-iu", "eth0", "-id", "eth1", dhcpServer)
	rlog := &syncBuf{}
	relay.Stdout, relay.Stderr = rlog, rlog
	if err := relay.Start(); err != nil {
		t.Fatal(err)
	}
	relayDone := false
	stopRelay := func() {
		if !relayDone {
			relayDone = true
			relay.Process.Signal(syscall.SIGTERM)
			relay.Wait()
			t.Logf("dhcrelay:\n%s", rlog.String())
		}
	}
	defer stopRelay()

	script := filepath.Join(d.dir, "udhcpc.sh")
	ev := scriptVars(t, script, filepath.Join(d.dir, "udhcpc.events"), "$1", udhcpcVars, udhcpcConfigure)
	cl := d.lab.Command(2, "busybox", "udhcpc", "-i", "eth1", "-f", "-s", script, "-t", "10", "-T", "1", "-A", "1")
	out := &syncBuf{}
	cl.Stdout, cl.Stderr = out, out
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cl.Process.Signal(syscall.SIGTERM)
		cl.Wait()
		t.Logf("udhcpc:\n%s", out.String())
	}()

	bound, n := ev.wait(t, 0, "bound")
	ip := bound["ip"]
	if !strings.HasPrefix(ip, "10.252.0.") {
		t.Fatalf("relayed client got %s, want an address of %s/24", ip, relayNet)
	}
	checkOptions(t, "relayed udhcpc bound", bound, map[string]string{
		"subnet": "255.255.255.0", "router": relayRouter, "dns": dhcpDNS,
		"lease": strconv.Itoa(dhcpLease), "serverid": dhcpServer,
	})
	cid := "01" + d.mac(2, "eth1")
	first := d.checkBound(ip, cid)

	eventually(t, 3*time.Second, "the next second", func() error {
		if time.Now().Unix() > int64(first.Lease)-dhcpLease+1 {
			return nil
		}
		return fmt.Errorf("not yet")
	})
	// dhcrelay captures every request on its downstream side, the
	// client's unicasts to the server too, and relays them; a router's
	// relay only forwards them. Stop it, so the renewal reaches the
	// server only as routed unicast from the client's address.
	stopRelay()
	cl.Process.Signal(syscall.SIGUSR1)
	renew, n := ev.wait(t, n+1, "renew", "bound")
	if renew["ip"] != ip {
		t.Errorf("renewal got %s, the lease was %s", renew["ip"], ip)
	}
	if again := d.checkBound(ip, cid); again.Lease <= first.Lease {
		t.Errorf("renewal did not extend the lease: %d, then %d", first.Lease, again.Lease)
	}

	cl.Process.Signal(syscall.SIGUSR2)
	ev.wait(t, n+1, "deconfig")
	d.checkFree(ip)
}
