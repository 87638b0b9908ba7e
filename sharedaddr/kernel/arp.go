package kernel

import (
	"encoding/binary"
	"net"
	"net/netip"
)

// EtherTypes.
const (
	ethARP = 0x0806
	ethIP  = 0x0800
)

// garp builds the Ethernet frame of a gratuitous ARP request (RFC 5227
// §3 announcement form: sender and target address both vip).
func garp(mac net.HardwareAddr, vip netip.Addr) []byte {
	b := make([]byte, 0, 42)
	b = append(b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
	b = append(b, mac...)
	b = binary.BigEndian.AppendUint16(b, ethARP)
	b = binary.BigEndian.AppendUint16(b, 1) // hardware: Ethernet
	b = binary.BigEndian.AppendUint16(b, ethIP)
	b = append(b, 6, 4)
	b = binary.BigEndian.AppendUint16(b, 1) // request
	ip := vip.As4()
	b = append(b, mac...)
	b = append(b, ip[:]...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	b = append(b, ip[:]...)
	return b
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
