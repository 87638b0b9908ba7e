package membership

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync/atomic"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
)

// Keys of the machine's state in its Tx (SPEC.md, "State keys").
var (
	keyView    = []byte("view")    // View.Marshal
	keyCluster = []byte("cluster") // u64; absent: none yet
	keyFloor   = []byte("floor")   // u64 LE: entries at or below are history (legacy import)
	keyTomb    = []byte("tomb/")   // + id (u64 BE) + incarnation (u64 BE) → removed-at (u64 LE)
)

// Machine is the membership replicated state machine (rsm.Membership): the
// view, the tombstones of removed lives and the cluster id, kept in its Tx.
// It implements rsm.Machine and rsm.ConfChecker.
//
// Apply, CheckConf, Snapshot, Restore, Load and ImportLegacy are called by
// the one goroutine that applies the log. State, View and ClusterID may be
// called from any goroutine: they read an immutable State published through
// an atomic pointer after each change. That State may run ahead of the disk
// by the entries of one transaction that has not committed yet; a failed
// commit stops the node, so nothing reads a state that is then undone.
type Machine struct {
	state atomic.Pointer[State]
}

var (
	_ rsm.Machine     = (*Machine)(nil)
	_ rsm.ConfChecker = (*Machine)(nil)
)

// NewMachine returns a machine with the empty state; call Load to read the
// state a Tx already holds.
func NewMachine() *Machine {
	m := &Machine{}
	m.state.Store(&State{})
	return m
}

// ID implements rsm.Machine.
func (m *Machine) ID() rsm.ID { return rsm.Membership }

// State returns the state as of the last applied entry. It is immutable.
func (m *Machine) State() *State { return m.state.Load() }

// View returns a copy of the current view.
func (m *Machine) View() View { return m.state.Load().View.Clone() }

// ClusterID returns the cluster's id; zero until SET-CLUSTER-ID applied.
func (m *Machine) ClusterID() ClusterID { return m.state.Load().ClusterID }

// Load reads the state held in tx and publishes it; call it once when the
// log is opened.
func (m *Machine) Load(tx rsm.Tx) error {
	s, err := loadState(tx)
	if err != nil {
		return err
	}
	m.state.Store(s)
	return nil
}

func loadState(tx rsm.Tx) (*State, error) {
	s := &State{removed: make(map[Life]uint64)}
	if b := tx.Get(keyView); b != nil {
		v, err := ParseView(b)
		if err != nil {
			return nil, fmt.Errorf("membership: stored view: %w", err)
		}
		s.View = v
	}
	if b := tx.Get(keyCluster); b != nil {
		if len(b) != 8 {
			return nil, fmt.Errorf("membership: stored cluster id of %d bytes", len(b))
		}
		s.ClusterID = ClusterID(binary.LittleEndian.Uint64(b))
	}
	err := tx.Scan(keyTomb, func(k, v []byte) error {
		if len(k) != len(keyTomb)+16 || len(v) != 8 {
			return fmt.Errorf("membership: stored tombstone %x", k)
		}
		l := Life{binary.BigEndian.Uint64(k[len(keyTomb):]), binary.BigEndian.Uint64(k[len(keyTomb)+8:])}
		s.removed[l] = binary.LittleEndian.Uint64(v)
		return nil
	})
	return s, err
}

func floor(tx rsm.Tx) uint64 {
	if b := tx.Get(keyFloor); len(b) == 8 {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func tombKey(l Life) []byte {
	k := append([]byte(nil), keyTomb...)
	k = binary.BigEndian.AppendUint64(k, l.ID)
	return binary.BigEndian.AppendUint64(k, l.Incarnation)
}

func removed(tx rsm.Tx, id, inc uint64) bool { return tx.Get(tombKey(Life{id, inc})) != nil }

func storedView(tx rsm.Tx) (View, error) {
	b := tx.Get(keyView)
	if b == nil {
		return View{}, nil
	}
	v, err := ParseView(b)
	if err != nil {
		return v, fmt.Errorf("membership: stored view: %w", err)
	}
	return v, nil
}

// check decides whether cmd may take effect on view v: the one rule both
// CheckConf and Apply follow, so raft's configuration and the view never
// part ways.
func check(tx rsm.Tx, v *View, cmd Command) error {
	refuse := func(why error, format string, args ...any) error {
		return fmt.Errorf("%w: %w: %s", ErrRefused, why, fmt.Sprintf(format, args...))
	}
	m, member := v.Member(cmd.ID)
	switch cmd.Op {
	case OpJoin:
		if removed(tx, cmd.ID, cmd.Incarnation) {
			return refuse(ErrRemovedLife, "JOIN of node %d incarnation %#x", cmd.ID, cmd.Incarnation)
		}
		if member {
			return refuse(ErrDuplicate, "JOIN of node %d incarnation %#x; member in incarnation %#x", cmd.ID, cmd.Incarnation, m.Incarnation)
		}
	case OpLeave:
		if !member || m.Incarnation != cmd.Incarnation {
			return refuse(ErrUnknownMember, "LEAVE of node %d incarnation %#x", cmd.ID, cmd.Incarnation)
		}
	case OpPromote:
		if !member || m.Incarnation != cmd.Incarnation {
			return refuse(ErrUnknownMember, "PROMOTE of node %d incarnation %#x", cmd.ID, cmd.Incarnation)
		}
		if m.Voter {
			return refuse(ErrDuplicate, "PROMOTE of voter %d", cmd.ID)
		}
	default:
		return refuse(ErrNotConf, "%s on a configuration change", cmd.Op)
	}
	return nil
}

// CheckConf implements rsm.ConfChecker: it refuses, the same way on every
// node, a configuration change the view would not apply — a JOIN of a
// removed incarnation or of a member, a LEAVE or PROMOTE of a life that is
// not a member, a malformed command — so raft applies it as a no-op.
// Entries at or below an imported legacy state's index are accepted: they
// were applied to raft before, by an agent that checked nothing, and raft
// must replay them the same way.
func (m *Machine) CheckConf(tx rsm.Tx, e rsm.Entry) error {
	if e.Index <= floor(tx) {
		return nil
	}
	cmd, err := ParseCommand(e.Cmd)
	if err != nil {
		return fmt.Errorf("%w: %w: %w", ErrRefused, ErrCommand, err)
	}
	v, err := storedView(tx)
	if err != nil {
		return err
	}
	return check(tx, &v, cmd)
}

// Apply implements rsm.Machine.
func (m *Machine) Apply(tx rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	res, _, err := m.ApplyChange(tx, e)
	return res, err
}

// ApplyChange applies one entry and also returns what it did, for the
// local driver (eviction, links to keep) and for machines that follow the
// view in log order. A command that changes nothing returns the zero
// Change and, in Reply, why.
func (m *Machine) ApplyChange(tx rsm.Tx, e rsm.Entry) (rsm.Result, Change, error) {
	if e.Index <= floor(tx) {
		return rsm.Result{}, Change{}, nil // applied before the legacy import
	}
	cmd, err := ParseCommand(e.Cmd)
	if err != nil {
		// Every node skips the same entry: the log is the same everywhere.
		return replyErr(err), Change{}, nil
	}
	if cmd.IsConf() != (e.Conf != nil) {
		return replyErr(fmt.Errorf("%w: %s", ErrNotConf, cmd.Op)), Change{}, nil
	}
	v, err := storedView(tx)
	if err != nil {
		return rsm.Result{}, Change{}, err
	}
	if e.Index <= v.Instance {
		return rsm.Result{}, Change{}, fmt.Errorf("membership: entry %d applied to view %d", e.Index, v.Instance)
	}
	if cmd.Op == OpSetClusterID {
		if tx.Get(keyCluster) != nil {
			return replyErr(fmt.Errorf("membership: cluster id already set")), Change{}, nil
		}
		if err := tx.Put(keyCluster, binary.LittleEndian.AppendUint64(nil, uint64(cmd.Cluster))); err != nil {
			return rsm.Result{}, Change{}, err
		}
		return rsm.Result{}, Change{Index: e.Index, View: v.Clone(), ClusterID: cmd.Cluster}, m.publish(tx)
	}
	if err := check(tx, &v, cmd); err != nil {
		return replyErr(err), Change{}, nil
	}
	var ch Change
	switch cmd.Op {
	case OpJoin, OpLeave:
		var ok bool
		if ch, ok = v.Apply(e.Index, cmd); !ok {
			return rsm.Result{}, Change{}, fmt.Errorf("membership: checked %s did not apply", cmd)
		}
		for _, l := range ch.Left {
			if err := tx.Put(tombKey(Life{l.ID, l.Incarnation}), binary.LittleEndian.AppendUint64(nil, e.Index)); err != nil {
				return rsm.Result{}, Change{}, err
			}
		}
	case OpPromote:
		v.Apply(e.Index, cmd) // same members, same instance
		p, _ := v.Member(cmd.ID)
		ch = Change{View: v.Clone(), Promoted: []Member{p}}
	}
	ch.Index = e.Index
	ch.ConfMismatch = !agrees(&v, e.Conf)
	if err := tx.Put(keyView, v.Marshal()); err != nil {
		return rsm.Result{}, Change{}, err
	}
	var res rsm.Result
	if len(ch.Joined)+len(ch.Left) > 0 {
		// Every node tells the entry as the same NEWVIEW.
		res.Events = []events.Event{{Seq: e.Index, Desc: events.MSNewView, Data: MembershipData(ch)}}
	}
	return res, ch, m.publish(tx)
}

func replyErr(err error) rsm.Result { return rsm.Result{Reply: []byte(err.Error())} }

func (m *Machine) publish(tx rsm.Tx) error {
	s, err := loadState(tx)
	if err != nil {
		return err
	}
	m.state.Store(s)
	return nil
}

// agrees reports whether the view's voters and learners, by incarnation,
// are raft's configuration conf (nil: not known, taken as agreeing).
func agrees(v *View, conf *rsm.Conf) bool {
	if conf == nil {
		return true
	}
	var voters, learners []uint64
	for _, m := range v.Members {
		if m.Voter {
			voters = append(voters, m.Incarnation)
		} else {
			learners = append(learners, m.Incarnation)
		}
	}
	same := func(a, b []uint64) bool {
		a, b = slices.Clone(a), slices.Clone(b)
		slices.Sort(a)
		slices.Sort(b)
		return slices.Equal(a, b)
	}
	return same(voters, conf.Voters) && same(learners, conf.Learners)
}

// Snapshot implements rsm.Machine: the layout of SPEC.md "Snapshot". The
// same state gives the same bytes on every node.
func (m *Machine) Snapshot(tx rsm.Tx, w io.Writer) error {
	s, err := loadState(tx)
	if err != nil {
		return err
	}
	count := 0
	if err := tx.Scan(keyTomb, func(k, v []byte) error { count++; return nil }); err != nil {
		return err
	}
	// Tombstones in key order are in (id, incarnation) order.
	return writeSnapshot(w, s.View, s.ClusterID, func(fn func(Tombstone) error) error {
		return tx.Scan(keyTomb, func(k, v []byte) error {
			return fn(Tombstone{Life{binary.BigEndian.Uint64(k[len(keyTomb):]), binary.BigEndian.Uint64(k[len(keyTomb)+8:])}, binary.LittleEndian.Uint64(v)})
		})
	}, count)
}

// Restore implements rsm.Machine.
func (m *Machine) Restore(tx rsm.Tx, r io.Reader) error {
	_, err := m.RestoreChange(tx, r)
	return err
}

// RestoreChange replaces the state with a snapshot and returns the change
// from the view before to the one restored (Restored set), so the driver
// learns whether this node's life is still a member.
func (m *Machine) RestoreChange(tx rsm.Tx, r io.Reader) (Change, error) {
	old, err := storedView(tx)
	if err != nil {
		return Change{}, err
	}
	var keys [][]byte
	if err := tx.Scan(nil, func(k, v []byte) error { keys = append(keys, bytes.Clone(k)); return nil }); err != nil {
		return Change{}, err
	}
	for _, k := range keys {
		if err := tx.Delete(k); err != nil {
			return Change{}, err
		}
	}
	v, cluster, err := readSnapshot(r, func(t Tombstone) error {
		return tx.Put(tombKey(t.Life), binary.LittleEndian.AppendUint64(nil, t.RemovedAt))
	})
	if err != nil {
		return Change{}, err
	}
	if err := tx.Put(keyView, v.Marshal()); err != nil {
		return Change{}, err
	}
	if !cluster.IsZero() {
		if err := tx.Put(keyCluster, binary.LittleEndian.AppendUint64(nil, uint64(cluster))); err != nil {
			return Change{}, err
		}
	}
	ch := Change{Index: v.Instance, View: v.Clone(), Restored: true, ClusterID: cluster}
	for _, n := range v.Members {
		if !old.HasLife(n.ID, n.Incarnation) {
			ch.Joined = append(ch.Joined, n)
		}
	}
	for _, o := range old.Members {
		if !v.HasLife(o.ID, o.Incarnation) {
			ch.Left = append(ch.Left, o)
		}
	}
	return ch, m.publish(tx)
}

// MembershipData is the data of the NEWVIEW event a change makes.
func MembershipData(ch Change) *events.Membership {
	return &events.Membership{Instance: ch.View.Instance, Members: EventNodes(ch.View.Members), Joined: EventNodes(ch.Joined), Left: EventNodes(ch.Left)}
}

// ViewData is the data of the SUSPECT, RECOVERED and EVICTED events: the
// view in force.
func ViewData(v View) *events.Membership {
	return &events.Membership{Instance: v.Instance, Members: EventNodes(v.Members)}
}

// EventNodes converts members to the nodes events carry.
func EventNodes(ms []Member) []events.Node {
	out := make([]events.Node, len(ms))
	for i, m := range ms {
		ap, _ := netip.ParseAddrPort(m.Addr)
		out[i] = events.Node{ID: m.ID, Name: m.Name, Addr: ap, BornOn: m.BornOn}
	}
	return out
}
