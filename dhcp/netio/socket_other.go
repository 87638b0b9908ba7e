//go:build !linux

package netio

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// The socket layer needs Linux's recvmmsg, IP_PKTINFO and SO_RCVBUFFORCE.

func listenUDP(context.Context, string, int) (*net.UDPConn, error) {
	return nil, fmt.Errorf("netio: %w", errors.ErrUnsupported)
}

func rcvbufOf(*net.UDPConn) int             { return 0 }
func parsePktinfo([]byte) (int, netip.Addr) { return 0, netip.Addr{} }
func putPktinfo(oob []byte, _ int) []byte   { return oob[:0] }

const (
	oobSize     = 64
	pktinfoSize = 64
	msgTrunc    = 0
)
