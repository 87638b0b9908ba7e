package clusterlog

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers branch on them with errors.Is; the errors actually
// returned wrap them with detail.
var (
	// ErrStopped is returned by every blocking Node method once the node has
	// stopped, whether by Stop or because of a fatal error (see Node.Err).
	ErrStopped = errors.New("clusterlog: node stopped")

	// ErrProposalDropped is returned when raft refused a proposal outright,
	// typically because no leader is known yet. The entry is not in the log;
	// the caller may retry.
	ErrProposalDropped = errors.New("clusterlog: proposal dropped")

	// ErrNotLeader is returned by ProposeConfChange on a node that is not the
	// leader, or that lost leadership before the change could be proposed.
	ErrNotLeader = errors.New("clusterlog: not the leader")

	// ErrInvalidConfChange is returned for a configuration change that would
	// leave the cluster without voters or names node 0.
	ErrInvalidConfChange = errors.New("clusterlog: invalid configuration change")

	// ErrConfChangeRefused is returned by ProposeConfChange for a change
	// the Applier refused (ConfChecker); raft applied it as a no-op.
	ErrConfChangeRefused = errors.New("clusterlog: configuration change refused by the application")

	// ErrRejected is for an Applier to wrap when it rejects an entry
	// without failing: every node rejects the same entry the same way, the
	// node goes on, the entry counts as applied, and the proposer's Propose
	// returns the error. An Apply that rejects must not have written to its
	// AppTx.
	ErrRejected = errors.New("clusterlog: entry rejected by the application")

	// ErrNoLeader is returned by ReadIndex when its context ends while no
	// leader is known.
	ErrNoLeader = errors.New("clusterlog: no leader")

	// ErrCorrupt is matched by every *CorruptError.
	ErrCorrupt = errors.New("clusterlog: corrupt record")

	// ErrFormatVersion is matched by every *FormatVersionError.
	ErrFormatVersion = errors.New("clusterlog: unsupported disk format version")

	// ErrStorageBroken is returned by a Storage whose earlier write failed.
	// After a failed fsync the on-disk state is unknown; close and reopen.
	ErrStorageBroken = errors.New("clusterlog: storage failed earlier; close and reopen it")

	// ErrLogGap is returned by Append when the entries do not continue the
	// log (a gap between the last stored index and the first new one).
	ErrLogGap = errors.New("clusterlog: appended entries leave a gap in the log")

	// ErrCompactUnsnapshotted is returned by Compact for an index that the
	// stored snapshot does not cover.
	ErrCompactUnsnapshotted = errors.New("clusterlog: cannot compact entries not covered by the snapshot")
)

// CorruptError reports a record in the log file, or an entry in the log, that
// cannot be decoded or breaks an invariant of the disk format (FORMAT.md).
// It matches ErrCorrupt.
type CorruptError struct {
	// Record names the record: "bucket/key" for the file ("entries/42",
	// "meta/hardstate"), or "entry 42" for a replicated entry's payload;
	// empty for damage below the records (bbolt's pages, the file's size).
	Record string
	// Reason says what is wrong with it.
	Reason string
	// Err is the underlying decoding error, if any.
	Err error
}

func (e *CorruptError) Error() string {
	s := fmt.Sprintf("clusterlog: corrupt record %s: %s", e.Record, e.Reason)
	if e.Record == "" {
		s = "clusterlog: damaged file: " + e.Reason
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns ErrCorrupt and the underlying error, if any.
func (e *CorruptError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrCorrupt}
	}
	return []error{ErrCorrupt, e.Err}
}

// FormatVersionError reports a log file written in a disk format version this
// build does not read. It matches ErrFormatVersion.
type FormatVersionError struct {
	Path      string // the file
	Found     uint32 // version stored in meta/format
	Supported uint32 // FormatVersion of this build
}

func (e *FormatVersionError) Error() string {
	return fmt.Sprintf("clusterlog: disk format version %d is not supported; this build reads only version %d",
		e.Found, e.Supported)
}

// Unwrap returns ErrFormatVersion.
func (e *FormatVersionError) Unwrap() error { return ErrFormatVersion }
