package mesh

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// TestDuplicateNodeIDRefused: a second node 2, listening elsewhere, is
// refused with CodeDupNode naming both addresses while the real node 2's
// link stays up and untouched; node 2 restarted at its own address still
// replaces its old link.
func TestDuplicateNodeIDRefused(t *testing.T) {
	lns := listeners(t, 2)
	a := start(t, 1, lns[0], nil)
	defer a.stop(t)
	b := start(t, 2, lns[1], []string{lns[0].Addr().String()})
	defer b.stop(t)
	eventually(t, 5*time.Second, "n1 linked to n2", func() bool { return a.m.Link(2) != nil })
	real := a.m.Link(2)
	realAddr := lns[1].Addr().String()
	if got := real.Peer().ListenAddr; got != realAddr {
		t.Fatalf("n2's HELLO names listen address %q, want %q", got, realAddr)
	}

	dial := func(listen string) (*transport.Link, error) {
		cfg := &transport.Config{Cluster: "test", NodeID: 2, NodeName: "n2", Key: testKey, Protocols: protos.All(),
			ListenAddr: listen, HandshakeTimeout: 2 * time.Second, HeartbeatInterval: 20 * time.Millisecond, HeartbeatTimeout: time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return transport.Dial(ctx, lns[0].Addr().String(), cfg, proto.ReasonJoin)
	}
	l, err := dial("127.0.0.9:7946")
	if err == nil {
		l.Close(proto.CodeShutdown, "test")
		t.Fatal("a second node 2 at another address was let in")
	}
	if !errors.Is(err, proto.ErrDupNode) || !strings.Contains(err.Error(), realAddr) || !strings.Contains(err.Error(), "127.0.0.9:7946") {
		t.Fatalf("second node 2 refused with %v, want CodeDupNode naming %s and 127.0.0.9:7946", err, realAddr)
	}
	if a.m.Link(2) != real {
		t.Fatal("the real n2's link was replaced")
	}
	select {
	case <-real.Done():
		t.Fatalf("the real n2's link ended: %v", real.Err())
	default:
	}
	for _, ev := range a.linkEvents() {
		if !ev.Up {
			t.Fatalf("n1 saw a link go down: %+v", ev)
		}
	}

	// n2 restarted: the same listen address replaces its old link.
	l, err = dial(realAddr)
	if err != nil {
		t.Fatalf("n2 at its own address: %v", err)
	}
	defer l.Close(proto.CodeShutdown, "test")
	l.Start(func(*transport.Link, *proto.Frame) error { return nil })
	eventually(t, 5*time.Second, "n2's old link replaced", func() bool {
		select {
		case <-real.Done():
			return errors.Is(real.Err(), proto.ErrDup)
		default:
			return false
		}
	})
}
