package rsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Specification constants: the composite snapshot (SPEC.md).
const (
	SnapshotMagic          = "RSMS"
	SnapshotVersion   byte = 1
	snapshotHeaderLen      = len(SnapshotMagic) + 1
	// MaxChunk is the largest chunk a section may have.
	MaxChunk = 1 << 20
	// chunkSize is the size of the chunks this build writes.
	chunkSize = 64 << 10

	idEnd    ID = 0   // ends the snapshot; never a machine
	idDedupe ID = 255 // the request-id table; never a machine
)

func writeSnapshotHeader(w io.Writer) error {
	_, err := w.Write(append([]byte(SnapshotMagic), SnapshotVersion))
	return err
}

// sectionWriter cuts what a machine writes into length-prefixed chunks.
type sectionWriter struct {
	w   io.Writer
	buf []byte
}

func newSectionWriter(w io.Writer, id ID) (*sectionWriter, error) {
	if _, err := w.Write([]byte{byte(id)}); err != nil {
		return nil, err
	}
	return &sectionWriter{w: w, buf: make([]byte, 4, 4+chunkSize)}, nil
}

func (s *sectionWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 4+chunkSize-len(s.buf))
		s.buf = append(s.buf, p[:k]...)
		p, n = p[k:], n+k
		if len(s.buf) == 4+chunkSize {
			if err := s.flush(); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

func (s *sectionWriter) flush() error {
	if len(s.buf) == 4 {
		return nil
	}
	binary.LittleEndian.PutUint32(s.buf, uint32(len(s.buf)-4))
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:4]
	return err
}

// Close writes the last chunk and the zero length that ends the section.
func (s *sectionWriter) Close() error {
	if err := s.flush(); err != nil {
		return err
	}
	_, err := s.w.Write([]byte{0, 0, 0, 0})
	return err
}

// countingReader tracks the offset for errors.
type countingReader struct {
	r   *bufio.Reader
	off int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.off += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.off++
	}
	return b, err
}

func (c *countingReader) fail(reason string, err error) error {
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &SnapshotError{Offset: c.off, Reason: reason, Err: err}
}

// sectionReader reads one section's chunks as one stream.
type sectionReader struct {
	c    *countingReader
	left uint32 // bytes left in the current chunk
	done bool   // the zero-length chunk was read
	err  error
}

func (s *sectionReader) Read(p []byte) (int, error) {
	for s.left == 0 && !s.done && s.err == nil {
		var n [4]byte
		if _, err := io.ReadFull(s.c, n[:]); err != nil {
			s.err = s.c.fail("chunk length", err)
			break
		}
		l := binary.LittleEndian.Uint32(n[:])
		switch {
		case l == 0:
			s.done = true
		case l > MaxChunk:
			s.err = s.c.fail(fmt.Sprintf("chunk of %d bytes exceeds %d", l, MaxChunk), nil)
		default:
			s.left = l
		}
	}
	if s.err != nil {
		return 0, s.err
	}
	if s.done {
		return 0, io.EOF
	}
	if uint32(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.c.Read(p)
	s.left -= uint32(n)
	if err != nil && (n == 0 || s.left > 0) {
		if errors.Is(err, io.EOF) {
			s.err = s.c.fail("chunk truncated", err)
			return n, s.err
		}
		return n, err
	}
	return n, nil
}

// DecodeSnapshot walks a composite snapshot: it checks the header, then
// calls fn for each section in order with the section's id and a reader of
// its contents (fn need not read all of it), and checks that the ids
// increase, that the end marker comes and that nothing follows it. A
// malformed stream is a *SnapshotError; fn's errors are returned as they
// are.
func DecodeSnapshot(r io.Reader, fn func(id ID, r io.Reader) error) error {
	c := &countingReader{r: bufio.NewReaderSize(r, 64<<10)}
	var hdr [snapshotHeaderLen]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return c.fail("header", err)
	}
	if string(hdr[:len(SnapshotMagic)]) != SnapshotMagic {
		return &SnapshotError{Offset: 0, Reason: fmt.Sprintf("magic %q, want %q", hdr[:len(SnapshotMagic)], SnapshotMagic)}
	}
	if v := hdr[len(SnapshotMagic)]; v != SnapshotVersion {
		return &SnapshotError{Offset: int64(len(SnapshotMagic)), Reason: fmt.Sprintf("version %d, want %d", v, SnapshotVersion)}
	}
	var last ID
	first := true
	for {
		b, err := c.ReadByte()
		if err != nil {
			return c.fail("section id", err)
		}
		id := ID(b)
		if id == idEnd {
			break
		}
		if !first && id <= last {
			return &SnapshotError{Offset: c.off - 1, Reason: fmt.Sprintf("section %d after section %d: ids must increase", id, last)}
		}
		first, last = false, id
		sr := &sectionReader{c: c}
		if err := fn(id, sr); err != nil {
			return err
		}
		if _, err := io.Copy(io.Discard, sr); err != nil {
			return err
		}
	}
	if _, err := c.ReadByte(); err == nil {
		return &SnapshotError{Offset: c.off - 1, Reason: "data after the end marker"}
	} else if !errors.Is(err, io.EOF) {
		return c.fail("after the end marker", err)
	}
	return nil
}
