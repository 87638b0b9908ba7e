package sharedaddr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// diagSeq numbers dump requests, so a stale reply on a reused socket
// number is never taken for the current one. It is a counter, not a
// registry: nothing reads it but the next request.
var diagSeq atomic.Uint32

// WalkTCP calls fn for every TCP socket of the stack, listeners and
// TIME_WAIT sockets included, IPv4 first, until fn returns false. It is
// the seed's cl_tcp_walk_list, exported by the stack to the cluster: the
// cluster calls it when a dispatch bucket changes node, to learn the flows
// that must keep coming here. The walk reads the kernel's tables through
// sock_diag (NETLINK_SOCK_DIAG, inet_diag), so it sees every socket of the
// namespace, whether or not it was opened through this package. Args is
// for future use; nil is fine.
func (s *Stack) WalkTCP(ctx context.Context, fn func(TCPInfo) bool, a *Args) error {
	var fd int
	err := s.in(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_SOCK_DIAG)
		return err
	})
	if err != nil {
		return fmt.Errorf("sharedaddr: walk stack %d: sock_diag socket: %w", s.id, err)
	}
	f := os.NewFile(uintptr(fd), "sock_diag")
	defer f.Close()
	if d, ok := ctx.Deadline(); ok {
		f.SetReadDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for _, fam := range []uint8{afInet, afInet6} {
		more, err := s.dump(ctx, f, fam, fn)
		if err != nil {
			return fmt.Errorf("sharedaddr: walk stack %d: %w", s.id, err)
		}
		if !more {
			return nil
		}
	}
	return nil
}

// dump runs one dump request for family and feeds fn; more is false when
// fn stopped the walk.
func (s *Stack) dump(ctx context.Context, f *os.File, family uint8, fn func(TCPInfo) bool) (more bool, err error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return false, err
	}
	seq := diagSeq.Add(1)
	req := diagRequest(family, seq)
	var serr error
	if err := rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
		return !errors.Is(serr, unix.EAGAIN)
	}); err != nil {
		return false, err
	}
	if serr != nil {
		return false, fmt.Errorf("send dump request: %w", serr)
	}
	buf := make([]byte, 1<<16)
	for {
		var n, flags int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, _, flags, _, rerr = unix.Recvmsg(int(fd), buf, nil, 0)
			return !errors.Is(rerr, unix.EAGAIN)
		}); err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			return false, err
		}
		if rerr != nil {
			return false, fmt.Errorf("receive: %w", rerr)
		}
		if flags&unix.MSG_TRUNC != 0 {
			return false, fmt.Errorf("%w: datagram longer than %d bytes", ErrMalformed, len(buf))
		}
		if s.tap != nil {
			s.tap(seq, append([]byte(nil), buf[:n]...))
		}
		msgs, done, err := decodeDiag(buf[:n], seq)
		if err != nil {
			return false, err
		}
		for _, m := range msgs {
			if !fn(m.info(s.id)) {
				return false, nil
			}
		}
		if done {
			return true, nil
		}
	}
}

// WalkTCP walks the stack whose id is id, or every stack this process can
// find when id is AllStacks: its own, the named ones under /run/netns, and
// those of every process it may inspect (/proc/PID/ns/net). Stacks it
// cannot enter are skipped when walking all; a single id that cannot be
// found or entered is an error wrapping ErrStack.
func WalkTCP(ctx context.Context, id StackID, fn func(TCPInfo) bool, a *Args) error {
	paths := []string{"/proc/self/ns/net"}
	named, _ := filepath.Glob("/run/netns/*")
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	paths = append(append(paths, named...), procs...)
	seen := make(map[StackID]bool)
	more := true
	for _, p := range paths {
		sid, err := nsInode(p)
		if err != nil || seen[sid] || (id != AllStacks && sid != id) {
			continue
		}
		seen[sid] = true
		var st *Stack
		if p == "/proc/self/ns/net" {
			st, err = Current(nil, nil)
		} else {
			st, err = Open(p, nil, nil)
		}
		if err != nil {
			continue
		}
		err = st.WalkTCP(ctx, func(ti TCPInfo) bool {
			more = fn(ti)
			return more
		}, a)
		st.Close()
		if err != nil && (id != AllStacks || ctx.Err() != nil) {
			return err
		}
		if !more || id != AllStacks {
			return nil
		}
	}
	if id != AllStacks && !seen[id] {
		return fmt.Errorf("%w: no network namespace with inode %d", ErrStack, id)
	}
	return nil
}
