package proto

import (
	"encoding/binary"
	"math"
)

// Reader decodes little-endian fields from a message body with bounds
// checks. The first failure sticks: later reads return zero values and Err
// reports the first problem, so a decoder reads all fields and checks once.
type Reader struct {
	b   []byte
	off int
	err error
	msg string // message name, for errors
}

// NewReader returns a Reader over b; msg names the message in errors.
func NewReader(b []byte, msg string) *Reader { return &Reader{b: b, msg: msg} }

func (r *Reader) need(n int, field string) bool {
	if r.err != nil {
		return false
	}
	if n > len(r.b)-r.off {
		r.err = Errorf(CodeField, "%s: truncated at %s (offset %d, need %d bytes, have %d)", r.msg, field, r.off, n, len(r.b)-r.off)
		return false
	}
	return true
}

// U8 reads one byte.
func (r *Reader) U8(field string) uint8 {
	if !r.need(1, field) {
		return 0
	}
	v := r.b[r.off]
	r.off++
	return v
}

// U16 reads a little-endian uint16.
func (r *Reader) U16(field string) uint16 {
	if !r.need(2, field) {
		return 0
	}
	v := binary.LittleEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

// U32 reads a little-endian uint32.
func (r *Reader) U32(field string) uint32 {
	if !r.need(4, field) {
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

// U64 reads a little-endian uint64.
func (r *Reader) U64(field string) uint64 {
	if !r.need(8, field) {
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v
}

// Bytes reads n bytes; the result aliases the input.
func (r *Reader) Bytes(n int, field string) []byte {
	if !r.need(n, field) {
		return nil
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

// String16 reads a u16 length and that many bytes of UTF-8 text, refusing
// more than max bytes.
func (r *Reader) String16(max int, field string) string {
	if r.err == nil && len(r.b)-r.off < 2 {
		// The length's field name is made only for its error: a
		// concatenation each string was an allocation each.
		r.need(2, field+" length")
		return ""
	}
	n := int(r.U16(""))
	if r.err == nil && n > max {
		r.err = Errorf(CodeField, "%s: %s is %d bytes, limit %d", r.msg, field, n, max)
		return ""
	}
	return string(r.Bytes(n, field))
}

// Zero reads n bytes that the format reserves and requires to be zero.
func (r *Reader) Zero(n int, field string) {
	for _, c := range r.Bytes(n, field) {
		if c != 0 {
			r.err = Errorf(CodeField, "%s: reserved %s is not zero", r.msg, field)
			return
		}
	}
}

// Fail records err (an *Error) unless an earlier error is recorded.
func (r *Reader) Fail(code Code, format string, args ...any) {
	if r.err == nil {
		r.err = Errorf(code, r.msg+": "+format, args...)
	}
}

// Len returns how many bytes are left.
func (r *Reader) Len() int { return len(r.b) - r.off }

// Err returns the first error, or a CodeField error when bytes are left
// over: bodies have an exact size, and growth goes into the extension area.
func (r *Reader) Err() error {
	if r.err == nil && r.off != len(r.b) {
		r.err = Errorf(CodeField, "%s: %d unexpected bytes after the last field", r.msg, len(r.b)-r.off)
	}
	return r.err
}

// AppendString16 appends a u16 length and s. Callers keep s within the
// message's limit; longer strings are a programming error.
func AppendString16(dst []byte, s string) []byte {
	if len(s) > math.MaxUint16 {
		panic("proto: string longer than 65535 bytes")
	}
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}
