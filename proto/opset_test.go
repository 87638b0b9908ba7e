package proto_test

import (
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

func TestOpSetCheck(t *testing.T) {
	ops := proto.NewOpSet(proto.ProtoPeer, 1, 3, map[uint16]proto.Op{
		1: {Name: "PING", Since: 1},
	}, map[uint16]proto.Op{
		7: {Name: "NEWER", Since: 2},
	})
	if r := ops.Range(); r != (proto.Range{Proto: proto.ProtoPeer, Min: 1, Max: 3}) {
		t.Fatalf("Range = %v", r)
	}
	if ops.Name(7) != "NEWER" || ops.Name(8) != "0x0008" {
		t.Fatalf("Name(7) = %q, Name(8) = %q", ops.Name(7), ops.Name(8))
	}
	if o, ok := ops.Lookup(7); !ok || o.Since != 2 || ops.Proto() != proto.ProtoPeer {
		t.Fatalf("Lookup(7) = %v, %v; Proto() = %v", o, ok, ops.Proto())
	}
	if got := ops.Opcodes(); len(got) != 2 || got[0] != 1 || got[1] != 7 {
		t.Fatalf("Opcodes() = %v", got)
	}
	h := func(p proto.ProtoID, v uint8, op uint16) *proto.Header {
		return &proto.Header{Proto: p, Version: v, Opcode: op}
	}
	for _, c := range []struct {
		name   string
		h      *proto.Header
		v      uint8
		want   proto.Code
		detail string
	}{
		{"defined since v1, link at v1", h(proto.ProtoPeer, 1, 1), 1, proto.CodeNone, ""},
		{"defined since v2, link at v3", h(proto.ProtoPeer, 3, 7), 3, proto.CodeNone, ""},
		{"defined since v2, link at v1", h(proto.ProtoPeer, 1, 7), 1, proto.CodeOpcode, "peer protocol version 1 has no opcode 0x0007"},
		{"never defined", h(proto.ProtoPeer, 2, 0x0100), 2, proto.CodeOpcode, "no opcode 0x0100"},
		{"frame of another version", h(proto.ProtoPeer, 2, 1), 1, proto.CodeVersion, "peer frame of version 2 on a link that agreed on 1"},
		{"frame of another protocol", h(proto.ProtoAdmin, 1, 1), 1, proto.CodeField, "frame of the admin protocol on a peer link"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := ops.Check(c.h, c.v)
			if c.want == proto.CodeNone {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wiretest.Expect(t, err, c.want, c.detail)
		})
	}
}

// TestNewOpSetCopies: an OpSet is shared by every link, so nothing its
// creator does later may change it, and an opcode defined twice is caught
// when the table is built.
func TestNewOpSetCopies(t *testing.T) {
	table := map[uint16]proto.Op{1: {Name: "PING", Since: 1}}
	ops := proto.NewOpSet(proto.ProtoAdmin, 1, 1, table)
	table[9] = proto.Op{Name: "LATE", Since: 1}
	if _, ok := ops.Lookup(9); ok {
		t.Fatal("a change to the table reached the OpSet")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("a duplicate opcode was accepted")
		}
	}()
	proto.NewOpSet(proto.ProtoAdmin, 1, 1, table, map[uint16]proto.Op{1: {Name: "AGAIN", Since: 1}})
}
