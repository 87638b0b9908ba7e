package clusterlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"
	"strings"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// The write-ahead log's encodings (FORMAT.md, "The write-ahead log"): segment
// names, the segment header and records. All integers are big-endian.
const (
	walDirSuffix    = ".wal"
	segSuffix       = ".seg"
	segTmpSuffix    = ".tmp"
	segMagic        = "CLWALSEG"
	segHeaderLen    = 40
	recHeaderLen    = 9
	recTypeEntry    = 1
	maxRecordLen    = 1 << 30
	segmentPrealloc = 64 << 20 // a new segment's size, unless its first write is larger
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// segHeader is what a segment's name and header both say.
type segHeader struct {
	gen, seq, first uint64
}

func (h segHeader) name() string {
	return fmt.Sprintf("%016x-%016x-%016x%s", h.gen, h.seq, h.first, segSuffix)
}

// parseSegName decodes a segment's file name; ok is false for any other name.
func parseSegName(name string) (h segHeader, ok bool) {
	base, found := strings.CutSuffix(name, segSuffix)
	if !found || len(base) != 3*16+2 || base[16] != '-' || base[33] != '-' {
		return h, false
	}
	var vs [3]uint64
	for i := range vs {
		s := base[i*17 : i*17+16]
		if strings.ToLower(s) != s {
			return h, false
		}
		v, err := strconv.ParseUint(s, 16, 64)
		if err != nil {
			return h, false
		}
		vs[i] = v
	}
	return segHeader{vs[0], vs[1], vs[2]}, true
}

func encodeSegHeader(h segHeader) []byte {
	b := make([]byte, segHeaderLen)
	copy(b, segMagic)
	binary.BigEndian.PutUint32(b[8:], FormatVersion)
	binary.BigEndian.PutUint64(b[16:], h.gen)
	binary.BigEndian.PutUint64(b[24:], h.seq)
	binary.BigEndian.PutUint64(b[32:], h.first)
	binary.BigEndian.PutUint32(b[12:], segHeaderCRC(b))
	return b
}

func segHeaderCRC(b []byte) uint32 {
	return crc32.Update(crc32.Checksum(b[:12], crcTable), crcTable, b[16:segHeaderLen])
}

// errBadHeader is the reason given for a segment header that does not decode.
var errBadHeader = errors.New("bad segment header")

func decodeSegHeader(b []byte) (segHeader, error) {
	if len(b) < segHeaderLen {
		return segHeader{}, fmt.Errorf("%w: %d bytes", errBadHeader, len(b))
	}
	if string(b[:8]) != segMagic {
		return segHeader{}, fmt.Errorf("%w: magic %q", errBadHeader, b[:8])
	}
	if v := binary.BigEndian.Uint32(b[8:]); v != FormatVersion {
		return segHeader{}, fmt.Errorf("%w: version %d", errBadHeader, v)
	}
	if binary.BigEndian.Uint32(b[12:]) != segHeaderCRC(b) {
		return segHeader{}, fmt.Errorf("%w: checksum mismatch", errBadHeader)
	}
	return segHeader{binary.BigEndian.Uint64(b[16:]), binary.BigEndian.Uint64(b[24:]), binary.BigEndian.Uint64(b[32:])}, nil
}

// appendEntryRecord appends e's record to b and returns it with the
// payload's length.
func appendEntryRecord(b []byte, e *raftpb.Entry) ([]byte, int, error) {
	start := len(b)
	b = append(b, make([]byte, recHeaderLen)...)
	b, err := proto.MarshalOptions{}.MarshalAppend(b, e)
	if err != nil {
		return b[:start], 0, err
	}
	n := len(b) - start - recHeaderLen
	if n == 0 || n > maxRecordLen {
		return b[:start], 0, fmt.Errorf("clusterlog: entry %d encodes to %d bytes", e.GetIndex(), n)
	}
	r := b[start:]
	binary.BigEndian.PutUint32(r, uint32(n))
	r[8] = recTypeEntry
	binary.BigEndian.PutUint32(r[4:], recordCRC(r))
	return b, n, nil
}

// recordCRC is the CRC of a whole record r: its length, type and payload.
func recordCRC(r []byte) uint32 {
	return crc32.Update(crc32.Checksum(r[:4], crcTable), crcTable, r[8:])
}

// decodeRecord checks the whole record r (header and payload) and decodes
// its entry. The error is a reason, without the record's place.
func decodeRecord(r []byte) (*raftpb.Entry, error) {
	if len(r) < recHeaderLen {
		return nil, errors.New("record header cut short")
	}
	n := binary.BigEndian.Uint32(r)
	if int64(n) != int64(len(r)-recHeaderLen) {
		return nil, fmt.Errorf("record of %d bytes, %d read", n, len(r)-recHeaderLen)
	}
	if binary.BigEndian.Uint32(r[4:]) != recordCRC(r) {
		return nil, errors.New("record checksum mismatch")
	}
	if r[8] != recTypeEntry {
		return nil, fmt.Errorf("unknown record type %d", r[8])
	}
	e := new(raftpb.Entry)
	if err := proto.Unmarshal(r[recHeaderLen:], e); err != nil {
		return nil, fmt.Errorf("cannot decode raftpb.Entry: %w", err)
	}
	if e.GetTerm() == 0 {
		return nil, errors.New("entry has term 0")
	}
	switch e.GetType() {
	case raftpb.EntryNormal, raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
	default:
		return nil, fmt.Errorf("unknown entry type %d", e.GetType())
	}
	return e, nil
}

// scanStop says why scanRecords stopped.
type scanStop struct {
	end int64  // offset after the last good record
	bad string // why the record at end is bad; "" at the end of the records
}

// scanRecords reads the records of a segment of size bytes from r, from
// offset segHeaderLen, calling fn with each good record's offset, payload
// length and entry. It stops at the end of the records (a zero length, or
// fewer than a header's bytes left) or at the first bad record; an error
// from fn or from reading r is returned as it is.
func scanRecords(r io.ReaderAt, size int64, fn func(off int64, n int, e *raftpb.Entry) error) (scanStop, error) {
	off := int64(segHeaderLen)
	if size < off {
		return scanStop{end: off}, nil
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, off, size-off), 1<<20)
	var hdr [recHeaderLen]byte
	var buf []byte
	for {
		if size-off < recHeaderLen {
			return scanStop{end: off}, nil
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return scanStop{end: off}, err
		}
		n := int64(binary.BigEndian.Uint32(hdr[:]))
		if n == 0 {
			if binary.BigEndian.Uint32(hdr[4:]) != 0 || hdr[8] != 0 {
				return scanStop{end: off, bad: "record of length 0"}, nil
			}
			return scanStop{end: off}, nil
		}
		if n > maxRecordLen || n > size-off-recHeaderLen {
			return scanStop{end: off, bad: fmt.Sprintf("record length %d beyond the end of the segment", n)}, nil
		}
		if int64(cap(buf)) < recHeaderLen+n {
			buf = make([]byte, recHeaderLen+n)
		}
		rec := buf[:recHeaderLen+n]
		copy(rec, hdr[:])
		if _, err := io.ReadFull(br, rec[recHeaderLen:]); err != nil {
			return scanStop{end: off}, err
		}
		e, err := decodeRecord(rec)
		if err != nil {
			return scanStop{end: off, bad: err.Error()}, nil
		}
		if err := fn(off, int(n), e); err != nil {
			return scanStop{end: off}, err
		}
		off += recHeaderLen + n
	}
}
