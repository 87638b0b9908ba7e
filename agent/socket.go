package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"time"
)

// noGroup leaves a socket's group as the agent's own.
const noGroup = -1

// listenUnix listens on a unix socket at path with the given mode and, if
// gid is not noGroup, that group. It binds path+".new", sets the group and
// the mode and renames it over path, so the socket is replaced atomically:
// a client never finds path missing while an agent restarts, nor a socket
// with the wrong mode or group. Doing this on every start is what keeps a
// configured group: a chgrp by hand would be undone by the next start.
// (The data directory lets nobody outside the socket's group through, so
// nobody reaches the new socket before the chmod.)
func listenUnix(path string, mode os.FileMode, gid int) (net.Listener, error) {
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
	fail := func(what string, err error) (net.Listener, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("agent: %s %s: %w", what, tmp, err)
	}
	if gid != noGroup {
		if err := os.Chown(tmp, -1, gid); err != nil {
			return fail("set the group of", err)
		}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail("chmod", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail("rename", err)
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

// lookupGroup resolves a group name, or a numeric gid, to a gid.
func lookupGroup(name string) (int, error) {
	if name == "" {
		return noGroup, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		if _, nerr := strconv.Atoi(name); nerr != nil {
			return 0, fmt.Errorf("%w: client-socket-group %q: %v", ErrConfig, name, err)
		}
		if g, err = user.LookupGroupId(name); err != nil {
			// A gid without a name in /etc/group is still a gid.
			gid, _ := strconv.Atoi(name)
			return gid, nil
		}
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return 0, fmt.Errorf("%w: client-socket-group %q: gid %q", ErrConfig, name, g.Gid)
	}
	return gid, nil
}

// openDataDir creates the data directory and gives it the mode the client
// socket needs. The directory is 0700: the node id, the cluster key and
// the log are root's alone. A client socket for a group needs the group to
// traverse the directory, so the agent makes it 0710 with that group
// (0711 if the socket mode lets others write): search but not list, and
// every other file in it is 0600, so the group reaches the socket and
// nothing else. This is set on every start, as the socket's group is.
// Without a group or others in the socket mode the directory's mode is
// left as it is.
func openDataDir(dir string, sockMode os.FileMode, gid int) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	mode := os.FileMode(0o700)
	if gid != noGroup && sockMode&0o020 != 0 {
		mode |= 0o010
	}
	if sockMode&0o002 != 0 {
		mode |= 0o001
	}
	if mode == 0o700 {
		return nil
	}
	if gid != noGroup {
		if err := os.Chown(dir, -1, gid); err != nil {
			return fmt.Errorf("agent: data dir: set its group for the client socket: %w", err)
		}
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("agent: data dir: %w", err)
	}
	return nil
}

// checkKeyFile refuses a cluster key that the group or others may read,
// as ssh refuses such a private key: whoever reads it can join the
// cluster. With allowOpen it only warns. A missing file says how to make
// one.
func checkKeyFile(path string, allowOpen bool, log *slog.Logger) error {
	st, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("agent: no local key: %s does not exist: create one with `corral keygen --out %s` and give every node of the cluster the same file", path, path)
	}
	if err != nil {
		return fmt.Errorf("agent: cluster key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		if !allowOpen {
			return fmt.Errorf("%w: cluster key file %s has mode %04o: it must not be readable by group or others (chmod 600 %s), or start with --allow-open-key-file", ErrConfig, path, perm, path)
		}
		log.Warn("cluster key file is readable by group or others; whoever reads it can join the cluster", "file", path, "mode", fmt.Sprintf("%04o", perm))
	}
	return nil
}
