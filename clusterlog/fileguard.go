package clusterlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"runtime/debug"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// A damaged file can break bbolt in three ways besides its errors: a panic
// (its assertions on page types), SIGBUS (reading, through the mmap, a page
// past the end of a truncated file), or a wild page id read from a damaged
// branch. OpenStorage guards against all three (FORMAT.md, "Damaged files"):
// it checks the file's size against its meta page before bbolt maps it,
// opens and reads the whole file with faults turned into panics and panics
// into a *CorruptError, and runs bbolt's consistency check, so that a file
// it accepts has every page where the later reads and writes expect it.

// bbolt's meta page (go.etcd.io/bbolt/internal/common, version 2): after
// the 16-byte page header, in the machine's byte order, magic, version,
// page size, flags (uint32 each), the root bucket (root page id, sequence),
// the freelist page id, the high-water page id and the transaction id
// (uint64 each), then an FNV-64a checksum of the 56 bytes before it.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSize   = 64 // through the checksum
)

type boltMeta struct {
	pageSize       uint32
	root, freelist uint64
	pgid, txid     uint64
}

// readBoltMeta decodes the meta page at off, if it is a valid one.
func readBoltMeta(f *os.File, off int64) (boltMeta, bool) {
	var b [boltPageHeader + boltMetaSize]byte
	if _, err := f.ReadAt(b[:], off); err != nil {
		return boltMeta{}, false
	}
	m := b[boltPageHeader:]
	le := binary.NativeEndian
	if le.Uint32(m[0:]) != boltMagic || le.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:56])
	if h.Sum64() != le.Uint64(m[56:]) {
		return boltMeta{}, false
	}
	return boltMeta{
		pageSize: le.Uint32(m[8:]), root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]),
		pgid: le.Uint64(m[40:]), txid: le.Uint64(m[48:]),
	}, true
}

// checkFileSize refuses a file shorter than its meta page says, before
// bbolt maps it and faults reading past its end. A missing or empty file
// (bbolt makes a new one) and a file without a valid meta page (bbolt
// refuses it) are left to bbolt.
func checkFileSize(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	// Find the page size as bbolt does: from the first meta page, or from
	// the second at each possible page size.
	var size int64
	if m, ok := readBoltMeta(f, 0); ok {
		size = int64(m.pageSize)
	} else {
		for i := range 15 {
			if off := int64(1024) << i; off < fi.Size() {
				if m, ok := readBoltMeta(f, off); ok && int64(m.pageSize) == off {
					size = off
					break
				}
			}
		}
	}
	if size == 0 {
		return nil
	}
	// bbolt uses the valid meta page with the higher transaction id.
	m0, ok0 := readBoltMeta(f, 0)
	m1, ok1 := readBoltMeta(f, size)
	m := m0
	if !ok0 || (ok1 && m1.txid > m0.txid) {
		m = m1
	}
	switch {
	case m.pgid < 2 || m.root >= m.pgid || m.freelist >= m.pgid && m.freelist != ^uint64(0):
		return &CorruptError{Reason: fmt.Sprintf("meta page of transaction %d names pages beyond its high-water mark %d", m.txid, m.pgid)}
	case uint64(fi.Size()) < m.pgid*uint64(size):
		return &CorruptError{Reason: fmt.Sprintf("truncated: %d bytes, but its pages reach %d bytes", fi.Size(), m.pgid*uint64(size))}
	}
	return nil
}

// guard runs fn with memory faults turned into panics, and turns a panic
// into a *CorruptError. bbolt panics on a damaged page; a fault is a page
// id past the end of the file.
func guard(what string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = &CorruptError{Reason: fmt.Sprintf("%s: %s", what, oneLine(fmt.Sprint(r)))}
		}
	}()
	return fn()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// openBolt opens the bbolt file at path, turning damage into a
// *CorruptError. A panic inside bolt.Open leaves its file descriptor
// open: the caller refuses the file and the process has nothing else to
// do with it.
func openBolt(path string) (*bolt.DB, error) {
	if err := checkFileSize(path); err != nil {
		return nil, err
	}
	if err := walkFile(path); err != nil {
		return nil, &CorruptError{Reason: "a page of its tree is damaged", Err: err}
	}
	var db *bolt.DB
	err := guard("bbolt could not open it", func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
		return err
	})
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch),
		strings.HasPrefix(err.Error(), "file size too small"):
		return nil, &CorruptError{Reason: "not a bbolt file", Err: err}
	default:
		return nil, err
	}
	err = guard("bbolt failed reading it", func() error {
		return db.View(func(tx *bolt.Tx) error {
			// Read every page first, here where a fault is caught;
			// bbolt's check reads them again on a goroutine of its
			// own, where it would not be.
			readAll(tx)
			var first error
			n := 0
			for err := range tx.Check() {
				if first == nil {
					first = err
				}
				n++
			}
			if first != nil {
				return &CorruptError{Reason: fmt.Sprintf("bbolt's consistency check found %d problems, the first", n), Err: first}
			}
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// readAll reads every byte of every key and value of every bucket, nested
// ones too, and returns their sum, so that the reads are not optimised away.
func readAll(tx *bolt.Tx) byte {
	var sum byte
	var walk func(b *bolt.Bucket)
	walk = func(b *bolt.Bucket) {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			for _, x := range k {
				sum += x
			}
			if v == nil {
				if nb := b.Bucket(k); nb != nil {
					walk(nb)
				}
				continue
			}
			for _, x := range v {
				sum += x
			}
		}
	}
	_ = tx.ForEach(func(_ []byte, b *bolt.Bucket) error { walk(b); return nil })
	return sum
}
