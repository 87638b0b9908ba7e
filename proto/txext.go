package proto

import "encoding/binary"

// Specification constants: transaction extensions (SPEC.md, "Transaction
// extensions"). Types 0x7F00–0x7FFF and 0xFF00–0xFFFF mean the same in
// every sub-protocol: mesh relays read them without knowing the frame's
// sub-protocol.
const (
	// ExtParent (critical) on a CREATE names the transaction the new one
	// is stacked under: u64 initiator, u64 msg id.
	ExtParent uint16 = 0xFF01
	// ExtFailedLink (optional) on a LINKFAIL ABORT names the link that
	// went down, by the node ids at its two ends, for logs.
	ExtFailedLink uint16 = 0x7F01
	// ExtWindow (optional) on a STREAM frame with an empty body grants the
	// other end more bytes of body to send: u32 bytes, non-zero.
	ExtWindow uint16 = 0x7F02

	txRefLen = 16
)

// TxRef names a transaction cluster-wide: the node that opened it and the
// msg id that node gave it (never reused by that node).
type TxRef struct {
	Initiator uint64
	MsgID     uint64
}

// TxExt is what the transaction extensions of a frame say.
type TxExt struct {
	Parent     TxRef     // stacked under this transaction; zero = not stacked
	FailedLink [2]uint64 // the link a LINKFAIL names; zero = none
	Window     uint32    // bytes of body granted to the other end; zero = none
}

// AppendTxExt appends the entries for e (none for a zero e) to dst.
func AppendTxExt(dst []byte, e TxExt) []byte {
	if e.Parent != (TxRef{}) {
		var v [txRefLen]byte
		binary.LittleEndian.PutUint64(v[0:], e.Parent.Initiator)
		binary.LittleEndian.PutUint64(v[8:], e.Parent.MsgID)
		dst = AppendTLV(dst, ExtParent, v[:])
	}
	if e.FailedLink != [2]uint64{} {
		var v [16]byte
		binary.LittleEndian.PutUint64(v[0:], e.FailedLink[0])
		binary.LittleEndian.PutUint64(v[8:], e.FailedLink[1])
		dst = AppendTLV(dst, ExtFailedLink, v[:])
	}
	if e.Window != 0 {
		var v [4]byte
		binary.LittleEndian.PutUint32(v[:], e.Window)
		dst = AppendTLV(dst, ExtWindow, v[:])
	}
	return dst
}

// ParseTxExt reads the transaction extensions of an extension area. It
// skips every other type, critical or not: those belong to the frame's
// sub-protocol, whose link checks them (CheckTLV).
func ParseTxExt(ext []byte) (TxExt, error) {
	var e TxExt
	seenParent, seenLink, seenWindow := false, false, false
	err := walkTLV(ext, func(t TLV) error {
		switch t.Type {
		case ExtParent:
			if seenParent {
				return Errorf(CodeField, "transaction extension: two parent entries")
			}
			seenParent = true
			if len(t.Value) != txRefLen {
				return Errorf(CodeField, "transaction extension: parent is %d bytes, want %d", len(t.Value), txRefLen)
			}
			e.Parent = TxRef{binary.LittleEndian.Uint64(t.Value), binary.LittleEndian.Uint64(t.Value[8:])}
			if e.Parent.Initiator == 0 {
				return Errorf(CodeField, "transaction extension: parent of initiator 0")
			}
		case ExtFailedLink:
			if seenLink {
				return Errorf(CodeField, "transaction extension: two failed link entries")
			}
			seenLink = true
			if len(t.Value) != 16 {
				return Errorf(CodeField, "transaction extension: failed link is %d bytes, want 16", len(t.Value))
			}
			e.FailedLink = [2]uint64{binary.LittleEndian.Uint64(t.Value), binary.LittleEndian.Uint64(t.Value[8:])}
			if e.FailedLink[0] == 0 || e.FailedLink[1] == 0 {
				return Errorf(CodeField, "transaction extension: failed link names node 0")
			}
		case ExtWindow:
			if seenWindow {
				return Errorf(CodeField, "transaction extension: two window entries")
			}
			seenWindow = true
			if len(t.Value) != 4 {
				return Errorf(CodeField, "transaction extension: window is %d bytes, want 4", len(t.Value))
			}
			e.Window = binary.LittleEndian.Uint32(t.Value)
			if e.Window == 0 {
				return Errorf(CodeField, "transaction extension: window of 0 bytes")
			}
		}
		return nil
	})
	if err != nil {
		return TxExt{}, err
	}
	return e, nil
}

// TxExtKnown reports whether typ is a critical transaction extension this
// build understands; links add it to their sub-protocol's known set.
func TxExtKnown(typ uint16) bool { return typ == ExtParent }
