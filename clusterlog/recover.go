package clusterlog

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// ErrNothingToRecover is returned by ForceNewCluster for a log that has
// applied nothing: there is no state to restart from.
var ErrNothingToRecover = errors.New("clusterlog: the log has applied nothing to recover from")

// Recovered says what ForceNewCluster did.
type Recovered struct {
	Index   uint64   // the applied index the cluster restarts from
	Term    uint64   // the term of that entry
	Dropped uint64   // entries after it, discarded (committed or not)
	Voters  []uint64 // raft's voters before
}

// ForceNewCluster rewrites the log so that its node restarts as a cluster
// of one voter, raft id self: the way out for a cluster that lost its
// quorum for good (etcd's --force-new-cluster). In one fsynced transaction
// it drops every entry after the applied index (the entries no quorum can
// commit any more); lets fix rewrite the application's state to agree (the
// membership view); makes {self} the configuration as of the applied
// index; stores a snapshot of the application, written by snap, at that
// index with that configuration; and compacts the log up to it, so that a
// node that joins later receives the new configuration in that snapshot
// and never the old entries. The hard state keeps its term and vote, and
// its commit index becomes the applied index.
//
// No Node may run on the Storage.
func (s *Storage) ForceNewCluster(self uint64, fix func(*AppTx) error, snap func(*AppTx, io.Writer) error) (Recovered, error) {
	var r Recovered
	err := s.Update(func(b *Batch) error {
		st := b.st
		applied := st.applied
		if applied == 0 {
			return ErrNothingToRecover
		}
		if st.snapIndex > applied {
			return fmt.Errorf("clusterlog: snapshot %d is newer than the applied index %d; start the node once to restore it", st.snapIndex, applied)
		}
		term, err := termIn(st, applied)
		if err != nil {
			return err
		}
		r = Recovered{Index: applied, Term: term, Dropped: st.last - applied, Voters: append([]uint64(nil), st.confState.GetVoters()...)}
		if err := b.dropAfter(applied); err != nil {
			return err
		}
		st.last, st.lastTerm = applied, term
		if err := fix(b.App()); err != nil {
			return err
		}
		cs := &raftpb.ConfState{Voters: []uint64{self}}
		if err := b.SetApplied(applied, cs); err != nil {
			return err
		}
		hs := proto.Clone(st.hs).(*raftpb.HardState)
		hs.Commit = new(applied)
		if err := b.SetHardState(hs); err != nil {
			return err
		}
		var buf bytes.Buffer
		if err := snap(b.App(), &buf); err != nil {
			return fmt.Errorf("clusterlog: snapshot at %d: %w", applied, err)
		}
		// The stored snapshot may be at this very index, with the old
		// configuration: it is replaced, not added to.
		if err := b.putSnapshot(&raftpb.Snapshot{Data: buf.Bytes(), Metadata: &raftpb.SnapshotMetadata{
			Index: new(applied), Term: new(term), ConfState: proto.Clone(cs).(*raftpb.ConfState),
		}}); err != nil {
			return err
		}
		if applied > st.truncIndex {
			return b.Compact(applied)
		}
		return nil
	})
	return r, err
}
