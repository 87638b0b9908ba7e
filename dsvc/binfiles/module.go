package binfiles

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/corralhq/corral/dsvc"
)

// Name and Version of the module: containers are files named
// "binfiles1_dhcptab" and "binfiles1_10_0_0_0".
const (
	Name    = "binfiles"
	Version = 1
)

// Module is the binfiles module. Its zero value is not usable; call New.
// One Module may serve any number of locations and handles.
type Module struct {
	log *slog.Logger

	mu      sync.Mutex       // guards files and maxSize
	files   map[string]*file // by container path; entries live as long as m
	maxSize int              // Configure's maxsize; 0: no limit
}

// file is this process's state for one container file.
type file struct {
	path string
	// wsem admits one writer of this process at a time (capacity 1), so
	// that the goroutines of one process never meet on bbolt's flock,
	// whose wait polls every 50 ms and ignores the context.
	wsem chan struct{}

	mu   sync.Mutex // guards ro and refs
	ro   *bolt.DB   // the read-only open shared by this process's running lookups
	refs int        // lookups using ro; at 0 it is closed (its shared flock released)
}

var _ dsvc.Module = (*Module)(nil)

// New returns the module. log may be nil.
func New(log *slog.Logger) *Module {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Module{log: log.With("subsystem", "dsvc/binfiles"), files: map[string]*file{}}
}

func (m *Module) Name() string          { return Name }
func (m *Module) Version() int          { return Version }
func (m *Module) APIVersion() int       { return dsvc.APIVersion }
func (m *Module) Synch() dsvc.SynchType { return dsvc.SynchLockService }

// Configure takes "" or "maxsize=<bytes>": the largest a container file may
// grow; a write past it fails with ErrNoResources, as a full disk does.
func (m *Module) Configure(config string) error {
	config = strings.TrimSpace(config)
	if config == "" {
		return nil
	}
	v, ok := strings.CutPrefix(config, "maxsize=")
	n, err := strconv.Atoi(v)
	if !ok || err != nil || n < 0 {
		return dsvc.Errorf(dsvc.CodeModuleConfig, "binfiles: config %q: want maxsize=<bytes>", config)
	}
	m.mu.Lock()
	m.maxSize = n
	m.mu.Unlock()
	return nil
}

// LocToken is the absolute, symlink-free path of the location.
func (m *Module) LocToken(location string) (string, error) {
	if location == "" {
		return "", dsvc.Errorf(dsvc.CodeBadPath, "empty location")
	}
	abs, err := filepath.Abs(location)
	if err != nil {
		return "", &dsvc.Error{Code: dsvc.CodeBadPath, Err: err}
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", mapErr(err, dsvc.CodeNoLocation)
	}
	return real, nil
}

// Status checks that the location is a directory this process can use.
func (m *Module) Status(ctx context.Context, location string) error {
	if location == "" {
		return dsvc.Errorf(dsvc.CodeBadPath, "empty location")
	}
	fi, err := os.Stat(location)
	if err != nil {
		return mapErr(err, dsvc.CodeNoLocation)
	}
	if !fi.IsDir() {
		return dsvc.Errorf(dsvc.CodeNoLocation, "%s is not a directory", location)
	}
	if err := syscall.Access(location, 0x7); err != nil { // R_OK|W_OK|X_OK
		return mapErr(err, dsvc.CodeNoLocation)
	}
	return nil
}

// MkLocation creates the location directory (and its parents), 0755.
func (m *Module) MkLocation(ctx context.Context, location string) error {
	if location == "" {
		return dsvc.Errorf(dsvc.CodeBadPath, "empty location")
	}
	if _, err := os.Stat(location); err == nil {
		return dsvc.Errorf(dsvc.CodeExists, "location %s exists", location)
	}
	if err := os.MkdirAll(location, 0o755); err != nil {
		return mapErr(err, dsvc.CodeNoLocation)
	}
	return nil
}

// prefix is what every container file name of this module version starts with.
func (m *Module) prefix() string { return Name + strconv.Itoa(Version) + "_" }

// ListDT returns ["binfiles1_dhcptab"] if the location holds it, else none.
func (m *Module) ListDT(ctx context.Context, location string) ([]string, error) {
	names, err := m.list(location)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if n == m.prefix()+"dhcptab" {
			out = append(out, n)
		}
	}
	return out, nil
}

// ListDN returns the internal names of the network containers,
// "binfiles1_10.0.0.0".
func (m *Module) ListDN(ctx context.Context, location string) ([]string, error) {
	names, err := m.list(location)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		rest, ok := strings.CutPrefix(n, m.prefix())
		if !ok {
			continue
		}
		dotted := strings.ReplaceAll(rest, "_", ".")
		if a, err := netip.ParseAddr(dotted); err == nil && a.Is4() && a.String() == dotted {
			out = append(out, m.prefix()+dotted)
		}
	}
	return out, nil
}

// list returns the regular file names of the location. Temporary files of
// an unfinished create (".binfiles1_….tmp-*") are not containers; those
// left by a create that died are removed (removeStale).
func (m *Module) list(location string) ([]string, error) {
	if err := m.Status(context.Background(), location); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(location)
	if err != nil {
		return nil, mapErr(err, dsvc.CodeNoLocation)
	}
	m.removeStale(location, ents)
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// staleAfter is the age (since its last write) past which a create's
// temporary file belongs to a create that died: a create writes its file
// within a second or so (bbolt's open waits at most a second for its
// flock, then one transaction and a sync), so a live one is never
// this old.
const staleAfter = time.Minute

// removeStale deletes the temporary files of this module's unfinished
// creates (".<prefix>….tmp-*") in dir not written for staleAfter. Best
// effort: a file that cannot be removed is left for the next time.
func (m *Module) removeStale(dir string, ents []fs.DirEntry) {
	for _, e := range ents {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, "."+m.prefix()) || !strings.Contains(n, ".tmp-") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleAfter {
			if os.Remove(filepath.Join(dir, n)) == nil {
				m.log.Info("removed the temporary file of an unfinished create", "file", n)
			}
		}
	}
}

// containerPath checks an internal container name and returns its file:
// the name with dots as underscores. want is "dhcptab" for a dhcptab
// container, "" for a network one (then the name must end in a dotted
// IPv4 address, which is returned).
func (m *Module) containerPath(location, container string, dt bool) (string, netip.Addr, error) {
	rest, ok := strings.CutPrefix(container, m.prefix())
	var addr netip.Addr
	switch {
	case !ok:
		return "", addr, dsvc.Errorf(dsvc.CodeInval, "container %q is not a %s container", container, m.prefix())
	case dt && rest != "dhcptab":
		return "", addr, dsvc.Errorf(dsvc.CodeInval, "dhcptab container named %q", container)
	case !dt:
		a, err := netip.ParseAddr(rest)
		if err != nil || !a.Is4() || a.String() != rest {
			return "", addr, dsvc.Errorf(dsvc.CodeInval, "network container named %q", container)
		}
		addr = a
	}
	if location == "" {
		return "", addr, dsvc.Errorf(dsvc.CodeBadPath, "empty location")
	}
	return filepath.Join(location, strings.ReplaceAll(container, ".", "_")), addr, nil
}

func (m *Module) fileFor(path string) *file {
	m.mu.Lock()
	defer m.mu.Unlock()
	f := m.files[path]
	if f == nil {
		f = &file{path: path, wsem: make(chan struct{}, 1)}
		m.files[path] = f
	}
	return f
}

// openNoCreate is bbolt's OpenFile without O_CREATE: an operation on a
// container removed after its handle was opened fails with ErrNoTable and
// does not bring back an empty file.
func openNoCreate(name string, flag int, perm os.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag&^os.O_CREATE, perm)
}

func (m *Module) options(ctx context.Context, readOnly, nonblock bool) (*bolt.Options, error) {
	m.mu.Lock()
	max := m.maxSize
	m.mu.Unlock()
	o := &bolt.Options{ReadOnly: readOnly, OpenFile: openNoCreate, MaxSize: max, PageSize: pageSize}
	switch dl, ok := ctx.Deadline(); {
	case nonblock:
		o.Timeout = time.Nanosecond // bbolt tries the flock once
	case ok:
		if o.Timeout = time.Until(dl); o.Timeout <= 0 {
			return nil, ctxErr(ctx)
		}
	}
	return o, nil
}

// pageSize is fixed, not the host's, so a container file moves between
// hosts (and the golden file matches) whatever their page size.
const pageSize = 4096

// view runs fn in a read transaction on this process's shared read-only
// open of f.
func (m *Module) view(ctx context.Context, f *file, nonblock bool, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return ctxErr(ctx)
	}
	f.mu.Lock()
	if f.ro == nil {
		o, err := m.options(ctx, true, nonblock)
		if err == nil {
			f.ro, err = bolt.Open(f.path, 0o644, o)
		}
		if err != nil {
			f.mu.Unlock()
			return mapErr(err, dsvc.CodeNoTable)
		}
	}
	f.refs++
	db := f.ro
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.refs--; f.refs == 0 {
			if err := f.ro.Close(); err != nil {
				m.log.Warn("closing container", "path", f.path, "err", err)
			}
			f.ro = nil
		}
	}()
	return guard(func() error { return db.View(fn) })
}

// update runs fn in one write transaction: it commits (fsync) entirely or
// not at all.
func (m *Module) update(ctx context.Context, f *file, nonblock bool, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return ctxErr(ctx)
	}
	select {
	case f.wsem <- struct{}{}:
	default:
		if nonblock {
			return dsvc.Errorf(dsvc.CodeBusy, "another write of this process is in progress")
		}
		select {
		case f.wsem <- struct{}{}:
		case <-ctx.Done():
			return ctxErr(ctx)
		}
	}
	defer func() { <-f.wsem }()
	o, err := m.options(ctx, false, nonblock)
	if err != nil {
		return err
	}
	db, err := bolt.Open(f.path, 0o644, o)
	if err != nil {
		return mapErr(err, dsvc.CodeNoTable)
	}
	err = guard(func() error { return db.Update(fn) })
	if cerr := db.Close(); cerr != nil && err == nil {
		err = mapErr(cerr, dsvc.CodeInternal)
	}
	return err
}

// guard turns a panic of bbolt on a corrupt file into ErrInternal (bbolt
// rolls its transaction back on the way out).
func guard(fn func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = dsvc.Errorf(dsvc.CodeInternal, "corrupt container: %v", p)
		}
	}()
	if err := fn(); err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	return nil
}

// create makes a container file atomically: it is built under a temporary
// name and linked to its own, which fails if the name exists; a crash
// leaves at most a temporary file, never a half-made container.
func (m *Module) create(ctx context.Context, path string, md meta) error {
	dir, base := filepath.Split(path)
	if err := m.Status(ctx, dir); err != nil {
		return err
	}
	if _, err := os.Lstat(path); err == nil {
		return dsvc.Errorf(dsvc.CodeTableExists, "%s exists", base)
	}
	if ents, err := os.ReadDir(dir); err == nil {
		m.removeStale(dir, ents)
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return mapErr(err, dsvc.CodeNoLocation)
	}
	tmpPath := tmp.Name()
	defer os.Remove(tmpPath)
	if err := errors.Join(tmp.Chmod(0o644), tmp.Close()); err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	db, err := bolt.Open(tmpPath, 0o644, &bolt.Options{PageSize: pageSize, Timeout: time.Second})
	if err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	err = guard(func() error {
		return db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			if err := b.Put(keyMeta, encodeMeta(md)); err != nil {
				return err
			}
			names := [][]byte{bucketDT}
			if md.kind == kindNetwork {
				names = [][]byte{bucketCIP, bucketCID}
			}
			for _, n := range names {
				if _, err := tx.CreateBucket(n); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if cerr := db.Close(); err == nil && cerr != nil {
		err = mapErr(cerr, dsvc.CodeInternal)
	}
	if err != nil {
		return err
	}
	if err := os.Link(tmpPath, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return dsvc.Errorf(dsvc.CodeTableExists, "%s exists", base)
		}
		return mapErr(err, dsvc.CodeInternal)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return mapErr(err, dsvc.CodeInternal)
	}
	return nil
}

// remove unlinks a container file. A process with an operation running on
// it finishes that operation on the unlinked file; its next one fails with
// ErrNoTable.
func (m *Module) remove(path string) error {
	if err := os.Remove(path); err != nil {
		return mapErr(err, dsvc.CodeNoTable)
	}
	return syncDir(filepath.Dir(path))
}

// readMeta returns the container's meta from a read transaction.
func readMeta(tx *bolt.Tx) (meta, error) {
	b := tx.Bucket(bucketMeta)
	if b == nil {
		return meta{}, corrupt("no meta bucket")
	}
	return decodeMeta(b.Get(keyMeta))
}

func ctxErr(ctx context.Context) error {
	return &dsvc.Error{Code: dsvc.CodeBusy, Detail: "gave up waiting", Err: context.Cause(ctx)}
}

// mapErr maps an OS or bbolt error to a dsvc error; notExist is the code
// for a missing file (ErrNoTable for a container, ErrNoLocation for a
// directory).
func mapErr(err error, notExist dsvc.Code) error {
	var de *dsvc.Error
	switch {
	case errors.As(err, &de):
		return err
	case errors.Is(err, fs.ErrNotExist):
		return &dsvc.Error{Code: notExist, Err: err}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT), errors.Is(err, berrors.ErrMaxSizeReached):
		return &dsvc.Error{Code: dsvc.CodeNoResources, Err: err}
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return &dsvc.Error{Code: dsvc.CodeAccess, Err: err}
	case errors.Is(err, berrors.ErrTimeout):
		return &dsvc.Error{Code: dsvc.CodeBusy, Detail: "container file locked by another process", Err: err}
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ENAMETOOLONG):
		return &dsvc.Error{Code: dsvc.CodeInval, Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &dsvc.Error{Code: dsvc.CodeBusy, Detail: "gave up waiting", Err: err}
	}
	return &dsvc.Error{Code: dsvc.CodeInternal, Err: err}
}
