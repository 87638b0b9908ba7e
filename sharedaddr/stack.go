package sharedaddr

import (
	"fmt"
	"log/slog"
	"os"
)

// Stack is one IP stack, a network namespace, with the hooks of the
// cluster that shares addresses in it. Its Listen, Dial and ListenPacket
// open sockets inside the namespace and call the hooks; WalkTCP lists the
// namespace's TCP sockets. A Stack is safe for concurrent use.
type Stack struct {
	id    StackID
	ns    *os.File // the namespace's nsfs file; nil for the process's own
	hooks Hooks    // nil: not clustered
	log   *slog.Logger
	// tap, when set (by tests), sees every sock_diag datagram the walk
	// reads, for capturing golden vectors.
	tap func(seq uint32, datagram []byte)
}

// Current returns the stack of the process's own network namespace. h may
// be nil (not clustered); log may be nil (discard).
func Current(h Hooks, log *slog.Logger) (*Stack, error) {
	id, err := nsInode("/proc/self/ns/net")
	if err != nil {
		return nil, err
	}
	return &Stack{id: id, hooks: h, log: logger(log)}, nil
}

// Open returns the stack of the network namespace whose nsfs file is path
// (/run/netns/NAME as "ip netns add" makes it, or /proc/PID/ns/net). The
// file stays open, and so the namespace alive, until Close.
func Open(path string, h Hooks, log *slog.Logger) (*Stack, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStack, err)
	}
	id, err := nsInode(path)
	if err != nil {
		f.Close()
		return nil, err
	}
	return &Stack{id: id, ns: f, hooks: h, log: logger(log)}, nil
}

// ID returns the stack id: the inode of the namespace's nsfs file.
func (s *Stack) ID() StackID { return s.id }

// Hooks returns the stack's hooks, nil when not clustered.
func (s *Stack) Hooks() Hooks { return s.hooks }

// Close releases the namespace file of a stack made by Open. Sockets
// opened through the stack stay open and in their namespace.
func (s *Stack) Close() error {
	if s.ns == nil {
		return nil
	}
	return s.ns.Close()
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return l.With("subsystem", "sharedaddr")
}
