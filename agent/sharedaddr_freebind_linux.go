package agent

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// freebind lets a socket bind an address this host does not hold (yet):
// IP_FREEBIND needs no privilege, unlike IP_TRANSPARENT, so the
// user-space proxy binds a shared address before keepalived or the
// cloud has put it on the host.
func freebind(network, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		if network == "tcp6" {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			return
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
