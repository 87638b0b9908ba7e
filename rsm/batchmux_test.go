package rsm_test

import (
	"path/filepath"
	"slices"
	"testing"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
)

// TestBatchMux: a batch publish gets the events of every entry of the
// committed transaction in one call, in log order, and nothing for a
// transaction without events.
func TestBatchMux(t *testing.T) {
	st, err := clusterlog.OpenStorage(filepath.Join(t.TempDir(), "log.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var calls [][]uint64
	mux := rsm.NewBatchMux(func(evs []events.Event) {
		var seqs []uint64
		for _, ev := range evs {
			seqs = append(seqs, ev.Seq)
		}
		calls = append(calls, seqs)
	}, nil)
	for _, mc := range []rsm.Machine{&observer{id: 5, n: 2}, &observer{id: 6, n: 0}} {
		if err := mux.Register(mc); err != nil {
			t.Fatal(err)
		}
	}
	commit := func(machine rsm.ID, indexes ...uint64) {
		t.Helper()
		if err := st.Update(func(b *clusterlog.Batch) error {
			for _, i := range indexes {
				env := rsm.Envelope{Machine: machine, Proposer: 1, Cmd: []byte("x")}
				if _, err := mux.Apply(b.App(), clusterlog.Entry{Index: i, Term: 1, Kind: clusterlog.KindData, Data: rsm.AppendEnvelope(nil, env)}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		mux.Committed(indexes[len(indexes)-1])
	}
	commit(5, 3, 4, 5)
	commit(6, 6)
	commit(5, 7)
	want := [][]uint64{{3 << 20, 3<<20 | 1, 4 << 20, 4<<20 | 1, 5 << 20, 5<<20 | 1}, {7 << 20, 7<<20 | 1}}
	if !slices.EqualFunc(calls, want, slices.Equal) {
		t.Fatalf("publish calls %v, want %v", calls, want)
	}
}
