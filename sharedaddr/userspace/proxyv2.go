package userspace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// Errors of the PROXY protocol v2 decoder (SPEC.md, "Errors"). Each
// failure wraps exactly one of them.
var (
	// ErrSignature: the first 12 bytes are not the v2 signature.
	ErrSignature = errors.New("userspace: not a PROXY v2 header (bad signature)")
	// ErrVersion: the version nibble is not 2.
	ErrVersion = errors.New("userspace: PROXY header version is not 2")
	// ErrCommand: the command nibble is neither LOCAL nor PROXY.
	ErrCommand = errors.New("userspace: PROXY header command unknown")
	// ErrTruncated: the input ends before the header does.
	ErrTruncated = errors.New("userspace: PROXY header truncated")
	// ErrFamily: a PROXY command over a family or transport other than
	// TCP over IPv4 or IPv6 (or UNSPEC).
	ErrFamily = errors.New("userspace: PROXY header family or transport unsupported")
	// ErrLength: the length field is shorter than the family's address
	// block, or the TLVs after it do not fill it exactly.
	ErrLength = errors.New("userspace: PROXY header length inconsistent")
	// ErrEncode: a header that cannot be written (addresses of no
	// family, a TLV over 65535 bytes, a header over 65535 bytes).
	ErrEncode = errors.New("userspace: PROXY header cannot be encoded")
)

// signature is the 12-byte v2 signature (proxy-protocol.txt §2.2).
var signature = [12]byte{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a}

// Command is the low nibble of byte 12.
type Command uint8

// Commands.
const (
	// CmdLocal: the connection was made by the proxy itself (a health
	// check); the addresses, if any, are to be ignored.
	CmdLocal Command = 0x0
	// CmdProxy: the connection is relayed for the client in Source.
	CmdProxy Command = 0x1
)

// Byte 13: address family (high nibble) and transport (low nibble).
const (
	famUnspec   = 0x00
	famTCP4     = 0x11
	famTCP6     = 0x21
	v2          = 0x20
	fixedLen    = 16 // signature, version/command, family, length
	addrLenTCP4 = 12
	addrLenTCP6 = 36
	// MaxHeaderLen is the largest header the length field can describe.
	MaxHeaderLen = fixedLen + 0xffff
)

// Header is one PROXY v2 header.
type Header struct {
	Command Command
	// Source is the client, Dest the address it connected to. Both are
	// invalid (zero) for family UNSPEC. A decoded CmdLocal header keeps
	// the addresses it carried, if of a known family; a receiver ignores
	// them (Listener does).
	Source, Dest netip.AddrPort
	// TLVs are the type-length-value records after the addresses, in
	// order; the decoder checks their framing only.
	TLVs []TLV
}

// TLV is one type-length-value record (proxy-protocol.txt §2.2.7).
type TLV struct {
	Type  uint8
	Value []byte
}

// Append appends h's encoding to b. Source and Dest are written as IPv4
// when both are IPv4 (or IPv4-mapped IPv6), else as IPv6; a header whose
// addresses are both invalid is written with family UNSPEC.
func (h Header) Append(b []byte) ([]byte, error) {
	if h.Command != CmdLocal && h.Command != CmdProxy {
		return b, fmt.Errorf("%w: command %d", ErrEncode, h.Command)
	}
	src, dst := h.Source, h.Dest
	fam, alen := byte(famUnspec), 0
	switch {
	case !src.IsValid() && !dst.IsValid():
	case !src.IsValid() || !dst.IsValid():
		return b, fmt.Errorf("%w: only one of source %v and destination %v", ErrEncode, src, dst)
	case src.Addr().Unmap().Is4() && dst.Addr().Unmap().Is4():
		fam, alen = famTCP4, addrLenTCP4
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	default:
		fam, alen = famTCP6, addrLenTCP6
		src = netip.AddrPortFrom(netip.AddrFrom16(src.Addr().As16()), src.Port())
		dst = netip.AddrPortFrom(netip.AddrFrom16(dst.Addr().As16()), dst.Port())
	}
	n := alen
	for _, t := range h.TLVs {
		if len(t.Value) > 0xffff {
			return b, fmt.Errorf("%w: TLV %#x of %d bytes", ErrEncode, t.Type, len(t.Value))
		}
		n += 3 + len(t.Value)
	}
	if n > 0xffff {
		return b, fmt.Errorf("%w: %d bytes after the fixed part", ErrEncode, n)
	}
	b = append(b, signature[:]...)
	b = append(b, v2|byte(h.Command), fam)
	b = binary.BigEndian.AppendUint16(b, uint16(n))
	if alen > 0 {
		b = append(b, src.Addr().AsSlice()...)
		b = append(b, dst.Addr().AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, src.Port())
		b = binary.BigEndian.AppendUint16(b, dst.Port())
	}
	for _, t := range h.TLVs {
		b = append(b, t.Type)
		b = binary.BigEndian.AppendUint16(b, uint16(len(t.Value)))
		b = append(b, t.Value...)
	}
	return b, nil
}

// Parse decodes the header at the start of b and returns it with the
// number of bytes it took; bytes after it are the connection's data and
// are left alone. TLV values alias b.
func Parse(b []byte) (Header, int, error) {
	n, err := headerLen(b)
	if err != nil {
		return Header{}, 0, err
	}
	if len(b) < n {
		return Header{}, 0, fmt.Errorf("%w: %d of %d bytes", ErrTruncated, len(b), n)
	}
	h, err := parseBody(b[12], b[13], b[fixedLen:n])
	if err != nil {
		return Header{}, 0, err
	}
	return h, n, nil
}

// headerLen checks the fixed part of the header in b and returns the
// header's total length.
func headerLen(b []byte) (int, error) {
	// Check what is there before saying it is short: 3 bytes of an HTTP
	// request are a bad signature, not a truncated header.
	k := min(len(b), len(signature))
	if [12]byte(append(b[:k:k], signature[k:]...)) != signature {
		return 0, ErrSignature
	}
	if len(b) < 13 {
		return 0, fmt.Errorf("%w: %d bytes, the fixed part is %d", ErrTruncated, len(b), fixedLen)
	}
	if b[12]&0xf0 != v2 {
		return 0, fmt.Errorf("%w: version %d", ErrVersion, b[12]>>4)
	}
	if c := Command(b[12] & 0x0f); c != CmdLocal && c != CmdProxy {
		return 0, fmt.Errorf("%w: %d", ErrCommand, c)
	}
	if len(b) < fixedLen {
		return 0, fmt.Errorf("%w: %d bytes, the fixed part is %d", ErrTruncated, len(b), fixedLen)
	}
	return fixedLen + int(binary.BigEndian.Uint16(b[14:])), nil
}

// parseBody decodes the addresses and TLVs after the fixed part.
func parseBody(vc, fam byte, body []byte) (Header, error) {
	h := Header{Command: Command(vc & 0x0f)}
	alen := 0
	switch fam {
	case famTCP4:
		alen = addrLenTCP4
	case famTCP6:
		alen = addrLenTCP6
	case famUnspec:
	default:
		// A LOCAL header's addresses are ignored whatever their family
		// (§2.2), so only PROXY is refused; its body is skipped whole.
		if h.Command == CmdLocal {
			return h, nil
		}
		return Header{}, fmt.Errorf("%w: family/transport %#02x", ErrFamily, fam)
	}
	if len(body) < alen {
		return Header{}, fmt.Errorf("%w: %d bytes, family %#02x needs %d", ErrLength, len(body), fam, alen)
	}
	switch fam {
	case famTCP4:
		h.Source = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[4:8])), binary.BigEndian.Uint16(body[10:]))
	case famTCP6:
		h.Source = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])), binary.BigEndian.Uint16(body[32:]))
		h.Dest = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[16:32])), binary.BigEndian.Uint16(body[34:]))
	}
	for rest := body[alen:]; len(rest) > 0; {
		if len(rest) < 3 {
			return Header{}, fmt.Errorf("%w: %d bytes left, a TLV takes at least 3", ErrLength, len(rest))
		}
		n := int(binary.BigEndian.Uint16(rest[1:]))
		if len(rest) < 3+n {
			return Header{}, fmt.Errorf("%w: TLV %#x of %d bytes, %d left", ErrLength, rest[0], n, len(rest)-3)
		}
		h.TLVs = append(h.TLVs, TLV{Type: rest[0], Value: rest[3 : 3+n : 3+n]})
		rest = rest[3+n:]
	}
	return h, nil
}

// ReadHeader reads one header from r, exactly: not a byte of the data
// after it, so r needs no buffering. An input that ends early gives
// ErrTruncated.
func ReadHeader(r io.Reader) (Header, error) {
	var fixed [fixedLen]byte
	if n, err := io.ReadFull(r, fixed[:]); err != nil {
		if _, herr := headerLen(fixed[:n]); herr != nil && !errors.Is(herr, ErrTruncated) {
			return Header{}, herr
		}
		return Header{}, fmt.Errorf("%w: %w", ErrTruncated, err)
	}
	n, err := headerLen(fixed[:])
	if err != nil {
		return Header{}, err
	}
	body := make([]byte, n-fixedLen)
	if _, err := io.ReadFull(r, body); err != nil {
		return Header{}, fmt.Errorf("%w: %w", ErrTruncated, err)
	}
	return parseBody(fixed[12], fixed[13], body)
}
