package clusterlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// bbolt's page layout (go.etcd.io/bbolt internal/common): a 16-byte header
// (id u64, flags u16, count u16, overflow u32), then count elements of 16
// bytes: in a branch page pos u32, ksize u32, child u64; in a leaf page
// flags u32, pos u32, ksize u32, vsize u32, with pos counted from the
// element. A leaf element flagged as a bucket holds a bucket header (root
// u64, sequence u64), followed, for an inline bucket (root 0), by the
// bucket's own page.
const (
	pageHeaderLen  = 16
	pageElemLen    = 16
	branchPageFlag = 0x01
	leafPageFlag   = 0x02
	bucketLeafFlag = 0x01
	bucketHdrLen   = 16
)

// walkPages reads every page reachable from the bucket roots in the file,
// nested buckets too, and checks what bbolt's consistency check (tx.Check)
// takes for granted as it walks them on a goroutine of its own, where a
// damaged page makes it panic beyond any recover: that every page id is
// below the high-water mark hwm, names itself, is a branch or a leaf and
// holds its elements, that no page (overflow pages included) is reached
// twice, and that keys are in order: strictly ascending in a page, and a
// child's keys between the two branch keys around it. bbolt's freelist
// rebuild (an Open with NoFreelistSync) runs that same check and panics
// on what it finds while its checking goroutine still reads the
// transaction. It returns the first problem.
func walkPages(f *os.File, pageSize int, hwm uint64, roots []uint64) error {
	w := &pageWalker{f: f, pageSize: pageSize, hwm: hwm, seen: map[uint64]bool{}}
	for _, r := range roots {
		if _, err := w.page(r, 0, nil, nil); err != nil {
			return err
		}
	}
	return nil
}

type pageWalker struct {
	f        *os.File
	pageSize int
	hwm      uint64
	seen     map[uint64]bool
}

// maxDepth bounds the recursion: a real tree is far shallower.
const maxDepth = 64

// page checks page id and what it points to; its keys must be at least lo
// (if set) and below hi (if set). It returns the highest key under it.
func (w *pageWalker) page(id uint64, depth int, lo, hi []byte) ([]byte, error) {
	switch {
	case depth > maxDepth:
		return nil, fmt.Errorf("page %d: the tree is deeper than %d", id, maxDepth)
	case id < 2 || id >= w.hwm:
		return nil, fmt.Errorf("page id %d is outside the file's pages 2..%d", id, w.hwm-1)
	case w.seen[id]:
		return nil, fmt.Errorf("page %d is reached twice", id)
	}
	w.seen[id] = true
	hdr := make([]byte, pageHeaderLen)
	if _, err := w.f.ReadAt(hdr, int64(id)*int64(w.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	le := binary.LittleEndian
	if self := le.Uint64(hdr); self != id {
		return nil, fmt.Errorf("page %d identifies itself as %d", id, self)
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if overflow >= w.hwm-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the file's pages", id, overflow)
	}
	for o := id + 1; o <= id+overflow; o++ {
		if w.seen[o] {
			return nil, fmt.Errorf("page %d: its overflow page %d is reached twice", id, o)
		}
		w.seen[o] = true
	}
	buf := make([]byte, (1+overflow)*uint64(w.pageSize))
	if _, err := w.f.ReadAt(buf, int64(id)*int64(w.pageSize)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return w.elements(buf, fmt.Sprintf("page %d", id), depth, lo, hi)
}

// keyOrder checks key i of a page against the key before it (for i = 0:
// the lower bound, which it may equal) and the upper bound hi.
func keyOrder(where string, i int, key, prev, hi []byte) error {
	switch c := bytes.Compare(prev, key); {
	case prev == nil:
	case i == 0 && c > 0:
		return fmt.Errorf("%s: key 0 is below the key of its parent's element", where)
	case i > 0 && c >= 0:
		return fmt.Errorf("%s: key %d is not above key %d", where, i, i-1)
	}
	if hi != nil && bytes.Compare(key, hi) >= 0 {
		return fmt.Errorf("%s: key %d is not below the next key of its parent", where, i)
	}
	return nil
}

// elements checks the elements of the page in buf (a file page with its
// overflow, or an inline bucket's page), keys within [lo, hi), and walks
// what they point to. It returns the highest key under the page.
func (w *pageWalker) elements(buf []byte, where string, depth int, lo, hi []byte) ([]byte, error) {
	if len(buf) < pageHeaderLen {
		return nil, fmt.Errorf("%s: %d bytes, shorter than a page header", where, len(buf))
	}
	le := binary.LittleEndian
	flags, count := le.Uint16(buf[8:]), int(le.Uint16(buf[10:]))
	if flags != branchPageFlag && flags != leafPageFlag {
		return nil, fmt.Errorf("%s: flags %#x, neither a branch nor a leaf", where, flags)
	}
	if pageHeaderLen+count*pageElemLen > len(buf) {
		return nil, fmt.Errorf("%s: %d elements do not fit its %d bytes", where, count, len(buf))
	}
	// Branch keys first, so that each child's upper bound is known.
	keys := make([][]byte, count)
	for i := range count {
		at := pageHeaderLen + i*pageElemLen
		e := buf[at : at+pageElemLen]
		pos, ksize, vsize := uint64(le.Uint32(e)), uint64(le.Uint32(e[4:])), uint64(0)
		what := "branch"
		if flags == leafPageFlag {
			pos, ksize, vsize, what = uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:])), "leaf"
		}
		if uint64(at)+pos+ksize+vsize > uint64(len(buf)) {
			return nil, fmt.Errorf("%s: %s element %d runs past the page", where, what, i)
		}
		keys[i] = buf[uint64(at)+pos : uint64(at)+pos+ksize]
	}
	var last []byte
	prev := lo
	for i := range count {
		at := pageHeaderLen + i*pageElemLen
		e := buf[at : at+pageElemLen]
		if err := keyOrder(where, i, keys[i], prev, hi); err != nil {
			return nil, err
		}
		if flags == branchPageFlag {
			next := hi
			if i+1 < count {
				next = keys[i+1]
			}
			sub, err := w.page(le.Uint64(e[8:]), depth+1, keys[i], next)
			if err != nil {
				return nil, err
			}
			prev, last = sub, sub
			continue
		}
		prev, last = keys[i], keys[i]
		eflags, pos, ksize, vsize := le.Uint32(e), uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		if eflags&bucketLeafFlag == 0 {
			continue
		}
		v := buf[uint64(at)+pos+ksize : uint64(at)+pos+ksize+vsize]
		if len(v) < bucketHdrLen {
			return nil, fmt.Errorf("%s: leaf element %d: a bucket of %d bytes", where, i, len(v))
		}
		// A nested bucket is a tree of its own: its keys start afresh.
		if root := le.Uint64(v); root != 0 {
			if _, err := w.page(root, depth+1, nil, nil); err != nil {
				return nil, err
			}
			continue
		}
		if _, err := w.elements(v[bucketHdrLen:], fmt.Sprintf("%s: inline bucket %d", where, i), depth+1, nil, nil); err != nil {
			return nil, err
		}
	}
	return last, nil
}

// bbolt's meta page (pages 0 and 1): after the page header, magic u32,
// version u32, page size u32, flags u32, root bucket (root u64, sequence
// u64), freelist u64, high-water mark u64, txid u64, checksum u64 (FNV-1a
// 64 of the fields before it).
const (
	metaMagic = 0xED0CDAED
	metaLen   = 64
)

// walkFile walks the page tree of the bbolt file at path from its newest
// valid meta page, before bbolt opens it: bbolt checks the pages on a
// goroutine of its own while opening some files, where a damaged page
// panics beyond any recover. A file whose metas do not validate is left
// to bbolt, which refuses it with an error.
func walkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a new log: bbolt creates it
	}
	if err != nil {
		return err
	}
	defer f.Close()
	type meta struct{ pageSize, root, hwm, txid uint64 }
	var best *meta
	le := binary.LittleEndian
	readMeta := func(off int64) *meta {
		b := make([]byte, pageHeaderLen+metaLen)
		if _, err := f.ReadAt(b, off); err != nil {
			return nil
		}
		m := b[pageHeaderLen:]
		if le.Uint32(m) != metaMagic {
			return nil
		}
		h := fnv64a(m[:56])
		if h != le.Uint64(m[56:]) {
			return nil
		}
		return &meta{pageSize: uint64(le.Uint32(m[8:])), root: le.Uint64(m[16:]), hwm: le.Uint64(m[40:]), txid: le.Uint64(m[48:])}
	}
	m0 := readMeta(0)
	if m0 == nil {
		// The second meta is a page further; its size is unknown without
		// the first: try the usual ones.
		for _, ps := range []int64{4096, 8192, 16384, 65536} {
			if m := readMeta(ps); m != nil && uint64(ps) == m.pageSize {
				m0 = m
				break
			}
		}
	} else if m1 := readMeta(int64(m0.pageSize)); m1 != nil && m1.txid > m0.txid {
		best = m1
	}
	if best == nil {
		best = m0
	}
	if best == nil || best.pageSize < 1024 || best.pageSize > 1<<20 {
		return nil
	}
	return walkPages(f, int(best.pageSize), best.hwm, []uint64{best.root})
}

// fnv64a is FNV-1a, 64 bits, as bbolt checksums its meta.
func fnv64a(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}
