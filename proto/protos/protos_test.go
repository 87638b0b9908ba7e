package protos_test

import (
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/protos"
)

// TestAll: each sub-protocol once, and Ranges announcing what All speaks
// in the same order, which is the order hellos carry them on the wire.
func TestAll(t *testing.T) {
	want := []proto.ProtoID{proto.ProtoPeer, proto.ProtoClient, proto.ProtoAdmin}
	all, rs := protos.All(), protos.Ranges()
	if len(all) != len(want) || len(rs) != len(want) {
		t.Fatalf("All() has %d sets, Ranges() %d; want %d", len(all), len(rs), len(want))
	}
	for i, p := range want {
		if all[i].Proto() != p || rs[i] != all[i].Range() {
			t.Errorf("entry %d: set %v range %v; want %v with its own range", i, all[i].Proto(), rs[i], p)
		}
	}
	all[0] = nil
	if protos.All()[0] == nil {
		t.Fatal("All returned a shared slice")
	}
}
