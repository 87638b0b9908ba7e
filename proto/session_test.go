package proto_test

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

func fullRanges() proto.Ranges {
	rs := make(proto.Ranges, 0, proto.MaxRanges)
	for p := range proto.ProtoID(4) {
		rs = append(rs, proto.Range{Proto: p, Min: uint8(p), Max: 255})
	}
	return rs
}

func helloCases() []proto.Hello {
	return []proto.Hello{
		sampleHello,
		authedHello(),
		sampleLocalHello,
		{Reason: proto.ReasonRejoin, NodeID: ^uint64(0), Features: ^uint64(0), Ranges: fullRanges(),
			Cluster: strings.Repeat("c", proto.MaxNameLen), NodeName: strings.Repeat("n", proto.MaxNameLen), Auth: seq(0xe0, proto.AuthLen)},
		{Reason: proto.ReasonRelay},
		{Reason: proto.ReasonAdmin, Ranges: proto.Ranges{{Proto: proto.ProtoAdmin, Min: 1, Max: 3}}, NodeName: "ünïcode"},
	}
}

func TestHelloRoundTrip(t *testing.T) {
	for _, h := range helloCases() {
		b, off := proto.AppendHello(nil, &h)
		got, goff, err := proto.ParseHello(b)
		if err != nil {
			t.Fatalf("ParseHello(AppendHello(%+v)): %v", h, err)
		}
		if !wiretest.Equal(got, h) {
			t.Fatalf("round trip: got %+v, want %+v", got, h)
		}
		if goff != off || off != len(b)-2-len(h.Auth) {
			t.Fatalf("auth offset: AppendHello %d, ParseHello %d, body %d bytes with %d auth", off, goff, len(b), len(h.Auth))
		}
		if again, _ := proto.AppendHello(nil, &got); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding changed the body")
		}
	}
}

// TestHelloAuthOffsetWithPrefix: AppendHello's offset indexes its output,
// so a caller appending after other bytes subtracts where the body began.
func TestHelloAuthOffsetWithPrefix(t *testing.T) {
	h := authedHello()
	plain, off := proto.AppendHello(nil, &h)
	out, off2 := proto.AppendHello([]byte("0123"), &h)
	if off2 != off+4 || !bytes.Equal(out[4:], plain) {
		t.Fatalf("offset %d with a 4-byte prefix, %d without", off2, off)
	}
}

// TestHelloMACCoversFields: changing any byte before the auth length
// changes the MAC input, so a verifier notices.
func TestHelloMACCoversFields(t *testing.T) {
	h := authedHello()
	b, off := proto.AppendHello(nil, &h)
	for i := range off {
		c := bytes.Clone(b)
		c[i] ^= 1
		if bytes.Equal(helloMAC(helloKey, 1, helloExporter, c[:off]), h.Auth) {
			t.Fatalf("MAC unchanged with byte %d flipped", i)
		}
	}
	if bytes.Equal(helloMAC(helloKey, 2, helloExporter, b[:off]), h.Auth) {
		t.Fatal("the MAC of the TLS server side equals the client side's: a reflected HELLO would pass")
	}
}

func TestRejectRoundTrip(t *testing.T) {
	for _, rj := range []proto.Reject{
		sampleReject,
		{Code: proto.CodeCluster, Text: "cluster \"prod\", you said \"test\""},
		{Code: proto.CodeVersion, Local: fullRanges(), Remote: fullRanges(), Text: strings.Repeat("t", proto.MaxReasonLen)},
		{},
	} {
		b := proto.AppendReject(nil, &rj)
		got, err := proto.ParseReject(b)
		if err != nil {
			t.Fatalf("ParseReject(AppendReject(%+v)): %v", rj, err)
		}
		if !wiretest.Equal(got, rj) {
			t.Fatalf("round trip: got %+v, want %+v", got, rj)
		}
	}
}

func TestRejectTruncatesText(t *testing.T) {
	rj := proto.Reject{Code: proto.CodeVersion, Text: strings.Repeat("x", proto.MaxReasonLen+100)}
	got, err := proto.ParseReject(proto.AppendReject(nil, &rj))
	if err != nil || len(got.Text) != proto.MaxReasonLen {
		t.Fatalf("text of %d bytes, err %v; want it cut to %d", len(got.Text), err, proto.MaxReasonLen)
	}
}

func TestRejectErr(t *testing.T) {
	err := sampleReject.Err()
	wiretest.Expect(t, err, proto.CodeVersion, "peer speaks peer 2..3; we offered peer 1..1, admin 1..1")
	if !strings.Contains(err.Error(), sampleReject.Text) {
		t.Fatalf("%q lacks the peer's text", err)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for _, st := range []proto.Status{
		sampleGoodbye,
		{Code: proto.CodeDup, Text: "a link to node 7 exists already"},
		{Code: proto.CodeState},
		{Code: 0xffff, Text: strings.Repeat("s", proto.MaxReasonLen)},
	} {
		b := proto.AppendStatus(nil, &st)
		got, err := proto.ParseStatus(b, "GOODBYE")
		if err != nil || got != st {
			t.Fatalf("round trip of %+v: %+v, %v", st, got, err)
		}
	}
	wiretest.Expect(t, sampleGoodbye.Err(), proto.CodeShutdown, "the peer failed the request: agent stopping")
	_, err := proto.ParseStatus([]byte{1}, "ABORT")
	wiretest.Expect(t, err, proto.CodeField, "ABORT: truncated")
}

func TestPingRoundTrip(t *testing.T) {
	for _, sent := range []int64{0, 1, -1, 1700000000123456789, -1 << 63} {
		b := proto.AppendPing(nil, proto.Ping{Sent: sent})
		if len(b) != proto.PingSize {
			t.Fatalf("PING body of %d bytes", len(b))
		}
		p, err := proto.ParsePing(b)
		if err != nil || p.Sent != sent {
			t.Fatalf("round trip of %d: %d, %v", sent, p.Sent, err)
		}
	}
}

func TestNegotiate(t *testing.T) {
	r := func(p proto.ProtoID, lo, hi uint8) proto.Range { return proto.Range{Proto: p, Min: lo, Max: hi} }
	peer := proto.ProtoPeer
	for _, c := range []struct {
		name          string
		local, remote proto.Ranges
		want          uint8
		detail        string // for an error
	}{
		{"equal single", proto.Ranges{r(peer, 1, 1)}, proto.Ranges{r(peer, 1, 1)}, 1, ""},
		{"equal range picks the highest", proto.Ranges{r(peer, 1, 4)}, proto.Ranges{r(peer, 1, 4)}, 4, ""},
		{"overlap, we are newer", proto.Ranges{r(peer, 2, 5)}, proto.Ranges{r(peer, 1, 3)}, 3, ""},
		{"overlap, peer is newer", proto.Ranges{r(peer, 1, 3)}, proto.Ranges{r(peer, 2, 5)}, 3, ""},
		{"one contains the other", proto.Ranges{r(peer, 1, 9)}, proto.Ranges{r(peer, 4, 6)}, 6, ""},
		{"touching at one version", proto.Ranges{r(peer, 3, 5)}, proto.Ranges{r(peer, 1, 3)}, 3, ""},
		{"other protocols are ignored", proto.Ranges{r(proto.ProtoAdmin, 7, 7), r(peer, 1, 2)}, proto.Ranges{r(peer, 2, 2), r(proto.ProtoClient, 9, 9)}, 2, ""},
		{"disjoint, peer too old", proto.Ranges{r(peer, 3, 4)}, proto.Ranges{r(peer, 1, 2)}, 0, "peer protocol: we speak 3..4, peer speaks 1..2"},
		{"disjoint, peer too new", proto.Ranges{r(peer, 1, 2)}, proto.Ranges{r(peer, 3, 4)}, 0, "peer protocol: we speak 1..2, peer speaks 3..4"},
		{"peer lacks the protocol", proto.Ranges{r(peer, 1, 1)}, proto.Ranges{r(proto.ProtoAdmin, 1, 1)}, 0, "peer protocol: peer speaks none, we speak 1..1"},
		{"peer sent no ranges", proto.Ranges{r(peer, 1, 1)}, nil, 0, "peer speaks none"},
		{"we lack the protocol", proto.Ranges{r(proto.ProtoClient, 1, 1)}, proto.Ranges{r(peer, 1, 1)}, 0, "peer protocol: not spoken here"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v, err := proto.Negotiate(peer, c.local, c.remote)
			if c.detail != "" {
				wiretest.Expect(t, err, proto.CodeVersion, c.detail)
				return
			}
			if err != nil || v != c.want {
				t.Fatalf("Negotiate = %d, %v; want %d", v, err, c.want)
			}
			// The rule is symmetric: both sides arrive at the same version.
			if v2, err := proto.Negotiate(peer, c.remote, c.local); err != nil || v2 != v {
				t.Fatalf("the other side gets %d, %v; this side %d", v2, err, v)
			}
		})
	}
}

func TestReason(t *testing.T) {
	for _, c := range []struct {
		r     proto.Reason
		name  string
		proto proto.ProtoID
	}{
		{proto.ReasonJoin, "join", proto.ProtoPeer},
		{proto.ReasonRejoin, "rejoin", proto.ProtoPeer},
		{proto.ReasonRelay, "relay", proto.ProtoPeer},
		{proto.ReasonAdmin, "admin", proto.ProtoAdmin},
		{proto.ReasonClient, "client", proto.ProtoClient},
		{9, "reason(9)", proto.ProtoPeer},
	} {
		if c.r.String() != c.name || c.r.Proto() != c.proto {
			t.Errorf("Reason %d: %q speaks %s, want %q speaking %s", c.r, c.r, c.r.Proto(), c.name, c.proto)
		}
	}
}

func TestCheckSession(t *testing.T) {
	for _, op := range []uint16{proto.OpHello, proto.OpReject, proto.OpGoodbye} {
		f := proto.SessionFrame(op, nil)
		if f.Proto != proto.ProtoSession || f.Version != 0 || f.Flags != proto.FlagCreate|proto.FlagDelete || f.Hops != 1 {
			t.Fatalf("SessionFrame(%d) header %+v", op, f.Header)
		}
		if err := proto.CheckSession(&f.Header); err != nil {
			t.Fatal(err)
		}
	}
	h := proto.SessionFrame(proto.OpHello, nil).Header
	h.Proto = proto.ProtoPeer
	wiretest.Expect(t, proto.CheckSession(&h), proto.CodeField, "peer protocol where a session frame is expected")
	h = proto.SessionFrame(proto.OpHello, nil).Header
	h.Version = 2
	wiretest.Expect(t, proto.CheckSession(&h), proto.CodeVersion, "version 2, want 0")
	h = proto.SessionFrame(0, nil).Header
	wiretest.Expect(t, proto.CheckSession(&h), proto.CodeOpcode, "session opcode 0x0000")
}

func TestEncoderPanicsOnProgrammingErrors(t *testing.T) {
	for name, fn := range map[string]func(){
		"too many ranges": func() {
			h := proto.Hello{Reason: proto.ReasonJoin, Ranges: make(proto.Ranges, proto.MaxRanges+1)}
			proto.AppendHello(nil, &h)
		},
		"string over 64 KiB": func() { proto.AppendString16(nil, strings.Repeat("x", 1<<16)) },
		"TLV over 64 KiB":    func() { proto.AppendTLV(nil, 1, make([]byte, 1<<16)) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			fn()
		}()
	}
}

func TestRangesString(t *testing.T) {
	if got := sampleReject.Remote.String(); got != "peer 1..1, admin 1..1" {
		t.Fatalf("Ranges.String = %q", got)
	}
	if _, ok := sampleReject.Remote.Find(proto.ProtoClient); ok {
		t.Fatal("Find reported a range that is not there")
	}
	var pe *proto.Error
	if !errors.As(sampleReject.Err(), &pe) || pe.Code != proto.CodeVersion {
		t.Fatal("Reject.Err is not a *proto.Error")
	}
}

func TestSessionExt(t *testing.T) {
	if b := proto.AppendSessionExt(nil, proto.SessionExt{}); len(b) != 0 {
		t.Fatalf("an unknown cluster id encodes as %x; it must be omitted, as an old HELLO has none", b)
	}
	e, err := proto.ParseSessionExt(nil)
	if err != nil || e.ClusterID != 0 {
		t.Fatalf("no extensions: %+v, %v; want cluster id 0", e, err)
	}
	want := proto.SessionExt{ClusterID: 0xfeedface00000001}
	b := proto.AppendSessionExt(proto.AppendTLV(nil, 0x0042, []byte("later")), want)
	if e, err := proto.ParseSessionExt(b); err != nil || e != want {
		t.Fatalf("with an unknown optional entry first: %+v, %v", e, err)
	}
	if !bytes.Equal(b[len(b)-12:], []byte{0x01, 0x00, 0x08, 0x00, 0x01, 0, 0, 0, 0xce, 0xfa, 0xed, 0xfe}) {
		t.Fatalf("cluster id entry %x", b[len(b)-12:])
	}
	_, err = proto.ParseSessionExt([]byte{1, 0, 8, 0, 1})
	wiretest.Expect(t, err, proto.CodeField, "overruns")
}
