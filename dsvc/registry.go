package dsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
)

// DefaultModule is the module a Datastore with an empty Module names: the
// files module, the one every installation has (Solaris's SUNWfiles).
const DefaultModule = "files"

// Options configure a Registry.
type Options struct {
	// Locker is the synchronization service for modules with
	// SynchLockService; nil makes opening a container of such a module
	// fail with ErrNoLockMgr.
	Locker Locker
	Log    *slog.Logger // nil: discard
}

// ModuleInfo describes one registered module version (`corral dsvc
// modules`).
type ModuleInfo struct {
	Name    string
	Version int
	Synch   SynchType
}

type modKey struct {
	name    string
	version int
}

// Registry is the caller's set of modules, one value per (name, container
// version). It is immutable after NewRegistry and safe for concurrent use.
type Registry struct {
	opts   Options
	log    *slog.Logger
	mods   map[modKey]Module
	newest map[string]int // module name → highest registered version
	infos  []ModuleInfo   // sorted by name, then version
}

// NewRegistry builds a registry of mods. A module with an invalid name or a
// version < 1, or two with the same name and version, is ErrModule; a
// module whose APIVersion is not APIVersion is ErrModuleVersion.
func NewRegistry(opts Options, mods ...Module) (*Registry, error) {
	r := &Registry{
		opts:   opts,
		log:    opts.Log,
		mods:   make(map[modKey]Module),
		newest: make(map[string]int),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("subsystem", "dsvc")
	for _, m := range mods {
		if m == nil {
			return nil, &Error{Code: CodeModuleErr, Op: "register", Detail: "nil module"}
		}
		name, v := m.Name(), m.Version()
		if !validModuleName(name) {
			return nil, &Error{Code: CodeModuleErr, Op: "register",
				Detail: fmt.Sprintf("module name %q: want letters and digits, starting with a letter and not ending with a digit", name)}
		}
		if v < 1 {
			return nil, &Error{Code: CodeModuleErr, Op: "register", Detail: fmt.Sprintf("module %s: container version %d (want ≥ 1)", name, v)}
		}
		if av := m.APIVersion(); av != APIVersion {
			return nil, &Error{Code: CodeModuleVersion, Op: "register", Detail: fmt.Sprintf("module %s%d: API version %d, want %d", name, v, av, APIVersion)}
		}
		if s := m.Synch(); s != SynchNone && s != SynchLockService {
			return nil, &Error{Code: CodeModuleErr, Op: "register", Detail: fmt.Sprintf("module %s%d: unknown synchronization type %d", name, v, s)}
		}
		k := modKey{name, v}
		if _, dup := r.mods[k]; dup {
			return nil, &Error{Code: CodeModuleErr, Op: "register", Detail: fmt.Sprintf("module %s version %d registered twice", name, v)}
		}
		r.mods[k] = m
		if v > r.newest[name] {
			r.newest[name] = v
		}
		r.infos = append(r.infos, ModuleInfo{Name: name, Version: v, Synch: m.Synch()})
	}
	sort.Slice(r.infos, func(i, j int) bool {
		a, b := r.infos[i], r.infos[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Version < b.Version
	})
	return r, nil
}

// validModuleName keeps "<name><version>_" unambiguous: a name ending in a
// digit would run into the version.
func validModuleName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	last := s[len(s)-1]
	return !(last >= '0' && last <= '9')
}

// Modules lists the registered module versions.
func (r *Registry) Modules() []ModuleInfo {
	return append([]ModuleInfo(nil), r.infos...)
}

// resolve finds the module of ds, fills in the concrete version and
// configures the module with ds.Config (Solaris configures a module on
// every load, that is on every framework call).
func (r *Registry) resolve(op string, ds Datastore) (Module, Datastore, error) {
	if ds.Module == "" {
		ds.Module = DefaultModule
	}
	newest, ok := r.newest[ds.Module]
	if !ok {
		return nil, ds, &Error{Code: CodeBadResource, Op: op, Detail: fmt.Sprintf("no module %q registered", ds.Module)}
	}
	switch {
	case ds.Version == CurrentVersion:
		ds.Version = newest
	case ds.Version < 1:
		return nil, ds, &Error{Code: CodeBadConver, Op: op, Detail: fmt.Sprintf("container version %d", ds.Version)}
	}
	m, ok := r.mods[modKey{ds.Module, ds.Version}]
	if !ok {
		return nil, ds, &Error{Code: CodeModuleLoad, Op: op, Detail: fmt.Sprintf("module %s has no container version %d registered", ds.Module, ds.Version)}
	}
	if ds.Location == "" {
		return nil, ds, &Error{Code: CodeBadPath, Op: op, Detail: "empty location"}
	}
	if err := m.Configure(ds.Config); err != nil {
		e := &Error{Code: CodeModuleConfig, Op: op, Detail: fmt.Sprintf("module %s%d refused its configuration", ds.Module, ds.Version), Err: err}
		return nil, ds, e
	}
	return m, ds, nil
}

// internalName is the module's name for an admin container name
// ("files1_dhcptab", "files1_10.0.0.0").
func internalName(ds Datastore, admin string) string {
	return fmt.Sprintf("%s%d_%s", ds.Module, ds.Version, admin)
}

// decorate makes err an *Error of the operation op on container: an *Error
// keeps its code (copied, so a module may return a sentinel), anything else
// becomes ErrInternal wrapping it.
func decorate(op, container string, err error) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		c := *e
		if c.Op == "" {
			c.Op = op
		}
		if c.Container == "" {
			c.Container = container
		}
		if c.Detail == "" && error(e) != err {
			c.Detail = err.Error()
		}
		return &c
	}
	return &Error{Code: CodeInternal, Op: op, Container: container, Err: err}
}

// List returns the admin names of the containers of kind at ds's location
// and version, sorted; an empty location gives none and no error.
func (r *Registry) List(ctx context.Context, ds Datastore, kind Kind) ([]string, error) {
	const op = "list"
	m, ds, err := r.resolve(op, ds)
	if err != nil {
		return nil, err
	}
	var names []string
	switch kind {
	case DHCPTab:
		names, err = m.ListDT(ctx, ds.Location)
	case Network:
		names, err = m.ListDN(ctx, ds.Location)
	default:
		return nil, &Error{Code: CodeInval, Op: op, Detail: fmt.Sprintf("container kind %d", kind)}
	}
	if err != nil {
		return nil, decorate(op, "", err)
	}
	prefix := internalName(ds, "")
	var out []string
	for _, n := range names {
		admin, ok := strings.CutPrefix(n, prefix)
		if !ok {
			continue // another module's or version's container
		}
		switch kind {
		case DHCPTab:
			if admin != "dhcptab" {
				continue
			}
		case Network:
			if _, _, err := ParseNetwork(admin); err != nil {
				continue
			}
		}
		out = append(out, admin)
	}
	sort.Strings(out)
	return out, nil
}

// Remove removes a container. It takes no lock (as Solaris): the caller
// makes sure no handle of it is open.
func (r *Registry) Remove(ctx context.Context, ds Datastore, kind Kind, name string) error {
	const op = "remove"
	m, ds, err := r.resolve(op, ds)
	if err != nil {
		return decorate(op, name, err)
	}
	admin, _, err := adminName(kind, name)
	if err != nil {
		return decorate(op, name, err)
	}
	in := internalName(ds, admin)
	if kind == DHCPTab {
		err = m.RemoveDT(ctx, ds.Location, in)
	} else {
		err = m.RemoveDN(ctx, ds.Location, in)
	}
	return decorate(op, admin, err)
}

// Status checks the module and ds's location: nil, or ErrNoLocation,
// ErrUnavailable, ...
func (r *Registry) Status(ctx context.Context, ds Datastore) error {
	const op = "status"
	m, ds, err := r.resolve(op, ds)
	if err != nil {
		return err
	}
	return decorate(op, "", m.Status(ctx, ds.Location))
}

// MkLocation creates ds's location; ErrExists if it exists.
func (r *Registry) MkLocation(ctx context.Context, ds Datastore) error {
	const op = "mklocation"
	m, ds, err := r.resolve(op, ds)
	if err != nil {
		return err
	}
	return decorate(op, "", m.MkLocation(ctx, ds.Location))
}

// LockKey returns the key the framework locks a container with, for tools
// and tests that must hold a container's lock themselves. SynchNone
// modules have keys too; the framework just never locks them.
func (r *Registry) LockKey(ds Datastore, kind Kind, name string) (LockKey, error) {
	const op = "lockkey"
	m, ds, err := r.resolve(op, ds)
	if err != nil {
		return LockKey{}, err
	}
	admin, _, err := adminName(kind, name)
	if err != nil {
		return LockKey{}, decorate(op, name, err)
	}
	tok, err := m.LocToken(ds.Location)
	if err != nil {
		return LockKey{}, decorate(op, admin, err)
	}
	return LockKey{LocToken: tok, Module: ds.Module, Version: ds.Version, Container: admin}, nil
}
