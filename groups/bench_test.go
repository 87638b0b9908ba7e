package groups_test

import (
	"bytes"
	"testing"

	"github.com/corralhq/corral/groups"
	"github.com/corralhq/corral/rsm"
)

// BenchmarkApplyMulticast applies batches of 64 MULTICASTs of 100 bytes
// to a group of 3 members, the shape of the throughput benchmark; an op
// is a batch.
func BenchmarkApplyMulticast(b *testing.B) {
	m, tx := groups.NewMachine(nil), memTx{}
	index, n := uint64(0), uint64(0)
	apply := func(cmds []groups.Cmd) rsm.Result {
		index++
		n++
		cmd, err := groups.AppendBatch(nil, groups.Header{Node: 1, Run: 1, N: n}, cmds)
		if err != nil {
			b.Fatal(err)
		}
		res, err := m.Apply(tx, rsm.Entry{Index: index, Cmd: cmd})
		if err != nil {
			b.Fatal(err)
		}
		return res
	}
	var setup []groups.Cmd
	for k := uint64(1); k <= 3; k++ {
		setup = append(setup, groups.Cmd{Op: groups.OpOpen, Key: k}, groups.Cmd{Op: groups.OpJoin, Key: k, Group: "bench"})
	}
	apply(setup)
	sends := make([]groups.Cmd, 64)
	for i := range sends {
		sends[i] = groups.Cmd{Op: groups.OpSend, Key: 1, Group: "bench", Kind: 4, MsgID: uint64(i), Payload: bytes.Repeat([]byte{'x'}, 100)}
	}
	b.ReportAllocs()
	for b.Loop() {
		if res := apply(sends); len(res.Events) != len(sends) {
			b.Fatalf("%d events", len(res.Events))
		}
	}
}
