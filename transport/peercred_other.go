//go:build !linux

package transport

import "net"

// peerPid is 0 where corral does not read peer credentials.
func peerPid(net.Conn) int32 { return 0 }
