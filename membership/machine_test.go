package membership

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
)

// node is one node's machine with its Tx and a model of raft's
// configuration, which moves only when CheckConf accepts a change, as the
// cluster log does.
type node struct {
	m        *Machine
	tx       memTx
	voters   []uint64
	learners []uint64
}

func newNode() *node { return &node{m: NewMachine(), tx: memTx{}} }

func (n *node) raft(typ RaftType, id uint64) {
	n.voters = slices.DeleteFunc(n.voters, func(x uint64) bool { return x == id })
	n.learners = slices.DeleteFunc(n.learners, func(x uint64) bool { return x == id })
	switch typ {
	case RaftAddVoter:
		n.voters = append(n.voters, id)
	case RaftAddLearner:
		n.learners = append(n.learners, id)
	}
}

// apply delivers cmd at index the way the Mux does: a configuration change
// is checked first and applied by raft only if accepted.
func (n *node) apply(t testing.TB, index uint64, cmd Command) (rsm.Result, Change, error) {
	t.Helper()
	e := rsm.Entry{Index: index, Term: 1, Cmd: cmd.Marshal()}
	var refused error
	if cmd.IsConf() {
		if refused = n.m.CheckConf(n.tx, e); refused == nil {
			n.raft(cmd.Raft())
		}
		e.Conf = &rsm.Conf{Voters: slices.Clone(n.voters), Learners: slices.Clone(n.learners)}
	}
	res, ch, err := n.m.ApplyChange(n.tx, e)
	if err != nil {
		t.Fatalf("apply %d %s: %v", index, cmd, err)
	}
	if ch.ConfMismatch {
		t.Fatalf("apply %d %s: view %+v disagrees with raft %v/%v", index, cmd, ch.View, n.voters, n.learners)
	}
	if refused != nil && (ch.Index != 0 || res.Events != nil) {
		t.Fatalf("apply %d %s: refused by CheckConf (%v) but applied", index, cmd, refused)
	}
	return res, ch, refused
}

func (n *node) snapshot(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := n.m.Snapshot(n.tx, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func jn(id, inc uint64, voter bool) Command {
	return Command{Op: OpJoin, ID: id, Incarnation: inc, Name: fmt.Sprintf("n%d", id), Addr: fmt.Sprintf("127.0.0.%d:7946", id), Voter: voter}
}

func lv(id, inc uint64, c Cause) Command {
	return Command{Op: OpLeave, Cause: c, ID: id, Incarnation: inc}
}

var testCluster = ClusterID(0xc022a10000000001)

// script is a run that exercises every op, a refusal of each kind and the
// F1 sequence: a removed life's JOIN after its LEAVE.
func script() []Command {
	return []Command{
		jn(1, 0x11, true),
		{Op: OpSetClusterID, ID: 1, Cluster: testCluster},
		jn(2, 0x22, true),
		jn(3, 0x33, false),
		jn(2, 0x22, true),        // duplicate: refused
		lv(2, 0x22, CauseFailed), // 2 fails
		jn(2, 0x22, true),        // F1: its JOIN after its LEAVE: refused
		{Op: OpPromote, ID: 3, Incarnation: 0x33, Voter: true},
		{Op: OpSetClusterID, ID: 3, Cluster: 9}, // ignored: already named
		jn(2, 0x2a, true),                       // 2's new life
		lv(4, 0x44, CauseFailed),                // not a member: refused
		lv(3, 0x34, CauseFailed),                // another life of 3: refused
		lv(1, 0x11, CauseGraceful),
	}
}

func TestMachineApply(t *testing.T) {
	n := newNode()
	var refusals []error
	var newviews []uint64
	for i, cmd := range script() {
		res, ch, refused := n.apply(t, uint64(10+i), cmd)
		if refused != nil {
			refusals = append(refusals, refused)
			if len(res.Reply) == 0 {
				t.Errorf("%s: refused without a reply", cmd)
			}
		}
		for _, ev := range res.Events {
			if ev.Desc != events.MSNewView || ev.Seq != uint64(10+i) || ev.Membership().Instance != ch.View.Instance {
				t.Errorf("%s: event %v", cmd, ev)
			}
			newviews = append(newviews, ev.Seq)
		}
	}
	for i, want := range []error{ErrDuplicate, ErrRemovedLife, ErrUnknownMember, ErrUnknownMember} {
		if i >= len(refusals) || !errors.Is(refusals[i], want) || !errors.Is(refusals[i], ErrRefused) {
			t.Fatalf("refusals %v, want %d-th to be %v", refusals, i, want)
		}
	}
	if len(refusals) != 4 {
		t.Fatalf("refusals %v", refusals)
	}
	// JOIN 1, 2, 3, LEAVE 2, JOIN 2', LEAVE 1: six views; PROMOTE and the
	// cluster id make none.
	if !reflect.DeepEqual(newviews, []uint64{10, 12, 13, 15, 19, 22}) {
		t.Fatalf("NEWVIEWs at %v", newviews)
	}
	s := n.m.State()
	if s.ClusterID != testCluster || n.m.ClusterID() != testCluster {
		t.Fatalf("cluster id %s", s.ClusterID)
	}
	want := "cluster c022a10000000001 view 22: 3/0x33(voter,born 13) 2/0x2a(voter,born 19) removed: 1/0x11@22 2/0x22@15"
	if s.String() != want {
		t.Fatalf("state\n got %s\nwant %s", s, want)
	}
	if !s.Removed(2, 0x22) || s.Removed(2, 0x2a) {
		t.Fatal("tombstones")
	}
	// A fresh machine loading the same Tx sees the same state.
	m2 := NewMachine()
	if err := m2.Load(n.tx); err != nil || m2.State().String() != want {
		t.Fatalf("load: %v %s", err, m2.State())
	}
}

func TestCheckConf(t *testing.T) {
	n := newNode()
	n.apply(t, 1, jn(1, 0x11, true))
	n.apply(t, 2, lv(1, 0x11, CauseFailed))
	e := func(c Command) rsm.Entry { return rsm.Entry{Index: 3, Cmd: c.Marshal()} }
	for _, tc := range []struct {
		cmd  Command
		want error
	}{
		{jn(1, 0x11, true), ErrRemovedLife},
		{jn(1, 0x12, true), nil},
		{lv(1, 0x11, CauseFailed), ErrUnknownMember},
		{Command{Op: OpPromote, ID: 1, Incarnation: 0x11, Voter: true}, ErrUnknownMember},
		{Command{Op: OpSetClusterID, ID: 1, Cluster: testCluster}, ErrNotConf},
	} {
		if err := n.m.CheckConf(n.tx, e(tc.cmd)); !errors.Is(err, tc.want) || (tc.want != nil && !errors.Is(err, ErrRefused)) {
			t.Errorf("%s: %v, want %v", tc.cmd, err, tc.want)
		}
	}
	if err := n.m.CheckConf(n.tx, rsm.Entry{Index: 3, Cmd: []byte{1, 9}}); !errors.Is(err, ErrCommand) {
		t.Errorf("malformed: %v", err)
	}
	// CheckConf reads, never writes.
	before := fmt.Sprint(n.tx)
	n.m.CheckConf(n.tx, e(jn(5, 0x55, true)))
	if fmt.Sprint(n.tx) != before {
		t.Fatal("CheckConf changed the Tx")
	}
}

func TestApplyWrongKind(t *testing.T) {
	n := newNode()
	// A JOIN on an ordinary entry would move the view without raft.
	res, ch, err := n.m.ApplyChange(n.tx, rsm.Entry{Index: 1, Cmd: jn(1, 0x11, true).Marshal()})
	if err != nil || ch.Index != 0 || len(res.Reply) == 0 || n.m.State().View.Has(1) {
		t.Fatalf("JOIN without conf: %+v %+v %v", res, ch, err)
	}
	res, _, err = n.m.ApplyChange(n.tx, rsm.Entry{Index: 2, Cmd: []byte("junk")})
	if err != nil || len(res.Reply) == 0 {
		t.Fatalf("junk: %+v %v", res, err)
	}
}

func TestLife(t *testing.T) {
	n := newNode()
	_, ch, _ := n.apply(t, 1, jn(1, 0x11, true))
	if ch.Life(1, 0x11) != LifeJoined || ch.Life(1, 0x12) != LifeNone {
		t.Fatal("joined")
	}
	_, ch, _ = n.apply(t, 2, jn(2, 0x22, true))
	_, ch, _ = n.apply(t, 3, lv(2, 0x22, CauseFailed))
	if ch.Life(2, 0x22) != LifeRemoved || ch.Life(2, 0x23) != LifeNone {
		t.Fatalf("removed: %v", ch.Life(2, 0x22))
	}
	_, ch, _ = n.apply(t, 4, lv(1, 0x11, CauseGraceful))
	if ch.Life(1, 0x11) != LifeLeft {
		t.Fatal("left")
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	a := newNode()
	for i, cmd := range script() {
		a.apply(t, uint64(10+i), cmd)
	}
	snap := a.snapshot(t)
	// A node with another state restores it and ends up identical.
	b := newNode()
	b.apply(t, 1, jn(7, 0x77, true))
	b.apply(t, 2, lv(7, 0x77, CauseFailed))
	b.apply(t, 3, jn(2, 0x2a, true))
	ch, err := b.m.RestoreChange(b.tx, bytes.NewReader(snap))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.snapshot(t), snap) || b.m.State().String() != a.m.State().String() || !reflect.DeepEqual(b.tx, a.tx) {
		t.Fatalf("restored state differs:\n%s\n%s", b.m.State(), a.m.State())
	}
	if !ch.Restored || ch.Index != 22 || len(ch.Joined) != 1 || ch.Joined[0].ID != 3 || len(ch.Left) != 0 {
		t.Fatalf("restore change %+v", ch)
	}
	// A restore into a state without this life is an eviction.
	c := newNode()
	c.apply(t, 1, jn(5, 0x55, true))
	ch, _ = c.m.RestoreChange(c.tx, bytes.NewReader(snap))
	if ch.Life(5, 0x55) != LifeRemoved {
		t.Fatalf("restore without this life: %v", ch.Life(5, 0x55))
	}
}

// TestDeterminism feeds the same entries to two machines: byte-identical
// snapshots, events and replies.
func TestDeterminism(t *testing.T) {
	a, b := newNode(), newNode()
	for i, cmd := range script() {
		ra, ca, _ := a.apply(t, uint64(10+i), cmd)
		rb, cb, _ := b.apply(t, uint64(10+i), cmd)
		if !reflect.DeepEqual(ra, rb) || !reflect.DeepEqual(ca, cb) {
			t.Fatalf("%s: results differ", cmd)
		}
	}
	if !bytes.Equal(a.snapshot(t), b.snapshot(t)) {
		t.Fatal("snapshots differ")
	}
}

func TestSnapshotGolden(t *testing.T) {
	n := newNode()
	for i, cmd := range script() {
		n.apply(t, uint64(10+i), cmd)
	}
	b := checkGolden(t, "snapshot.hex", []string{
		"Membership snapshot v1 (SPEC.md \"Snapshot\"): version 1, cluster id,",
		"view length, view 22 (members 3 and 2 in its second life), 2 tombstones:",
		"1/0x11 removed at 22, 2/0x22 removed at 15.",
	}, n.snapshot(t))
	r := newNode()
	if err := r.m.Restore(r.tx, bytes.NewReader(b)); err != nil || r.m.State().String() != n.m.State().String() {
		t.Fatalf("golden restore: %v %s", err, r.m.State())
	}
	empty := checkGolden(t, "snapshot-empty.hex", []string{"Membership snapshot v1 of the empty state."}, newNode().snapshot(t))
	if err := r.m.Restore(r.tx, bytes.NewReader(empty)); err != nil || len(r.tx) != 1 {
		t.Fatalf("empty restore: %v %v", err, r.tx)
	}
}

func TestSnapshotRejects(t *testing.T) {
	n := newNode()
	for i, cmd := range script() {
		n.apply(t, uint64(10+i), cmd)
	}
	good := n.snapshot(t)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tomb := len(good) - 2*tombstoneSize
	for name, b := range map[string][]byte{
		"empty":     nil,
		"version":   mut(func(b []byte) []byte { b[0] = 2; return b }),
		"truncated": good[:len(good)-1],
		"trailing":  append(bytes.Clone(good), 0),
		"view-len":  mut(func(b []byte) []byte { b[9] = 0xff; b[10] = 0xff; b[11] = 0xff; return b }),
		"order": mut(func(b []byte) []byte {
			copy(b[tomb:], good[tomb+tombstoneSize:])
			copy(b[tomb+tombstoneSize:], good[tomb:tomb+tombstoneSize])
			return b
		}),
		"removed-at0": mut(func(b []byte) []byte { clear(b[tomb+16 : tomb+24]); return b }),
	} {
		r := newNode()
		if err := r.m.Restore(r.tx, bytes.NewReader(b)); !errors.Is(err, ErrSnapshot) {
			t.Errorf("%s: %v, want ErrSnapshot", name, err)
		}
	}
}

func FuzzRestore(f *testing.F) {
	n := newNode()
	for i, cmd := range script() {
		n.apply(f, uint64(10+i), cmd)
	}
	var b bytes.Buffer
	n.m.Snapshot(n.tx, &b)
	f.Add(b.Bytes()) // a view of two members, a cluster id and two tombstones
	b.Reset()
	NewMachine().Snapshot(memTx{}, &b)
	f.Add(b.Bytes()) // the empty state
	f.Add([]byte{1}) // truncated after the version
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newNode()
		if err := r.m.Restore(r.tx, bytes.NewReader(data)); err != nil {
			if !errors.Is(err, ErrSnapshot) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		// A snapshot that restores is canonical: it is written back as is.
		if again := r.snapshot(t); !bytes.Equal(again, data) {
			t.Fatalf("re-encoded snapshot differs:\n%x\n%x", again, data)
		}
	})
}
