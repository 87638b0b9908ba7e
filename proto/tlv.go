package proto

import "encoding/binary"

// TLV is one entry of a frame's extension area: Type (little-endian u16),
// Len (u16), then Len bytes of value. The extension area lets a message
// grow a field without a new opcode or version. A receiver skips types it
// does not know unless the type has TLVCritical set, in which case it must
// refuse the frame (CheckTLV).
type TLV struct {
	Type  uint16
	Value []byte
}

// TLVCritical marks an extension the receiver must understand.
const TLVCritical uint16 = 0x8000

const tlvHeader = 4

// AppendTLV appends one extension entry to dst.
func AppendTLV(dst []byte, typ uint16, value []byte) []byte {
	if len(value) > 0xFFFF {
		panic("proto: TLV value longer than 65535 bytes")
	}
	dst = binary.LittleEndian.AppendUint16(dst, typ)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(value)))
	return append(dst, value...)
}

// ParseTLV splits an extension area into its entries. Values alias ext.
func ParseTLV(ext []byte) ([]TLV, error) {
	var out []TLV
	err := walkTLV(ext, func(t TLV) error { out = append(out, t); return nil })
	return out, err
}

// ValidateTLV checks that ext is a well-formed sequence of entries.
func ValidateTLV(ext []byte) error {
	return walkTLV(ext, func(TLV) error { return nil })
}

// CheckTLV refuses an extension area that holds a critical entry for which
// known returns false.
func CheckTLV(ext []byte, known func(typ uint16) bool) error {
	return walkTLV(ext, func(t TLV) error {
		if t.Type&TLVCritical != 0 && (known == nil || !known(t.Type)) {
			return Errorf(CodeField, "unknown critical extension %#04x", t.Type)
		}
		return nil
	})
}

func walkTLV(ext []byte, fn func(TLV) error) error {
	for off := 0; off < len(ext); {
		if len(ext)-off < tlvHeader {
			return Errorf(CodeField, "extension area: %d stray bytes at offset %d", len(ext)-off, off)
		}
		typ := binary.LittleEndian.Uint16(ext[off:])
		n := int(binary.LittleEndian.Uint16(ext[off+2:]))
		off += tlvHeader
		if n > len(ext)-off {
			return Errorf(CodeField, "extension %#04x: length %d overruns the area by %d bytes", typ, n, n-(len(ext)-off))
		}
		if err := fn(TLV{Type: typ, Value: ext[off : off+n : off+n]}); err != nil {
			return err
		}
		off += n
	}
	return nil
}
