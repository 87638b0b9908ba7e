package clusterlog

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"go.etcd.io/raft/v3/raftpb"
	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/internal/durable"
)

// segment is one open segment file of the current generation.
type segment struct {
	hdr  segHeader
	path string
	f    *os.File // closed, under Storage.mu, only when no installed state refers to it
	size int64    // the file's size (preallocated)
	// end and maxIndex are the writer's (Storage.wmu): where the next
	// write goes, and the highest index of a record in the segment.
	end      int64
	maxIndex uint64
}

// walPos is where an entry's record is: in seg at off (the record's
// start), with a payload of n bytes. seg is nil for a record of the open
// Batch, whose off is then an offset in Batch.buf. term is the entry's,
// so that Term needs no read.
type walPos struct {
	seg  *segment
	off  int64
	n    int
	term uint64
}

// walIndex maps the stored entries first .. first+len(pos)-1 to their
// records. Like recent it is part of diskState, a value: a write appends
// only beyond the installed copy's length, and truncation copies.
type walIndex struct {
	first uint64
	pos   []walPos
}

func (x walIndex) last() uint64 { return x.first + uint64(len(x.pos)) - 1 }

func (x walIndex) get(i uint64) (walPos, bool) {
	if len(x.pos) == 0 || i < x.first || i > x.last() {
		return walPos{}, false
	}
	return x.pos[i-x.first], true
}

// add sets entry i, which is the one after the last, or restarts the
// index at i.
func (x walIndex) add(i uint64, p walPos) walIndex {
	if len(x.pos) == 0 || i != x.last()+1 {
		x = walIndex{first: i}
	}
	x.pos = append(x.pos, p)
	return x
}

// truncate forgets the entries from i on, copying what it keeps.
func (x walIndex) truncate(i uint64) walIndex {
	switch {
	case len(x.pos) == 0 || i <= x.first:
		return walIndex{}
	case i > x.last():
		return x
	}
	return walIndex{first: x.first, pos: slices.Clone(x.pos[:i-x.first])}
}

// compact forgets the entries up to and including i.
func (x walIndex) compact(i uint64) walIndex {
	switch {
	case len(x.pos) == 0 || i < x.first:
		return x
	case i >= x.last():
		return walIndex{}
	}
	// The dropped slots stay in the array until an append outgrows it
	// and copies the live ones.
	return walIndex{first: i + 1, pos: x.pos[i+1-x.first:]}
}

// walCorrupt is a *CorruptError for the record at off in segment name.
func walCorrupt(name string, off int64, reason string, err error) *CorruptError {
	return &CorruptError{Record: fmt.Sprintf("wal/%s@%d", name, off), Reason: reason, Err: err}
}

func fdatasync(f *os.File) error {
	if err := unix.Fdatasync(int(f.Fd())); err != nil {
		return fmt.Errorf("clusterlog: fdatasync %s: %w", f.Name(), err)
	}
	return nil
}

// resetWALDir removes dir with everything in it and makes it again, empty.
func resetWALDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clusterlog: remove %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("clusterlog: make %s: %w", dir, err)
	}
	if err := durable.SyncDir(filepath.Dir(dir)); err != nil {
		return fmt.Errorf("clusterlog: sync %s: %w", filepath.Dir(dir), err)
	}
	return nil
}

// createSegment makes segment h in dir holding records (which start at
// offset segHeaderLen), preallocated to prealloc bytes or more: written
// and fsynced as a temporary file, then renamed and the directory
// fsynced, so that a segment with its name has its header.
func createSegment(dir string, h segHeader, records []byte, prealloc int64) (*segment, error) {
	path := filepath.Join(dir, h.name())
	tmp := path + segTmpSuffix
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("clusterlog: create segment: %w", err)
	}
	size := max(prealloc, int64(segHeaderLen+len(records)))
	fail := func(err error) (*segment, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("clusterlog: create segment %s: %w", path, err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, size); err != nil {
		// A file system without fallocate: a sparse file reads as
		// zeros too; only the space is not reserved.
		if err := f.Truncate(size); err != nil {
			return fail(err)
		}
	}
	if _, err := f.WriteAt(append(encodeSegHeader(h), records...), 0); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	if err := durable.SyncDir(dir); err != nil {
		f.Close()
		return nil, fmt.Errorf("clusterlog: create segment %s: %w", path, err)
	}
	return &segment{hdr: h, path: path, f: f, size: size, end: int64(segHeaderLen + len(records))}, nil
}

// removeSegment closes and removes s; the caller syncs the directory.
func removeSegment(s *segment) error {
	if s.f != nil {
		s.f.Close()
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// readRecord reads and decodes the entry record at p.
func readRecord(p walPos) (*raftpb.Entry, error) {
	b := make([]byte, recHeaderLen+p.n)
	if _, err := p.seg.f.ReadAt(b, p.off); err != nil {
		return nil, walCorrupt(p.seg.hdr.name(), p.off, "cannot read the record", err)
	}
	e, err := decodeRecord(b)
	if err != nil {
		return nil, walCorrupt(p.seg.hdr.name(), p.off, err.Error(), nil)
	}
	return e, nil
}

// rawRecord returns the bytes of the record at p (in a segment, or, seg
// nil, in buf).
func rawRecord(p walPos, buf []byte) ([]byte, error) {
	if p.seg == nil {
		return buf[p.off : p.off+recHeaderLen+int64(p.n)], nil
	}
	b := make([]byte, recHeaderLen+p.n)
	if _, err := p.seg.f.ReadAt(b, p.off); err != nil {
		return nil, fmt.Errorf("clusterlog: read %s@%d: %w", p.seg.path, p.off, err)
	}
	return b, nil
}

// replayed is what replayWAL rebuilt.
type replayed struct {
	segs     []*segment
	index    walIndex
	last     uint64
	lastTerm uint64
}

// replayWAL opens the WAL in dir for generation gen, with the log
// truncated at (truncIndex, truncTerm), by the rules of FORMAT.md
// ("Replay"): segments of other generations and temporary files are
// removed, a torn tail of the last segment is cut and zeroed, and the
// entries are rebuilt and checked. It leaves an open last segment to
// write to.
func replayWAL(dir string, gen, truncIndex, truncTerm uint64, prealloc int64, log *slog.Logger) (r replayed, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return r, fmt.Errorf("clusterlog: make %s: %w", dir, err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return r, fmt.Errorf("clusterlog: read %s: %w", dir, err)
	}
	var hdrs []segHeader
	removed := false
	for _, de := range des {
		name := de.Name()
		h, ok := parseSegName(name)
		switch {
		case filepath.Ext(name) == segTmpSuffix || (ok && h.gen != gen):
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return r, fmt.Errorf("clusterlog: remove %s: %w", name, err)
			}
			log.Info("removed a segment of another generation or unfinished", "segment", name, "generation", gen)
			removed = true
		case ok:
			hdrs = append(hdrs, h)
		}
	}
	slices.SortFunc(hdrs, func(a, b segHeader) int { return cmp.Compare(a.seq, b.seq) })
	defer func() {
		if err != nil {
			for _, s := range r.segs {
				s.f.Close()
			}
			r.segs = nil
		}
	}()
	var x walIndex
	for k, h := range hdrs {
		s, err := openSegment(dir, h)
		if err != nil {
			return r, err
		}
		r.segs = append(r.segs, s)
		stop, err := scanRecords(s.f, s.size, func(off int64, n int, e *raftpb.Entry) error {
			i := e.GetIndex()
			if len(x.pos) > 0 && i > x.last()+1 && i > truncIndex+1 {
				return walCorrupt(h.name(), off, fmt.Sprintf("entry %d after entry %d: the log has a gap", i, x.last()), nil)
			}
			if len(x.pos) > 0 && i >= x.first && i <= x.last() {
				x = x.truncate(i)
			}
			x = x.add(i, walPos{seg: s, off: off, n: n, term: e.GetTerm()})
			s.maxIndex = max(s.maxIndex, i)
			return nil
		})
		if err != nil {
			if _, ok := errors.AsType[*CorruptError](err); ok {
				return r, err
			}
			return r, walCorrupt(h.name(), stop.end, "cannot read the segment", err)
		}
		s.end = stop.end
		if stop.bad != "" {
			if k != len(hdrs)-1 {
				return r, walCorrupt(h.name(), stop.end, stop.bad, nil)
			}
			log.Warn("cutting a torn write at the end of the log", "segment", h.name(), "offset", stop.end, "reason", stop.bad)
			if err := zeroFrom(s.f, stop.end, s.size); err != nil {
				return r, err
			}
		}
	}
	x = x.compact(truncIndex)
	if len(x.pos) > 0 && x.first > truncIndex+1 {
		return r, &CorruptError{Record: "wal/", Reason: fmt.Sprintf("entries %d .. %d missing: the log has a gap", truncIndex+1, x.first-1)}
	}
	r.index, r.last, r.lastTerm = x, truncIndex, truncTerm
	for i := range uint64(len(x.pos)) {
		p := x.pos[i]
		if p.term < r.lastTerm {
			return r, walCorrupt(p.seg.hdr.name(), p.off, fmt.Sprintf("entry %d: term %d is lower than the previous term %d", x.first+i, p.term, r.lastTerm), nil)
		}
		r.last, r.lastTerm = x.first+i, p.term
	}
	// Finish a compaction a crash interrupted.
	for len(r.segs) > 1 && r.segs[0].maxIndex <= truncIndex {
		if err := removeSegment(r.segs[0]); err != nil {
			return r, fmt.Errorf("clusterlog: remove compacted segment: %w", err)
		}
		r.segs = r.segs[1:]
		removed = true
	}
	if removed {
		if err := durable.SyncDir(dir); err != nil {
			return r, fmt.Errorf("clusterlog: sync %s: %w", dir, err)
		}
	}
	if len(r.segs) == 0 {
		s, err := createSegment(dir, segHeader{gen: gen, seq: 0, first: r.last + 1}, nil, prealloc)
		if err != nil {
			return r, err
		}
		r.segs = []*segment{s}
	}
	return r, nil
}

// openSegment opens segment h in dir and checks its header.
func openSegment(dir string, h segHeader) (*segment, error) {
	path := filepath.Join(dir, h.name())
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("clusterlog: open segment: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("clusterlog: open segment: %w", err)
	}
	b := make([]byte, segHeaderLen)
	if _, err := io.ReadFull(io.NewSectionReader(f, 0, segHeaderLen), b); err != nil {
		f.Close()
		return nil, walCorrupt(h.name(), 0, "segment header cut short", err)
	}
	got, err := decodeSegHeader(b)
	if err == nil && got != h {
		err = fmt.Errorf("%w: header says %s", errBadHeader, got.name())
	}
	if err != nil {
		f.Close()
		return nil, walCorrupt(h.name(), 0, err.Error(), nil)
	}
	return &segment{hdr: h, path: path, f: f, size: fi.Size()}, nil
}

// zeroFrom overwrites f from off to size with zeros and syncs it: the
// bytes of a torn write, which a later record must never be followed by.
func zeroFrom(f *os.File, off, size int64) error {
	zeros := make([]byte, min(1<<20, max(size-off, 0)))
	for off < size {
		n := min(int64(len(zeros)), size-off)
		if _, err := f.WriteAt(zeros[:n], off); err != nil {
			return fmt.Errorf("clusterlog: zero the torn tail of %s: %w", f.Name(), err)
		}
		off += n
	}
	return fdatasync(f)
}
