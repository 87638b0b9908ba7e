package files

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/corralhq/corral/dsvc"
)

// Name is the module's name.
const Name = "files"

// Module is the files module at one container version. Its zero value is
// not usable; use New or NewVersion.
type Module struct {
	version int
	// hook, if set (tests only), is called at each step of an atomic
	// replace: "write" (half the new file written), "synced", "renamed".
	hook func(step string)
	// cache holds the container files last read or written, parsed.
	cache cache
}

// New returns the files module, container version 1.
func New() *Module { return &Module{version: 1} }

// NewVersion returns the files module at container version 1 or 2. Version
// 2 differs from 1 only by one header line ("# files format 2"); it exists
// so that the framework's Upgrade has two real versions to move between.
func NewVersion(v int) (*Module, error) {
	if v != 1 && v != 2 {
		return nil, dsvc.Errorf(dsvc.CodeBadConver, "files has container versions 1 and 2, not %d", v)
	}
	return &Module{version: v}, nil
}

var _ dsvc.Module = (*Module)(nil)

func (m *Module) Name() string               { return Name }
func (m *Module) Version() int               { return m.version }
func (m *Module) APIVersion() int            { return dsvc.APIVersion }
func (m *Module) Synch() dsvc.SynchType      { return dsvc.SynchLockService }
func (m *Module) prefix() string             { return Name + strconv.Itoa(m.version) + "_" }
func (m *Module) ownName(in string) bool     { return strings.HasPrefix(in, m.prefix()) }
func (m *Module) path(loc, in string) string { return filepath.Join(loc, fileName(in)) }

// Configure accepts only the empty configuration: files has no settings.
func (m *Module) Configure(config string) error {
	if config != "" {
		return dsvc.Errorf(dsvc.CodeModuleConfig, "files takes no configuration, got %q", config)
	}
	return nil
}

// LocToken is the location's absolute path with symlinks resolved
// (Solaris's realpath), so "/var/dhcp", "/var/dhcp/" and a symlink to it
// lock the same containers.
func (m *Module) LocToken(location string) (string, error) {
	abs, err := filepath.Abs(location)
	if err != nil {
		return "", &dsvc.Error{Code: dsvc.CodeBadPath, Detail: location, Err: err}
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		return real, nil
	}
	return abs, nil // missing: opening will say so
}

// sysErr maps an OS error to its DSVC code (syserr_to_dsvcerr).
func sysErr(err error) error {
	if err == nil {
		return nil
	}
	var e *dsvc.Error
	if errors.As(err, &e) {
		return err
	}
	c := dsvc.CodeInternal
	switch {
	case errors.Is(err, fs.ErrNotExist):
		c = dsvc.CodeNoTable
	case errors.Is(err, fs.ErrExist):
		c = dsvc.CodeTableExists
	case errors.Is(err, syscall.ENOMEM):
		c = dsvc.CodeNoMemory
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		c = dsvc.CodeNoResources
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		c = dsvc.CodeAccess
	case errors.Is(err, syscall.ENAMETOOLONG), errors.Is(err, syscall.ENOTDIR):
		c = dsvc.CodeBadPath
	}
	return &dsvc.Error{Code: c, Err: err}
}

// checkLocation: nil if location is a directory, else ErrNoLocation or
// ErrBadPath.
func checkLocation(location string) error {
	st, err := os.Stat(location)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return &dsvc.Error{Code: dsvc.CodeNoLocation, Detail: location}
	case err != nil:
		return sysErr(err)
	case !st.IsDir():
		return &dsvc.Error{Code: dsvc.CodeBadPath, Detail: location + " is not a directory"}
	}
	return nil
}

func (m *Module) Status(ctx context.Context, location string) error { return checkLocation(location) }

// MkLocation creates the directory (mode 0755, parents too).
func (m *Module) MkLocation(ctx context.Context, location string) error {
	if _, err := os.Stat(location); err == nil {
		return &dsvc.Error{Code: dsvc.CodeExists, Detail: location}
	}
	if err := os.MkdirAll(location, 0o755); err != nil {
		return sysErr(err)
	}
	return nil
}

var dnFileRE = regexp.MustCompile(`^files([0-9]{1,3})_(([0-9]{1,3}_){3}[0-9]{1,3})$`)

func (m *Module) list(location string, dt bool) ([]string, error) {
	if err := checkLocation(location); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(location)
	if err != nil {
		return nil, sysErr(err)
	}
	var out []string
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() {
			continue
		}
		if dt {
			if n == m.prefix()+"dhcptab" {
				out = append(out, n)
			}
			continue
		}
		sm := dnFileRE.FindStringSubmatch(n)
		if sm == nil || sm[1] != strconv.Itoa(m.version) {
			continue
		}
		out = append(out, m.prefix()+strings.ReplaceAll(sm[2], "_", "."))
	}
	return out, nil
}

func (m *Module) ListDT(ctx context.Context, location string) ([]string, error) {
	return m.list(location, true)
}

func (m *Module) ListDN(ctx context.Context, location string) ([]string, error) {
	return m.list(location, false)
}

func (m *Module) OpenDT(ctx context.Context, location, container string, f dsvc.OpenFlags) (dsvc.DTHandle, error) {
	t, err := m.open(location, container, netip.Prefix{}, f, false)
	if err != nil {
		return nil, err
	}
	return &dtTable{t}, nil
}

func (m *Module) OpenDN(ctx context.Context, location, container string, net netip.Prefix, f dsvc.OpenFlags) (dsvc.DNHandle, error) {
	t, err := m.open(location, container, net, f, true)
	if err != nil {
		return nil, err
	}
	return &dnTable{t}, nil
}

func (m *Module) open(location, container string, net netip.Prefix, f dsvc.OpenFlags, isDN bool) (*table, error) {
	if !m.ownName(container) {
		return nil, dsvc.Errorf(dsvc.CodeInval, "container %q is not a %s container", container, m.prefix())
	}
	if err := checkLocation(location); err != nil {
		return nil, err
	}
	t := &table{m: m, path: m.path(location, container), file: fileName(container), flags: f, isDN: isDN}
	if f&dsvc.Create != 0 {
		if isDN && !net.IsValid() {
			return nil, dsvc.Errorf(dsvc.CodeInval, "creating %s needs its prefix length", container)
		}
		t.net = net
		if err := createFile(t.path, header(m.version, t.file, t.net)); err != nil {
			return nil, err
		}
		return t, nil
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return nil, sysErr(err)
	}
	stored, err := checkHeader(data, t.file)
	if err != nil {
		return nil, err
	}
	if isDN {
		switch {
		case !stored.IsValid():
			t.net = net // a file written by hand without "# network": the caller's
		case net.Bits() >= 0 && stored != net:
			return nil, dsvc.Errorf(dsvc.CodeInval, "the container is %v, not %v", stored, net)
		default:
			t.net = stored
		}
	}
	return t, nil
}

// createFile makes path with content data atomically and exclusively: a
// temporary file is written and synced, then hard-linked to path (link
// fails if path exists), so no reader ever sees a half-written header.
func createFile(path string, data []byte) error {
	var rnd [6]byte
	rand.Read(rnd[:])
	tmp := fmt.Sprintf("%s.create-%s", path, hex.EncodeToString(rnd[:]))
	f, err := writeSynced(tmp, data, 0o644, nil)
	if err != nil {
		return err
	}
	f.Close()
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		return sysErr(err)
	}
	return syncDir(filepath.Dir(path))
}

func (m *Module) remove(location, container string) error {
	if !m.ownName(container) {
		return dsvc.Errorf(dsvc.CodeInval, "container %q is not a %s container", container, m.prefix())
	}
	if err := checkLocation(location); err != nil {
		return err
	}
	p := m.path(location, container)
	m.cache.drop(p)
	if err := os.Remove(p); err != nil {
		return sysErr(err)
	}
	os.Remove(p + ".new") // a crashed writer's leftover
	return syncDir(location)
}

func (m *Module) RemoveDT(ctx context.Context, location, container string) error {
	return m.remove(location, container)
}

func (m *Module) RemoveDN(ctx context.Context, location, container string) error {
	return m.remove(location, container)
}

// writeSynced writes data to path (truncating) and fsyncs it, and returns
// it still open; hook, if set, is called halfway and after the sync.
func writeSynced(path string, data []byte, mode fs.FileMode, hook func(string)) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return nil, sysErr(err)
	}
	half := len(data) / 2
	_, err = f.Write(data[:half])
	if err == nil && hook != nil {
		hook("write")
	}
	if err == nil {
		_, err = f.Write(data[half:])
	}
	if err == nil {
		err = f.Sync()
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, sysErr(err)
	}
	if hook != nil {
		hook("synced")
	}
	return f, nil
}

// replace atomically replaces path's content: write path.new, fsync,
// rename over path, fsync the directory. A crash leaves the old or the new
// file; a leftover path.new is overwritten by the next write (writers hold
// the container's exclusive lock, so it is never another's file in
// progress) and removed with the container. It returns the new file open
// (the caller closes it).
func (m *Module) replace(path string, data []byte) (*os.File, error) {
	mode := fs.FileMode(0o644)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp := path + ".new"
	f, err := writeSynced(tmp, data, mode, m.hook)
	if err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, path); err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, sysErr(err)
	}
	if m.hook != nil {
		m.hook("renamed")
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return sysErr(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return sysErr(err)
	}
	return nil
}
