package rsm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// DedupeWindow is how many requests per proposer the request table keeps.
// Proposers number their requests in increasing order (NodeProposer does),
// so the oldest are the lowest; once a proposer's window is full, a
// request below its lowest recorded id may have applied and been
// forgotten, so it is refused with ErrRequestExpired, never applied again.
const DedupeWindow = 256

// dedupeRecordLen is the fixed part of a request table record in the
// snapshot: proposer, request, index, reply length.
const dedupeRecordLen = 8 + 8 + 8 + 4

// The request table lives in the bucket "rsm.dedupe" (SPEC.md):
//
//	key proposer(8, BE) request(8, BE) → value index(8, LE) reply
//	key proposer(8, BE)                → value count(4, LE)
//
// Big-endian keys make a proposer's records sort by request id after its
// count record.
var bucketDedupe = []byte("rsm.dedupe")

func dedupeKey(proposer, request uint64) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 16), proposer)
	return binary.BigEndian.AppendUint64(k, request)
}

// lookupRequest returns the reply recorded for (proposer, request).
func lookupRequest(tx Tx, proposer, request uint64) (index uint64, reply []byte, ok bool) {
	v := tx.Get(dedupeKey(proposer, request))
	if len(v) < 8 {
		return 0, nil, false
	}
	return binary.LittleEndian.Uint64(v), append([]byte(nil), v[8:]...), true
}

// countRecord decodes a proposer's count record: its number of records
// and its floor, the highest request id dropped from the table (0: none;
// a 4-byte record, written before floors existed, has none).
func countRecord(v []byte) (count uint32, floor uint64) {
	if len(v) >= 4 {
		count = binary.LittleEndian.Uint32(v)
	}
	if len(v) >= 12 {
		floor = binary.LittleEndian.Uint64(v[4:])
	}
	return count, floor
}

func appendCountRecord(b []byte, count uint32, floor uint64) []byte {
	b = binary.LittleEndian.AppendUint32(b, count)
	if floor != 0 {
		b = binary.LittleEndian.AppendUint64(b, floor)
	}
	return b
}

// expiredRequest reports whether request, not in the table, is at or
// below its proposer's floor: it may have applied and been dropped from the
// table since, so it must not apply.
func expiredRequest(tx Tx, proposer, request uint64) bool {
	_, floor := countRecord(tx.Get(binary.BigEndian.AppendUint64(nil, proposer)))
	return request <= floor
}

// raiseFloor sets a proposer's floor to at least floor (restoring a
// snapshot's floor record).
func raiseFloor(tx Tx, proposer, floor uint64) error {
	ck := binary.BigEndian.AppendUint64(nil, proposer)
	count, old := countRecord(tx.Get(ck))
	if floor <= old {
		return nil
	}
	return tx.Put(ck, appendCountRecord(nil, count, floor))
}

var errStop = errors.New("stop")

// recordRequest stores the reply for (proposer, request) applied at index,
// dropping the proposer's lowest request ids beyond DedupeWindow.
func recordRequest(tx Tx, proposer, request, index uint64, reply []byte) error {
	v := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(reply)), index)
	if err := tx.Put(dedupeKey(proposer, request), append(v, reply...)); err != nil {
		return err
	}
	ck := binary.BigEndian.AppendUint64(nil, proposer)
	count, floor := countRecord(tx.Get(ck))
	count++
	for count > DedupeWindow {
		var oldest []byte
		err := tx.Scan(ck, func(k, _ []byte) error {
			if len(k) == 16 {
				oldest = append([]byte(nil), k...)
				return errStop
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			return err
		}
		if oldest == nil {
			break
		}
		if err := tx.Delete(oldest); err != nil {
			return err
		}
		floor = max(floor, binary.BigEndian.Uint64(oldest[8:]))
		count--
	}
	return tx.Put(ck, appendCountRecord(nil, count, floor))
}

// writeDedupe writes the request table's records, and before each
// proposer's records its floor record (index 0, request = the floor, no
// reply) if it has a floor.
func writeDedupe(tx Tx, w io.Writer) error {
	return tx.Scan(nil, func(k, v []byte) error {
		switch {
		case len(k) == 8:
			if _, floor := countRecord(v); floor != 0 {
				return writeDedupeRecord(w, binary.BigEndian.Uint64(k), floor, 0, nil)
			}
			return nil
		case len(k) != 16 || len(v) < 8:
			return nil
		}
		return writeDedupeRecord(w, binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(k[8:]),
			binary.LittleEndian.Uint64(v), v[8:])
	})
}

func writeDedupeRecord(w io.Writer, proposer, request, index uint64, reply []byte) error {
	b := make([]byte, 0, dedupeRecordLen+len(reply))
	b = binary.LittleEndian.AppendUint64(b, proposer)
	b = binary.LittleEndian.AppendUint64(b, request)
	b = binary.LittleEndian.AppendUint64(b, index)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(reply)))
	_, err := w.Write(append(b, reply...))
	return err
}

// readDedupe reads request table records and calls fn for each.
func readDedupe(r io.Reader, fn func(proposer, request, index uint64, reply []byte) error) error {
	var hdr [dedupeRecordLen]byte
	for {
		if _, err := io.ReadFull(r, hdr[:1]); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		if _, err := io.ReadFull(r, hdr[1:]); err != nil {
			return dedupeErr("record truncated", err)
		}
		n := binary.LittleEndian.Uint32(hdr[24:])
		if n > MaxCommand {
			return dedupeErr(fmt.Sprintf("reply of %d bytes exceeds %d", n, MaxCommand), nil)
		}
		reply := make([]byte, n)
		if _, err := io.ReadFull(r, reply); err != nil {
			return dedupeErr("reply truncated", err)
		}
		p, q := binary.LittleEndian.Uint64(hdr[:]), binary.LittleEndian.Uint64(hdr[8:])
		if q == 0 {
			return dedupeErr("request id 0", nil)
		}
		if err := fn(p, q, binary.LittleEndian.Uint64(hdr[16:]), reply); err != nil {
			return err
		}
	}
}

func dedupeErr(reason string, err error) error {
	var se *SnapshotError
	if errors.As(err, &se) {
		return err
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return &SnapshotError{Offset: -1, Reason: "request table: " + reason, Err: err}
}
