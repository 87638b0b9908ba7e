package dsvctest

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
)

// Setup says how to run the suite against one module.
type Setup struct {
	// Registry holds the module under test (and any other modules and
	// versions to convert between). Child processes build it the same way.
	Registry *dsvc.Registry
	// Datastore returns a datastore of the module under test at a fresh
	// location that does not exist yet (the suite makes it).
	Datastore func(t testing.TB) dsvc.Datastore
	// Locker is the Registry's Locker, used to hold a container's lock in
	// the NonBlock check; nil for a SynchNone module (the check is skipped).
	Locker dsvc.Locker
	// MultiProcess says the Registry's Locker works across processes: it
	// enables the stress with processes and the kill -9 check.
	MultiProcess bool
	// Peers returns fresh datastores of other modules (by module name), as
	// Datastore, for the conversions; modules without one are skipped.
	Peers map[string]func(t testing.TB) dsvc.Datastore
	// SoakCapacityBits is the prefix length of the capacity check when
	// CORRAL_SOAK is set; 0 means 16. The short form always uses /24.
	SoakCapacityBits int
}

// Soak reports whether the long forms run (CORRAL_SOAK set).
func Soak() bool { return os.Getenv("CORRAL_SOAK") != "" }

// Run runs the conformance suite. Called in a helper process started by
// the suite itself, it does that process's part and returns.
func Run(t *testing.T, s Setup) {
	if role := os.Getenv(envRole); role != "" {
		runChild(t, s, role)
		return
	}
	if s.Registry == nil || s.Datastore == nil {
		t.Fatal("dsvctest: Setup needs Registry and Datastore")
	}
	t.Run("ErrorTable", testErrorTable)
	t.Run("StatusAndLocation", func(t *testing.T) { testStatus(t, s) })
	t.Run("List", func(t *testing.T) { testList(t, s) })
	t.Run("OpenModes", func(t *testing.T) { testOpenModes(t, s) })
	t.Run("LoadAndQuery", func(t *testing.T) { testLoadAndQuery(t, s) })
	t.Run("ModifyDelete", func(t *testing.T) { testModifyDelete(t, s) })
	t.Run("HandleModes", func(t *testing.T) { testHandleModes(t, s) })
	t.Run("NonBlock", func(t *testing.T) { testNonBlock(t, s) })
	t.Run("DeleteRecreate", func(t *testing.T) { testDeleteRecreate(t, s) })
	t.Run("Validation", func(t *testing.T) { testValidation(t, s) })
	t.Run("StressGoroutines", func(t *testing.T) { testStressGoroutines(t, s) })
	t.Run("StressProcesses", func(t *testing.T) { testStressProcesses(t, s) })
	t.Run("KillWriter", func(t *testing.T) { testKillWriter(t, s) })
	t.Run("Capacity", func(t *testing.T) { testCapacity(t, s) })
	t.Run("Upgrade", func(t *testing.T) { testUpgrade(t, s) })
	t.Run("Convert", func(t *testing.T) { testConvert(t, s) })
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t testing.TB, err error, c dsvc.Code, what string) {
	t.Helper()
	if got := dsvc.CodeOf(err); got != c {
		t.Fatalf("%s: got %v, want %v", what, err, c)
	}
	if err == nil {
		return
	}
	var e *dsvc.Error
	if !errors.As(err, &e) || e.Op == "" {
		t.Fatalf("%s: %v is not a *dsvc.Error with Op set", what, err)
	}
}

func must(t testing.TB, err error, what string) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// fresh returns a new datastore of the module under test, its location
// made.
func fresh(t testing.TB, s Setup) dsvc.Datastore {
	ds := s.Datastore(t)
	must(t, s.Registry.MkLocation(ctxT(t), ds), "MkLocation")
	return ds
}

func open(t testing.TB, s Setup, ds dsvc.Datastore, kind dsvc.Kind, name string, f dsvc.OpenFlags) *dsvc.Handle {
	t.Helper()
	h, err := s.Registry.Open(ctxT(t), ds, kind, name, f)
	must(t, err, "Open "+name)
	t.Cleanup(func() { h.Close() })
	return h
}

const rw = dsvc.Read | dsvc.Write
const crw = dsvc.Create | dsvc.Read | dsvc.Write

func testErrorTable(t *testing.T) {
	for c := dsvc.Code(0); c < 26; c++ {
		if m := c.Message(); m == "" || m == "<unknown error>" {
			t.Errorf("code %d has no message", c)
		}
	}
	if m := dsvc.Code(26).Message(); m != "<unknown error>" {
		t.Errorf("code 26: %q", m)
	}
	if !errors.Is(dsvc.ErrNoTable, dsvc.ErrNoEnt) || !errors.Is(dsvc.ErrTableExists, dsvc.ErrExists) {
		t.Error("aliases NoTable→NoEnt, TableExists→Exists")
	}
	if errors.Is(dsvc.ErrNoEnt, dsvc.ErrNoTable) || errors.Is(dsvc.ErrCollision, dsvc.ErrExists) {
		t.Error("aliases are one way only")
	}
}

func testStatus(t *testing.T, s Setup) {
	ctx := ctxT(t)
	ds := s.Datastore(t)
	wantCode(t, s.Registry.Status(ctx, ds), dsvc.CodeNoLocation, "Status of a missing location")
	must(t, s.Registry.MkLocation(ctx, ds), "MkLocation")
	wantCode(t, s.Registry.MkLocation(ctx, ds), dsvc.CodeExists, "MkLocation again")
	must(t, s.Registry.Status(ctx, ds), "Status")
	for _, mi := range s.Registry.Modules() {
		if mi.Version < 1 {
			t.Errorf("module %v", mi)
		}
	}
}

func testList(t *testing.T, s Setup) {
	ctx := ctxT(t)
	ds := s.Datastore(t)
	_, err := s.Registry.List(ctx, ds, dsvc.Network)
	wantCode(t, err, dsvc.CodeNoLocation, "List of a missing location")
	must(t, s.Registry.MkLocation(ctx, ds), "MkLocation")
	for _, k := range []dsvc.Kind{dsvc.DHCPTab, dsvc.Network} {
		names, err := s.Registry.List(ctx, ds, k)
		if err != nil || len(names) != 0 {
			t.Fatalf("List of an empty location: %q, %v", names, err)
		}
	}
	bad := ds
	bad.Location = ""
	_, err = s.Registry.List(ctx, bad, dsvc.Network)
	wantCode(t, err, dsvc.CodeBadPath, "List with no location")
}

func testOpenModes(t *testing.T, s Setup) {
	ctx := ctxT(t)
	r := s.Registry
	ds := fresh(t, s)
	for _, c := range []struct {
		kind       dsvc.Kind
		create, as string
	}{{dsvc.DHCPTab, "dhcptab", "dhcptab"}, {dsvc.Network, "10.0.0.0/24", "10.0.0.0"}} {
		_, err := r.Open(ctx, ds, c.kind, c.as, rw)
		wantCode(t, err, dsvc.CodeNoTable, "Open of a missing container")
		if !errors.Is(err, dsvc.ErrNoEnt) {
			t.Fatal("ErrNoTable is not ErrNoEnt")
		}
		_, err = r.Open(ctx, ds, c.kind, c.create, dsvc.Create|dsvc.Read)
		wantCode(t, err, dsvc.CodeInval, "Create without Write")
		h, err := r.Open(ctx, ds, c.kind, c.create, crw)
		must(t, err, "Open Create")
		_, err = r.Open(ctx, ds, c.kind, c.create, crw)
		wantCode(t, err, dsvc.CodeTableExists, "Create again")
		if !errors.Is(err, dsvc.ErrExists) {
			t.Fatal("ErrTableExists is not ErrExists")
		}
		h2 := open(t, s, ds, c.kind, c.as, dsvc.Read)
		if c.kind == dsvc.Network && h2.Prefix() != netip.MustParsePrefix("10.0.0.0/24") {
			t.Fatalf("opened by address: prefix %v", h2.Prefix())
		}
		if c.kind == dsvc.Network {
			_, err = r.Open(ctx, ds, c.kind, "10.0.0.0/16", dsvc.Read)
			wantCode(t, err, dsvc.CodeInval, "Open with another prefix length")
		}
		names, err := r.List(ctx, ds, c.kind)
		if err != nil || !slices.Equal(names, []string{c.as}) {
			t.Fatalf("List: %q, %v", names, err)
		}
		must(t, h.Close(), "Close")
		must(t, h2.Close(), "Close")
		must(t, r.Remove(ctx, ds, c.kind, c.as), "Remove")
		wantCode(t, r.Remove(ctx, ds, c.kind, c.as), dsvc.CodeNoTable, "Remove again")
		names, _ = r.List(ctx, ds, c.kind)
		if len(names) != 0 {
			t.Fatalf("List after Remove: %q", names)
		}
	}
	_, err := r.Open(ctx, ds, dsvc.Network, "10.0.0.0", crw)
	wantCode(t, err, dsvc.CodeInval, "Create without a prefix length")
	_, err = r.Open(ctx, ds, dsvc.DHCPTab, "dhcptab", dsvc.Read|0x40)
	wantCode(t, err, dsvc.CodeInval, "unknown open flag")
	missing := s.Datastore(t)
	_, err = r.Open(ctx, missing, dsvc.DHCPTab, "dhcptab", crw)
	wantCode(t, err, dsvc.CodeNoLocation, "Open at a missing location")
}

// load fills a fresh location with the spec's dhcptab and n network
// records: the first 100 with Add (checking their signatures), the rest
// with Import where the module has it.
func load(t testing.TB, s Setup, n int) (dsvc.Datastore, *dsvc.Handle, *dsvc.Handle, []dsvc.DTRecord, []dsvc.DNRecord) {
	ctx := ctxT(t)
	ds := fresh(t, s)
	dt := open(t, s, ds, dsvc.DHCPTab, "dhcptab", crw)
	dts := specDhcptab()
	for i := range dts {
		must(t, dt.AddDT(ctx, &dts[i]), "AddDT "+dts[i].Key)
		checkNewSig(t, dts[i].Sig)
	}
	dn := open(t, s, ds, dsvc.Network, specNet.String(), crw)
	dns := make([]dsvc.DNRecord, n)
	for i := range dns {
		dns[i] = specRecord(i)
	}
	bulk := 0
	if dn.CanImport() {
		bulk = 100
	}
	for i := range dns {
		if bulk > 0 && i == bulk {
			must(t, dn.ImportDN(ctx, dns[bulk:]), "ImportDN")
			break
		}
		must(t, dn.AddDN(ctx, &dns[i]), "AddDN")
		checkNewSig(t, dns[i].Sig)
	}
	return ds, dt, dn, dts, dns
}

func checkNewSig(t testing.TB, sig uint64) {
	t.Helper()
	if sig&(1<<48-1) != 1 {
		t.Fatalf("new record's signature %#x: counter is not 1", sig)
	}
}

func sortDT(rs []dsvc.DTRecord) {
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Key != rs[j].Key {
			return rs[i].Key < rs[j].Key
		}
		return rs[i].Type < rs[j].Type
	})
}

func sortDN(rs []dsvc.DNRecord) {
	sort.Slice(rs, func(i, j int) bool { return rs[i].CIP.Less(rs[j].CIP) })
}

func sameDT(t testing.TB, got, want []dsvc.DTRecord, what string) {
	t.Helper()
	got, want = slices.Clone(got), slices.Clone(want)
	sortDT(got)
	sortDT(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %d records, want %d\n got %+v\nwant %+v", what, len(got), len(want), head(got), head(want))
	}
}

func head[T any](s []T) []T { return s[:min(len(s), 5)] }

func dnEqual(a, b dsvc.DNRecord) bool {
	return bytes.Equal(a.CID, b.CID) && a.Flags == b.Flags && a.CIP == b.CIP && a.SIP == b.SIP &&
		a.Lease == b.Lease && a.Macro == b.Macro && a.Comment == b.Comment && a.Sig == b.Sig
}

func sameDN(t testing.TB, got, want []dsvc.DNRecord, what string) {
	t.Helper()
	got, want = slices.Clone(got), slices.Clone(want)
	sortDN(got)
	sortDN(want)
	if !slices.EqualFunc(got, want, dnEqual) {
		for i := range min(len(got), len(want)) {
			if !dnEqual(got[i], want[i]) {
				t.Fatalf("%s: record %d\n got %+v\nwant %+v", what, i, got[i], want[i])
			}
		}
		t.Fatalf("%s: %d records, want %d", what, len(got), len(want))
	}
}

// records is the network's size in LoadAndQuery (the spec's ~3000).
func records() int { return 3000 }

func testLoadAndQuery(t *testing.T, s Setup) {
	ctx := ctxT(t)
	n := records()
	_, dt, dn, dts, dns := load(t, s, n)
	all, err := dt.LookupDT(ctx, false, 0, -1, nil)
	must(t, err, "LookupDT all")
	sameDT(t, all, dts, "dhcptab")
	alln, err := dn.LookupDN(ctx, false, 0, -1, nil)
	must(t, err, "LookupDN all")
	sameDN(t, alln, dns, "network")

	countDT := func(q dsvc.Query, tg dsvc.DTRecord, want int, what string) {
		t.Helper()
		rs, err := dt.LookupDT(ctx, false, q, -1, &tg)
		must(t, err, what)
		if len(rs) != want {
			t.Fatalf("%s: %d records, want %d", what, len(rs), want)
		}
		c, err := dt.CountDT(ctx, q, &tg)
		if err != nil || c != want {
			t.Fatalf("Count %s: %d, %v; want %d", what, c, err, want)
		}
	}
	countDT(dsvc.Query(0).Eq(dsvc.DTQType), dsvc.DTRecord{Type: 's'}, 15, "symbols")
	countDT(dsvc.Query(0).Eq(dsvc.DTQType), dsvc.DTRecord{Type: 'm'}, 10, "macros")
	countDT(dsvc.Query(0).Eq(dsvc.DTQKey), dsvc.DTRecord{Key: "atlantic"}, 1, "by key")
	countDT(dsvc.Query(0).Eq(dsvc.DTQKey), dsvc.DTRecord{Key: "Atlantic"}, 0, "keys are case-sensitive")
	countDT(dsvc.Query(0).Eq(dsvc.DTQKey).Neq(dsvc.DTQType), dsvc.DTRecord{Key: "atlantic", Type: 'm'}, 0, "key, not type")
	countDT(dsvc.Query(0).Neq(dsvc.DTQKey), dsvc.DTRecord{Key: "atlantic"}, 24, "not key")

	countDN := func(q dsvc.Query, tg dsvc.DNRecord, want int, what string) {
		t.Helper()
		rs, err := dn.LookupDN(ctx, false, q, -1, &tg)
		must(t, err, what)
		if len(rs) != want {
			t.Fatalf("%s: %d records, want %d", what, len(rs), want)
		}
		for _, r := range rs {
			if !dsvc.MatchDN(q, &r, &tg) {
				t.Fatalf("%s: %+v does not match", what, r)
			}
		}
		c, err := dn.CountDN(ctx, q, &tg)
		if err != nil || c != want {
			t.Fatalf("Count %s: %d, %v; want %d", what, c, err, want)
		}
	}
	q := dsvc.Query(0)
	rec := specRecord(101)
	countDN(q.Eq(dsvc.DNQCIP), rec, 1, "by CIP")
	countDN(q.Eq(dsvc.DNQCIP), dsvc.DNRecord{CIP: addrAdd(specNet.Addr(), n+5)}, 0, "by an absent CIP")
	countDN(q.Neq(dsvc.DNQCIP), rec, n-1, "not CIP")
	countDN(q.Eq(dsvc.DNQMacro), dsvc.DNRecord{Macro: "atlantic"}, n, "by macro")
	countDN(q.Eq(dsvc.DNQCID), dsvc.DNRecord{CID: sharedCID}, nSharedCID, "by a shared CID")
	countDN(q.Eq(dsvc.DNQSIP), dsvc.DNRecord{SIP: specSIP1}, (n+1)/2, "by SIP")
	countDN(q.Neq(dsvc.DNQSIP), dsvc.DNRecord{SIP: specSIP1}, n/2, "not SIP")
	countDN(q.Eq(dsvc.DNQLease), dsvc.DNRecord{Lease: dsvc.LeasePermanent}, (n+2)/3, "by lease")
	countDN(q.Neq(dsvc.DNQLease), dsvc.DNRecord{Lease: dsvc.LeasePermanent}, n-(n+2)/3, "not lease")
	for _, f := range []struct {
		q dsvc.Query
		f dsvc.DNFlags
	}{{dsvc.DNQFAutomatic, dsvc.DNAutomatic}, {dsvc.DNQFManual, dsvc.DNManual}, {dsvc.DNQFUnusable, dsvc.DNUnusable}, {dsvc.DNQFBootpOnly, dsvc.DNBootpOnly}} {
		set := 0
		for i := range n {
			if specRecord(i).Flags&f.f != 0 {
				set++
			}
		}
		countDN(q.Eq(f.q), dsvc.DNRecord{Flags: f.f}, set, "flag set")
		countDN(q.Neq(f.q), dsvc.DNRecord{Flags: f.f}, n-set, "flag clear")
		countDN(q.Eq(f.q), dsvc.DNRecord{}, n-set, "flag equal to clear")
	}
	// DYNAMIC is 0: Eq compares no bit and selects all, Neq none.
	countDN(q.Eq(dsvc.DNQFDynamic), dsvc.DNRecord{}, n, "DYNAMIC eq")
	countDN(q.Neq(dsvc.DNQFDynamic), dsvc.DNRecord{}, 0, "DYNAMIC neq")
	// in.dhcpd's DISCOVER: same cid, not BOOTP-only.
	bootp := 0
	for i := range nSharedCID {
		if specRecord(i).Flags&dsvc.DNBootpOnly == 0 {
			bootp++
		}
	}
	countDN(q.Eq(dsvc.DNQCID).Neq(dsvc.DNQFBootpOnly), dsvc.DNRecord{CID: sharedCID, Flags: dsvc.DNBootpOnly}, bootp, "cid and not bootp")
	// Free-candidate query: owned by SIP1, none of bootp, manual, unusable.
	free := 0
	for i := range n {
		r := specRecord(i)
		if r.SIP == specSIP1 && r.Flags&(dsvc.DNBootpOnly|dsvc.DNManual|dsvc.DNUnusable) == 0 {
			free++
		}
	}
	countDN(q.Eq(dsvc.DNQSIP|dsvc.DNQFBootpOnly|dsvc.DNQFManual|dsvc.DNQFUnusable), dsvc.DNRecord{SIP: specSIP1}, free, "free candidates")

	rs, err := dn.LookupDN(ctx, false, q.Eq(dsvc.DNQMacro), 7, &dsvc.DNRecord{Macro: "atlantic"})
	if err != nil || len(rs) != 7 {
		t.Fatalf("count 7: %d, %v", len(rs), err)
	}
	rs, err = dn.LookupDN(ctx, false, 0, 0, nil)
	if err != nil || len(rs) != 0 {
		t.Fatalf("count 0: %d, %v", len(rs), err)
	}
	_, err = dn.LookupDN(ctx, false, 1<<10, -1, &rec)
	wantCode(t, err, dsvc.CodeInval, "query bit outside DNQAll")
	_, err = dn.LookupDN(ctx, false, 1<<26, -1, &rec)
	wantCode(t, err, dsvc.CodeInval, "query bit outside DNQAll, high half")
	_, err = dt.LookupDT(ctx, false, 0x4, -1, &dts[0])
	wantCode(t, err, dsvc.CodeInval, "query bit outside DTQAll")
	_, err = dn.CountDN(ctx, q.Eq(dsvc.DNQCIP), nil)
	wantCode(t, err, dsvc.CodeInval, "a query without a target")

	// Duplicates.
	dup := dts[8] // SbootRS
	wantCode(t, dt.AddDT(ctx, &dup), dsvc.CodeExists, "Add SbootRS again")
	dup = dts[22] // the network macro
	wantCode(t, dt.AddDT(ctx, &dup), dsvc.CodeExists, "Add the network macro again")
	same := dts[8]
	same.Type = dsvc.DTMacro // same key, other type: a different record
	must(t, dt.AddDT(ctx, &same), "Add a macro named as a symbol")
	dupn := specRecord(3)
	wantCode(t, dn.AddDN(ctx, &dupn), dsvc.CodeExists, "Add an existing CIP")
}
