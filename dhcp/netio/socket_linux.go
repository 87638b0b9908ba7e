//go:build linux

package netio

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// listenUDP opens one UDP socket on addr with SO_REUSEPORT (so several
// sockets share the port and the kernel spreads datagrams over them by
// flow hash), SO_BROADCAST (replies to 255.255.255.255), IP_PKTINFO (the
// ingress interface and destination of every datagram) and a receive
// buffer of rcvbuf bytes: SO_RCVBUFFORCE when the process may (it ignores
// net.core.rmem_max), else SO_RCVBUF, which the kernel caps at rmem_max.
func listenUDP(ctx context.Context, addr string, rcvbuf int) (*net.UDPConn, error) {
	var soErr error
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		err := c.Control(func(fd uintptr) {
			s := int(fd)
			set := func(level, opt, v int, name string) bool {
				if e := unix.SetsockoptInt(s, level, opt, v); e != nil {
					soErr = fmt.Errorf("netio: %s: %w", name, e)
					return false
				}
				return true
			}
			_ = set(unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, "SO_REUSEPORT") &&
				set(unix.SOL_SOCKET, unix.SO_BROADCAST, 1, "SO_BROADCAST") &&
				set(unix.IPPROTO_IP, unix.IP_PKTINFO, 1, "IP_PKTINFO")
			if soErr == nil && rcvbuf > 0 {
				if unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf) != nil {
					set(unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf, "SO_RCVBUF")
				}
			}
		})
		if err != nil {
			return err
		}
		return soErr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", addr)
	if err != nil {
		return nil, err
	}
	return pc.(*net.UDPConn), nil
}

// rcvbufOf returns the socket's receive buffer as the kernel reports it
// (twice what was asked: it counts its bookkeeping).
func rcvbufOf(c *net.UDPConn) int {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var v int
	_ = rc.Control(func(fd uintptr) {
		v, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	return v
}

var (
	cmsgHdrLen  = unix.CmsgLen(0)
	pktinfoLen  = unix.CmsgLen(unix.SizeofInet4Pktinfo)
	pktinfoSize = unix.CmsgSpace(unix.SizeofInet4Pktinfo)
)

// oobSize is room for the IP_PKTINFO control message of one datagram.
var oobSize = pktinfoSize

// parsePktinfo finds IP_PKTINFO in a received control-message buffer and
// returns the ingress interface index and the datagram's destination
// address. It does not allocate (ipv4.ControlMessage.Parse does).
func parsePktinfo(oob []byte) (ifIndex int, dst netip.Addr) {
	for len(oob) >= cmsgHdrLen {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		l := int(h.Len)
		if l < cmsgHdrLen || l > len(oob) {
			return 0, netip.Addr{}
		}
		if h.Level == unix.IPPROTO_IP && h.Type == unix.IP_PKTINFO && l >= pktinfoLen {
			d := oob[cmsgHdrLen:]
			// struct in_pktinfo { int ipi_ifindex; in_addr ipi_spec_dst; in_addr ipi_addr; }
			ifIndex = int(int32(binary.NativeEndian.Uint32(d[0:4])))
			dst = netip.AddrFrom4([4]byte(d[8:12]))
			return ifIndex, dst
		}
		sp := unix.CmsgSpace(l - cmsgHdrLen)
		if sp > len(oob) {
			break
		}
		oob = oob[sp:]
	}
	return 0, netip.Addr{}
}

// putPktinfo writes an IP_PKTINFO control message asking the kernel to
// send out of interface ifIndex into oob (len ≥ pktinfoSize) and returns
// the used part. ipi_spec_dst stays zero: the kernel picks the source
// address of that interface's route.
func putPktinfo(oob []byte, ifIndex int) []byte {
	oob = oob[:pktinfoSize]
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.IPPROTO_IP
	h.Type = unix.IP_PKTINFO
	h.SetLen(pktinfoLen)
	binary.NativeEndian.PutUint32(oob[cmsgHdrLen:], uint32(int32(ifIndex)))
	return oob
}

const msgTrunc = unix.MSG_TRUNC
