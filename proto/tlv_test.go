package proto_test

import (
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

func TestTLVRoundTrip(t *testing.T) {
	want := []proto.TLV{{Type: 1, Value: []byte("a")}, {Type: 0x8002}, {Type: 0xffff, Value: make([]byte, 0xffff)}}
	var ext []byte
	for _, e := range want {
		ext = proto.AppendTLV(ext, e.Type, e.Value)
	}
	got, err := proto.ParseTLV(ext)
	if err != nil || !wiretest.Equal(got, want) {
		t.Fatalf("ParseTLV = %v entries, %v", len(got), err)
	}
	if err := proto.ValidateTLV(ext); err != nil {
		t.Fatal(err)
	}
	if got, err := proto.ParseTLV(nil); err != nil || got != nil {
		t.Fatalf("empty area: %v, %v", got, err)
	}
}

func TestTLVCritical(t *testing.T) {
	ext := proto.AppendTLV(proto.AppendTLV(nil, 0x0005, []byte("skip me")), 0x8007, []byte("must know"))
	known7 := func(typ uint16) bool { return typ == 0x8007 }
	knowNothing := func(uint16) bool { return false }

	if err := proto.CheckTLV(ext, known7); err != nil {
		t.Fatalf("known critical extension refused: %v", err)
	}
	wiretest.Expect(t, proto.CheckTLV(ext, knowNothing), proto.CodeField, "unknown critical extension 0x8007")
	wiretest.Expect(t, proto.CheckTLV(ext, nil), proto.CodeField, "unknown critical extension 0x8007")

	// Unknown non-critical extensions are skipped.
	if err := proto.CheckTLV(proto.AppendTLV(nil, 0x7fff, []byte{1}), nil); err != nil {
		t.Fatalf("unknown non-critical extension refused: %v", err)
	}
	// A malformed area is refused before any critical check.
	wiretest.Expect(t, proto.CheckTLV(append(ext, 0x01), known7), proto.CodeField, "1 stray bytes")
}

func TestTLVMalformed(t *testing.T) {
	for _, c := range []struct {
		name   string
		ext    []byte
		detail string
	}{
		{"one byte", []byte{1}, "1 stray bytes at offset 0"},
		{"header only partly", []byte{1, 0, 5}, "3 stray bytes"},
		{"value overruns", []byte{1, 0, 5, 0, 'a'}, "length 5 overruns the area by 4 bytes"},
		{"second entry overruns", append(proto.AppendTLV(nil, 1, nil), 2, 0, 1, 0), "extension 0x0002: length 1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := proto.ParseTLV(c.ext)
			wiretest.Expect(t, err, proto.CodeField, c.detail)
			wiretest.Expect(t, proto.ValidateTLV(c.ext), proto.CodeField, c.detail)
		})
	}
}
