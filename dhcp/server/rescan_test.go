package server

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/files"
)

// lockedBuf is a log sink for several goroutines.
type lockedBuf struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A macro changed in the store reaches the replies without Reload: the
// periodic rescan rebuilds the option table, logs that once, and logs
// nothing while the dhcptab stays as it is.
func TestRescan(t *testing.T) {
	e := newEnv(t, files.Name)
	e.add(10, 4, ownerA, 0)
	var logs lockedBuf
	var s *Server
	_, srv := e.startWith(func(c *Config) { c.RescanInterval.Duration = 10 * time.Millisecond }, func(x *Server) {
		x.log = slog.New(slog.NewTextHandler(&logs, nil))
		s = x
	}, ownerA)
	ctx, cancel := context.WithCancel(context.Background())
	stop := s.startRescan(ctx)
	defer func() { cancel(); stop() }()

	// One client: its offer is cached, its options are built at each reply.
	f := e.client.fake(1)
	dns := func() net.IP {
		off := f.one(t, f.discover(), srv)
		if got := off.DNS(); len(got) > 0 {
			return got[0]
		}
		return nil
	}
	if got := dns(); !got.Equal(net.IPv4(10, 9, 9, 9)) {
		t.Fatalf("DNS %v before the change", got)
	}
	// A few rescans of an unchanged dhcptab: nothing logged.
	for range 3 {
		if changed, err := s.Rescan(ctx); err != nil || changed {
			t.Fatalf("unchanged dhcptab: changed %v, err %v", changed, err)
		}
	}

	dt, err := e.reg.Open(ctx, e.ds, dsvc.DHCPTab, "dhcptab", dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	defer dt.Close()
	old, err := dt.LookupDT(ctx, false, dsvc.Query(0).Eq(dsvc.DTQKey), 1, &dsvc.DTRecord{Key: "srv"})
	if err != nil || len(old) != 1 {
		t.Fatalf("macro srv: %v %v", old, err)
	}
	nr := old[0]
	nr.Value = `:LeaseTim=3600:LeaseNeg:DNSserv=10.7.7.7:DNSdmain="corral.example":`
	if err := dt.ModifyDT(ctx, &old[0], &nr); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new DNS server in an OFFER", func() bool { return dns().Equal(net.IPv4(10, 7, 7, 7)) })
	if n := strings.Count(logs.String(), "dhcptab changed"); n != 1 {
		t.Fatalf("logged %d changes, want 1:\n%s", n, logs.String())
	}
	// Offers survive a rescan (Reload flushes them).
	if s.n(t).offers.len() == 0 {
		t.Fatal("the rescan flushed the offers")
	}
}

// rescan_interval and icmp_timeout parse; negative ones are refused.
func TestConfigProbeRescan(t *testing.T) {
	base := "[datastore]\nlocation = \"/x\"\n[[network]]\nprefix = \"10.0.0.0/24\"\n"
	c, err := ParseConfig([]byte("icmp_probe = true\nicmp_timeout = \"1s\"\nrescan_interval = \"5m\"\n" + base))
	if err != nil {
		t.Fatal(err)
	}
	if !c.ICMPProbe || c.ICMPTimeout.Duration != time.Second || c.RescanInterval.Duration != 5*time.Minute {
		t.Fatalf("%+v", c)
	}
	c, err = ParseConfig([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	if c.ICMPProbe || c.ICMPTimeout.Duration != DefaultICMPTimeout || c.RescanInterval.Duration != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	for _, bad := range []string{"icmp_timeout = \"-1s\"\n", "rescan_interval = \"-1s\"\n"} {
		if _, err := ParseConfig([]byte(bad + base)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
