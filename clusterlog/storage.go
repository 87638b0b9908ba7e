package clusterlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Storage is the durable raft log: a raft.Storage kept in one bbolt file whose
// layout FORMAT.md specifies. Every write is one bbolt read-write
// transaction, which bbolt fsyncs before Commit returns; several writes can
// share a transaction through Update.
//
// Readers (the raft.Storage methods) and writers may be called from any
// goroutine, but a Node assumes it is the only writer while it runs.
type Storage struct {
	db      *bolt.DB
	path    string
	log     *slog.Logger
	writes  atomic.Uint64                       // committed (fsynced) read-write transactions
	observe atomic.Pointer[func(time.Duration)] // ObserveFsync's function, if any

	// wmu serialises write transactions (Update). It is taken before mu
	// and held while the function passed to Update runs, without mu, so
	// that the function may call the reading methods: raft does, from
	// inside ApplyConfChange, which Node calls in the record transaction.
	wmu sync.Mutex

	mu     sync.Mutex // guards st, broken and snapReq; held across each commit
	st     diskState
	broken error // first failed commit; set once
	// snapReq, set by the running Node (requestSnapshots), is signalled
	// without blocking when Snapshot refuses a stale snapshot; nil: no
	// one takes snapshots on demand, and Snapshot returns the stored one.
	snapReq chan<- struct{}
}

// diskState caches the small records of the file. It is a value: a write
// works on a copy and installs it only once its transaction has committed.
type diskState struct {
	hs         *raftpb.HardState // meta/hardstate; never nil
	applied    uint64            // meta/applied
	confState  *raftpb.ConfState // meta/confstate; never nil
	truncIndex uint64            // meta/truncated: the log holds truncIndex+1 .. last
	truncTerm  uint64
	last       uint64 // index of the last stored entry; truncIndex if none
	lastTerm   uint64
	snapIndex  uint64 // meta/snapshot metadata
	snapTerm   uint64
	snapConf   *raftpb.ConfState // never nil
	opens      uint64            // meta/opens
	recent     recent            // the last entries stored, in memory
}

var _ raft.Storage = (*Storage)(nil)

// OpenStorage opens or creates the log file at path. A new file is
// initialised with format version FormatVersion. An existing file is checked
// completely — every record is decoded and the invariants of FORMAT.md are
// verified — so that a damaged file is refused here with a *CorruptError,
// and a file of another format version with a *FormatVersionError, rather
// than failing later inside raft. A version 1 file is upgraded to version 2
// in the same transaction (FORMAT.md). Opening bumps meta/opens.
func OpenStorage(path string, logger *slog.Logger) (*Storage, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := openBolt(path)
	if err != nil {
		return nil, fmt.Errorf("clusterlog: open %s: %w", path, err)
	}
	s := &Storage{db: db, path: path, log: logger.With("subsystem", "clusterlog.storage")}
	err = guard("bbolt failed reading it", func() error {
		return db.Update(func(tx *bolt.Tx) error {
			st, err := loadOrInit(tx, path)
			if err != nil {
				return err
			}
			st.opens++
			if err := tx.Bucket(bucketMeta).Put(keyOpens, encodeUint64(st.opens)); err != nil {
				return err
			}
			s.st = st
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("clusterlog: open %s: %w", path, err)
	}
	s.writes.Add(1)
	s.log.Debug("opened log", "path", path, "first", s.st.truncIndex+1, "last", s.st.last,
		"applied", s.st.applied, "snapshot", s.st.snapIndex, "opens", s.st.opens)
	return s, nil
}

// loadOrInit initialises an empty file, or loads and verifies an existing one.
func loadOrInit(tx *bolt.Tx, path string) (diskState, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		var other []byte
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			other = name
			return errors.New("stop")
		})
		if other != nil {
			return diskState{}, corrupt(bucketMeta, nil,
				fmt.Sprintf("bucket missing but bucket %q exists: not a clusterlog file", other), nil)
		}
		return initFile(tx)
	}
	v := meta.Get(keyFormat)
	if v == nil {
		return diskState{}, corrupt(bucketMeta, keyFormat, "format version missing", nil)
	}
	if len(v) != 4 {
		return diskState{}, corrupt(bucketMeta, keyFormat, fmt.Sprintf("value is %d bytes, want 4", len(v)), nil)
	}
	switch ver := binary.BigEndian.Uint32(v); ver {
	case FormatVersion:
	case 1:
		if err := upgradeV1(tx); err != nil {
			return diskState{}, err
		}
		if err := upgradeV2(tx); err != nil {
			return diskState{}, err
		}
	case 2:
		if err := upgradeV2(tx); err != nil {
			return diskState{}, err
		}
	default:
		return diskState{}, &FormatVersionError{Path: path, Found: ver, Supported: FormatVersion}
	}
	return loadState(tx)
}

// upgradeV1 turns a version 1 file into version 2 inside the open
// transaction: it adds the app bucket, renames meta/incarnation to
// meta/opens, and keeps the applied index and its configuration. The
// application's state did not live in a version 1 file, so its key space
// starts empty; an application upgrading from version 1 brings its state as
// of the applied index from where it kept it (corral's agent: its state
// file), and the node goes on applying the entries after it. A stored
// snapshot of version 1 holds the application's old snapshot format, so
// it is never restored over that state: the applied index is at or past
// it.
func upgradeV1(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if _, err := tx.CreateBucket(bucketApp); err != nil {
		return fmt.Errorf("clusterlog: upgrade from version 1: %w", err)
	}
	if v := meta.Get(keyIncarnation); v != nil {
		if _, err := decodeUint64(keyIncarnation, v); err != nil {
			return err
		}
		if err := meta.Put(keyOpens, append([]byte(nil), v...)); err != nil {
			return err
		}
		if err := meta.Delete(keyIncarnation); err != nil {
			return err
		}
	}
	return meta.Put(keyFormat, encodeFormat(2))
}

// upgradeV2 turns a version 2 file into version 3 inside the open
// transaction: every entry, stored whole under its index, is checked and
// stored again in chunks under (index, chunk). Nothing else changes.
func upgradeV2(tx *bolt.Tx) error {
	old := tx.Bucket(bucketEntries)
	if old == nil {
		return corrupt(bucketEntries, nil, "bucket missing", nil)
	}
	type record struct {
		i uint64
		v []byte
	}
	var recs []record
	err := old.ForEach(func(k, v []byte) error {
		e, err := decodeEntryV2(k, v)
		if err != nil {
			return err
		}
		recs = append(recs, record{e.GetIndex(), bytes.Clone(v)})
		return nil
	})
	if err != nil {
		return err
	}
	if err := tx.DeleteBucket(bucketEntries); err != nil {
		return fmt.Errorf("clusterlog: upgrade from version 2: %w", err)
	}
	bk, err := tx.CreateBucket(bucketEntries)
	if err != nil {
		return fmt.Errorf("clusterlog: upgrade from version 2: %w", err)
	}
	bk.FillPercent = 1
	for _, r := range recs {
		if err := appendEntryChunks(r.i, r.v, bk.Put); err != nil {
			return fmt.Errorf("clusterlog: upgrade from version 2: put entry %d: %w", r.i, err)
		}
	}
	return tx.Bucket(bucketMeta).Put(keyFormat, encodeFormat(3))
}

// readEntry reads the entry whose first chunk the cursor c is at (k, v)
// and returns it with the cursor's next key and value (nil at the end).
func readEntry(c *bolt.Cursor, k, v []byte) (e *raftpb.Entry, nk, nv []byte, err error) {
	var kb, vb [4][]byte
	ks, vs := append(kb[:0], k), append(vb[:0], v)
	nk, nv = c.Next()
	for len(k) == entryKeyLen && len(nk) == entryKeyLen && bytes.Equal(nk[:indexKeyLen], k[:indexKeyLen]) {
		ks, vs = append(ks, nk), append(vs, nv)
		nk, nv = c.Next()
	}
	e, err = decodeEntryRecord(ks, vs)
	return e, nk, nv, err
}

func initFile(tx *bolt.Tx) (diskState, error) {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return diskState{}, err
	}
	for _, name := range [][]byte{bucketEntries, bucketApp} {
		if _, err := tx.CreateBucket(name); err != nil {
			return diskState{}, err
		}
	}
	st := diskState{hs: &raftpb.HardState{}, confState: &raftpb.ConfState{}, snapConf: &raftpb.ConfState{}}
	for _, kv := range []struct{ k, v []byte }{
		{keyFormat, encodeFormat(FormatVersion)},
		{keyTruncated, encodeTruncated(0, 0)},
		{keyApplied, encodeUint64(0)},
	} {
		if err := meta.Put(kv.k, kv.v); err != nil {
			return diskState{}, err
		}
	}
	return st, nil
}

// loadState decodes every record and checks the invariants listed in
// FORMAT.md. Any violation is a *CorruptError.
func loadState(tx *bolt.Tx) (diskState, error) {
	meta := tx.Bucket(bucketMeta)
	ents := tx.Bucket(bucketEntries)
	if ents == nil {
		return diskState{}, corrupt(bucketEntries, nil, "bucket missing", nil)
	}
	if tx.Bucket(bucketApp) == nil {
		return diskState{}, corrupt(bucketApp, nil, "bucket missing", nil)
	}
	st := diskState{hs: &raftpb.HardState{}, confState: &raftpb.ConfState{}, snapConf: &raftpb.ConfState{}}
	var err error
	if v := meta.Get(keyHardState); v != nil {
		if err := decodeProto(keyHardState, v, st.hs); err != nil {
			return st, err
		}
	}
	if v := meta.Get(keyConfState); v != nil {
		if err := decodeProto(keyConfState, v, st.confState); err != nil {
			return st, err
		}
	}
	v := meta.Get(keyApplied)
	if v == nil {
		return st, corrupt(bucketMeta, keyApplied, "record missing", nil)
	}
	if st.applied, err = decodeUint64(keyApplied, v); err != nil {
		return st, err
	}
	v = meta.Get(keyTruncated)
	if v == nil {
		return st, corrupt(bucketMeta, keyTruncated, "record missing", nil)
	}
	if st.truncIndex, st.truncTerm, err = decodeTruncated(v); err != nil {
		return st, err
	}
	if v := meta.Get(keyOpens); v != nil {
		if st.opens, err = decodeUint64(keyOpens, v); err != nil {
			return st, err
		}
	}
	if v := meta.Get(keySnapshot); v != nil {
		snap := new(raftpb.Snapshot)
		if err := decodeProto(keySnapshot, v, snap); err != nil {
			return st, err
		}
		st.snapIndex = snap.GetMetadata().GetIndex()
		st.snapTerm = snap.GetMetadata().GetTerm()
		st.snapConf = proto.Clone(raftpb.EnsureConfState(snap.GetMetadata().GetConfState())).(*raftpb.ConfState)
	}

	// The entries must be exactly truncIndex+1 .. last, each decodable, with
	// terms that never decrease.
	st.last, st.lastTerm = st.truncIndex, st.truncTerm
	c := ents.Cursor()
	for k, v := c.First(); k != nil; {
		e, nk, nv, err := readEntry(c, k, v)
		if err != nil {
			return st, err
		}
		if e.GetIndex() != st.last+1 {
			return st, corrupt(bucketEntries, k, fmt.Sprintf("expected entry %d next: the log has a gap", st.last+1), nil)
		}
		if e.GetTerm() < st.lastTerm {
			return st, corrupt(bucketEntries, k, fmt.Sprintf("term %d is lower than the previous term %d", e.GetTerm(), st.lastTerm), nil)
		}
		st.last, st.lastTerm = e.GetIndex(), e.GetTerm()
		k, v = nk, nv
	}

	switch {
	case st.snapIndex < st.truncIndex:
		return st, corrupt(bucketMeta, keyTruncated, fmt.Sprintf("log truncated at %d beyond the snapshot at %d", st.truncIndex, st.snapIndex), nil)
	case st.snapIndex > st.last:
		return st, corrupt(bucketMeta, keySnapshot, fmt.Sprintf("snapshot index %d beyond the last entry %d", st.snapIndex, st.last), nil)
	case st.hs.GetCommit() > st.last:
		return st, corrupt(bucketMeta, keyHardState, fmt.Sprintf("commit index %d beyond the last entry %d", st.hs.GetCommit(), st.last), nil)
	case st.hs.GetCommit() < st.truncIndex:
		return st, corrupt(bucketMeta, keyHardState, fmt.Sprintf("commit index %d below the compacted index %d", st.hs.GetCommit(), st.truncIndex), nil)
	case st.snapIndex > st.hs.GetCommit():
		return st, corrupt(bucketMeta, keySnapshot, fmt.Sprintf("snapshot index %d beyond the commit index %d", st.snapIndex, st.hs.GetCommit()), nil)
	case st.applied > st.hs.GetCommit():
		return st, corrupt(bucketMeta, keyApplied, fmt.Sprintf("applied index %d beyond the commit index %d", st.applied, st.hs.GetCommit()), nil)
	}
	return st, nil
}

// Close closes the file. The Node using the Storage must have stopped.
func (s *Storage) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("clusterlog: close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the file's path.
func (s *Storage) Path() string { return s.path }

// WriteTxns returns how many read-write transactions — each one fsync — the
// Storage has committed since it was opened, including the one made by
// OpenStorage.
func (s *Storage) WriteTxns() uint64 { return s.writes.Load() }

// ObserveFsync makes the Storage call f with the latency of every commit
// (each one an fsync) from now on; nil stops it. f runs with the Storage's
// lock held, on the writer's goroutine: it must be quick (a histogram's
// Observe).
func (s *Storage) ObserveFsync(f func(time.Duration)) {
	if f == nil {
		s.observe.Store(nil)
		return
	}
	s.observe.Store(&f)
}

// Opens returns meta/opens: how many times the file was opened, this time
// included.
func (s *Storage) Opens() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.opens
}

// Applied returns the last applied index recorded by SetApplied and the
// configuration as of that index.
func (s *Storage) Applied() (uint64, *raftpb.ConfState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.applied, proto.Clone(s.st.confState).(*raftpb.ConfState)
}

// InitialState implements raft.Storage. The ConfState is the configuration as
// of the applied index (meta/confstate), or the snapshot's if the snapshot is
// newer than the applied index.
func (s *Storage) InitialState() (*raftpb.HardState, *raftpb.ConfState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cs := s.st.confState
	if s.st.snapIndex > s.st.applied {
		cs = s.st.snapConf
	}
	return proto.Clone(s.st.hs).(*raftpb.HardState), raftpb.EnsureConfState(proto.Clone(cs).(*raftpb.ConfState)), nil
}

// Entries implements raft.Storage.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]*raftpb.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if lo <= s.st.truncIndex {
		return nil, raft.ErrCompacted
	}
	if hi > s.st.last+1 || lo >= hi {
		return nil, raft.ErrUnavailable
	}
	if out, ok := s.st.recent.slice(lo, hi, maxSize); ok {
		return out, nil
	}
	var out []*raftpb.Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketEntries).Cursor()
		var size uint64
		want := lo
		for k, v := c.Seek(entryKey(lo, 0)); k != nil && want < hi; {
			e, nk, nv, err := readEntry(c, k, v)
			if err != nil {
				return err
			}
			k, v = nk, nv
			if e.GetIndex() != want {
				return corrupt(bucketEntries, k, fmt.Sprintf("expected entry %d: the log has a gap", want), nil)
			}
			size += uint64(proto.Size(e))
			if len(out) > 0 && size > maxSize {
				break
			}
			out = append(out, e)
			want++
		}
		if len(out) == 0 {
			return corrupt(bucketEntries, entryKey(lo, 0), "entry missing", nil)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Term implements raft.Storage.
func (s *Storage) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		t, err = termIn(tx, &s.st, i)
		return err
	})
	return t, err
}

// termIn returns the term of entry i as seen by transaction tx, whose cached
// state is st.
func termIn(tx *bolt.Tx, st *diskState, i uint64) (uint64, error) {
	switch {
	case i < st.truncIndex:
		return 0, raft.ErrCompacted
	case i == st.truncIndex:
		return st.truncTerm, nil
	case i > st.last:
		return 0, raft.ErrUnavailable
	case i == st.last:
		return st.lastTerm, nil
	case i == st.snapIndex:
		return st.snapTerm, nil
	}
	if e, ok := st.recent.entry(i); ok {
		return e.GetTerm(), nil
	}
	k := entryKey(i, 0)
	c := tx.Bucket(bucketEntries).Cursor()
	ck, v := c.Seek(k)
	if !bytes.Equal(ck, k) {
		return 0, corrupt(bucketEntries, k, "entry missing", nil)
	}
	e, _, _, err := readEntry(c, ck, v)
	if err != nil {
		return 0, err
	}
	return e.GetTerm(), nil
}

// LastIndex implements raft.Storage.
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.last, nil
}

// FirstIndex implements raft.Storage.
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.truncIndex + 1, nil
}

// Snapshot implements raft.Storage. Without a stored snapshot it returns an
// empty one (index 0).
//
// While a Node runs on the Storage, a stored snapshot older than the
// applied index whose configuration differs from the applied one (a
// configuration change was applied after it) is stale: a node added since
// is not in it and would refuse it. Snapshot then returns
// raft.ErrSnapshotTemporarilyUnavailable and asks the Node for a fresh
// snapshot; raft retries on its next attempt.
func (s *Storage) Snapshot() (*raftpb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snapReq != nil && s.st.snapStale() {
		select {
		case s.snapReq <- struct{}{}:
		default: // a request is already pending
		}
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return s.storedSnapshot()
}

// requestSnapshots makes Snapshot signal c (buffered; never waited on) when
// it refuses a stale snapshot; nil stops it. Node sets it while it runs.
func (s *Storage) requestSnapshots(c chan<- struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snapReq = c
}

// snapStale reports whether the stored snapshot predates a configuration
// change that is applied (see Storage.Snapshot). A snapshot newer than the
// applied index (received, not yet applied) is never stale.
func (st *diskState) snapStale() bool {
	return st.snapIndex != 0 && st.snapIndex < st.applied && !sameConf(st.snapConf, st.confState)
}

// sameConf reports whether a and b are the same configuration.
func sameConf(a, b *raftpb.ConfState) bool {
	return sameIDs(a.GetVoters(), b.GetVoters()) &&
		sameIDs(a.GetLearners(), b.GetLearners()) &&
		sameIDs(a.GetVotersOutgoing(), b.GetVotersOutgoing()) &&
		sameIDs(a.GetLearnersNext(), b.GetLearnersNext()) &&
		a.GetAutoLeave() == b.GetAutoLeave()
}

// sameIDs compares two sets of node IDs (raft lists them sorted, but the
// stored records do not promise it).
func sameIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// storedSnapshot reads the stored snapshot. The caller holds s.mu.
func (s *Storage) storedSnapshot() (*raftpb.Snapshot, error) {
	snap := new(raftpb.Snapshot)
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keySnapshot); v != nil {
			return decodeProto(keySnapshot, v, snap)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return raftpb.EnsureSnapshot(snap), nil
}

// Append stores entries, replacing any stored entries at or after the first
// of them (raft's log-matching rule), in one fsynced transaction.
func (s *Storage) Append(entries []*raftpb.Entry) error {
	return s.Update(func(b *Batch) error { return b.Append(entries) })
}

// SetHardState stores hs in one fsynced transaction.
func (s *Storage) SetHardState(hs *raftpb.HardState) error {
	return s.Update(func(b *Batch) error { return b.SetHardState(hs) })
}

// ApplySnapshot replaces the log with snap in one fsynced transaction.
func (s *Storage) ApplySnapshot(snap *raftpb.Snapshot) error {
	return s.Update(func(b *Batch) error { return b.ApplySnapshot(snap) })
}

// CreateSnapshot stores a snapshot of the state machine at index i, in one
// fsynced transaction, and returns it.
func (s *Storage) CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error) {
	var snap *raftpb.Snapshot
	err := s.Update(func(b *Batch) error {
		var err error
		snap, err = b.CreateSnapshot(i, cs, data)
		return err
	})
	return snap, err
}

// Compact discards the entries up to and including i, in one fsynced
// transaction.
func (s *Storage) Compact(i uint64) error {
	return s.Update(func(b *Batch) error { return b.Compact(i) })
}

// SetApplied records, in one fsynced transaction, that the state machine has
// applied every entry up to index and that cs is the configuration then.
func (s *Storage) SetApplied(index uint64, cs *raftpb.ConfState) error {
	return s.Update(func(b *Batch) error { return b.SetApplied(index, cs) })
}

// Update runs fn in one read-write transaction, committed (and fsynced) when
// fn returns nil and rolled back otherwise. Readers see the effect only once
// the commit has succeeded. If the commit itself fails the Storage is broken:
// every later call returns ErrStorageBroken.
//
// While fn runs, the reading methods see the state before the transaction.
func (s *Storage) Update(fn func(*Batch) error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	if s.broken != nil {
		s.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrStorageBroken, s.broken)
	}
	next := s.st
	s.mu.Unlock()
	tx, err := s.db.Begin(true)
	if err != nil {
		return fmt.Errorf("clusterlog: begin transaction on %s: %w", s.path, err)
	}
	if err := fn(&Batch{tx: tx, st: &next}); err != nil {
		_ = tx.Rollback()
		return err
	}
	// Readers must not see the new file contents with the old cached
	// state, so the commit and the installation of next happen under mu.
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	err = tx.Commit()
	if f := s.observe.Load(); f != nil && err == nil {
		(*f)(time.Since(start))
	}
	if err != nil {
		// The caller reports it (a Node stops and logs it once); every
		// later Update fails fast with ErrStorageBroken.
		s.broken = err
		return fmt.Errorf("clusterlog: commit to %s: %w", s.path, err)
	}
	s.writes.Add(1)
	s.st = next
	return nil
}

// Batch is one open write transaction, handed to the function passed to
// Storage.Update. Its methods apply in order; each sees the effect of the
// previous ones.
type Batch struct {
	tx *bolt.Tx
	st *diskState
}

func (b *Batch) meta() *bolt.Bucket    { return b.tx.Bucket(bucketMeta) }
func (b *Batch) entries() *bolt.Bucket { return b.tx.Bucket(bucketEntries) }

// App returns the application's key space in this transaction.
func (b *Batch) App() *AppTx { return &AppTx{b: b.tx.Bucket(bucketApp)} }

// resetApp empties the application's key space (before a Restore).
func (b *Batch) resetApp() error {
	if err := b.tx.DeleteBucket(bucketApp); err != nil {
		return fmt.Errorf("clusterlog: clear app bucket: %w", err)
	}
	if _, err := b.tx.CreateBucket(bucketApp); err != nil {
		return fmt.Errorf("clusterlog: create app bucket: %w", err)
	}
	return nil
}

// deleteEntries deletes entries lo..hi inclusive (all their chunks).
func (b *Batch) deleteEntries(lo, hi uint64) error {
	if lo == 0 {
		lo = 1
	}
	if hi < lo {
		return nil
	}
	c := b.entries().Cursor()
	// One pass backwards from hi, without a seek per key: after Delete a
	// bbolt cursor's next element depends on whether its leaf was read into
	// a node (Next may skip a key), but the previous one is the same
	// either way.
	var k []byte
	if hi == math.MaxUint64 {
		k, _ = c.Last()
	} else if k, _ = c.Seek(entryKey(hi+1, 0)); k == nil {
		k, _ = c.Last()
	} else {
		k, _ = c.Prev()
	}
	for ; k != nil; k, _ = c.Prev() {
		if len(k) < indexKeyLen {
			continue
		}
		i := binary.BigEndian.Uint64(k)
		if i < lo {
			return nil
		}
		if i > hi {
			continue
		}
		if err := c.Delete(); err != nil {
			return fmt.Errorf("clusterlog: delete entry %d: %w", i, err)
		}
	}
	return nil
}

// Append stores entries (see Storage.Append).
func (b *Batch) Append(entries []*raftpb.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	first := entries[0].GetIndex()
	if first > b.st.last+1 {
		return fmt.Errorf("%w: first new entry %d, last stored entry %d", ErrLogGap, first, b.st.last)
	}
	if first <= b.st.truncIndex {
		skip := b.st.truncIndex + 1 - first
		if skip >= uint64(len(entries)) {
			return nil
		}
		entries = entries[skip:]
		first = entries[0].GetIndex()
	}
	for i, e := range entries {
		if e.GetIndex() != first+uint64(i) {
			return fmt.Errorf("%w: entry %d follows entry %d", ErrLogGap, e.GetIndex(), first+uint64(i)-1)
		}
	}
	if first <= b.st.last {
		if err := b.deleteEntries(first, b.st.last); err != nil {
			return err
		}
		b.st.recent = b.st.recent.truncate(first)
	}
	bk := b.entries()
	// Keys only grow: full leaves, not bbolt's default half-full splits.
	bk.FillPercent = 1
	for _, e := range entries {
		size, err := entryChunks(e, bk.Put)
		if err != nil {
			return fmt.Errorf("clusterlog: put entry %d: %w", e.GetIndex(), err)
		}
		b.st.recent = b.st.recent.add(e, size)
	}
	last := entries[len(entries)-1]
	b.st.last, b.st.lastTerm = last.GetIndex(), last.GetTerm()
	return nil
}

// SetHardState stores hs.
func (b *Batch) SetHardState(hs *raftpb.HardState) error {
	v, err := proto.Marshal(hs)
	if err != nil {
		return fmt.Errorf("clusterlog: encode hard state: %w", err)
	}
	if err := b.meta().Put(keyHardState, v); err != nil {
		return fmt.Errorf("clusterlog: put hard state: %w", err)
	}
	b.st.hs = proto.Clone(hs).(*raftpb.HardState)
	return nil
}

// ApplySnapshot replaces the whole log with snap: every stored entry is
// dropped and the log continues at the snapshot's index + 1. It returns
// raft.ErrSnapOutOfDate for a snapshot no newer than the stored one.
func (b *Batch) ApplySnapshot(snap *raftpb.Snapshot) error {
	md := snap.GetMetadata()
	idx, term := md.GetIndex(), md.GetTerm()
	if idx <= b.st.snapIndex && b.st.snapIndex != 0 {
		return raft.ErrSnapOutOfDate
	}
	if err := b.putSnapshot(snap); err != nil {
		return err
	}
	if err := b.deleteEntries(b.st.truncIndex+1, b.st.last); err != nil {
		return err
	}
	if err := b.meta().Put(keyTruncated, encodeTruncated(idx, term)); err != nil {
		return fmt.Errorf("clusterlog: put truncated: %w", err)
	}
	b.st.truncIndex, b.st.truncTerm = idx, term
	b.st.last, b.st.lastTerm = idx, term
	b.st.recent = recent{}
	return nil
}

func (b *Batch) putSnapshot(snap *raftpb.Snapshot) error {
	v, err := proto.Marshal(snap)
	if err != nil {
		return fmt.Errorf("clusterlog: encode snapshot: %w", err)
	}
	if err := b.meta().Put(keySnapshot, v); err != nil {
		return fmt.Errorf("clusterlog: put snapshot: %w", err)
	}
	md := snap.GetMetadata()
	b.st.snapIndex, b.st.snapTerm = md.GetIndex(), md.GetTerm()
	b.st.snapConf = proto.Clone(raftpb.EnsureConfState(md.GetConfState())).(*raftpb.ConfState)
	return nil
}

// CreateSnapshot stores a snapshot at index i (which must be stored in the
// log) with configuration cs and state-machine data. It returns
// raft.ErrSnapOutOfDate unless i is newer than the stored snapshot.
func (b *Batch) CreateSnapshot(i uint64, cs *raftpb.ConfState, data []byte) (*raftpb.Snapshot, error) {
	if i <= b.st.snapIndex {
		return nil, raft.ErrSnapOutOfDate
	}
	if i > b.st.last {
		return nil, fmt.Errorf("clusterlog: snapshot at %d beyond the last entry %d: %w", i, b.st.last, raft.ErrUnavailable)
	}
	term, err := termIn(b.tx, b.st, i)
	if err != nil {
		return nil, err
	}
	snap := &raftpb.Snapshot{
		Data: data,
		Metadata: &raftpb.SnapshotMetadata{
			Index:     new(i),
			Term:      new(term),
			ConfState: proto.Clone(raftpb.EnsureConfState(cs)).(*raftpb.ConfState),
		},
	}
	if err := b.putSnapshot(snap); err != nil {
		return nil, err
	}
	return snap, nil
}

// Compact discards the entries up to and including i, keeping only i's term.
// i must be covered by the stored snapshot. It returns raft.ErrCompacted if
// i is already compacted.
func (b *Batch) Compact(i uint64) error {
	if i <= b.st.truncIndex {
		return raft.ErrCompacted
	}
	if i > b.st.snapIndex {
		return fmt.Errorf("%w: compact to %d, snapshot at %d", ErrCompactUnsnapshotted, i, b.st.snapIndex)
	}
	term, err := termIn(b.tx, b.st, i)
	if err != nil {
		return err
	}
	if err := b.deleteEntries(b.st.truncIndex+1, i); err != nil {
		return err
	}
	if err := b.meta().Put(keyTruncated, encodeTruncated(i, term)); err != nil {
		return fmt.Errorf("clusterlog: put truncated: %w", err)
	}
	b.st.truncIndex, b.st.truncTerm = i, term
	b.st.recent = b.st.recent.compact(i)
	return nil
}

// SetApplied records the applied index and the configuration as of it.
func (b *Batch) SetApplied(index uint64, cs *raftpb.ConfState) error {
	if index > b.st.last {
		return fmt.Errorf("clusterlog: applied index %d beyond the last entry %d: %w", index, b.st.last, raft.ErrUnavailable)
	}
	cs = proto.Clone(raftpb.EnsureConfState(cs)).(*raftpb.ConfState)
	v, err := proto.Marshal(cs)
	if err != nil {
		return fmt.Errorf("clusterlog: encode conf state: %w", err)
	}
	if err := b.meta().Put(keyConfState, v); err != nil {
		return fmt.Errorf("clusterlog: put conf state: %w", err)
	}
	if err := b.meta().Put(keyApplied, encodeUint64(index)); err != nil {
		return fmt.Errorf("clusterlog: put applied: %w", err)
	}
	b.st.applied, b.st.confState = index, cs
	return nil
}

// LastIndex returns the index of the last entry as of this transaction.
func (b *Batch) LastIndex() uint64 { return b.st.last }

// SnapshotIndex returns the index of the stored snapshot as of this
// transaction (0 if none).
func (b *Batch) SnapshotIndex() uint64 { return b.st.snapIndex }

// FirstIndex returns the index of the first stored entry as of this
// transaction.
func (b *Batch) FirstIndex() uint64 { return b.st.truncIndex + 1 }
