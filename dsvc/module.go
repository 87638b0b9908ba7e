package dsvc

import (
	"context"
	"net/netip"
)

// APIVersion is the Service Provider Layer version every module must
// report (DSVC_PUBLIC_VERSION).
const APIVersion = 1

// CurrentVersion, as Datastore.Version, opens the newest container version
// the registry has for the module (DSVC_CUR_CONVER).
const CurrentVersion = -1

// OpenFlags say how a container is opened.
type OpenFlags uint8

const (
	Create   OpenFlags = 0x01 // create it; it must not exist. Requires Write.
	Read     OpenFlags = 0x02 // lookups allowed
	Write    OpenFlags = 0x04 // add, modify, delete allowed
	NonBlock OpenFlags = 0x08 // never wait for a lock: ErrBusy at once
)

// SynchType says what synchronization a module needs from the framework.
type SynchType uint8

const (
	// SynchNone: the module serializes its own writes (a database, the
	// cluster log).
	SynchNone SynchType = iota
	// SynchLockService: the framework takes the per-container lock of
	// package dsvc/lock around every lookup (shared) and every add,
	// modify and delete (exclusive).
	SynchLockService
)

// Kind is a container's kind.
type Kind uint8

const (
	DHCPTab Kind = iota + 1 // the dhcptab container
	Network                 // a network container
)

// Module is a data-service module: the Service Provider Layer, one method
// per SPL function. The framework has validated every argument before it
// calls a method (records, queries, a network's address and prefix) and
// holds the lock the module's Synch asks for; a module still refuses what it
// cannot store. Locations are the module's own (a directory, a database
// URL, a cluster socket); Container names passed in are internal versioned
// names ("<Name()><Version()>_<admin name>"), which the module may encode
// further (e.g. dots to underscores in file names).
type Module interface {
	Name() string                  // e.g. "files", "binfiles", "cluster", "postgres"
	Version() int                  // the container format version it reads and writes, ≥ 1
	APIVersion() int               // must be APIVersion
	Synch() SynchType              // what the framework must lock for it
	Configure(config string) error // the datastore's module configuration; ErrModuleConfig if refused

	// LocToken returns the canonical form of a location, the same for every
	// spelling of it (for a directory: its absolute, symlink-free path);
	// locks are keyed by it.
	LocToken(location string) (string, error)
	Status(ctx context.Context, location string) error     // nil, or ErrNoLocation, ErrUnavailable, ...
	MkLocation(ctx context.Context, location string) error // ErrExists if it exists

	ListDT(ctx context.Context, location string) ([]string, error) // internal names of dhcptab containers
	OpenDT(ctx context.Context, location, container string, f OpenFlags) (DTHandle, error)
	RemoveDT(ctx context.Context, location, container string) error

	ListDN(ctx context.Context, location string) ([]string, error) // internal names of network containers
	OpenDN(ctx context.Context, location, container string, net netip.Prefix, f OpenFlags) (DNHandle, error)
	RemoveDN(ctx context.Context, location, container string) error
}

// DTHandle is an open dhcptab container of a module.
type DTHandle interface {
	// Lookup returns at most count records (count < 0: all) matching q
	// against target. With partial, records found before a failure are
	// returned with a nil error.
	Lookup(ctx context.Context, partial bool, q Query, count int, target *DTRecord) ([]DTRecord, error)
	Count(ctx context.Context, q Query, target *DTRecord) (int, error)
	// Add stores r with a new signature, written back into r; ErrExists if
	// its key and type are stored already.
	Add(ctx context.Context, r *DTRecord) error
	// Modify replaces the stored record orig names (by key and type, with
	// orig.Sig) by r, which gets NextSig(orig.Sig). ErrNoEnt if none,
	// ErrCollision if the stored signature differs, ErrExists if r renames
	// onto another stored record.
	Modify(ctx context.Context, orig, r *DTRecord) error
	// Delete removes the record r names; r.Sig 0 skips the signature check.
	Delete(ctx context.Context, r *DTRecord) error
	Close() error
}

// DNHandle is an open network container of a module; as DTHandle, records
// named by CIP.
type DNHandle interface {
	Lookup(ctx context.Context, partial bool, q Query, count int, target *DNRecord) ([]DNRecord, error)
	Count(ctx context.Context, q Query, target *DNRecord) (int, error)
	Add(ctx context.Context, r *DNRecord) error
	Modify(ctx context.Context, orig, r *DNRecord) error
	Delete(ctx context.Context, r *DNRecord) error
	Close() error
}

// Importer is implemented by handles that can store records with the
// signatures they carry (conversion keeps every signature). A module
// without it is converted into with Add, which gives new signatures.
type DTImporter interface {
	Import(ctx context.Context, rs []DTRecord) error
}

// DNImporter is DTImporter for network containers.
type DNImporter interface {
	Import(ctx context.Context, rs []DNRecord) error
}

// Datastore names where containers live (dhcpsvc.conf's RESOURCE, PATH,
// RESOURCE_CONFIG and CONVER).
type Datastore struct {
	Module   string // RESOURCE: the module's Name
	Location string // PATH
	Config   string // RESOURCE_CONFIG, passed to Configure
	Version  int    // CONVER; CurrentVersion for the newest registered
}

// LockKey names one container for the synchronization service: the same
// container however its location is spelled, each version on its own.
type LockKey struct {
	LocToken  string // Module.LocToken of the location
	Module    string
	Version   int
	Container string // admin name: "dhcptab", "10.0.0.0"
}

// Locker is the synchronization service (package dsvc/lock implements it
// across processes). Lookups take the lock shared, adds, modifies and
// deletes exclusive; writers are not starved by readers. With nonblock a
// lock that would wait fails at once with ErrBusy.
type Locker interface {
	Lock(ctx context.Context, key LockKey, exclusive, nonblock bool) (Unlocker, error)
}

// Unlocker releases one lock taken with Locker.Lock. A second Unlock is
// ErrSynch. A lock is also released when its holder process dies.
type Unlocker interface {
	Unlock() error
}
