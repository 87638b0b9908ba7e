package transporttest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/transport"
)

// Key is the cluster key of Config.
var Key = bytes.Repeat([]byte{0x5a}, transport.KeySize)

// Config returns a peer-link config for node id with the test key, the
// cluster "test" and heartbeats slow enough for the race detector.
func Config(id uint64, name string) *transport.Config {
	return &transport.Config{
		Cluster:           "test",
		NodeID:            id,
		NodeName:          name,
		Key:               Key,
		HandshakeTimeout:  5 * time.Second,
		HeartbeatInterval: time.Second,
		HeartbeatTimeout:  10 * time.Second,
		Logger:            slog.New(slog.DiscardHandler),
	}
}

// Pipe returns the two ends of a peer-protocol link over a unix socket
// pair: a
// connected with cfgA, b accepted with cfgB (nil: Config(1, "a") and
// Config(2, "b")). The links are established but not started: each
// owner calls Start with its Handler. Both are closed when the test ends.
func Pipe(t testing.TB, cfgA, cfgB *transport.Config) (a, b *transport.Link) {
	return PipeReason(t, cfgA, cfgB, proto.ReasonJoin)
}

// PipeReason is Pipe with the HELLO reason of the connecting end, which
// selects the sub-protocol (cfgB must serve it).
func PipeReason(t testing.TB, cfgA, cfgB *transport.Config, reason proto.Reason) (a, b *transport.Link) {
	t.Helper()
	if cfgA == nil {
		cfgA = Config(1, "a")
	}
	if cfgB == nil {
		cfgB = Config(2, "b")
	}
	ca, cb, err := socketpair()
	if err != nil {
		t.Fatalf("transporttest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		l   *transport.Link
		err error
	}
	got := make(chan res, 1)
	go func() {
		l, err := transport.Accept(ctx, cb, cfgB)
		got <- res{l, err}
	}()
	a, errA := transport.Connect(ctx, ca, cfgA, reason)
	r := <-got
	if errA != nil || r.err != nil {
		ca.Close()
		cb.Close()
		t.Fatalf("transporttest: handshake over a pipe: connect: %v; accept: %v", errA, r.err)
	}
	b = r.l
	t.Cleanup(func() {
		closeBoth(a, b)
	})
	return a, b
}

// socketpair returns the two ends of a unix stream socket pair. Unlike
// net.Pipe its writes are buffered by the kernel, so a TLS close_notify
// written after the peer stopped reading does not block.
func socketpair() (net.Conn, net.Conn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "transporttest")
		c, err := net.FileConn(f) // dups fd
		f.Close()
		if err != nil {
			if i == 1 {
				conns[0].Close()
			} else {
				syscall.Close(fds[1])
			}
			return nil, nil, fmt.Errorf("socketpair: %w", err)
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}

// closeBoth closes both ends at once, as two agents shutting down do.
func closeBoth(a, b *transport.Link) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.Close(proto.CodeShutdown, "test done")
	}()
	a.Close(proto.CodeShutdown, "test done")
	<-done
}
