package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dhcpConfig writes a server configuration for e's files datastore.
func dhcpConfig(t *testing.T, e *dsvcEnv, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dhcp.toml")
	cfg := fmt.Sprintf("%slisten = \"127.0.0.1:0\"\nlock_dir = %q\n[datastore]\nmodule = %q\nlocation = %q\n[[network]]\nprefix = \"127.0.1.0/24\"\n",
		extra, e.lockDir, e.module, e.path)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestDhcpToolsLeases: dhcp leases lists the records with a client id
// and only those, from -r/-p or from a server configuration.
func TestDhcpToolsLeases(t *testing.T) {
	e := newDsvcEnv(t, "files")
	const net = "127.0.1.0/24"
	e.ok("pntadm", "-C", net)
	e.ok("pntadm", "-A", "127.0.1.10", "-i", "01AABBCCDDEEFF", "-e", "01/01/2099", "-m", "srv", "-s", "127.0.0.1", net)
	e.ok("pntadm", "-A", "127.0.1.11", "-s", "127.0.0.1", net) // free: not listed
	e.ok("pntadm", "-A", "127.0.1.12", "-i", "01020304", "-e", "-1", "-f", "PERMANENT+MANUAL", "-s", "127.0.0.2", net)
	e.ok("pntadm", "-A", "127.0.1.13", "-i", "0105", "-e", "01/01/2001", "-s", "127.0.0.1", net)

	before := time.Now()
	var ls []leaseJSON
	if err := json.Unmarshal([]byte(e.ok("dhcp leases", "--json")), &ls); err != nil {
		t.Fatalf("%v\n%s", err, e.lastOut)
	}
	if len(ls) != 3 {
		t.Fatalf("got %d leases, want the 3 bound records: %+v", len(ls), ls)
	}
	want2099 := time.Date(2099, 1, 1, 0, 0, 0, 0, time.Local)
	l := ls[0]
	if l.Network != net || l.ClientIP != "127.0.1.10" || l.ClientID != "01AABBCCDDEEFF" || l.Flags != "DYNAMIC" ||
		l.Owner != "127.0.0.1" || l.Macro != "srv" || l.Expired || l.Expires != want2099.UTC().Format(time.RFC3339) {
		t.Errorf("lease 0: %+v", l)
	}
	if left := int64(want2099.Sub(before) / time.Second); l.SecondsLeft > left || l.SecondsLeft < left-60 {
		t.Errorf("seconds left %d, want about %d", l.SecondsLeft, left)
	}
	if l := ls[1]; l.ClientIP != "127.0.1.12" || l.Flags != "PERMANENT+MANUAL" || l.SecondsLeft != -1 || l.Expires != "" || l.Owner != "127.0.0.2" {
		t.Errorf("lease 1: %+v", l)
	}
	if l := ls[2]; l.ClientIP != "127.0.1.13" || !l.Expired || l.SecondsLeft != 0 {
		t.Errorf("lease 2: %+v", l)
	}

	// The same from the server's configuration; and the table.
	cfg := dhcpConfig(t, e, "")
	out, code := runCorral(t, "dhcp", "leases", "--json", "--config", cfg)
	var fromCfg []leaseJSON
	if code != 0 || json.Unmarshal([]byte(out), &fromCfg) != nil || len(fromCfg) != 3 {
		t.Fatalf("leases --config: exit %d: %s", code, out)
	}
	// The same lease, read a moment later: seconds left may have ticked.
	a, b := fromCfg[0], ls[0]
	if d := b.SecondsLeft - a.SecondsLeft; d < 0 || d > 30 {
		t.Errorf("leases --config: %d seconds left, the first read %d", a.SecondsLeft, b.SecondsLeft)
	}
	a.SecondsLeft, b.SecondsLeft = 0, 0
	if a != b {
		t.Errorf("leases --config: %+v, the first read %+v", a, b)
	}
	table := e.ok("dhcp leases", net)
	if !strings.Contains(table, "01AABBCCDDEEFF") || !strings.Contains(table, "never") || !strings.Contains(table, "expired") || strings.Contains(table, "127.0.1.11") {
		t.Errorf("table:\n%s", table)
	}

	// Bad input: a clear message and a non-zero status.
	e.status(exitNoEnt, "dhcp leases", "10.9.0.0/24")
	e.status(exitNonCritical, "dhcp leases", "not-a-network")
	if _, code := runCorral(t, "dhcp", "leases", "--config", cfg, "-r", "files"); code != exitNonCritical {
		t.Errorf("--config with -r: exit %d, want %d", code, exitNonCritical)
	}
	if _, code := runCorral(t, "dhcp", "leases", "--config", filepath.Join(t.TempDir(), "missing.toml")); code == 0 {
		t.Error("missing --config file: exit 0")
	}
}

// runCorral runs the binary and returns stdout and the exit status.
func runCorral(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var errb syncBuf
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if xe, ok := err.(*exec.ExitError); ok {
		if strings.TrimSpace(errb.String()) == "" {
			t.Errorf("corral %v: exit %d with nothing on stderr", args, xe.ExitCode())
		}
		return string(out), xe.ExitCode()
	} else if err != nil {
		t.Fatalf("corral %v: %v", args, err)
	}
	return string(out), 0
}

// TestDhcpToolsStats runs a real server with an http address and reads
// its counters with dhcp stats, after a datagram its checks drop.
func TestDhcpToolsStats(t *testing.T) {
	e := newDsvcEnv(t, "files")
	e.ok("pntadm", "-C", "127.0.1.0/24")
	cfg := dhcpConfig(t, e, "http = \"127.0.0.1:0\"\n")
	srv := exec.Command(binary, "dhcp", "serve", "--config", cfg)
	log := &syncBuf{}
	srv.Stdout, srv.Stderr = log, log
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		srv.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("dhcp serve: %v\n%s", err, log.String())
			}
		case <-time.After(10 * time.Second):
			srv.Process.Kill()
			t.Errorf("dhcp serve did not stop on SIGTERM\n%s", log.String())
		}
	})
	httpRE := regexp.MustCompile(`url=http://(127\.0\.0\.1:\d+)`)
	dhcpRE := regexp.MustCompile(`msg=serving .*addr=(127\.0\.0\.1:\d+)`)
	var httpAddr, dhcpAddr string
	eventually(t, 10*time.Second, "the server's addresses in its log", func() error {
		h, d := httpRE.FindStringSubmatch(log.String()), dhcpRE.FindStringSubmatch(log.String())
		if h == nil || d == nil {
			return fmt.Errorf("log so far:\n%s", log.String())
		}
		httpAddr, dhcpAddr = h[1], d[1]
		return nil
	})

	c, err := net.Dial("udp", dhcpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("runt")); err != nil {
		t.Fatal(err)
	}
	var r struct {
		Drops   map[string]uint64
		Sockets *struct{ Received uint64 }
	}
	eventually(t, 10*time.Second, "the runt counted in /stats", func() error {
		out, code := runCorral(t, "dhcp", "stats", "--json", "--addr", httpAddr)
		if code != 0 {
			return fmt.Errorf("exit %d", code)
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if r.Drops["short"] != 1 || r.Sockets == nil || r.Sockets.Received != 1 {
			return fmt.Errorf("stats %s", out)
		}
		return nil
	})
	out, code := runCorral(t, "dhcp", "stats", "--addr", httpAddr)
	if code != 0 || !regexp.MustCompile(`(?m)^dropped\s+short\s+1$`).MatchString(out) || !regexp.MustCompile(`(?m)^takeovers\s+0$`).MatchString(out) {
		t.Errorf("stats table: exit %d\n%s", code, out)
	}

	// Bad input.
	if _, code := runCorral(t, "dhcp", "stats"); code == 0 {
		t.Error("stats with no address: exit 0")
	}
	if _, code := runCorral(t, "dhcp", "stats", "--config", cfg); code == 0 {
		t.Error("stats --config with http port 0: exit 0")
	}
	if _, code := runCorral(t, "dhcp", "stats", "--addr", dhcpAddr); code == 0 { // nothing speaks http there
		t.Error("stats from a UDP port: exit 0")
	}
}
