package transport

import (
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/protos"
)

const (
	idA uint64 = 0x0123456789abcdef
	idB uint64 = 0x00000000c0ffee42
)

func withID(cfg *Config, id *atomic.Uint64) *Config {
	cfg.ClusterID = id.Load
	return cfg
}

func ids(a, b uint64) (*atomic.Uint64, *atomic.Uint64) {
	var x, y atomic.Uint64
	x.Store(a)
	y.Store(b)
	return &x, &y
}

func TestClusterIDAccepted(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		client, server         uint64
		clientSees, serverSees uint64
	}{
		{"same", idA, idA, idA, idA},
		{"client-unknown", 0, idA, idA, 0},
		{"server-unknown", idA, 0, 0, idA},
		{"both-unknown", 0, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ci, si := ids(tc.client, tc.server)
			ca, _ := testConfig(1, "a")
			cb, _ := testConfig(2, "b")
			c, s := pair(t, withID(ca, ci), withID(cb, si), proto.ReasonJoin)
			if c.err != nil || s.err != nil {
				t.Fatalf("handshake: client %v, server %v", c.err, s.err)
			}
			if got := c.link.Peer().ClusterID; got != tc.clientSees {
				t.Errorf("client's link reports peer cluster id %016x, want %016x", got, tc.clientSees)
			}
			if got := s.link.Peer().ClusterID; got != tc.serverSees {
				t.Errorf("server's link reports peer cluster id %016x, want %016x", got, tc.serverSees)
			}
		})
	}
}

// TestClusterIDLearned: a node that does not know its id accepts a peer,
// learns the id from the link, and from then on refuses another cluster.
func TestClusterIDLearned(t *testing.T) {
	joiner, member := ids(0, idA)
	ca, _ := testConfig(1, "a")
	cb, _ := testConfig(2, "b")
	c, s := pair(t, withID(ca, member), withID(cb, joiner), proto.ReasonJoin)
	if c.err != nil || s.err != nil {
		t.Fatalf("handshake: client %v, server %v", c.err, s.err)
	}
	joiner.Store(s.link.Peer().ClusterID)
	if joiner.Load() != idA {
		t.Fatalf("learned %016x, want %016x", joiner.Load(), idA)
	}
	_, other := ids(0, idB)
	cc, _ := testConfig(3, "c")
	c, s = pair(t, withID(cc, other), cb, proto.ReasonJoin)
	if !errors.Is(c.err, proto.ErrClusterID) || !errors.Is(s.err, proto.ErrClusterID) {
		t.Fatalf("after learning: client %v, server %v; want cluster id mismatch on both", c.err, s.err)
	}
}

func TestClusterIDMismatch(t *testing.T) {
	ci, si := ids(idA, idB)
	ca, la := testConfig(1, "a")
	cb, lb := testConfig(2, "b")
	c, s := pair(t, withID(ca, ci), withID(cb, si), proto.ReasonJoin)
	for _, side := range []struct {
		name        string
		err         error
		local, peer uint64
		log         string
	}{
		{"client", c.err, idA, idB, la.String()},
		{"server", s.err, idB, idA, lb.String()},
	} {
		wantCode(t, side.name, side.err, proto.CodeClusterID)
		var ce *ClusterIDError
		if !errors.As(side.err, &ce) {
			t.Fatalf("%s: %v (%T) is not a *ClusterIDError", side.name, side.err, side.err)
		}
		if ce.Local != side.local || ce.Peer != side.peer {
			t.Errorf("%s: error names local %016x, peer %016x; want %016x, %016x", side.name, ce.Local, ce.Peer, side.local, side.peer)
		}
		for _, id := range []string{"0123456789abcdef", "00000000c0ffee42"} {
			if !strings.Contains(side.err.Error(), id) {
				t.Errorf("%s: error %q does not name cluster %s", side.name, side.err, id)
			}
			if !strings.Contains(side.log, id) {
				t.Errorf("%s: log does not name cluster %s:\n%s", side.name, id, side.log)
			}
		}
	}
	if c.link != nil || s.link != nil {
		t.Fatal("a link came up between two clusters")
	}
}

// TestClusterIDOldHello: a HELLO without the extension, as an agent that
// predates cluster ids sends it, counts as id 0 and is accepted; the
// answer carries the accepting node's id.
func TestClusterIDOldHello(t *testing.T) {
	_, si := ids(0, idA)
	cfg, _ := testConfig(2, "b")
	withID(cfg, si)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ch := acceptOne(ln, cfg)
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	old, _ := testConfig(1, "old")
	h := &hs{cfg: old, raw: raw, conn: raw, role: roleClient, dec: proto.NewDecoder(maxHandshakePayload)}
	if err := h.startTLS(); err != nil {
		t.Fatal(err)
	}
	hello := proto.Hello{Reason: proto.ReasonJoin, NodeID: 1, Ranges: protos.Ranges(), Cluster: "test", NodeName: "old"}
	body, off := proto.AppendHello(nil, &hello)
	hello.Auth = h.mac(roleClient, body[:off])
	body, _ = proto.AppendHello(nil, &hello)
	f := proto.SessionFrame(proto.OpHello, body) // no extension area
	if _, err := h.conn.Write(proto.AppendFrame(nil, &f)); err != nil {
		t.Fatal(err)
	}
	answer, err := h.readFrame()
	if err != nil {
		t.Fatal(err)
	}
	if answer.Opcode != proto.OpHello {
		t.Fatalf("answer opcode %#04x, want HELLO", answer.Opcode)
	}
	if ext, err := proto.ParseSessionExt(answer.Ext); err != nil || ext.ClusterID != idA {
		t.Fatalf("answer extensions %+v, %v; want cluster id %016x", ext, err, idA)
	}
	s := <-ch
	if s.err != nil {
		t.Fatalf("server refused an old HELLO: %v", s.err)
	}
	defer s.link.end(ErrClosed)
	if got := s.link.Peer().ClusterID; got != 0 {
		t.Fatalf("server reports peer cluster id %016x for a HELLO without one", got)
	}
}
