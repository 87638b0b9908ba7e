package files

import (
	"context"
	"io"
	"os"
	"sync"
	"syscall"
)

// A container file's parsed content is kept between operations and used
// again while the file at the path is provably the same: same device and
// inode, size, mtime and ctime (nanoseconds). Every writer (this process,
// another process, a hand edit with an editor that renames) replaces the
// file by rename, which gives the path another inode; an append or edit in
// place changes the size or the times. The inode number alone could be
// reused by a later file once the cached one is deleted, so a snapshot
// holds its file open: while it does, no other file can have that inode.
// The framework holds the container's lock around every operation, so a
// writer of another process is never half done while the check is made.

// fileKey identifies one version of a file.
type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns
}

func keyOf(fi os.FileInfo) (fileKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileKey{}, false
	}
	return fileKey{
		dev: uint64(st.Dev), ino: uint64(st.Ino), size: st.Size,
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(),
	}, true
}

// snapshot is a container file read, its header checked, and parsed. It is
// never changed once in the cache: writers build a new one.
type snapshot struct {
	f    *os.File // held open so that key.ino stays this file's; closed when evicted
	key  fileKey
	data []byte
	dn   []dnEntry // a network container's entries
	dt   []dtEntry // the dhcptab's

	idxOnce sync.Once
	byCIP   map[[4]byte]int // index in dn, built on first use
}

// cipIndex returns the index of the entry of each client IP.
func (s *snapshot) cipIndex() map[[4]byte]int {
	s.idxOnce.Do(func() {
		s.byCIP = make(map[[4]byte]int, len(s.dn))
		for i := range s.dn {
			k := s.dn[i].rec.CIP.As4()
			if _, dup := s.byCIP[k]; !dup { // a hand-edited duplicate: the first, as a search finds
				s.byCIP[k] = i
			}
		}
	})
	return s.byCIP
}

// cache holds the latest snapshot of each container file a Module has read.
type cache struct {
	mu    sync.Mutex           // guards files
	files map[string]*snapshot // by path
}

// get returns the cached snapshot of path if it is still the file there.
func (c *cache) get(path string) *snapshot {
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	k, ok := keyOf(fi)
	if !ok {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.files[path]; s != nil && s.key == k {
		return s
	}
	return nil
}

// put makes s path's snapshot, closing the one it replaces.
func (c *cache) put(path string, s *snapshot) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.files == nil {
		c.files = make(map[string]*snapshot)
	}
	if old := c.files[path]; old != nil && old != s {
		old.f.Close()
	}
	c.files[path] = s
}

// drop forgets path (its container was removed).
func (c *cache) drop(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.files[path]; old != nil {
		old.f.Close()
		delete(c.files, path)
	}
}

// readFile reads path through one descriptor and returns it open with the
// key it had before and after the read; ok is false if the file changed
// meanwhile (written in place) and must not be cached.
func readFile(path string) (f *os.File, k fileKey, data []byte, ok bool, err error) {
	f, err = os.Open(path)
	if err != nil {
		return nil, k, nil, false, err
	}
	fi, err := f.Stat()
	if err == nil {
		k, ok = keyOf(fi)
		data = make([]byte, 0, fi.Size()+1)
		for {
			var n int
			n, err = f.Read(data[len(data):cap(data)])
			data = data[:len(data)+n]
			if err != nil {
				break
			}
			if len(data) == cap(data) {
				data = append(data, 0)[:len(data)]
			}
		}
		if err == io.EOF {
			err = nil
		}
	}
	if err == nil && ok {
		var fi2 os.FileInfo
		if fi2, err = f.Stat(); err == nil {
			k2, _ := keyOf(fi2)
			ok = k2 == k && int64(len(data)) == k.size
		}
	}
	if err != nil {
		f.Close()
		return nil, k, nil, false, err
	}
	return f, k, data, ok, nil
}

// snap returns the table's file, read and parsed, from the cache or
// afresh.
func (t *table) snap(ctx context.Context) (*snapshot, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s := t.m.cache.get(t.path); s != nil {
		return s, nil
	}
	f, k, data, ok, err := readFile(t.path)
	if err != nil {
		return nil, sysErr(err)
	}
	s, err := t.parsed(f, k, data)
	if err != nil {
		f.Close()
		return nil, err
	}
	if ok {
		t.m.cache.put(t.path, s)
	} else {
		f.Close()
		s.f = nil
	}
	return s, nil
}

// parsed checks data's header and parses its entries into a snapshot.
func (t *table) parsed(f *os.File, k fileKey, data []byte) (*snapshot, error) {
	if _, err := checkHeader(data, t.file); err != nil {
		return nil, err
	}
	s := &snapshot{f: f, key: k, data: data}
	var err error
	if t.isDN {
		s.dn, err = (&dnTable{t}).parse(data)
	} else {
		s.dt, err = (&dtTable{t}).parse(data)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

// written caches data, just written to f and renamed to the table's path,
// as the file's snapshot, so that the next operation need not read it.
// Without a key (the file's times could not be read) it caches nothing.
func (t *table) written(f *os.File, data []byte) {
	t.cache(f, data, nil)
}

// cache is written with a network file's entries known (dn non-nil):
// worked out from the file before the write, so that a write need not
// parse the whole file again.
func (t *table) cache(f *os.File, data []byte, dn []dnEntry) {
	fi, err := f.Stat()
	var k fileKey
	ok := err == nil
	if ok {
		k, ok = keyOf(fi)
	}
	var s *snapshot
	switch {
	case ok && dn != nil:
		s = &snapshot{f: f, key: k, data: data, dn: dn}
	case ok:
		s, err = t.parsed(f, k, data)
		ok = err == nil
	}
	if !ok {
		f.Close()
		return
	}
	t.m.cache.put(t.path, s)
}
