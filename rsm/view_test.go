package rsm_test

import (
	"io"
	"path/filepath"
	"slices"
	"testing"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
)

// viewMemb stands in for the Membership machine: a conf entry whose
// context is "view" makes a NEWVIEW (instance = index); any other makes
// only a SUSPECT.
type viewMemb struct{}

func (viewMemb) ID() rsm.ID { return rsm.Membership }

func (viewMemb) Apply(_ rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	if string(e.Cmd) != "view" {
		return rsm.Result{Events: []events.Event{{Desc: events.MSSuspect}}}, nil
	}
	v := &events.Membership{Instance: e.Index}
	return rsm.Result{Events: []events.Event{{Desc: events.MSSuspect}, {Desc: events.MSNewView, Data: v}}}, nil
}
func (viewMemb) Snapshot(rsm.Tx, io.Writer) error { return nil }
func (viewMemb) Restore(rsm.Tx, io.Reader) error  { return nil }

// observer records the views it saw and returns n events for each.
type observer struct {
	id    rsm.ID
	n     int
	seen  []rsm.Entry
	views []uint64
}

func (o *observer) ID() rsm.ID { return o.id }
func (o *observer) Apply(rsm.Tx, rsm.Entry) (rsm.Result, error) {
	return rsm.Result{Events: make([]events.Event, o.n)}, nil
}
func (o *observer) ApplyView(tx rsm.Tx, e rsm.Entry, v *events.Membership) (rsm.Result, error) {
	if err := tx.Put([]byte("view"), []byte{byte(v.Instance)}); err != nil {
		return rsm.Result{}, err
	}
	o.seen, o.views = append(o.seen, e), append(o.views, v.Instance)
	evs := make([]events.Event, o.n)
	for i := range evs {
		evs[i] = events.Event{Desc: events.GSLeave, Data: &events.Group{Name: string(rune('a' + int(o.id)))}}
	}
	return rsm.Result{Events: evs}, nil
}
func (o *observer) Snapshot(rsm.Tx, io.Writer) error { return nil }
func (o *observer) Restore(rsm.Tx, io.Reader) error  { return nil }

// TestViewObserver: after a conf entry that makes a NEWVIEW, the observers
// run in id order, their events follow the entry's own, and every event of
// the entry has its own Seq. A conf entry without a NEWVIEW calls nobody.
func TestViewObserver(t *testing.T) {
	st, err := clusterlog.OpenStorage(filepath.Join(t.TempDir(), "log.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var got []events.Event
	mux := rsm.NewMux(func(ev events.Event) { got = append(got, ev) }, nil)
	o5, o3 := &observer{id: 5, n: 1}, &observer{id: 3, n: 2}
	for _, mc := range []rsm.Machine{o5, viewMemb{}, o3, counter{}} {
		if err := mux.Register(mc); err != nil {
			t.Fatal(err)
		}
	}
	apply := func(e clusterlog.Entry) {
		t.Helper()
		if err := st.Update(func(b *clusterlog.Batch) error {
			_, err := mux.Apply(b.App(), e)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		mux.Committed(e.Index)
	}
	conf := func(index uint64, ctx string) clusterlog.Entry {
		return clusterlog.Entry{Index: index, Term: 1, Kind: clusterlog.KindConfChange, Proposer: 2,
			Change: clusterlog.ConfChange{Context: []byte(ctx)}, Voters: []uint64{1, 2}}
	}
	apply(conf(7, "view"))
	apply(conf(8, "no view"))
	env := rsm.Envelope{Machine: counterID, Proposer: 1, Cmd: []byte("inc")}
	apply(clusterlog.Entry{Index: 9, Term: 1, Kind: clusterlog.KindData, Data: rsm.AppendEnvelope(nil, env)})

	type ev struct {
		seq  uint64
		desc events.Descriptor
		by   string
	}
	var evs []ev
	for _, e := range got {
		x := ev{seq: e.Seq, desc: e.Desc}
		if g := e.Group(); g != nil {
			x.by = g.Name
		}
		evs = append(evs, x)
	}
	want := []ev{
		{7<<20 | 0, events.MSSuspect, ""},
		{7<<20 | 1, events.MSNewView, ""},
		{7<<20 | 2, events.GSLeave, "d"}, // observer 3 first, twice
		{7<<20 | 3, events.GSLeave, "d"},
		{7<<20 | 4, events.GSLeave, "f"}, // then observer 5
		{8 << 20, events.MSSuspect, ""},
		{9 << 20, events.MSNewView, ""}, // the counter's event
	}
	if !slices.Equal(evs, want) {
		t.Errorf("published\n%v\nwant\n%v", evs, want)
	}
	if len(o3.seen) != 1 || o3.seen[0].Event != 2 || o3.seen[0].Index != 7 || o3.seen[0].Proposer != 2 || o3.seen[0].Cmd != nil || o3.views[0] != 7 {
		t.Errorf("observer 3 saw %+v views %v", o3.seen, o3.views)
	}
	if len(o5.seen) != 1 || o5.seen[0].Event != 4 {
		t.Errorf("observer 5 saw %+v, want one entry with Event 4", o5.seen)
	}
}
