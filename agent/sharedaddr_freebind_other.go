//go:build !linux

package agent

import "syscall"

// freebind is a no-op where IP_FREEBIND is unknown: the shared address
// must be on the host before the proxy binds it.
func freebind(_, _ string, _ syscall.RawConn) error { return nil }
