package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Listen opens a listener inside host i's network namespace, for a test
// that serves from its own process. The socket stays in that namespace for
// its whole life; the caller closes it.
func (l *Lab) Listen(i int, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := l.inHost(i, func() error {
		var err error
		ln, err = net.Listen(network, address)
		return err
	})
	return ln, err
}

// Dial opens a connection from inside host i's network namespace. Address
// must be a literal IP and port: name lookups would run on other threads,
// outside the namespace.
func (l *Lab) Dial(ctx context.Context, i int, network, address string) (net.Conn, error) {
	var c net.Conn
	err := l.inHost(i, func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// inHost runs fn on a goroutine whose thread has joined host i's network
// namespace, then moves the thread back to the namespace it came from. A
// thread that cannot go back is never returned to the scheduler: the
// goroutine ends still locked, and the runtime retires the thread with it.
// (Leaving the process's main thread in a lab's namespace would make the
// lab's cleanup count the test process among the lab's and kill it.)
func (l *Lab) inHost(i int, fn func() error) error {
	ns := l.Namespace(i)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netlab: host %d: %w", i, err)
			return
		}
		defer orig.Close()
		f, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netlab: host %d: %w", i, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("netlab: host %d: setns %s: %w", i, ns, err)
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
