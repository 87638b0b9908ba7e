package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// packetHeaderLen is the fixed part of a BOOTP packet with the cookie.
const packetHeaderLen = 236 + 4

// errShort: a packet or an option cut short (where FromBytes reports
// uio's buffer error).
var errShort = errors.New("dhcp/server: packet too short")

// parsePacket decodes a request as dhcpv4.FromBytes does, field for field
// the same result and failing where it fails, with one copy of the packet
// that the addresses and option values point into, instead of an
// allocation per field and per option: every request goes through here.
// (FuzzParsePacket compares the two.)
func parsePacket(q []byte) (*dhcpv4.DHCPv4, error) {
	if len(q) < packetHeaderLen {
		return nil, fmt.Errorf("%w: %d bytes, the fixed fields are %d", errShort, len(q), packetHeaderLen)
	}
	b := bytes.Clone(q)
	p := &dhcpv4.DHCPv4{
		OpCode:   dhcpv4.OpcodeType(b[0]),
		HopCount: b[3],
	}
	p.HWType = iana.HWType(b[1])
	copy(p.TransactionID[:], b[4:8])
	p.NumSeconds = uint16(b[8])<<8 | uint16(b[9])
	p.Flags = uint16(b[10])<<8 | uint16(b[11])
	p.ClientIPAddr = net.IP(b[12:16:16])
	p.YourIPAddr = net.IP(b[16:20:20])
	p.ServerIPAddr = net.IP(b[20:24:24])
	p.GatewayIPAddr = net.IP(b[24:28:28])
	p.ClientHWAddr = net.HardwareAddr(b[28 : 28+min(int(b[2]), 16) : 44])
	p.ServerHostName = cstring(b[44:108])
	p.BootFileName = cstring(b[108:236])
	if [4]byte(b[236:240]) != magicCookie {
		return nil, fmt.Errorf("malformed DHCP packet: got magic cookie %v, want %v", b[236:240], magicCookie[:])
	}
	p.Options = make(dhcpv4.Options)
	opts := b[packetHeaderLen:]
	if len(opts) == 0 {
		return p, nil
	}
	for i := 0; i < len(opts); {
		code := opts[i]
		i++
		switch code {
		case optPad:
			continue
		case optEnd:
			return p, nil
		}
		if i >= len(opts) {
			return nil, fmt.Errorf("%w: option %d has no length", errShort, code)
		}
		n := int(opts[i])
		i++
		if n > len(opts)-i {
			return nil, fmt.Errorf("%w: option %d of %d bytes, %d left", errShort, code, n, len(opts)-i)
		}
		v := opts[i : i+n : i+n]
		i += n
		// RFC 2131 §4.1 and RFC 3396: repeated instances concatenate.
		// FromBytes stores append(nil, v...): nil for an empty first one.
		old, seen := p.Options[code]
		switch {
		case !seen && n == 0:
			p.Options[code] = nil
		case !seen:
			p.Options[code] = v
		default:
			p.Options[code] = append(old[:len(old):len(old)], v...)
		}
	}
	return nil, io.ErrUnexpectedEOF
}

// cstring is a NUL-terminated field, as FromBytes reads sname and file.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
