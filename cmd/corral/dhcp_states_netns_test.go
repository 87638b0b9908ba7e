package main

// Real clients in the client states dhcp_netns_test.go does not cover:
// REBIND (ISC dhclient whose unicast renewals are dropped), NAK of an
// INIT-REBOOT (dhclient with a lease file the store contradicts), INFORM
// (dhcping -i, Debian dhcping: no packaged DHCP client here sends one),
// and the server's ICMP probe finding a squatter (udhcpc without its own
// ARP check). Root only, as the rest of the lab.

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/dhcp/server"
	"github.com/corralhq/corral/dsvc"
)

// icmp_probe: host 3 holds the first pool address; the server pings it
// before offering it, marks it UNUSABLE and offers the next one. udhcpc
// runs without -a (no ARP check of its own), so it never declines: the
// server alone keeps it off the squatted address.
func TestDhcpProbeSquatter(t *testing.T) {
	d := newDhcpLabWith(t, "icmp_probe = true\nicmp_timeout = \"500ms\"\n", "busybox")
	taken := dhcpPool[0]
	d.must(3, "ip", "addr", "add", taken+"/24", "dev", "eth0")
	script := filepath.Join(d.dir, "udhcpc.sh")
	ev := scriptVars(t, script, filepath.Join(d.dir, "udhcpc.events"), "$1", udhcpcVars, udhcpcConfigure)
	cl := d.lab.Command(2, "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-s", script, "-t", "5", "-T", "2", "-A", "1")
	out, err := cl.CombinedOutput()
	t.Logf("udhcpc:\n%s", out)
	if err != nil {
		t.Fatalf("udhcpc: %v", err)
	}
	bound, _ := ev.wait(t, 0, "bound")
	if bound["ip"] == taken {
		t.Fatalf("client bound %s, which host 3 holds", taken)
	}
	d.checkBound(bound["ip"], "01"+d.mac(2))
	r := d.record(taken)
	if dsvc.DNFlags(r.Flags)&dsvc.DNUnusable == 0 || r.ClientID != "00" {
		t.Errorf("squatted %s: flags %#x client id %s, want UNUSABLE and no client", taken, r.Flags, r.ClientID)
	}
	log := d.log.String()
	if !strings.Contains(log, "answered an ICMP echo") {
		t.Errorf("the server did not log the squatter:\n%s", log)
	}
	if strings.Contains(string(out), "declin") || strings.Contains(log, "address declined") {
		t.Errorf("a DECLINE was sent or handled: the probe should have kept the client off %s", taken)
	}
}

// REBIND: dhclient with a 10 s lease (T1 5 s, T2 8 s). Once it is bound,
// host 1 moves its lab address from the server's .1 to .2 (the server's
// owner address and server id stay .1): the unicast RENEWs to .1 from
// T1 on reach host 1 and are dropped, as not for it. At T2 dhclient
// broadcasts its REQUEST (ciaddr set, no server id: REBINDING), which the
// server's wildcard socket hears, and the server extends the same
// binding. dhclient sends its unicasts from its packet socket to the
// server's MAC, so a route or neighbour entry on the client does not stop
// them; and it reports an ACK after T2 as RENEW (ISC dhclient's DHCPv4
// state machine has no REBINDING state of its own), so the test reads
// the rebinding from its log: unicasts to .1, then a broadcast, ACKed.
func TestDhcpDhclientRebind(t *testing.T) {
	d := newDhcpLab(t, "dhclient")
	cid := strings.ToUpper("01" + d.mac(2))
	const lease = 10
	d.ds.ok("dhtadm", "-A", "-m", cid, "-d", fmt.Sprintf(":LeaseTim=%d:", lease))
	d.reread()

	script := filepath.Join(d.dir, "dhclient.sh")
	ev := scriptVars(t, script, filepath.Join(d.dir, "dhclient.events"), "$reason", dhclientVars, dhclientConfigure)
	// Retransmit every second or two: dhclient's default first interval
	// (10 s) would carry the unanswered RENEW past T2 and the expiry.
	conf := filepath.Join(d.dir, "dhclient.conf")
	writeFile(t, conf, "request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers;\n"+
		"timeout 20;\ninitial-interval 1;\nbackoff-cutoff 2;\n")
	cl := d.lab.Command(2, "dhclient", "-d", "-v", "-cf", conf, "-sf", script, "-lf", filepath.Join(d.dir, "dhclient.leases"),
		"-pf", filepath.Join(d.dir, "dhclient.pid"), "eth0")
	out := &syncBuf{}
	cl.Stdout, cl.Stderr = out, out
	if err := cl.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cl.Process.Kill()
		cl.Wait()
		t.Logf("dhclient:\n%s", out.String())
	}()
	bound, n := ev.wait(t, 0, "BOUND")
	ip := bound["new_ip_address"]
	first := d.checkLease(ip, cid, lease)
	// (Deleted first: deleting a primary address deletes its secondaries.)
	d.must(1, "ip", "addr", "del", dhcpServer+"/24", "dev", "eth0")
	d.must(1, "ip", "addr", "add", "10.251.0.2/24", "dev", "eth0")
	mark := len(out.String())

	got, _ := ev.wait(t, n+1, "RENEW", "REBIND", "EXPIRE", "FAIL")
	if got["event"] != "RENEW" && got["event"] != "REBIND" {
		t.Fatalf("dhclient after T1: %s, want the lease extended: %v", got["event"], got)
	}
	if got["new_ip_address"] != ip {
		t.Errorf("rebind got %s, the lease was %s", got["new_ip_address"], ip)
	}
	if again := d.checkLease(ip, cid, lease); again.Lease <= first.Lease {
		t.Errorf("rebind did not extend the lease: %d, then %d", first.Lease, again.Lease)
	}
	log := out.String()[mark:]
	uni := strings.Index(log, "DHCPREQUEST for "+ip+" on eth0 to "+dhcpServer+" port 67")
	bc := strings.Index(log, "DHCPREQUEST for "+ip+" on eth0 to 255.255.255.255 port 67")
	ack := strings.LastIndex(log, "DHCPACK of "+ip)
	if uni < 0 || bc < uni || ack < bc {
		t.Errorf("want unicast RENEWs, then a broadcast REBIND, then its ACK in dhclient's log (at %d, %d, %d)", uni, bc, ack)
	}
	if strings.Contains(log[:max(bc, 0)], "DHCPACK") {
		t.Errorf("a unicast RENEW was answered")
	}
}

// stats is the server's Report, from corral dhcp stats --json on host 1
// (the lab's configuration must set http).
func (d *dhcpLab) stats() server.Report {
	d.t.Helper()
	var r server.Report
	out := d.must(1, binary, "dhcp", "stats", "--json", "--addr", "127.0.0.1:9167")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		d.t.Fatalf("dhcp stats: %v\n%s", err, out)
	}
	return r
}

// reread sends the server SIGHUP and waits until it logged the reread.
func (d *dhcpLab) reread() {
	d.t.Helper()
	before := strings.Count(d.log.String(), "dhcptab reread")
	d.srv.Process.Signal(syscall.SIGHUP)
	eventually(d.t, 10*time.Second, "the dhcptab reread", func() error {
		if strings.Count(d.log.String(), "dhcptab reread") > before {
			return nil
		}
		return fmt.Errorf("not in the log yet")
	})
}

// writeLease writes a dhclient lease file holding an unexpired lease of
// ip from the lab's server, so that dhclient starts in INIT-REBOOT.
func (d *dhcpLab) writeLease(ip string) {
	d.t.Helper()
	future := time.Now().Add(24 * time.Hour).UTC().Format("2006/01/02 15:04:05")
	writeFile(d.t, filepath.Join(d.dir, "dhclient.leases"), fmt.Sprintf(`lease {
  interface "eth0";
  fixed-address %s;
  option subnet-mask 255.255.255.0;
  option dhcp-lease-time %d;
  option dhcp-server-identifier %s;
  renew 0 %s;
  rebind 0 %s;
  expire 0 %s;
}
`, ip, dhcpLease, dhcpServer, future, future, future))
}

// NAK: dhclient reboots (INIT-REBOOT, the address of its lease file, no
// server id) into an address the server refuses; the server NAKs, and
// dhclient starts over with a DISCOVER and binds the address the store
// gives it.
func TestDhcpDhclientNak(t *testing.T) {
	for _, tc := range []struct {
		name, ask string
		store     func(d *dhcpLab, cid string) // the store before the reboot
		want      string                       // the address bound after the NAK; "" any of the pool
	}{
		{name: "wrong address", ask: dhcpPool[3], want: dhcpPool[2],
			store: func(d *dhcpLab, cid string) {
				d.ds.ok("pntadm", "-M", dhcpPool[2], "-i", cid, "-e", time.Now().Add(48*time.Hour).Format("01/02/2006"), dhcpNet)
			}},
		{name: "expired", ask: dhcpPool[1], want: dhcpPool[1],
			store: func(d *dhcpLab, cid string) {
				d.ds.ok("pntadm", "-M", dhcpPool[1], "-i", cid, "-e", "01/01/2020", dhcpNet)
			}},
		{name: "off the network", ask: "192.168.77.5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDhcpLabWith(t, "http = \"127.0.0.1:9167\"\n", "dhclient")
			cid := "01" + d.mac(2)
			if tc.store != nil {
				tc.store(d, cid)
			}
			d.writeLease(tc.ask)
			script := filepath.Join(d.dir, "dhclient.sh")
			ev := scriptVars(t, script, filepath.Join(d.dir, "dhclient.events"), "$reason", dhclientVars, dhclientConfigure)
			out := d.dhclient(script)("-1")
			t.Logf("dhclient -1:\n%s", out)
			if !strings.Contains(out, "DHCPREQUEST for "+tc.ask) || !strings.Contains(out, "DHCPNAK from "+dhcpServer) {
				t.Errorf("dhclient did not reboot into %s and get a NAK", tc.ask)
			}
			bound, _ := ev.wait(t, 0, "BOUND", "REBOOT")
			if bound["event"] != "BOUND" {
				t.Fatalf("dhclient: %s, want BOUND after the NAK: %v", bound["event"], bound)
			}
			ip := bound["new_ip_address"]
			if tc.want != "" && ip != tc.want {
				t.Errorf("bound %s, want %s (the store's binding)", ip, tc.want)
			}
			if ip == tc.ask && tc.want != tc.ask {
				t.Errorf("bound the refused address %s", ip)
			}
			d.checkBound(ip, cid)
			if st := d.stats(); st.NAKs != 1 || st.Received["REQUEST"] != 2 {
				t.Errorf("server: %d NAKs, %d REQUESTs; want 1 NAK, 2 REQUESTs (the reboot, the selecting)", st.NAKs, st.Received["REQUEST"])
			}
			t.Logf("dhclient -r:\n%s", d.dhclient(script)("-r"))
		})
	}
}

// INFORM: dhcping -i (Debian dhcping) from host 2 with an address of its
// own: the server ACKs with the options and no address or lease, and
// writes nothing. Neither ISC dhclient nor busybox udhcpc can send an
// INFORM; dhcpcd --inform (dhcpcd-base) stalls in a network namespace
// here (its privilege-separated proxies never come up).
func TestDhcpInform(t *testing.T) {
	d := newDhcpLab(t, "dhcping")
	const own = "10.251.0.150"
	d.must(2, "ip", "addr", "add", own+"/24", "dev", "eth0")
	before := d.ds.dn(dhcpNet)
	mac := d.mac(2)
	var colons []string
	for i := 0; i < len(mac); i += 2 {
		colons = append(colons, mac[i:i+2])
	}
	out, err := d.lab.Command(2, "dhcping", "-i", "-V", "-t", "5", "-c", own, "-s", dhcpServer, "-h", strings.Join(colons, ":")).CombinedOutput()
	t.Logf("dhcping -i:\n%s", out)
	if err != nil {
		t.Fatalf("dhcping: %v", err)
	}
	// -V prints the packets it sent and received, decoded; the reply is
	// after "Got answer from".
	_, ack, ok := strings.Cut(string(out), "Got answer from: "+dhcpServer)
	if !ok {
		t.Fatalf("no answer from %s", dhcpServer)
	}
	for _, want := range []string{"op: 2", "ciaddr: " + own, "yiaddr: 0.0.0.0", "DHCP message type: 5 (DHCPACK)",
		"Subnet mask: 255.255.255.0", "Router: " + dhcpRouter, "Server identifier: " + dhcpServer} {
		if !strings.Contains(ack, want) {
			t.Errorf("the ACK lacks %q", want)
		}
	}
	for _, not := range []string{"option 51 ", "option 58 ", "option 59 "} {
		if strings.Contains(ack, not) {
			t.Errorf("the ACK of an INFORM carries a lease time (%s)", strings.TrimSpace(not))
		}
	}
	after := d.ds.dn(dhcpNet)
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("an INFORM changed the store:\nbefore %v\nafter  %v", before, after)
	}
}
