package proto_test

import (
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

func TestReader(t *testing.T) {
	b := []byte{1, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 'h', 'i', 0, 0}
	r := proto.NewReader(b, "TEST")
	if r.U8("a") != 1 || r.U16("b") != 2 || r.U32("c") != 3 || r.U64("d") != 4 || r.String16(2, "s") != "hi" {
		t.Fatal("fields read wrong")
	}
	r.Zero(2, "pad")
	if r.Len() != 0 || r.Err() != nil {
		t.Fatalf("Len %d, Err %v", r.Len(), r.Err())
	}

	// The first error sticks; later reads return zero values.
	r = proto.NewReader([]byte{1, 2, 3}, "TEST")
	if r.U32("first") != 0 || r.U8("second") != 0 || r.Bytes(1, "third") != nil {
		t.Fatal("reads after a failure returned data")
	}
	wiretest.Expect(t, r.Err(), proto.CodeField, "TEST: truncated at first (offset 0, need 4 bytes, have 3)")

	r = proto.NewReader([]byte{3, 0, 'a', 'b', 'c'}, "TEST")
	_ = r.String16(2, "name")
	wiretest.Expect(t, r.Err(), proto.CodeField, "TEST: name is 3 bytes, limit 2")

	r = proto.NewReader([]byte{3}, "TEST")
	_ = r.String16(2, "name")
	wiretest.Expect(t, r.Err(), proto.CodeField, "TEST: truncated at name length (offset 0, need 2 bytes, have 1)")

	r = proto.NewReader([]byte{0, 1}, "TEST")
	r.Zero(2, "pad")
	wiretest.Expect(t, r.Err(), proto.CodeField, "TEST: reserved pad is not zero")

	r = proto.NewReader([]byte{1, 2}, "TEST")
	r.U8("a")
	wiretest.Expect(t, r.Err(), proto.CodeField, "TEST: 1 unexpected bytes after the last field")

	r = proto.NewReader(nil, "TEST")
	r.Fail(proto.CodeVersion, "first %d", 1)
	r.Fail(proto.CodeField, "second")
	wiretest.Expect(t, r.Err(), proto.CodeVersion, "TEST: first 1")
}
