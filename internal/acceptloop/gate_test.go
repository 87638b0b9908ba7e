package acceptloop

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

func tcp(ip string, port int) net.Addr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }

func TestGateBounds(t *testing.T) {
	g := NewGate(3, 2)
	r1, err := g.Enter(tcp("127.0.0.10", 1))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := g.Enter(tcp("::ffff:127.0.0.10", 2)) // the same IP, mapped
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Enter(tcp("127.0.0.10", 3)); !errors.Is(err, ErrBusyIP) {
		t.Fatalf("third from one IP: %v, want ErrBusyIP", err)
	}
	r3, err := g.Enter(tcp("127.0.0.11", 1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Enter(tcp("127.0.0.12", 1)); !errors.Is(err, ErrBusy) {
		t.Fatalf("fourth in all: %v, want ErrBusy", err)
	}
	if _, err := g.Enter(&net.UnixAddr{Name: "@", Net: "unix"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("unix address beyond the global bound: %v, want ErrBusy", err)
	}
	r1()
	r1() // a second release is a no-op
	if g.Pending() != 2 {
		t.Fatalf("pending %d after one release, want 2", g.Pending())
	}
	r4, err := g.Enter(tcp("127.0.0.10", 4))
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	for _, r := range []func(){r2, r3, r4} {
		r()
	}
	if g.Pending() != 0 || len(g.byIP) != 0 {
		t.Fatalf("after all releases: pending %d, by IP %v", g.Pending(), g.byIP)
	}
}

func TestGateUnbounded(t *testing.T) {
	g := NewGate(0, 0)
	for i := range 1000 {
		if _, err := g.Enter(tcp("127.0.0.1", i)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRateLog(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(1000, 0)
	r := NewRateLog(slog.New(slog.NewTextHandler(&out, nil)), time.Second, func() time.Time { return now })
	for i := range 100 {
		now = now.Add(25 * time.Millisecond) // 40 a second, for 2.5 s
		r.Log(slog.LevelWarn, "refused peer connection", "i", i)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines for 100 in 2.5 s, want 3:\n%s", len(lines), out.String())
	}
	if strings.Contains(lines[0], "suppressed") || !strings.Contains(lines[1], "suppressed=39") || !strings.Contains(lines[2], "suppressed=39") {
		t.Fatalf("suppressed counts:\n%s", out.String())
	}
}

// TestKeyedRateLog: a host refused every 2 s logs one line a minute with
// the count of the others; another host's first line is not held back.
func TestKeyedRateLog(t *testing.T) {
	var out bytes.Buffer
	now := time.Unix(1000, 0)
	r := NewKeyedRateLog(slog.New(slog.NewTextHandler(&out, nil)), time.Minute, func() time.Time { return now })
	for range 90 { // 3 minutes
		r.Log("10.0.0.9", slog.LevelError, "refusing link")
		now = now.Add(2 * time.Second)
	}
	r.Log("10.0.0.7", slog.LevelError, "refusing link")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 3 for the retrying host and 1 for the other:\n%s", len(lines), out.String())
	}
	if strings.Contains(lines[0], "suppressed") || !strings.Contains(lines[1], "suppressed=29") || strings.Contains(lines[3], "suppressed") {
		t.Fatalf("suppressed counts:\n%s", out.String())
	}
}
