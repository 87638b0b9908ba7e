package clusterlog

import (
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
// holds its elements. It returns the first problem.
func walkPages(f *os.File, pageSize int, hwm uint64, roots []uint64) error {
	w := &pageWalker{f: f, pageSize: pageSize, hwm: hwm, seen: map[uint64]bool{}}
	for _, r := range roots {
		if err := w.page(r, 0); err != nil {
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

func (w *pageWalker) page(id uint64, depth int) error {
	switch {
	case depth > maxDepth:
		return fmt.Errorf("page %d: the tree is deeper than %d", id, maxDepth)
	case id < 2 || id >= w.hwm:
		return fmt.Errorf("page id %d is outside the file's pages 2..%d", id, w.hwm-1)
	case w.seen[id]:
		return fmt.Errorf("page %d is reached twice", id)
	}
	w.seen[id] = true
	hdr := make([]byte, pageHeaderLen)
	if _, err := w.f.ReadAt(hdr, int64(id)*int64(w.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	le := binary.LittleEndian
	if self := le.Uint64(hdr); self != id {
		return fmt.Errorf("page %d identifies itself as %d", id, self)
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if overflow >= w.hwm-id {
		return fmt.Errorf("page %d: %d overflow pages run past the file's pages", id, overflow)
	}
	buf := make([]byte, (1+overflow)*uint64(w.pageSize))
	if _, err := w.f.ReadAt(buf, int64(id)*int64(w.pageSize)); err != nil {
		return fmt.Errorf("page %d: %w", id, err)
	}
	return w.elements(buf, fmt.Sprintf("page %d", id), depth)
}

// elements checks the elements of the page in buf (a file page with its
// overflow, or an inline bucket's page) and walks what they point to.
func (w *pageWalker) elements(buf []byte, where string, depth int) error {
	if len(buf) < pageHeaderLen {
		return fmt.Errorf("%s: %d bytes, shorter than a page header", where, len(buf))
	}
	le := binary.LittleEndian
	flags, count := le.Uint16(buf[8:]), int(le.Uint16(buf[10:]))
	if flags != branchPageFlag && flags != leafPageFlag {
		return fmt.Errorf("%s: flags %#x, neither a branch nor a leaf", where, flags)
	}
	if pageHeaderLen+count*pageElemLen > len(buf) {
		return fmt.Errorf("%s: %d elements do not fit its %d bytes", where, count, len(buf))
	}
	for i := range count {
		at := pageHeaderLen + i*pageElemLen
		e := buf[at : at+pageElemLen]
		if flags == branchPageFlag {
			pos, ksize := uint64(le.Uint32(e)), uint64(le.Uint32(e[4:]))
			if uint64(at)+pos+ksize > uint64(len(buf)) {
				return fmt.Errorf("%s: branch element %d runs past the page", where, i)
			}
			if err := w.page(le.Uint64(e[8:]), depth+1); err != nil {
				return err
			}
			continue
		}
		eflags, pos, ksize, vsize := le.Uint32(e), uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		end := uint64(at) + pos + ksize + vsize
		if end > uint64(len(buf)) {
			return fmt.Errorf("%s: leaf element %d runs past the page", where, i)
		}
		if eflags&bucketLeafFlag == 0 {
			continue
		}
		v := buf[uint64(at)+pos+ksize : end]
		if len(v) < bucketHdrLen {
			return fmt.Errorf("%s: leaf element %d: a bucket of %d bytes", where, i, len(v))
		}
		if root := le.Uint64(v); root != 0 {
			if err := w.page(root, depth+1); err != nil {
				return err
			}
			continue
		}
		if err := w.elements(v[bucketHdrLen:], fmt.Sprintf("%s: inline bucket %d", where, i), depth+1); err != nil {
			return err
		}
	}
	return nil
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
