package proto_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

func TestCRC32CCheckValue(t *testing.T) {
	if got := proto.CRC32C([]byte("123456789")); got != 0xE3069283 {
		t.Fatalf("CRC32C(\"123456789\") = %#08x, want 0xe3069283", got)
	}
	ext, body := []byte("extension"), []byte("and body")
	if got, want := proto.PayloadCRC(ext, body), proto.CRC32C(append(bytes.Clone(ext), body...)); got != want {
		t.Fatalf("PayloadCRC = %#08x, CRC32C of the concatenation = %#08x", got, want)
	}
}

// TestHeaderLayout restates the header table of SPEC.md: every field at
// its offset, little-endian.
func TestHeaderLayout(t *testing.T) {
	f := proto.Frame{
		Header: proto.Header{
			Proto: proto.ProtoAdmin, Version: 0x12, Opcode: 0x3456, Flags: proto.FlagReply | proto.FlagAbort,
			Hops: 0x9a, MsgID: 0x0102030405060708, Source: 0x1112131415161718, Target: 0x2122232425262728,
		},
		Ext:  proto.AppendTLV(nil, 7, []byte{1}),
		Body: []byte("body"),
	}
	b := wiretest.Frame(f)
	le := binary.LittleEndian
	for _, c := range []struct {
		name      string
		got, want uint64
	}{
		{"magic", uint64(le.Uint32(b[0:])), 0x52524F43},
		{"header CRC", uint64(le.Uint32(b[4:])), uint64(proto.CRC32C(b[8:56]))},
		{"proto", uint64(b[8]), 3},
		{"version", uint64(b[9]), 0x12},
		{"opcode", uint64(le.Uint16(b[10:])), 0x3456},
		{"flags", uint64(le.Uint16(b[12:])), 0x000c},
		{"hops", uint64(b[14]), 0x9a},
		{"reserved byte", uint64(b[15]), 0},
		{"msg id", le.Uint64(b[16:]), 0x0102030405060708},
		{"source", le.Uint64(b[24:]), 0x1112131415161718},
		{"target", le.Uint64(b[32:]), 0x2122232425262728},
		{"ext len", uint64(le.Uint32(b[40:])), 5},
		{"body len", uint64(le.Uint32(b[44:])), 4},
		{"payload CRC", uint64(le.Uint32(b[48:])), uint64(proto.CRC32C(b[56:]))},
		{"reserved word", uint64(le.Uint32(b[52:])), 0},
		{"frame size", uint64(len(b)), 56 + 5 + 4},
	} {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if string(b[:4]) != "CORR" {
		t.Errorf("magic bytes %q, want \"CORR\"", b[:4])
	}
	if proto.MagicSwapped != binary.BigEndian.Uint32(b[:4]) {
		t.Errorf("MagicSwapped %#08x is not the magic read the other way round", proto.MagicSwapped)
	}
}

func randomFrame(r *rand.Rand) proto.Frame {
	f := proto.Frame{Header: proto.Header{
		Proto:   proto.ProtoID(r.IntN(4)),
		Version: uint8(r.Uint32()),
		Opcode:  uint16(r.Uint32()),
		Flags:   proto.Flags(r.IntN(16)),
		Hops:    uint8(r.Uint32()),
		MsgID:   r.Uint64(),
		Source:  r.Uint64(),
		Target:  r.Uint64(),
	}}
	for range r.IntN(4) {
		v := make([]byte, r.IntN(20))
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		f.Ext = proto.AppendTLV(f.Ext, uint16(r.Uint32())&^proto.TLVCritical, v)
	}
	f.Body = make([]byte, r.IntN(300))
	for i := range f.Body {
		f.Body[i] = byte(r.Uint32())
	}
	return f
}

func TestFrameRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		f := randomFrame(r)
		b := proto.AppendFrame(nil, &f)
		got, err := proto.DecodeFrame(b, 0)
		if err != nil {
			t.Fatalf("DecodeFrame(AppendFrame(%+v)): %v", f, err)
		}
		if !wiretest.Equal(got, f) {
			t.Fatalf("round trip: got %+v, want %+v", got, f)
		}
		if again := proto.AppendFrame(nil, &got); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding a decoded frame changed it:\n%x\n%x", again, b)
		}
	}
}

func TestAppendFrameKeepsPrefix(t *testing.T) {
	f := fullFrame
	out := proto.AppendFrame([]byte("prefix"), &f)
	if string(out[:6]) != "prefix" {
		t.Fatalf("prefix overwritten: %q", out[:6])
	}
	if _, err := proto.DecodeFrame(out[6:], 0); err != nil {
		t.Fatal(err)
	}
}

// TestFrameSlicesAreClipped checks that appending to a decoded Ext or
// Body cannot write into the bytes that follow them.
func TestFrameSlicesAreClipped(t *testing.T) {
	f, err := proto.DecodeFrame(wiretest.Frame(fullFrame), 0)
	if err != nil {
		t.Fatal(err)
	}
	if cap(f.Ext) != len(f.Ext) || cap(f.Body) != len(f.Body) {
		t.Fatalf("cap(Ext)=%d len=%d, cap(Body)=%d len=%d: appends would overwrite the buffer",
			cap(f.Ext), len(f.Ext), cap(f.Body), len(f.Body))
	}
}

func TestParseHeaderLimits(t *testing.T) {
	withLens := func(ext, body uint32) []byte {
		b := wiretest.Frame(minimalFrame)
		binary.LittleEndian.PutUint32(b[40:], ext)
		binary.LittleEndian.PutUint32(b[44:], body)
		return wiretest.Reseal(b)[:proto.HeaderSize]
	}
	for _, c := range []struct {
		name      string
		ext, body uint32
		max       int
		want      proto.Code
	}{
		{"payload at the limit", 10, 90, 100, proto.CodeNone},
		{"payload one over the limit", 10, 91, 100, proto.CodeTooLarge},
		{"ext at MaxExtSize", proto.MaxExtSize, 0, 0, proto.CodeNone},
		{"ext over MaxExtSize", proto.MaxExtSize + 1, 0, 0, proto.CodeTooLarge},
		{"default limit exactly", 0, proto.DefaultMaxPayload, 0, proto.CodeNone},
		{"default limit plus one", 0, proto.DefaultMaxPayload + 1, -1, proto.CodeTooLarge},
		{"lengths whose sum overflows u32", proto.MaxExtSize, 0xFFFFFFFF, 0, proto.CodeTooLarge},
	} {
		h, err := proto.ParseHeader(withLens(c.ext, c.body), c.max)
		if c.want == proto.CodeNone {
			if err != nil {
				t.Errorf("%s: %v", c.name, err)
			} else if h.ExtLen != c.ext || h.BodyLen != c.body {
				t.Errorf("%s: lengths %d/%d, want %d/%d", c.name, h.ExtLen, h.BodyLen, c.ext, c.body)
			}
			continue
		}
		t.Run(c.name, func(t *testing.T) { wiretest.Expect(t, err, c.want, "") })
	}
}

// TestParseHeaderIgnoresPayload: ParseHeader looks at 56 bytes only.
func TestParseHeaderIgnoresPayload(t *testing.T) {
	b := wiretest.Frame(fullFrame)
	b[len(b)-1] ^= 0xff
	if _, err := proto.ParseHeader(b, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := proto.ParseHeader(b[:proto.HeaderSize-1], 0); err == nil {
		t.Fatal("ParseHeader accepted 55 bytes")
	}
}

func TestCheckPayloadLength(t *testing.T) {
	b := wiretest.Frame(fullFrame)
	h, err := proto.ParseHeader(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = proto.CheckPayload(h, b[proto.HeaderSize:len(b)-1])
	wiretest.Expect(t, err, proto.CodeEOF, "payload needs")
	f, err := proto.CheckPayload(h, b[proto.HeaderSize:])
	if err != nil || !bytes.Equal(f.Body, fullFrame.Body) {
		t.Fatalf("CheckPayload = %+v, %v", f, err)
	}
}

func TestProtoIDString(t *testing.T) {
	for p, want := range map[proto.ProtoID]string{0: "session", 1: "peer", 2: "client", 3: "admin", 9: "proto(9)"} {
		if got := p.String(); got != want {
			t.Errorf("ProtoID(%d) = %q, want %q", p, got, want)
		}
	}
}
