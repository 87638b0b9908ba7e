package sharedaddr

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// bindFD binds fd to ap, as an IPv4-mapped address on an IPv6 socket.
func bindFD(fd int, ap netip.AddrPort) error {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return err
	}
	if dom == unix.AF_INET {
		if !ap.Addr().Is4() {
			return fmt.Errorf("sharedaddr: IPv6 source %s on an IPv4 socket", ap)
		}
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())})
	}
	return unix.Bind(fd, &unix.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())})
}

// sockName returns fd's bound address, unmapped.
func sockName(fd int) (netip.AddrPort, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("sharedaddr: getsockname: %w", err)
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("sharedaddr: getsockname: address %T", sa)
}
