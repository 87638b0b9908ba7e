package main

// The failover measurement of issue 13 (research notes §5.9 test 6): kill
// the owner's host — cut off the wire, its agent killed -9 — and time, at
// the client h4, the first gratuitous ARP from another host and the first
// connection that completes (a connect started every 20 ms), over
// CORRAL_BENCH_FAILOVER runs; then the same with keepalived (VRRP) on the
// same lab, where the keepalived binary is installed. Needs root; off
// unless CORRAL_BENCH_FAILOVER is set.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
)

func benchRuns(t *testing.T) int {
	n, _ := strconv.Atoi(os.Getenv("CORRAL_BENCH_FAILOVER"))
	if n <= 0 {
		t.Skip("set CORRAL_BENCH_FAILOVER=N to measure N failovers (needs root)")
	}
	return n
}

func report(t *testing.T, what string, rs []failover) {
	var garp, syn []time.Duration
	for _, r := range rs {
		garp, syn = append(garp, r.garp), append(syn, r.synack)
	}
	g50, g99 := percentiles(garp)
	s50, s99 := percentiles(syn)
	t.Logf("%s, %d runs: kill → gratuitous ARP p50 %v p99 %v; kill → first SYN-ACK p50 %v p99 %v",
		what, len(rs), g50.Round(time.Millisecond), g99.Round(time.Millisecond), s50.Round(time.Millisecond), s99.Round(time.Millisecond))
}

// TestSharedAddrFailoverBench measures corral's failover: each run kills
// the present owner's host, then brings it back (its agent restarted
// while still cut off, so that its stale address is gone before it is on
// the wire again) and waits for three listeners.
func TestSharedAddrFailoverBench(t *testing.T) {
	n := benchRuns(t)
	l := newSALab(t)
	var rs []failover
	defer func() { report(t, "corral (heartbeat timeout 500 ms)", rs) }()
	for run := range n {
		// The owner as the agents list it: a gratuitous ARP names the
		// host that sent it, which under load need not be the last owner.
		var owner int
		waitAddrs(t, l.nodes, 60*time.Second, "three listeners and an owner", func(as []addrJSON) error {
			if len(as) != 1 || len(as[0].Listeners) != 3 || as[0].Owner == 0 {
				return fmt.Errorf("addresses %+v", as)
			}
			owner = int(as[0].Owner)
			return nil
		})
		l.waitOneMAC(owner, 20*time.Second)
		r := l.killHost(owner, 10*time.Second)
		t.Logf("run %d: kill h%d → GARP of h%d %v, first SYN-ACK %v", run+1, owner, r.newOwner, r.garp.Round(time.Millisecond), r.synack.Round(time.Millisecond))
		rs = append(rs, r)
		nd := l.nodes[owner-1]
		nd.start()
		l.waitNoVIP(owner, 20*time.Second)
		l.lab.Restore(owner)
		l.echo[owner] = l.serveEcho(owner)
	}
}

// waitNoVIP waits until host h holds the address on no interface.
func (l *saLab) waitNoVIP(h int, within time.Duration) {
	l.t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); {
		out, err := exec.Command("ip", "-n", l.lab.Namespace(h), "-4", "addr", "show", "dev", "eth0").CombinedOutput()
		if err == nil && !strings.Contains(string(out), saVIP+"/") {
			return
		}
		time.Sleep(10 * time.Millisecond) // polling ip(8): no event to wait on
	}
	l.t.Fatalf("h%d still holds %s on eth0", h, saVIP)
}

// TestKeepalivedFailoverBench measures keepalived's VRRP on the same lab
// and by the same client: h1–h3 run keepalived for the address with
// priorities 150, 100 and 50, for each advert_int of
// CORRAL_BENCH_KEEPALIVED_ADVERT (default "1,0.1").
func TestKeepalivedFailoverBench(t *testing.T) {
	n := benchRuns(t)
	needRoot(t)
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("keepalived is not installed (apt-get install keepalived)")
	}
	adverts := strings.Split(os.Getenv("CORRAL_BENCH_KEEPALIVED_ADVERT"), ",")
	if adverts[0] == "" {
		adverts = []string{"1", "0.1"}
	}
	for _, adv := range adverts {
		t.Run("advert_int="+adv, func(t *testing.T) { keepalivedRuns(t, bin, adv, n) })
	}
}

func keepalivedRuns(t *testing.T, bin, advert string, n int) {
	lab := netlab.New(t, 4)
	l := &saLab{t: t, lab: lab, macs: map[string]int{}, echo: map[int]*echoServer{}, client: saClient}
	l.readMACs()
	dir := t.TempDir()
	procs := map[int]*exec.Cmd{}
	start := func(i int) {
		conf := filepath.Join(dir, fmt.Sprintf("h%d.conf", i))
		prio := 200 - 50*i
		version := 2
		if strings.Contains(advert, ".") {
			version = 3 // sub-second adverts are VRRPv3's
		}
		body := fmt.Sprintf(`global_defs {
  vrrp_version %d
  vrrp_garp_master_delay 0
  vrrp_garp_master_repeat 3
}
vrrp_instance VI {
  state BACKUP
  interface eth0
  virtual_router_id 51
  priority %d
  advert_int %s
  nopreempt
  virtual_ipaddress {
    %s/24 dev eth0
  }
}
`, version, prio, advert, saVIP)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c := lab.Command(i, bin, "--dont-fork", "--log-console", "--vrrp", "-f", conf,
			"-p", filepath.Join(dir, fmt.Sprintf("h%d.pid", i)), "-r", filepath.Join(dir, fmt.Sprintf("h%d.vrrp.pid", i)))
		log := &syncBuf{}
		c.Stdout, c.Stderr = log, log
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = c
		t.Cleanup(func() {
			if c.ProcessState == nil {
				c.Process.Kill()
				c.Wait()
			}
			if t.Failed() {
				t.Logf("keepalived on h%d:\n%s", i, log.String())
			}
		})
	}
	for i := 1; i <= 3; i++ {
		start(i)
		l.echo[i] = l.serveEcho(i)
	}
	var rs []failover
	for run := range n {
		owner := 0
		for deadline := time.Now().Add(30 * time.Second); owner == 0 && time.Now().Before(deadline); {
			got := l.arpAnswers(300 * time.Millisecond)
			if len(got) == 1 {
				for h := range got {
					owner = h
				}
			}
		}
		if owner == 0 {
			t.Fatal("no single keepalived master answers ARP")
		}
		r := l.killWith(owner, 20*time.Second, func() {
			// The whole host dies: keepalived cannot withdraw the address.
			procs[owner].Process.Kill()
			procs[owner].Wait()
		})
		t.Logf("run %d: kill h%d → GARP of h%d %v, first SYN-ACK %v", run+1, owner, r.newOwner, r.garp.Round(time.Millisecond), r.synack.Round(time.Millisecond))
		rs = append(rs, r)
		exec.Command("ip", "-n", lab.Namespace(owner), "addr", "del", saVIP+"/24", "dev", "eth0").Run()
		lab.Restore(owner)
		start(owner)
		l.echo[owner] = l.serveEcho(owner)
	}
	report(t, "keepalived advert_int "+advert, rs)
}
