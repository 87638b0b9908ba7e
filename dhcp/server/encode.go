package server

import (
	"net"
	"slices"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// Wire constants of the BOOTP/DHCP packet that dhcpv4.ToBytes writes.
const (
	bootpMinLen = 300 // RFC 951: some relays drop shorter packets
	optAgent    = 82  // RFC 3046 §2.1: the relay agent option goes last
	optPad      = 0
	optEnd      = 255
)

var magicCookie = [4]byte{99, 130, 83, 99}

// appendPacket appends d's encoding to b, byte for byte what d.ToBytes()
// returns, without its allocations (a growing buffer, the sorted code
// list, the pad slice): the reply of every packet goes through here.
func appendPacket(b []byte, d *dhcpv4.DHCPv4) []byte {
	b = append(b, byte(d.OpCode), byte(d.HWType), uint8(len(d.ClientHWAddr)), d.HopCount)
	b = append(b, d.TransactionID[:]...)
	b = append(b, byte(d.NumSeconds>>8), byte(d.NumSeconds), byte(d.Flags>>8), byte(d.Flags))
	for _, ip := range [...]net.IP{d.ClientIPAddr, d.YourIPAddr, d.ServerIPAddr, d.GatewayIPAddr} {
		b = appendIP(b, ip)
	}
	b = appendField(b, d.ClientHWAddr, 16, 16)
	b = appendField(b, []byte(d.ServerHostName), 63, 64)
	b = appendField(b, []byte(d.BootFileName), 127, 128)
	b = append(b, magicCookie[:]...)

	// Option codes in ascending order, 82 last, pad and end left out.
	var codes [256]uint8
	n, agent := 0, false
	for c := range d.Options {
		switch c {
		case optAgent:
			agent = true
		case optPad, optEnd:
		default:
			codes[n] = c
			n++
		}
	}
	slices.Sort(codes[:n])
	if agent {
		codes[n] = optAgent
		n++
	}
	start := len(b) - 240 // the packet's own start, b may hold a prefix
	for _, c := range codes[:n] {
		v := d.Options[c]
		if len(v) == 0 {
			b = append(b, c, 0)
			continue
		}
		// RFC 3396: a value over 255 octets is the option repeated.
		for len(v) > 0 {
			k := min(len(v), 255)
			b = append(b, c, byte(k))
			b = append(b, v[:k]...)
			v = v[k:]
		}
	}
	b = append(b, optEnd)
	for len(b)-start < bootpMinLen {
		b = append(b, optPad)
	}
	return b
}

// appendIP appends an address field: 0.0.0.0 for nil, as ToBytes does
// (which would panic on an address that is not IPv4; this writes zeros).
func appendIP(b []byte, ip net.IP) []byte {
	if ip4 := ip.To4(); ip4 != nil {
		return append(b, ip4...)
	}
	return append(b, 0, 0, 0, 0)
}

// appendField appends at most max bytes of v, zero-filled to size.
func appendField(b, v []byte, max, size int) []byte {
	if len(v) > max {
		v = v[:max]
	}
	b = append(b, v...)
	for range size - len(v) {
		b = append(b, 0)
	}
	return b
}

// packetPool recycles the encoding buffers of replies: the socket layer
// copies a reply before Send returns.
var packetPool = sync.Pool{New: func() any { b := make([]byte, 0, 1500); return &b }}
