//go:build !linux

package sharedaddr

import (
	"context"
	"net/netip"
	"os"
)

func nsInode(path string) (StackID, error) { return 0, ErrUnsupported }

func (s *Stack) in(fn func() error) error { return fn() }

// InNamespace needs Linux's network namespaces.
func InNamespace(ns *os.File, fn func() error) error { return ErrUnsupported }

func bindFD(fd int, ap netip.AddrPort) error { return ErrUnsupported }

func sockName(fd int) (netip.AddrPort, error) { return netip.AddrPort{}, ErrUnsupported }

// WalkTCP needs Linux's sock_diag.
func (s *Stack) WalkTCP(ctx context.Context, fn func(TCPInfo) bool, a *Args) error {
	return ErrUnsupported
}

// WalkTCP needs Linux's sock_diag.
func WalkTCP(ctx context.Context, id StackID, fn func(TCPInfo) bool, a *Args) error {
	return ErrUnsupported
}
