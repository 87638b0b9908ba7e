package sharedaddr

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// nsInode returns the stack id of the namespace file at path.
func nsInode(path string) (StackID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrStack, path, err)
	}
	return StackID(st.Ino), nil
}

// in runs fn on a thread inside the stack's namespace (InNamespace); for
// the process's own stack on the caller's goroutine.
func (s *Stack) in(fn func() error) error {
	if s.ns == nil {
		return fn()
	}
	return InNamespace(s.ns, fn)
}

// InNamespace runs fn on a thread inside the network namespace ns (an
// nsfs file). Sockets fn creates belong to that namespace for their whole
// life, whichever thread uses them later, and so do the sysctls under
// /proc/sys/net it reads. fn runs on a goroutine locked to its thread,
// which InNamespace waits for; a thread that cannot return to its
// namespace is never handed back to the scheduler: the goroutine ends
// still locked, and the runtime retires the thread with it.
func InNamespace(ns *os.File, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("%w: %w", ErrStack, err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("%w: setns: %w", ErrStack, err)
			return
		}
		err = fn()
		if unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}
