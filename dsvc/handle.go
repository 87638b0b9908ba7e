package dsvc

import (
	"context"
	"errors"
	"net/netip"
	"sync/atomic"
)

// DNPrefixer is implemented by network handles that know their
// container's network. A module that stores the network (files and
// binfiles do) lets an existing container be opened by its address alone
// ("10.0.0.0"): the framework passes OpenDN a prefix of unknown length
// (Bits() == -1, Addr() the network) and takes the length from Prefix.
// Linux has no netmasks database to ask instead.
type DNPrefixer interface {
	Prefix() netip.Prefix
}

// Handle is an open container. Its methods are those of its kind: the DT
// ones on the dhcptab, the DN ones on a network; the others fail with
// ErrInval. A Handle may be used by many goroutines at once; Close it after
// they are done.
type Handle struct {
	mod    Module
	ds     Datastore // resolved: Module and Version concrete
	kind   Kind
	name   string       // admin name
	net    netip.Prefix // Network only
	flags  OpenFlags
	key    LockKey
	locker Locker // nil: the module synchronizes itself
	dt     DTHandle
	dn     DNHandle
	closed atomic.Bool
}

// Open opens the container name of kind at ds: "dhcptab", or a network
// "10.0.0.0/24" (the prefix length may be left out when the container
// exists and its module stores it; Create needs it). Flags: Create (the
// container must not exist: ErrTableExists; requires Write, else ErrInval),
// Read, Write, NonBlock. A missing container is ErrNoTable.
func (r *Registry) Open(ctx context.Context, ds Datastore, kind Kind, name string, f OpenFlags) (*Handle, error) {
	const op = "open"
	if f&^(Create|Read|Write|NonBlock) != 0 {
		return nil, &Error{Code: CodeInval, Op: op, Container: name, Detail: "unknown open flags " + flagsString(f)}
	}
	if f&Create != 0 && f&Write == 0 {
		return nil, &Error{Code: CodeInval, Op: op, Container: name, Detail: "Create without Write"}
	}
	admin, bits, err := adminName(kind, name)
	if err != nil {
		return nil, decorate(op, name, err)
	}
	m, ds, err := r.resolve(op, ds)
	if err != nil {
		return nil, decorate(op, admin, err)
	}
	h := &Handle{mod: m, ds: ds, kind: kind, name: admin, flags: f}
	if m.Synch() == SynchLockService {
		if r.opts.Locker == nil {
			return nil, &Error{Code: CodeNoLockMgr, Op: op, Container: admin,
				Detail: "module " + ds.Module + " needs the synchronization service and the registry has no Locker"}
		}
		h.locker = r.opts.Locker
	}
	tok, err := m.LocToken(ds.Location)
	if err != nil {
		return nil, decorate(op, admin, err)
	}
	h.key = LockKey{LocToken: tok, Module: ds.Module, Version: ds.Version, Container: admin}
	in := internalName(ds, admin)
	if kind == DHCPTab {
		h.dt, err = m.OpenDT(ctx, ds.Location, in, f)
		if err != nil {
			return nil, decorate(op, admin, err)
		}
		return h, nil
	}
	if bits < 0 && f&Create != 0 {
		return nil, &Error{Code: CodeInval, Op: op, Container: admin, Detail: "creating a network container needs its prefix length, e.g. " + admin + "/24"}
	}
	addr, _ := netip.ParseAddr(admin)
	want := netip.PrefixFrom(addr, bits) // Bits() -1 when not given
	h.dn, err = m.OpenDN(ctx, ds.Location, in, want, f)
	if err != nil {
		return nil, decorate(op, admin, err)
	}
	h.net = want
	if p, ok := h.dn.(DNPrefixer); ok && p.Prefix().IsValid() {
		got := p.Prefix()
		if bits >= 0 && got != want {
			h.dn.Close()
			return nil, &Error{Code: CodeInval, Op: op, Container: admin, Detail: "the container is " + got.String() + ", not " + want.String()}
		}
		h.net = got
	}
	if !h.net.IsValid() {
		h.dn.Close()
		return nil, &Error{Code: CodeInval, Op: op, Container: admin, Detail: "module " + ds.Module + " does not know the prefix length of " + admin + ": give it"}
	}
	return h, nil
}

// Kind is the container's kind.
func (h *Handle) Kind() Kind { return h.kind }

// Name is the container's admin name ("dhcptab", "10.0.0.0").
func (h *Handle) Name() string { return h.name }

// Prefix is a network container's network (invalid for the dhcptab).
func (h *Handle) Prefix() netip.Prefix { return h.net }

// Datastore is the datastore the handle was opened on, with its module and
// version resolved.
func (h *Handle) Datastore() Datastore { return h.ds }

// CanImport reports whether the module keeps signatures on Import.
func (h *Handle) CanImport() bool {
	if h.kind == DHCPTab {
		_, ok := h.dt.(DTImporter)
		return ok
	}
	_, ok := h.dn.(DNImporter)
	return ok
}

// Close closes the handle; a second Close is ErrInval.
func (h *Handle) Close() error {
	if h.closed.Swap(true) {
		return &Error{Code: CodeInval, Op: "close", Container: h.name, Detail: "handle already closed"}
	}
	var err error
	if h.dt != nil {
		err = h.dt.Close()
	} else {
		err = h.dn.Close()
	}
	return decorate("close", h.name, err)
}

// check does the checks every operation starts with: open, the right
// kind, the access the handle was opened with.
func (h *Handle) check(op string, kind Kind, need OpenFlags) error {
	if h.closed.Load() {
		return &Error{Code: CodeInval, Op: op, Container: h.name, Detail: "handle closed"}
	}
	if h.kind != kind {
		what := "the dhcptab"
		if h.kind == Network {
			what = "a network container"
		}
		return &Error{Code: CodeInval, Op: op, Container: h.name, Detail: "wrong record kind for " + what}
	}
	if h.flags&need == 0 {
		mode := "Read"
		if need == Write {
			mode = "Write"
		}
		return &Error{Code: CodeAccess, Op: op, Container: h.name, Detail: "handle not opened with " + mode}
	}
	return nil
}

// locked runs fn under the container's lock (shared unless exclusive) if
// the module asks for the synchronization service.
func (h *Handle) locked(ctx context.Context, op string, exclusive bool, fn func() error) error {
	if h.locker == nil {
		return decorate(op, h.name, fn())
	}
	u, err := h.locker.Lock(ctx, h.key, exclusive, h.flags&NonBlock != 0)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			err = &Error{Code: CodeSynch, Err: err}
		}
		return decorate(op, h.name, err)
	}
	ferr := fn()
	uerr := u.Unlock()
	if ferr != nil {
		return decorate(op, h.name, ferr)
	}
	if uerr != nil {
		var e *Error
		if !errors.As(uerr, &e) {
			uerr = &Error{Code: CodeSynch, Err: uerr}
		}
		return decorate(op, h.name, uerr)
	}
	return nil
}

// LookupDT returns at most count dhcptab records (count < 0: all; 0: none,
// at once) matching q against target (nil allowed for the zero query).
// With partial, records found before a failure come back with no error.
func (h *Handle) LookupDT(ctx context.Context, partial bool, q Query, count int, target *DTRecord) ([]DTRecord, error) {
	const op = "lookup"
	if err := h.check(op, DHCPTab, Read); err != nil {
		return nil, err
	}
	if err := checkQuery(q, DTQAll, target != nil); err != nil {
		return nil, decorate(op, h.name, err)
	}
	if count == 0 {
		return nil, nil
	}
	if target == nil {
		target = &DTRecord{}
	}
	var out []DTRecord
	err := h.locked(ctx, op, false, func() (err error) {
		out, err = h.dt.Lookup(ctx, partial, q, count, target)
		return err
	})
	return out, err
}

// CountDT counts the dhcptab records matching q against target.
func (h *Handle) CountDT(ctx context.Context, q Query, target *DTRecord) (int, error) {
	const op = "count"
	if err := h.check(op, DHCPTab, Read); err != nil {
		return 0, err
	}
	if err := checkQuery(q, DTQAll, target != nil); err != nil {
		return 0, decorate(op, h.name, err)
	}
	if target == nil {
		target = &DTRecord{}
	}
	var n int
	err := h.locked(ctx, op, false, func() (err error) {
		n, err = h.dt.Count(ctx, q, target)
		return err
	})
	return n, err
}

// AddDT adds r; its new signature is written into r.Sig. ErrExists if a
// record of its key and type is stored.
func (h *Handle) AddDT(ctx context.Context, r *DTRecord) error {
	const op = "add"
	if err := h.check(op, DHCPTab, Write); err != nil {
		return err
	}
	if err := ValidateDT(r, true); err != nil {
		return decorate(op, h.name, err)
	}
	return h.locked(ctx, op, true, func() error { return h.dt.Add(ctx, r) })
}

// ModifyDT replaces the record orig names (key, type, Sig) by r:
// ErrCollision if orig.Sig is stale, ErrNoEnt if none, ErrExists if r
// renames onto another record. r.Sig gets the new signature.
func (h *Handle) ModifyDT(ctx context.Context, orig, r *DTRecord) error {
	const op = "modify"
	if err := h.check(op, DHCPTab, Write); err != nil {
		return err
	}
	if err := ValidateDT(orig, false); err != nil {
		return decorate(op, h.name, err)
	}
	if err := ValidateDT(r, true); err != nil {
		return decorate(op, h.name, err)
	}
	return h.locked(ctx, op, true, func() error { return h.dt.Modify(ctx, orig, r) })
}

// DeleteDT deletes the record r names; r.Sig 0 skips the signature check.
func (h *Handle) DeleteDT(ctx context.Context, r *DTRecord) error {
	const op = "delete"
	if err := h.check(op, DHCPTab, Write); err != nil {
		return err
	}
	if err := ValidateDT(r, false); err != nil {
		return decorate(op, h.name, err)
	}
	return h.locked(ctx, op, true, func() error { return h.dt.Delete(ctx, r) })
}

// ImportDT stores rs with the signatures they carry (conversion); a record
// with Sig 0 gets a new one. ErrUnsupported if the module cannot.
func (h *Handle) ImportDT(ctx context.Context, rs []DTRecord) error {
	const op = "import"
	if err := h.check(op, DHCPTab, Write); err != nil {
		return err
	}
	imp, ok := h.dt.(DTImporter)
	if !ok {
		return &Error{Code: CodeUnsupported, Op: op, Container: h.name, Detail: "module " + h.ds.Module + " cannot import"}
	}
	for i := range rs {
		if err := ValidateDT(&rs[i], true); err != nil {
			return decorate(op, h.name, err)
		}
	}
	return h.locked(ctx, op, true, func() error { return imp.Import(ctx, rs) })
}

// LookupDN is LookupDT for a network container.
func (h *Handle) LookupDN(ctx context.Context, partial bool, q Query, count int, target *DNRecord) ([]DNRecord, error) {
	const op = "lookup"
	if err := h.check(op, Network, Read); err != nil {
		return nil, err
	}
	if err := checkQuery(q, DNQAll, target != nil); err != nil {
		return nil, decorate(op, h.name, err)
	}
	if count == 0 {
		return nil, nil
	}
	if target == nil {
		target = &DNRecord{}
	}
	var out []DNRecord
	err := h.locked(ctx, op, false, func() (err error) {
		out, err = h.dn.Lookup(ctx, partial, q, count, target)
		return err
	})
	return out, err
}

// CountDN is CountDT for a network container.
func (h *Handle) CountDN(ctx context.Context, q Query, target *DNRecord) (int, error) {
	const op = "count"
	if err := h.check(op, Network, Read); err != nil {
		return 0, err
	}
	if err := checkQuery(q, DNQAll, target != nil); err != nil {
		return 0, decorate(op, h.name, err)
	}
	if target == nil {
		target = &DNRecord{}
	}
	var n int
	err := h.locked(ctx, op, false, func() (err error) {
		n, err = h.dn.Count(ctx, q, target)
		return err
	})
	return n, err
}

// AddDN is AddDT for a network record (named by its CIP, which must be in
// the container's network).
func (h *Handle) AddDN(ctx context.Context, r *DNRecord) error {
	const op = "add"
	if err := h.check(op, Network, Write); err != nil {
		return err
	}
	if err := ValidateDN(r, h.net, true); err != nil {
		return decorate(op, h.name, err)
	}
	return h.locked(ctx, op, true, func() error { return h.dn.Add(ctx, r) })
}

// ModifyDN is ModifyDT for a network record.
func (h *Handle) ModifyDN(ctx context.Context, orig, r *DNRecord) error {
	const op = "modify"
	if err := h.check(op, Network, Write); err != nil {
		return err
	}
	if err := ValidateDN(orig, h.net, false); err != nil {
		return decorate(op, h.name, err)
	}
	if err := ValidateDN(r, h.net, true); err != nil {
		return decorate(op, h.name, err)
	}
	return h.locked(ctx, op, true, func() error { return h.dn.Modify(ctx, orig, r) })
}

// DeleteDN is DeleteDT for a network record.
func (h *Handle) DeleteDN(ctx context.Context, r *DNRecord) error {
	const op = "delete"
	if err := h.check(op, Network, Write); err != nil {
		return err
	}
	if err := ValidateDN(r, h.net, false); err != nil {
		return decorate(op, h.name, err)
	}
	return h.locked(ctx, op, true, func() error { return h.dn.Delete(ctx, r) })
}

// ImportDN is ImportDT for network records.
func (h *Handle) ImportDN(ctx context.Context, rs []DNRecord) error {
	const op = "import"
	if err := h.check(op, Network, Write); err != nil {
		return err
	}
	imp, ok := h.dn.(DNImporter)
	if !ok {
		return &Error{Code: CodeUnsupported, Op: op, Container: h.name, Detail: "module " + h.ds.Module + " cannot import"}
	}
	for i := range rs {
		if err := ValidateDN(&rs[i], h.net, true); err != nil {
			return decorate(op, h.name, err)
		}
	}
	return h.locked(ctx, op, true, func() error { return imp.Import(ctx, rs) })
}
