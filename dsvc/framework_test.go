package dsvc_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/dsvctest"
	"github.com/corralhq/corral/dsvc/files"
)

func mustCode(t *testing.T, err error, c dsvc.Code) {
	t.Helper()
	if dsvc.CodeOf(err) != c {
		t.Fatalf("got %v, want code %v", err, c)
	}
	var e *dsvc.Error
	if c != dsvc.CodeSuccess && !errors.As(err, &e) {
		t.Fatalf("%v is not a *dsvc.Error", err)
	}
}

type fakeModule struct {
	dsvc.Module
	name    string
	version int
	api     int
}

func (m fakeModule) Name() string    { return m.name }
func (m fakeModule) Version() int    { return m.version }
func (m fakeModule) APIVersion() int { return m.api }
func (m fakeModule) Synch() dsvc.SynchType {
	return dsvc.SynchNone
}

func TestNewRegistry(t *testing.T) {
	v2, _ := files.NewVersion(2)
	r, err := dsvc.NewRegistry(dsvc.Options{}, files.New(), v2)
	if err != nil {
		t.Fatal(err)
	}
	want := []dsvc.ModuleInfo{{"files", 1, dsvc.SynchLockService}, {"files", 2, dsvc.SynchLockService}}
	if got := r.Modules(); !slices.Equal(got, want) {
		t.Fatalf("Modules() = %v, want %v", got, want)
	}
	_, err = dsvc.NewRegistry(dsvc.Options{}, files.New(), files.New())
	mustCode(t, err, dsvc.CodeModuleErr)
	_, err = dsvc.NewRegistry(dsvc.Options{}, fakeModule{name: "x", version: 1, api: 2})
	mustCode(t, err, dsvc.CodeModuleVersion)
	for _, bad := range []fakeModule{{name: "", version: 1, api: 1}, {name: "ds2", version: 1, api: 1}, {name: "a_b", version: 1, api: 1}, {name: "ok", version: 0, api: 1}} {
		_, err = dsvc.NewRegistry(dsvc.Options{}, bad)
		mustCode(t, err, dsvc.CodeModuleErr)
	}
}

// recLocker records the locks the framework takes.
type recLocker struct {
	mu  sync.Mutex // guards ops
	ops []string
	dsvctest.MemLocker
}

func (l *recLocker) Lock(ctx context.Context, k dsvc.LockKey, excl, nb bool) (dsvc.Unlocker, error) {
	l.mu.Lock()
	m := "shared"
	if excl {
		m = "exclusive"
	}
	l.ops = append(l.ops, k.Container+" "+m)
	l.mu.Unlock()
	return l.MemLocker.Lock(ctx, k, excl, nb)
}

func (l *recLocker) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	o := l.ops
	l.ops = nil
	return o
}

func TestFrameworkLocksNamesAndAccess(t *testing.T) {
	ctx := context.Background()
	lk := &recLocker{}
	r, err := dsvc.NewRegistry(dsvc.Options{Locker: lk}, files.New())
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "loc")
	ds := dsvc.Datastore{Location: dir, Version: dsvc.CurrentVersion} // Module "" = files
	if err := r.MkLocation(ctx, ds); err != nil {
		t.Fatal(err)
	}
	h, err := r.Open(ctx, ds, dsvc.Network, "10.0.0.0/24", dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "files1_10_0_0_0")); err != nil {
		t.Fatalf("internal name: %v", err)
	}
	rec := dsvc.DNRecord{CID: []byte{1, 2}, CIP: netip.MustParseAddr("10.0.0.5"), SIP: netip.MustParseAddr("10.0.0.1"), Macro: "m"}
	if err := h.AddDN(ctx, &rec); err != nil {
		t.Fatal(err)
	}
	if _, err := h.LookupDN(ctx, false, 0, -1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.CountDN(ctx, 0, nil); err != nil {
		t.Fatal(err)
	}
	n := rec
	n.Macro = "n"
	if err := h.ModifyDN(ctx, &rec, &n); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteDN(ctx, &n); err != nil {
		t.Fatal(err)
	}
	// Invalid input is refused before any lock.
	bad := rec
	bad.CIP = netip.MustParseAddr("10.0.1.5")
	mustCode(t, h.AddDN(ctx, &bad), dsvc.CodeInval)
	_, err = h.LookupDN(ctx, false, 1<<12, -1, &rec)
	mustCode(t, err, dsvc.CodeInval)
	h.Close()
	if _, err := r.List(ctx, ds, dsvc.Network); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.0.0.0 exclusive", "10.0.0.0 shared", "10.0.0.0 shared", "10.0.0.0 exclusive", "10.0.0.0 exclusive"}
	if got := lk.take(); !slices.Equal(got, want) {
		t.Fatalf("locks %q, want %q (none for open, close, list, invalid input)", got, want)
	}

	// A read-only handle refuses writes, a write-only one lookups.
	ro, err := r.Open(ctx, ds, dsvc.Network, "10.0.0.0", dsvc.Read)
	if err != nil {
		t.Fatal(err)
	}
	if ro.Prefix() != netip.MustParsePrefix("10.0.0.0/24") {
		t.Fatalf("prefix from the container: %v", ro.Prefix())
	}
	err = ro.AddDN(ctx, &rec)
	mustCode(t, err, dsvc.CodeAccess)
	var e *dsvc.Error
	errors.As(err, &e)
	if e.Op != "add" || e.Container != "10.0.0.0" || e.Detail == "" {
		t.Fatalf("error fields: %+v", e)
	}
	ro.Close()
	wo, err := r.Open(ctx, ds, dsvc.Network, "10.0.0.0", dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	_, err = wo.LookupDN(ctx, false, 0, -1, nil)
	mustCode(t, err, dsvc.CodeAccess)
	_, err = wo.LookupDT(ctx, false, 0, -1, nil)
	mustCode(t, err, dsvc.CodeInval) // wrong kind
	mustCode(t, wo.Close(), dsvc.CodeSuccess)
	mustCode(t, wo.Close(), dsvc.CodeInval)

	// No Locker for a module that needs one.
	r2, _ := dsvc.NewRegistry(dsvc.Options{}, files.New())
	_, err = r2.Open(ctx, ds, dsvc.Network, "10.0.0.0", dsvc.Read)
	mustCode(t, err, dsvc.CodeNoLockMgr)
	// Datastore errors.
	_, err = r.List(ctx, dsvc.Datastore{Module: "nis", Location: dir}, dsvc.Network)
	mustCode(t, err, dsvc.CodeBadResource)
	_, err = r.List(ctx, dsvc.Datastore{Location: dir, Version: 7}, dsvc.Network)
	mustCode(t, err, dsvc.CodeModuleLoad)
	_, err = r.List(ctx, dsvc.Datastore{Location: dir, Version: -2}, dsvc.Network)
	mustCode(t, err, dsvc.CodeBadConver)
	_, err = r.List(ctx, dsvc.Datastore{Version: 1}, dsvc.Network)
	mustCode(t, err, dsvc.CodeBadPath)
	_, err = r.List(ctx, dsvc.Datastore{Location: dir, Version: 1, Config: "x=1"}, dsvc.Network)
	mustCode(t, err, dsvc.CodeModuleConfig)
}

func TestParseNetwork(t *testing.T) {
	for _, c := range []struct {
		in   string
		bits int
		ok   bool
	}{
		{"10.0.0.0", -1, true}, {"10.0.0.0/24", 24, true}, {"172.21.174.0/23", 23, true},
		{"10.0.0.256", 0, false}, {"255.255.255.255", 0, false}, {"10.0.0.1/24", 0, false},
		{"10.0.0.0/33", 0, false}, {"10.0.0.0/0", 0, false}, {"10.0.0.0/024", 0, false},
		{"::1", 0, false}, {"10.0.0", 0, false}, {"010.0.0.0", 0, false}, {"dhcptab", 0, false},
	} {
		_, bits, err := dsvc.ParseNetwork(c.in)
		if (err == nil) != c.ok || c.ok && bits != c.bits {
			t.Errorf("ParseNetwork(%q) = %d, %v", c.in, bits, err)
		}
		if err != nil {
			mustCode(t, err, dsvc.CodeInval)
		}
	}
}
