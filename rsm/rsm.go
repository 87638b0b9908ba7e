package rsm

import (
	"context"
	"io"

	"github.com/corralhq/corral/events"
)

// ID names a machine in the command envelope and the composite snapshot.
// An ID is fixed forever once released; the list is in SPEC.md.
type ID uint8

// Specification constants: machine ids (SPEC.md).
const (
	Membership ID = 1 // rides on raft configuration changes
	Groups     ID = 2
	DataSvc    ID = 3
	SharedAddr ID = 4
)

// Entry is one committed command for a machine.
type Entry struct {
	Index uint64 // the entry's log index
	// Event is the place in the entry of the first event this Apply
	// returns: 0 for an ordinary entry; for ApplyView, the number of
	// events the entry produced before. The Mux gives returned event i the
	// Seq events.SeqOf(Index, Event+i).
	Event    uint32
	Term     uint64
	Proposer uint64 // node id of the proposer, from the envelope
	Request  uint64 // the proposer's request id for deduplication; 0 if none
	Cmd      []byte // the machine's own command; aliases the log, do not keep
	// Conf is set for an entry that is a raft configuration change (only the
	// Membership machine gets these).
	Conf *Conf
}

// Conf is the raft configuration a configuration-change entry results in.
type Conf struct {
	Voters   []uint64
	Learners []uint64
}

// Tx is a machine's own key space in the transaction that records the
// applied index. Values returned by Get and Scan are valid only until the
// method that received the Tx returns.
type Tx interface {
	Get(key []byte) []byte
	Put(key, value []byte) error
	Delete(key []byte) error
	// Scan calls fn for every key with the prefix, in key order.
	Scan(prefix []byte, fn func(k, v []byte) error) error
}

// Result is what applying one entry produced.
type Result struct {
	// Events are cluster-wide events; the Mux sets their Seq to their
	// position in the log (events.SeqOf(Index, Event+i)) and publishes
	// them after the entry is durably applied.
	Events []events.Event
	// Reply is returned by Proposer.Propose on the proposing node.
	Reply []byte
}

// Machine is one replicated state machine.
type Machine interface {
	ID() ID
	// Apply applies one entry. An error stops the node: it is for a broken
	// invariant or a failed Tx, never for a bad command, which is answered
	// in Reply the same way on every node.
	Apply(tx Tx, e Entry) (Result, error)
	// Snapshot writes the machine's whole state.
	Snapshot(tx Tx, w io.Writer) error
	// Restore replaces the machine's whole state with a snapshot written by
	// Snapshot (on this node or another).
	Restore(tx Tx, r io.Reader) error
}

// ConfChecker is implemented by the machine whose commands ride on raft
// configuration changes. CheckConf decides, deterministically and before
// raft applies the change, whether it may take effect; a change it refuses
// is applied as a no-op, so raft's voters and the machine's state always
// agree.
type ConfChecker interface {
	CheckConf(tx Tx, e Entry) error
}

// ViewObserver is implemented by a machine whose state depends on the view
// (e.g. groups, whose members on a node that left must go). After the
// Membership machine applies a configuration-change entry whose Result has
// a NEWVIEW event, the Mux calls ApplyView of every other registered
// ViewObserver, in id order, in the same transaction, with view the
// NEWVIEW's data (read-only) and e.Event the number of events the entry
// produced so far; the returned events are published after them, with the
// entry's Seqs. The Result's Reply is not used. An error stops the node, as
// for Apply.
type ViewObserver interface {
	ApplyView(tx Tx, e Entry, view *events.Membership) (Result, error)
}

// Loader is implemented by a machine that keeps a mirror of its Tx in
// memory: Load rebuilds it from the Tx when the node opens its log (each
// life: an empty log gives an empty machine).
type Loader interface {
	Load(tx Tx) error
}

// Proposer is what services use to write to the log. It survives evictions:
// the node underneath is replaced, the Proposer stays.
type Proposer interface {
	// Propose appends cmd for machine id and waits until it is applied on
	// this node; it returns the entry's index and the machine's Reply. A
	// command that must not apply twice when a caller retries after a
	// timeout carries a request id (ProposeRequest).
	Propose(ctx context.Context, id ID, cmd []byte) (index uint64, reply []byte, err error)
	// ReadIndex returns a log index such that, once this node has applied
	// it, a local read reflects every write committed before the call.
	ReadIndex(ctx context.Context) (uint64, error)
}
