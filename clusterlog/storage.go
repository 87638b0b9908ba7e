package clusterlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/corralhq/corral/internal/durable"
)

// Storage is the durable raft log: a raft.Storage kept in one bbolt file and
// a write-ahead log of the entries next to it, whose layout FORMAT.md
// specifies. Every write (Update) appends the new entries to the WAL in one
// write and fdatasync, then commits one bbolt read-write transaction with
// everything else, which bbolt fsyncs before Commit returns; several writes
// can share one Update.
//
// Readers (the raft.Storage methods) and writers may be called from any
// goroutine, but a Node assumes it is the only writer while it runs.
type Storage struct {
	db       *bolt.DB
	path     string
	walDir   string
	prealloc int64 // a new segment's size
	log      *slog.Logger
	writes   atomic.Uint64                       // durable writes: Updates that fsynced something, and the open
	observe  atomic.Pointer[func(time.Duration)] // ObserveFsync's function, if any

	// wmu serialises write transactions (Update). It is taken before mu
	// and held while the function passed to Update runs, without mu, so
	// that the function may call the reading methods: raft does, from
	// inside ApplyConfChange, which Node calls in the record transaction.
	wmu sync.Mutex
	// segs are the current generation's WAL segments, the last one
	// written to. The writer's (wmu); a segment leaves it, and its file
	// is closed, under mu too, once no installed state refers to it.
	segs []*segment

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
	walGen     uint64            // meta/wal: the WAL generation
	index      walIndex          // where entries truncIndex+1 .. last are in the WAL
	recent     recent            // the last entries stored, in memory
}

var _ raft.Storage = (*Storage)(nil)

// OpenStorage opens or creates the log file at path. A new file is
// initialised with format version FormatVersion. An existing file is checked
// completely — every record is decoded and the invariants of FORMAT.md are
// verified — so that a damaged file is refused here with a *CorruptError,
// and a file of another format version with a *FormatVersionError, rather
// than failing later inside raft. A file of version 1, 2 or 3 is upgraded to
// version 4 (FORMAT.md). The WAL is the directory path+".wal". Opening
// bumps meta/opens.
func OpenStorage(path string, logger *slog.Logger) (*Storage, error) {
	return openStorage(path, logger, segmentPrealloc)
}

// openStorage is OpenStorage with new segments preallocated to prealloc
// bytes (tests make small segments).
func openStorage(path string, logger *slog.Logger, prealloc int64) (*Storage, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	db, err := openBolt(path)
	if err != nil {
		return nil, fmt.Errorf("clusterlog: open %s: %w", path, err)
	}
	s := &Storage{db: db, path: path, walDir: path + walDirSuffix, prealloc: prealloc,
		log: logger.With("subsystem", "clusterlog.storage")}
	err = guard("bbolt failed reading it", func() error {
		return db.Update(func(tx *bolt.Tx) error {
			st, err := loadOrInit(tx, path, s.walDir)
			if err != nil {
				return err
			}
			r, err := replayWAL(s.walDir, st.walGen, st.truncIndex, st.truncTerm, s.prealloc, s.log)
			if err != nil {
				return err
			}
			st.index, st.last, st.lastTerm = r.index, r.last, r.lastTerm
			if err := checkInvariants(&st); err != nil {
				for _, sg := range r.segs {
					sg.f.Close()
				}
				return err
			}
			s.segs = r.segs
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

// loadOrInit initialises an empty file, or upgrades and loads an existing
// one: its bbolt records, not yet the WAL.
func loadOrInit(tx *bolt.Tx, path, walDir string) (diskState, error) {
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
		return initFile(tx, walDir)
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
	case 1, 2, 3:
		if ver == 1 {
			if err := upgradeV1(tx); err != nil {
				return diskState{}, err
			}
		}
		if ver <= 2 {
			if err := upgradeV2(tx); err != nil {
				return diskState{}, err
			}
		}
		if err := upgradeV3(tx, walDir); err != nil {
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

// upgradeV3 turns a version 3 file into version 4 inside the open
// transaction: every entry of the entries bucket is checked and written as
// a record into a new WAL of generation 1, fsynced; then the bucket is
// dropped, meta/wal set and the format set to 4. Until the transaction
// commits the file is still version 3, and any WAL directory is discarded
// by the next upgrade.
func upgradeV3(tx *bolt.Tx, walDir string) error {
	bk := tx.Bucket(bucketEntries)
	if bk == nil {
		return corrupt(bucketEntries, nil, "bucket missing", nil)
	}
	if err := resetWALDir(walDir); err != nil {
		return fmt.Errorf("clusterlog: upgrade from version 3: %w", err)
	}
	var buf []byte
	first := uint64(0)
	c := bk.Cursor()
	for k, v := c.First(); k != nil; {
		e, nk, nv, err := readEntry(c, k, v)
		if err != nil {
			return err
		}
		if first == 0 {
			first = e.GetIndex()
		}
		if buf, _, err = appendEntryRecord(buf, e); err != nil {
			return fmt.Errorf("clusterlog: upgrade from version 3: %w", err)
		}
		k, v = nk, nv
	}
	if first == 0 {
		first = 1
	}
	sg, err := createSegment(walDir, segHeader{gen: 1, seq: 0, first: first}, buf, 0)
	if err != nil {
		return fmt.Errorf("clusterlog: upgrade from version 3: %w", err)
	}
	sg.f.Close()
	if err := tx.DeleteBucket(bucketEntries); err != nil {
		return fmt.Errorf("clusterlog: upgrade from version 3: %w", err)
	}
	meta := tx.Bucket(bucketMeta)
	if err := meta.Put(keyWAL, encodeUint64(1)); err != nil {
		return err
	}
	return meta.Put(keyFormat, encodeFormat(4))
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

// initFile initialises a new file. Any WAL directory there is of an
// earlier log (a new life of the node removed only the bbolt file): it is
// removed first, so that its generation 1 is never taken for this one's.
func initFile(tx *bolt.Tx, walDir string) (diskState, error) {
	if err := resetWALDir(walDir); err != nil {
		return diskState{}, err
	}
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return diskState{}, err
	}
	if _, err := tx.CreateBucket(bucketApp); err != nil {
		return diskState{}, err
	}
	st := diskState{hs: &raftpb.HardState{}, confState: &raftpb.ConfState{}, snapConf: &raftpb.ConfState{}, walGen: 1}
	for _, kv := range []struct{ k, v []byte }{
		{keyFormat, encodeFormat(FormatVersion)},
		{keyTruncated, encodeTruncated(0, 0)},
		{keyApplied, encodeUint64(0)},
		{keyWAL, encodeUint64(1)},
	} {
		if err := meta.Put(kv.k, kv.v); err != nil {
			return diskState{}, err
		}
	}
	return st, nil
}

// loadState decodes every bbolt record. Any violation is a *CorruptError.
func loadState(tx *bolt.Tx) (diskState, error) {
	meta := tx.Bucket(bucketMeta)
	if tx.Bucket(bucketEntries) != nil {
		return diskState{}, corrupt(bucketEntries, nil, "bucket of version 3 in a version 4 file", nil)
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
	v = meta.Get(keyWAL)
	if v == nil {
		return st, corrupt(bucketMeta, keyWAL, "record missing", nil)
	}
	if st.walGen, err = decodeUint64(keyWAL, v); err != nil {
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

	return st, nil
}

// checkInvariants checks the invariants of FORMAT.md that relate the bbolt
// records to the entries replayed from the WAL (st.last). The WAL's own
// (no gap, terms) replayWAL checked.
func checkInvariants(st *diskState) error {
	switch {
	case st.snapIndex < st.truncIndex:
		return corrupt(bucketMeta, keyTruncated, fmt.Sprintf("log truncated at %d beyond the snapshot at %d", st.truncIndex, st.snapIndex), nil)
	case st.snapIndex > st.last:
		return corrupt(bucketMeta, keySnapshot, fmt.Sprintf("snapshot index %d beyond the last entry %d", st.snapIndex, st.last), nil)
	case st.hs.GetCommit() > st.last:
		return corrupt(bucketMeta, keyHardState, fmt.Sprintf("commit index %d beyond the last entry %d", st.hs.GetCommit(), st.last), nil)
	case st.hs.GetCommit() < st.truncIndex:
		return corrupt(bucketMeta, keyHardState, fmt.Sprintf("commit index %d below the compacted index %d", st.hs.GetCommit(), st.truncIndex), nil)
	case st.snapIndex > st.hs.GetCommit():
		return corrupt(bucketMeta, keySnapshot, fmt.Sprintf("snapshot index %d beyond the commit index %d", st.snapIndex, st.hs.GetCommit()), nil)
	case st.applied > st.hs.GetCommit():
		return corrupt(bucketMeta, keyApplied, fmt.Sprintf("applied index %d beyond the commit index %d", st.applied, st.hs.GetCommit()), nil)
	}
	return nil
}

// Close closes the file and the WAL. The Node using the Storage must have
// stopped.
func (s *Storage) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sg := range s.segs {
		sg.f.Close()
	}
	s.segs = nil
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("clusterlog: close %s: %w", s.path, err)
	}
	return nil
}

// Path returns the file's path.
func (s *Storage) Path() string { return s.path }

// WriteTxns returns how many durable writes the Storage has made since it
// was opened, including the one made by OpenStorage: each Update that
// wrote anything counts once (its WAL fdatasync, its bbolt commit, or both).
func (s *Storage) WriteTxns() uint64 { return s.writes.Load() }

// ObserveFsync makes the Storage call f with the latency of every durable
// write (WAL write and fdatasync, and bbolt commit) from now on; nil stops it. f runs with the Storage's
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
	var size uint64
	for i := lo; i < hi; i++ {
		p, ok := s.st.index.get(i)
		if !ok {
			return nil, &CorruptError{Record: fmt.Sprintf("entry %d", i), Reason: "not in the WAL index"}
		}
		size += uint64(p.n)
		if len(out) > 0 && size > maxSize {
			break
		}
		e, err := readRecord(p)
		if err != nil {
			return nil, err
		}
		if e.GetIndex() != i {
			return nil, walCorrupt(p.seg.hdr.name(), p.off, fmt.Sprintf("entry %d where entry %d should be", e.GetIndex(), i), nil)
		}
		out = append(out, e)
	}
	return out, nil
}

// Term implements raft.Storage.
func (s *Storage) Term(i uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return termIn(&s.st, i)
}

// termIn returns the term of entry i in state st.
func termIn(st *diskState, i uint64) (uint64, error) {
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
	p, ok := st.index.get(i)
	if !ok {
		return 0, &CorruptError{Record: fmt.Sprintf("entry %d", i), Reason: "not in the WAL index"}
	}
	return p.term, nil
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

// Update runs fn in one write: the entries it appends go to the WAL, in one
// write and fdatasync, and then everything else in one bbolt read-write
// transaction, committed (and fsynced) when fn returns nil; nothing is
// written if fn fails. An Update that appends entries and changes nothing
// else commits no bbolt transaction. Readers see the effect only once all
// of it is durable. If a write fails the Storage is broken: every later
// call returns ErrStorageBroken.
//
// While fn runs, the reading methods see the state before the write.
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
	b := &Batch{tx: tx, st: &next}
	if err := fn(b); err != nil {
		_ = tx.Rollback()
		return err
	}
	if !b.dirty && len(b.buf) == 0 && !b.newGen {
		_ = tx.Rollback()
		return nil
	}
	// The WAL first: the bbolt records (commit, applied, snapshot) may
	// name entries of this write. Readers do not look beyond the
	// installed state's positions, so this needs no lock.
	start := time.Now()
	genSeg, err := s.writeWAL(b)
	if err != nil {
		_ = tx.Rollback()
		s.mu.Lock()
		s.broken = err
		s.mu.Unlock()
		return err
	}
	// Readers must not see the new file contents with the old cached
	// state, so the commit and the installation of next happen under mu.
	s.mu.Lock()
	defer s.mu.Unlock()
	if b.dirty || b.newGen {
		err = tx.Commit()
	} else {
		err = tx.Rollback()
	}
	if err != nil {
		// The caller reports it (a Node stops and logs it once); every
		// later Update fails fast with ErrStorageBroken.
		s.broken = err
		if genSeg != nil {
			genSeg.f.Close()
		}
		return fmt.Errorf("clusterlog: commit to %s: %w", s.path, err)
	}
	if f := s.observe.Load(); f != nil {
		(*f)(time.Since(start))
	}
	s.writes.Add(1)
	truncated := next.truncIndex > s.st.truncIndex
	s.st = next
	s.dropSegments(genSeg, truncated)
	return nil
}

// writeWAL writes the records of b: appended to the last segment (or a new
// one, if they do not fit), or, for a new generation, into the first
// segment of that generation, which it returns. It fixes the positions of
// b's entries in b.st.index.
func (s *Storage) writeWAL(b *Batch) (*segment, error) {
	if b.newGen {
		return s.writeGeneration(b)
	}
	if len(b.buf) == 0 {
		return nil, nil
	}
	sg := s.segs[len(s.segs)-1]
	if sg.end+int64(len(b.buf)) > sg.size {
		h := segHeader{gen: b.st.walGen, seq: sg.hdr.seq + 1, first: s.st.last + 1}
		ns, err := createSegment(s.walDir, h, nil, max(s.prealloc, int64(segHeaderLen+len(b.buf))))
		if err != nil {
			return nil, err
		}
		s.segs = append(s.segs, ns)
		sg = ns
	}
	if _, err := sg.f.WriteAt(b.buf, sg.end); err != nil {
		return nil, fmt.Errorf("clusterlog: write %s: %w", sg.path, err)
	}
	if err := fdatasync(sg.f); err != nil {
		return nil, err
	}
	pos := b.st.index.pos
	for k := len(pos) - 1; k >= 0 && pos[k].seg == nil; k-- {
		pos[k].seg, pos[k].off = sg, pos[k].off+sg.end
	}
	sg.end += int64(len(b.buf))
	sg.maxIndex = max(sg.maxIndex, b.maxIndex)
	return nil, nil
}

// writeGeneration writes the first segment of b's new generation: the
// records of every entry the log keeps (read from the current segments or
// b) in index order.
func (s *Storage) writeGeneration(b *Batch) (*segment, error) {
	x := b.st.index
	var buf []byte
	pos := make([]walPos, len(x.pos))
	for k, p := range x.pos {
		raw, err := rawRecord(p, b.buf)
		if err != nil {
			return nil, err
		}
		pos[k] = walPos{off: int64(segHeaderLen + len(buf)), n: p.n, term: p.term}
		buf = append(buf, raw...)
	}
	h := segHeader{gen: b.st.walGen, seq: 0, first: b.st.truncIndex + 1}
	sg, err := createSegment(s.walDir, h, buf, s.prealloc)
	if err != nil {
		return nil, err
	}
	for k := range pos {
		pos[k].seg = sg
	}
	if len(pos) > 0 {
		sg.maxIndex = x.last()
	}
	b.st.index = walIndex{first: x.first, pos: pos}
	return sg, nil
}

// dropSegments removes the segments no installed state refers to any more:
// all of the old generation once genSeg, the new one's first, is installed,
// or else, the log truncated further, the leading segments at or below
// the truncated index (never the last). A removal that fails is logged
// and done again at the next open. The caller holds wmu and mu.
func (s *Storage) dropSegments(genSeg *segment, truncated bool) {
	var drop []*segment
	switch {
	case genSeg != nil:
		drop, s.segs = s.segs, []*segment{genSeg}
	case truncated:
		n := 0
		for n < len(s.segs)-1 && s.segs[n].maxIndex <= s.st.truncIndex {
			n++
		}
		drop, s.segs = s.segs[:n], s.segs[n:]
	}
	if len(drop) == 0 {
		return
	}
	for _, sg := range drop {
		if err := removeSegment(sg); err != nil {
			s.log.Warn("cannot remove a WAL segment; the next open removes it", "segment", sg.path, "err", err)
		}
	}
	if err := durable.SyncDir(s.walDir); err != nil {
		s.log.Warn("cannot sync the WAL directory", "dir", s.walDir, "err", err)
	}
}

// Batch is one open write, handed to the function passed to
// Storage.Update. Its methods apply in order; each sees the effect of the
// previous ones.
type Batch struct {
	tx       *bolt.Tx
	st       *diskState
	buf      []byte // the WAL records of the entries appended
	maxIndex uint64 // the highest index in buf
	dirty    bool   // tx has changes to commit
	newGen   bool   // the write starts a new WAL generation (st.walGen)
}

func (b *Batch) meta() *bolt.Bucket {
	b.dirty = true
	return b.tx.Bucket(bucketMeta)
}

// App returns the application's key space in this transaction.
func (b *Batch) App() *AppTx {
	b.dirty = true
	return &AppTx{b: b.tx.Bucket(bucketApp)}
}

// resetApp empties the application's key space (before a Restore).
func (b *Batch) resetApp() error {
	b.dirty = true
	if err := b.tx.DeleteBucket(bucketApp); err != nil {
		return fmt.Errorf("clusterlog: clear app bucket: %w", err)
	}
	if _, err := b.tx.CreateBucket(bucketApp); err != nil {
		return fmt.Errorf("clusterlog: create app bucket: %w", err)
	}
	return nil
}

// newGeneration makes this write start a new WAL generation: the entries
// the log keeps after it are written into a new segment, and the old
// segments removed once it has committed (FORMAT.md, "Writes"). For writes
// that drop entries without replacing them.
func (b *Batch) newGeneration() error {
	if b.newGen {
		return nil
	}
	b.newGen = true
	b.st.walGen++
	if err := b.meta().Put(keyWAL, encodeUint64(b.st.walGen)); err != nil {
		return fmt.Errorf("clusterlog: put wal generation: %w", err)
	}
	return nil
}

// dropAfter drops the entries after i (which is stored), starting a new
// WAL generation. The caller sets last and lastTerm.
func (b *Batch) dropAfter(i uint64) error {
	if i >= b.st.last {
		return nil
	}
	b.st.index = b.st.index.truncate(i + 1)
	b.st.recent = b.st.recent.truncate(i + 1)
	return b.newGeneration()
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
		// Replaced by appending: replay drops the entries from first on
		// when it reads the new record (FORMAT.md, "Replay").
		b.st.index = b.st.index.truncate(first)
		b.st.recent = b.st.recent.truncate(first)
	}
	for _, e := range entries {
		off := len(b.buf)
		var n int
		var err error
		if b.buf, n, err = appendEntryRecord(b.buf, e); err != nil {
			return fmt.Errorf("clusterlog: encode entry %d: %w", e.GetIndex(), err)
		}
		b.st.index = b.st.index.add(e.GetIndex(), walPos{off: int64(off), n: n, term: e.GetTerm()})
		b.st.recent = b.st.recent.add(e, n)
		b.maxIndex = max(b.maxIndex, e.GetIndex())
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
	if err := b.meta().Put(keyTruncated, encodeTruncated(idx, term)); err != nil {
		return fmt.Errorf("clusterlog: put truncated: %w", err)
	}
	b.st.truncIndex, b.st.truncTerm = idx, term
	b.st.last, b.st.lastTerm = idx, term
	b.st.index = walIndex{}
	b.st.recent = recent{}
	return b.newGeneration()
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
	term, err := termIn(b.st, i)
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
	term, err := termIn(b.st, i)
	if err != nil {
		return err
	}
	if err := b.meta().Put(keyTruncated, encodeTruncated(i, term)); err != nil {
		return fmt.Errorf("clusterlog: put truncated: %w", err)
	}
	b.st.truncIndex, b.st.truncTerm = i, term
	b.st.index = b.st.index.compact(i)
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
