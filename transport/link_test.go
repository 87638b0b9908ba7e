package transport

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/proto/protos"
)

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

var testKey = bytes.Repeat([]byte{7}, KeySize)

func testConfig(id uint64, name string) (*Config, *logBuf) {
	lb := &logBuf{}
	return &Config{
		Cluster:           "test",
		NodeID:            id,
		NodeName:          name,
		Protocols:         protos.All(),
		Key:               testKey,
		HandshakeTimeout:  2 * time.Second,
		HeartbeatInterval: 20 * time.Millisecond,
		HeartbeatTimeout:  300 * time.Millisecond,
		Logger:            slog.New(slog.NewTextHandler(lb, nil)),
	}, lb
}

type result struct {
	link *Link
	err  error
}

// pair runs one handshake over loopback TCP and returns both ends' results.
func pair(t *testing.T, client, server *Config, reason proto.Reason) (c, s result) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sc := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			sc <- result{err: err}
			return
		}
		l, err := Accept(context.Background(), conn, server)
		sc <- result{l, err}
	}()
	l, err := Dial(context.Background(), ln.Addr().String(), client, reason)
	c = result{l, err}
	s = <-sc
	t.Cleanup(func() {
		for _, r := range []result{c, s} {
			if r.link != nil {
				r.link.end(ErrClosed)
			}
		}
	})
	return c, s
}

func wantCode(t *testing.T, side string, err error, code proto.Code) {
	t.Helper()
	var pe *proto.Error
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("%s: error %v, want code %s", side, err, code)
	}
}

func rng(min, max uint8) proto.Ranges {
	rs := protos.Ranges()
	rs[0] = proto.Range{Proto: proto.ProtoPeer, Min: min, Max: max}
	return rs
}

func TestHandshakeVersions(t *testing.T) {
	for _, tc := range []struct {
		name     string
		a, b     proto.Ranges
		want     uint8
		disjoint bool
	}{
		{name: "equal", want: peer.MaxVersion},
		{name: "overlap", a: rng(1, 3), b: rng(2, 5), want: 3},
		{name: "overlap-reversed", a: rng(2, 5), b: rng(1, 3), want: 3},
		{name: "contained", a: rng(1, 9), b: rng(4, 4), want: 4},
		{name: "disjoint", a: rng(1, 1), b: rng(2, 3), disjoint: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, la := testConfig(1, "a")
			cb, lb := testConfig(2, "b")
			ca.Ranges, cb.Ranges = tc.a, tc.b
			c, s := pair(t, ca, cb, proto.ReasonJoin)
			if tc.disjoint {
				wantCode(t, "client", c.err, proto.CodeVersion)
				wantCode(t, "server", s.err, proto.CodeVersion)
				for side, log := range map[string]string{"client": la.String(), "server": lb.String()} {
					if !strings.Contains(log, "peer 1..1") || !strings.Contains(log, "peer 2..3") {
						t.Errorf("%s log does not name both ranges:\n%s", side, log)
					}
				}
				return
			}
			if c.err != nil || s.err != nil {
				t.Fatalf("handshake: client %v, server %v", c.err, s.err)
			}
			if c.link.Peer().Version != tc.want || s.link.Peer().Version != tc.want {
				t.Fatalf("versions %d/%d, want %d", c.link.Peer().Version, s.link.Peer().Version, tc.want)
			}
			if p := s.link.Peer(); p.NodeID != 1 || p.Name != "a" || p.Reason != proto.ReasonJoin {
				t.Fatalf("server sees %+v", p)
			}
		})
	}
}

// TestProtocolsFromCaller: a link speaks only the sub-protocols of
// Config.Protocols. Without the peer table an end announces no peer
// versions, and even when Ranges claims them it refuses the link rather
// than run one it cannot check frames of.
func TestProtocolsFromCaller(t *testing.T) {
	for name, ranges := range map[string]proto.Ranges{"derived": nil, "claimed": protos.Ranges()} {
		t.Run(name, func(t *testing.T) {
			ca, _ := testConfig(1, "a")
			cb, _ := testConfig(2, "b")
			cb.Protocols, cb.Ranges = []*proto.OpSet{admin.Ops()}, ranges
			c, s := pair(t, ca, cb, proto.ReasonJoin)
			wantCode(t, "client", c.err, proto.CodeVersion)
			wantCode(t, "server", s.err, proto.CodeVersion)
		})
	}
}

func TestHandshakeRefusals(t *testing.T) {
	t.Run("wrong-key", func(t *testing.T) {
		ca, _ := testConfig(1, "a")
		cb, _ := testConfig(2, "b")
		ca.Key = bytes.Repeat([]byte{8}, KeySize)
		c, s := pair(t, ca, cb, proto.ReasonJoin)
		wantCode(t, "server", s.err, proto.CodeKeyExchange)
		wantCode(t, "client", c.err, proto.CodeKeyExchange)
	})
	t.Run("wrong-cluster", func(t *testing.T) {
		ca, _ := testConfig(1, "a")
		cb, _ := testConfig(2, "b")
		ca.Cluster = "other"
		c, s := pair(t, ca, cb, proto.ReasonJoin)
		wantCode(t, "server", s.err, proto.CodeCluster)
		wantCode(t, "client", c.err, proto.CodeCluster)
	})
	t.Run("same-node-id", func(t *testing.T) {
		ca, _ := testConfig(2, "a")
		cb, _ := testConfig(2, "b")
		c, s := pair(t, ca, cb, proto.ReasonJoin)
		wantCode(t, "server", s.err, proto.CodeNoPeer)
		wantCode(t, "client", c.err, proto.CodeNoPeer)
	})
	t.Run("not-served", func(t *testing.T) {
		ca, _ := testConfig(1, "a")
		cb, _ := testConfig(2, "b")
		c, s := pair(t, ca, cb, proto.ReasonAdmin)
		wantCode(t, "server", s.err, proto.CodeState)
		wantCode(t, "client", c.err, proto.CodeState)
	})
	t.Run("plain-against-tls", func(t *testing.T) {
		ca, _ := testConfig(1, "a")
		cb, _ := testConfig(2, "b")
		ca.Key = nil
		c, s := pair(t, ca, cb, proto.ReasonJoin)
		wantCode(t, "server", s.err, proto.CodeKeyExchange)
		if c.err == nil {
			t.Fatal("plain client got a link to a TLS server")
		}
	})
}

// acceptOne accepts one connection on ln and runs Accept on it.
func acceptOne(ln net.Listener, cfg *Config) <-chan result {
	ch := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			ch <- result{err: err}
			return
		}
		l, err := Accept(context.Background(), conn, cfg)
		ch <- result{l, err}
	}()
	return ch
}

func TestHandshakeSilentAndGarbage(t *testing.T) {
	cfg, _ := testConfig(2, "b")
	cfg.HandshakeTimeout = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	// A peer that connects and never speaks times out.
	ch := acceptOne(ln, cfg)
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := <-ch
	wantCode(t, "silent peer", r.err, proto.CodeTimeout)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("silent peer detected after %v", d)
	}
	conn.Close()

	// Garbage instead of a TLS ClientHello.
	ch = acceptOne(ln, cfg)
	conn, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(bytes.Repeat([]byte("garbage!"), 64))
	wantCode(t, "garbage", (<-ch).err, proto.CodeKeyExchange)
	conn.Close()

	// The listener still serves a good peer afterwards.
	ch = acceptOne(ln, cfg)
	good, _ := testConfig(1, "a")
	l, err := Dial(context.Background(), ln.Addr().String(), good, proto.ReasonJoin)
	if err != nil {
		t.Fatalf("good peer after bad ones: %v", err)
	}
	l.end(ErrClosed)
	if r := <-ch; r.err != nil {
		t.Fatalf("server: %v", r.err)
	} else {
		r.link.end(ErrClosed)
	}
}

func TestGarbageInsteadOfHello(t *testing.T) {
	// Inside TLS, a frame stream that does not start with a HELLO.
	for _, tc := range []struct {
		name  string
		bytes func() []byte
		code  proto.Code
	}{
		{"random-bytes", func() []byte { return bytes.Repeat([]byte{0xAB}, 200) }, proto.CodeSync},
		{"peer-frame-first", func() []byte {
			f := proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: 1, Opcode: peer.OpPing}, Body: proto.AppendPing(nil, proto.Ping{})}
			return proto.AppendFrame(nil, &f)
		}, proto.CodeField},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, _ := testConfig(2, "b")
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
			h := &hs{cfg: cfg, raw: raw, conn: raw, role: roleClient}
			if err := h.startTLS(); err != nil {
				t.Fatal(err)
			}
			h.conn.Write(tc.bytes())
			wantCode(t, "server", (<-ch).err, tc.code)
		})
	}
}

func collect(l *Link) (*[]string, *sync.Mutex) {
	var mu sync.Mutex
	var got []string
	l.Start(func(_ *Link, f *proto.Frame) error {
		mu.Lock()
		got = append(got, string(f.Body))
		mu.Unlock()
		return nil
	})
	return &got, &mu
}

func TestBadFramesEndOnlyThatLink(t *testing.T) {
	good := func() proto.Frame {
		return proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: peer.MaxVersion, Opcode: peer.OpPing, Hops: 1}, Body: proto.AppendPing(nil, proto.Ping{Sent: 1})}
	}
	enc := func(f proto.Frame) []byte { return proto.AppendFrame(nil, &f) }
	for _, tc := range []struct {
		name  string
		bytes func() []byte
		code  proto.Code
	}{
		{"bad-magic", func() []byte { b := enc(good()); b[0] ^= 0xFF; return b }, proto.CodeSync},
		{"swapped", func() []byte {
			b := enc(good())
			b[0], b[1], b[2], b[3] = b[3], b[2], b[1], b[0]
			return b
		}, proto.CodeSync},
		{"header-crc", func() []byte { b := enc(good()); b[20] ^= 1; return b }, proto.CodeHeaderCRC},
		{"payload-crc", func() []byte { b := enc(good()); b[len(b)-1] ^= 1; return b }, proto.CodePayloadCRC},
		{"oversize", func() []byte {
			f := good()
			f.Seal()
			f.BodyLen = 1 << 30
			b := make([]byte, proto.HeaderSize)
			proto.PutHeader(b, &f.Header)
			return b
		}, proto.CodeTooLarge},
		{"unknown-opcode", func() []byte { f := good(); f.Opcode = 0x7777; return enc(f) }, proto.CodeOpcode},
		{"wrong-version", func() []byte { f := good(); f.Version = 9; return enc(f) }, proto.CodeVersion},
		{"hello-again", func() []byte {
			f := proto.SessionFrame(proto.OpHello, nil)
			return enc(f)
		}, proto.CodeState},
		{"truncated", func() []byte { return enc(good())[:40] }, proto.CodeEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, _ := testConfig(1, "a")
			cb, _ := testConfig(2, "b")
			// A second, healthy link into the same server config.
			ok1, ok2 := pair(t, ca, cb, proto.ReasonJoin)
			c, s := pair(t, ca, cb, proto.ReasonJoin)
			if c.err != nil || s.err != nil || ok1.err != nil || ok2.err != nil {
				t.Fatalf("handshake: %v %v %v %v", c.err, s.err, ok1.err, ok2.err)
			}
			collect(s.link)
			got, mu := collect(ok2.link)
			ok1.link.Start(func(*Link, *proto.Frame) error { return nil })
			c.link.conn.Write(tc.bytes())
			if tc.code == proto.CodeEOF {
				c.link.conn.Close()
			}
			select {
			case <-s.link.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("bad input did not end the link")
			}
			wantCode(t, "server", s.link.Err(), tc.code)

			// The other link still carries messages.
			msg := proto.Frame{Header: proto.Header{Opcode: peer.OpPing}, Body: proto.AppendPing(nil, proto.Ping{Sent: time.Now().UnixNano()})}
			if err := ok1.link.Send(context.Background(), &msg); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for ok1.link.RTT() == 0 {
				if time.Now().After(deadline) {
					t.Fatal("healthy link stopped answering")
				}
				time.Sleep(5 * time.Millisecond)
			}
			mu.Lock()
			_ = *got
			mu.Unlock()
			select {
			case <-ok2.link.Done():
				t.Fatalf("healthy link ended: %v", ok2.link.Err())
			default:
			}
		})
	}
}

func TestHeartbeatTimeoutAndGoodbye(t *testing.T) {
	ca, _ := testConfig(1, "a")
	cb, _ := testConfig(2, "b")
	c, s := pair(t, ca, cb, proto.ReasonJoin)
	if c.err != nil || s.err != nil {
		t.Fatal(c.err, s.err)
	}
	// The client end never starts: it neither reads nor answers PING.
	s.link.Start(func(*Link, *proto.Frame) error { return nil })
	select {
	case <-s.link.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("silent peer not detected")
	}
	wantCode(t, "server", s.link.Err(), proto.CodeTimeout)

	c, s = pair(t, ca, cb, proto.ReasonJoin)
	if c.err != nil || s.err != nil {
		t.Fatal(c.err, s.err)
	}
	s.link.Start(func(*Link, *proto.Frame) error { return nil })
	c.link.Start(func(*Link, *proto.Frame) error { return nil })
	c.link.Close(proto.CodeShutdown, "test over")
	select {
	case <-s.link.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("goodbye not seen")
	}
	wantCode(t, "server", s.link.Err(), proto.CodeShutdown)
	if !strings.Contains(s.link.Err().Error(), "test over") {
		t.Fatalf("goodbye text lost: %v", s.link.Err())
	}
	if err := c.link.Send(context.Background(), &proto.Frame{}); err == nil {
		t.Fatal("Send on a closed link succeeded")
	}
}

// testOps extends the peer protocol with a data opcode that reaches the
// handler, for tests and benchmarks of the data path.
var testOps = func() *proto.OpSet {
	p := peer.Ops()
	table := map[uint16]proto.Op{}
	for _, op := range p.Opcodes() {
		table[op], _ = p.Lookup(op)
	}
	r := p.Range()
	return proto.NewOpSet(r.Proto, r.Min, r.Max, table, map[uint16]proto.Op{opTest: {Name: "TEST", Since: 1}})
}()

const opTest = 0x7001

func TestSendOrderAndRTT(t *testing.T) {
	ca, _ := testConfig(1, "a")
	cb, _ := testConfig(2, "b")
	c, s := pair(t, ca, cb, proto.ReasonJoin)
	if c.err != nil || s.err != nil {
		t.Fatal(c.err, s.err)
	}
	c.link.ops, s.link.ops = testOps, testOps
	const total = 3000
	var n atomic.Int64
	errc := make(chan error, 1)
	s.link.Start(func(_ *Link, f *proto.Frame) error {
		want := n.Add(1)
		if f.MsgID != uint64(want) || len(f.Body) != int(want*37%70000) || (len(f.Body) > 0 && f.Body[len(f.Body)-1] != byte(want)) {
			return errors.New("frame out of order or corrupted")
		}
		if want == total {
			errc <- nil
		}
		return nil
	})
	c.link.Start(func(*Link, *proto.Frame) error { return nil })
	for i := 1; i <= total; i++ {
		body := make([]byte, i*37%70000)
		if len(body) > 0 {
			body[len(body)-1] = byte(i)
		}
		f := proto.Frame{Header: proto.Header{Opcode: opTest, MsgID: uint64(i)}, Body: body}
		if err := c.link.Send(context.Background(), &f); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-errc:
	case <-s.link.Done():
		t.Fatalf("receiver ended: %v", s.link.Err())
	case <-time.After(20 * time.Second):
		t.Fatalf("received %d of %d", n.Load(), total)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.link.RTT() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no RTT measured")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
