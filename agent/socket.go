package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// listenUnix listens on a unix socket at path with the given mode. It
// binds path+".new", sets the mode and renames it over path, so the socket
// is replaced atomically: a client never finds path missing while an agent
// restarts, nor a socket with the wrong mode. (The data directory is 0700
// as well, so nobody reaches the new socket before the chmod.)
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if err := checkStaleSocket(path); err != nil {
		return nil, err
	}
	tmp := path + ".new"
	// A leftover of an agent that died between bind and rename.
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("agent: remove %s: %w", tmp, err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("agent: listen on %s: %w", path, err)
	}
	// Close must not unlink tmp: after the rename that name may belong
	// to another agent's bind. Run removes path itself.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("agent: chmod %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("agent: rename %s: %w", tmp, err)
	}
	return &unixListener{UnixListener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// unixListener reports the path clients dial, not the name it was bound
// to before the rename.
type unixListener struct {
	*net.UnixListener
	addr net.Addr
}

func (l *unixListener) Addr() net.Addr { return l.addr }

// checkStaleSocket refuses to start when another agent still answers on
// path. A socket nobody answers on is left for the rename to replace.
func checkStaleSocket(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("agent: %s is in use: is another agent running on this data dir?", path)
	}
	return nil
}
