package proto

import (
	"encoding/binary"
	"hash/crc32"
	"strconv"
)

// Specification constants: the frame header (SPEC.md, "Frame header").
const (
	// Magic is the first word of every frame. Read little-endian it is
	// 0x52524F43 ("CORR" on the wire); a peer that wrote it big-endian shows
	// up as MagicSwapped, anything else means the stream is out of sync.
	Magic        uint32 = 0x52524F43
	MagicSwapped uint32 = 0x434F5252

	HeaderSize = 56

	// MaxExtSize bounds the extension area of any frame.
	MaxExtSize = 64 << 10
	// DefaultMaxPayload bounds extension area plus body unless a decoder
	// is given another limit.
	DefaultMaxPayload = 16 << 20
	// HopLimit is the hop count a frame starts with; routers decrement it.
	HopLimit = 16
)

// Header field offsets.
const (
	offMagic   = 0
	offHdrCRC  = 4
	offProto   = 8
	offVersion = 9
	offOpcode  = 10
	offFlags   = 12
	offHops    = 14
	offRsvd1   = 15
	offMsgID   = 16
	offSource  = 24
	offTarget  = 32
	offExtLen  = 40
	offBodyLen = 44
	offPayCRC  = 48
	offRsvd2   = 52
)

// ProtoID names the sub-protocol a frame belongs to.
type ProtoID uint8

// Specification constants: sub-protocol ids.
const (
	ProtoSession ProtoID = 0 // HELLO, REJECT, GOODBYE: frozen, version-independent
	ProtoPeer    ProtoID = 1 // agent ↔ agent
	ProtoClient  ProtoID = 2 // application ↔ local agent
	ProtoAdmin   ProtoID = 3 // corral CLI ↔ agent
	protoMax             = ProtoAdmin
)

func (p ProtoID) String() string {
	switch p {
	case ProtoSession:
		return "session"
	case ProtoPeer:
		return "peer"
	case ProtoClient:
		return "client"
	case ProtoAdmin:
		return "admin"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// Flags are the transaction flags of a frame, as in HAMMER2: CREATE opens
// a transaction, DELETE closes it (both on a one-shot message), REPLY marks
// the reply direction and ABORT ends a transaction with an error.
type Flags uint16

// Specification constants: frame flags.
const (
	FlagCreate Flags = 1 << 0
	FlagDelete Flags = 1 << 1
	FlagReply  Flags = 1 << 2
	FlagAbort  Flags = 1 << 3
	flagsKnown       = FlagCreate | FlagDelete | FlagReply | FlagAbort
)

// Header is the decoded fixed header of a frame.
type Header struct {
	Proto      ProtoID
	Version    uint8
	Opcode     uint16
	Flags      Flags
	Hops       uint8
	MsgID      uint64 // transaction or message id, chosen by the source
	Source     uint64 // node id of the origin, 0 = the link's peer
	Target     uint64 // node id of the destination, 0 = the link's peer
	ExtLen     uint32 // bytes of TLV extension area after the header
	BodyLen    uint32 // bytes of body after the extension area
	PayloadCRC uint32 // CRC32C of extension area and body
}

// PayloadLen is the number of bytes that follow the header.
func (h *Header) PayloadLen() int { return int(h.ExtLen) + int(h.BodyLen) }

// Frame is one message: header, extension area and body. Ext and Body may
// alias a decoder's buffer; see Decoder.Next.
type Frame struct {
	Header
	Ext  []byte // TLV-encoded extension area (see TLV)
	Body []byte
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C returns the Castagnoli CRC of b, the checksum used throughout
// corral's formats.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// PayloadCRC returns the CRC32C of ext followed by body without copying.
func PayloadCRC(ext, body []byte) uint32 {
	return crc32.Update(crc32.Checksum(ext, castagnoli), castagnoli, body)
}

// PutHeader writes h into b[:HeaderSize] with magic and header CRC. The
// caller sets h.ExtLen, h.BodyLen and h.PayloadCRC; Seal does that.
func PutHeader(b []byte, h *Header) {
	_ = b[HeaderSize-1]
	le := binary.LittleEndian
	le.PutUint32(b[offMagic:], Magic)
	b[offProto] = byte(h.Proto)
	b[offVersion] = h.Version
	le.PutUint16(b[offOpcode:], h.Opcode)
	le.PutUint16(b[offFlags:], uint16(h.Flags))
	b[offHops] = h.Hops
	b[offRsvd1] = 0
	le.PutUint64(b[offMsgID:], h.MsgID)
	le.PutUint64(b[offSource:], h.Source)
	le.PutUint64(b[offTarget:], h.Target)
	le.PutUint32(b[offExtLen:], h.ExtLen)
	le.PutUint32(b[offBodyLen:], h.BodyLen)
	le.PutUint32(b[offPayCRC:], h.PayloadCRC)
	le.PutUint32(b[offRsvd2:], 0)
	le.PutUint32(b[offHdrCRC:], CRC32C(b[offProto:HeaderSize]))
}

// Seal fills in the lengths and payload CRC of f from its Ext and Body.
func (f *Frame) Seal() {
	f.ExtLen = uint32(len(f.Ext))
	f.BodyLen = uint32(len(f.Body))
	f.PayloadCRC = PayloadCRC(f.Ext, f.Body)
}

// AppendFrame seals f and appends its encoding to dst.
func AppendFrame(dst []byte, f *Frame) []byte {
	f.Seal()
	n := len(dst)
	dst = append(dst, make([]byte, HeaderSize)...)
	PutHeader(dst[n:], &f.Header)
	dst = append(dst, f.Ext...)
	return append(dst, f.Body...)
}

// ParseHeader decodes and checks a frame header: magic, header CRC,
// reserved fields, flags, sub-protocol id and sizes against maxPayload
// (DefaultMaxPayload if maxPayload <= 0). It does not look at the payload.
func ParseHeader(b []byte, maxPayload int) (Header, error) {
	var h Header
	if len(b) < HeaderSize {
		return h, Errorf(CodeEOF, "header needs %d bytes, have %d", HeaderSize, len(b))
	}
	le := binary.LittleEndian
	switch m := le.Uint32(b[offMagic:]); m {
	case Magic:
	case MagicSwapped:
		return h, Errorf(CodeSync, "magic %#08x is byte-swapped: peer writes big-endian", m)
	default:
		return h, Errorf(CodeSync, "bad magic %#08x, want %#08x", m, Magic)
	}
	if got, want := le.Uint32(b[offHdrCRC:]), CRC32C(b[offProto:HeaderSize]); got != want {
		return h, Errorf(CodeHeaderCRC, "header CRC %#08x, computed %#08x", got, want)
	}
	h.Proto = ProtoID(b[offProto])
	h.Version = b[offVersion]
	h.Opcode = le.Uint16(b[offOpcode:])
	h.Flags = Flags(le.Uint16(b[offFlags:]))
	h.Hops = b[offHops]
	h.MsgID = le.Uint64(b[offMsgID:])
	h.Source = le.Uint64(b[offSource:])
	h.Target = le.Uint64(b[offTarget:])
	h.ExtLen = le.Uint32(b[offExtLen:])
	h.BodyLen = le.Uint32(b[offBodyLen:])
	h.PayloadCRC = le.Uint32(b[offPayCRC:])
	if b[offRsvd1] != 0 || le.Uint32(b[offRsvd2:]) != 0 {
		return h, Errorf(CodeField, "reserved header bytes are not zero")
	}
	if h.Proto > protoMax {
		return h, Errorf(CodeField, "unknown sub-protocol id %d", h.Proto)
	}
	if h.Flags&^flagsKnown != 0 {
		return h, Errorf(CodeField, "unknown flags %#04x", uint16(h.Flags&^flagsKnown))
	}
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	if h.ExtLen > MaxExtSize {
		return h, Errorf(CodeTooLarge, "extension area of %d bytes exceeds %d", h.ExtLen, MaxExtSize)
	}
	if uint64(h.ExtLen)+uint64(h.BodyLen) > uint64(maxPayload) {
		return h, Errorf(CodeTooLarge, "payload of %d bytes exceeds limit %d", uint64(h.ExtLen)+uint64(h.BodyLen), maxPayload)
	}
	return h, nil
}

// CheckPayload verifies payload (extension area and body, contiguous)
// against h and splits it into f.
func CheckPayload(h Header, payload []byte) (Frame, error) {
	if len(payload) != h.PayloadLen() {
		return Frame{}, Errorf(CodeEOF, "payload needs %d bytes, have %d", h.PayloadLen(), len(payload))
	}
	if got := CRC32C(payload); got != h.PayloadCRC {
		return Frame{}, Errorf(CodePayloadCRC, "payload CRC %#08x, computed %#08x", h.PayloadCRC, got)
	}
	// Full slice expressions: an append to Ext or Body must not overwrite
	// the next frame in a decoder's buffer.
	n := len(payload)
	f := Frame{Header: h, Ext: payload[:h.ExtLen:h.ExtLen], Body: payload[h.ExtLen:n:n]}
	if err := ValidateTLV(f.Ext); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// DecodeFrame decodes exactly one frame from b, which must hold nothing
// else. The returned Ext and Body alias b.
func DecodeFrame(b []byte, maxPayload int) (Frame, error) {
	h, err := ParseHeader(b, maxPayload)
	if err != nil {
		return Frame{}, err
	}
	if rest := len(b) - HeaderSize; rest != h.PayloadLen() {
		if rest < h.PayloadLen() {
			return Frame{}, Errorf(CodeEOF, "truncated frame: payload needs %d bytes, have %d", h.PayloadLen(), rest)
		}
		return Frame{}, Errorf(CodeField, "%d bytes after the frame", rest-h.PayloadLen())
	}
	return CheckPayload(h, b[HeaderSize:])
}
