package mesh

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// lockedBuf is a log sink safe for concurrent writers.
type lockedBuf struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (w *lockedBuf) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *lockedBuf) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedAtOnce fails unless the agent closes c without waiting for its
// handshake timeout.
func closedAtOnce(t *testing.T, c net.Conn, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if errors.Is(err, os.ErrDeadlineExceeded) || err == nil {
		t.Fatalf("%s: read %v, want the connection closed at once", what, err)
	}
	if err != io.EOF && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("%s: read %v, want EOF or reset", what, err)
	}
}

func TestHandshakeBounds(t *testing.T) {
	var logs lockedBuf
	ln := listeners(t, 1)[0]
	m := New(Config{
		Self: 1, Listener: ln,
		Link: &transport.Config{
			Cluster: "test", NodeID: 1, NodeName: "n1", Key: testKey, Protocols: protos.All(),
			// Far beyond the test: a connection let in stays in.
			HandshakeTimeout: time.Minute, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: time.Second,
		},
		MaxHandshakes: 3, MaxHandshakesPerIP: 2,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := ln.Addr().String()

	// Two from one address, one from another: the bounds are full.
	var silent []net.Conn
	for _, src := range []string{"127.0.0.10", "127.0.0.10", "127.0.0.11"} {
		silent = append(silent, dialFrom(t, src, addr))
	}
	eventually(t, 5*time.Second, "three handshakes admitted", func() bool { return m.gate.Pending() == 3 })
	closedAtOnce(t, dialFrom(t, "127.0.0.10", addr), "third from one address")
	closedAtOnce(t, dialFrom(t, "127.0.0.12", addr), "fourth in all")

	// A burst of refusals logs a line a second, not a line each.
	for range 50 {
		dialFrom(t, "127.0.0.13", addr).Close()
	}
	eventually(t, 5*time.Second, "refusals logged", func() bool { return strings.Contains(logs.String(), "too many connections handshaking") })
	if n := strings.Count(logs.String(), "refused peer connection"); n > 3 {
		t.Fatalf("%d log lines for 52 refused connections:\n%s", n, logs.String())
	}

	// A real peer from a full address gets in once the junk is gone.
	for _, c := range silent {
		c.Close()
	}
	eventually(t, 5*time.Second, "handshake slots freed", func() bool { return m.gate.Pending() == 0 })
	n2 := start(t, 2, listeners(t, 1)[0], []string{addr})
	eventually(t, 10*time.Second, "peer linked", func() bool { return m.Link(2) != nil && n2.m.Link(1) != nil })
}
