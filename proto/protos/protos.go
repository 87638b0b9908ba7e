package protos

import (
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/peer"
)

// All returns the opcode tables of every sub-protocol this build speaks,
// in the order their ranges are announced. The slice is new on each call;
// the OpSets are shared and immutable.
func All() []*proto.OpSet {
	return []*proto.OpSet{peer.Ops(), client.Ops(), admin.Ops()}
}

// Ranges returns the version ranges of All.
func Ranges() proto.Ranges {
	all := All()
	rs := make(proto.Ranges, len(all))
	for i, s := range all {
		rs[i] = s.Range()
	}
	return rs
}
