//go:build !linux

package netlab

import (
	"context"
	"errors"
	"net"
)

// ErrNotLinux is what Listen and Dial return off Linux.
var ErrNotLinux = errors.New("netlab: network namespaces need Linux")

// Listen needs Linux.
func (l *Lab) Listen(i int, network, address string) (net.Listener, error) {
	return nil, ErrNotLinux
}

// Dial needs Linux.
func (l *Lab) Dial(ctx context.Context, i int, network, address string) (net.Conn, error) {
	return nil, ErrNotLinux
}

func (l *Lab) inHost(i int, fn func() error) error { return ErrNotLinux }
