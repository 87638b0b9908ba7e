//go:build !linux

package kernel

import (
	"context"
	"log/slog"
	"net/netip"
)

// Dataplane installs plans into one network stack; Linux only.
type Dataplane struct{}

// Open returns ErrUnsupported off Linux.
func Open(path, ifname string, log *slog.Logger) (*Dataplane, error) { return nil, ErrUnsupported }

// Apply returns ErrUnsupported off Linux.
func (*Dataplane) Apply(context.Context, Plan) error { return ErrUnsupported }

// Drop returns ErrUnsupported off Linux.
func (*Dataplane) Drop(context.Context) error { return ErrUnsupported }

// Announce returns ErrUnsupported off Linux.
func (*Dataplane) Announce(context.Context, netip.Addr) error { return ErrUnsupported }

// Close does nothing off Linux.
func (*Dataplane) Close() error { return nil }

// Installed returns ErrUnsupported off Linux.
func (*Dataplane) Installed() (string, error) { return "", ErrUnsupported }

// Affinities returns ErrUnsupported off Linux.
func (*Dataplane) Affinities(netip.Addr) ([]Affinity, error) { return nil, ErrUnsupported }
