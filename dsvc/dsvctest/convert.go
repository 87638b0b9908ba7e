package dsvctest

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/corralhq/corral/dsvc"
)

// snapshot is every record of a location.
type snapshot struct {
	dt  []dsvc.DTRecord
	dns map[string][]dsvc.DNRecord // by network prefix
}

func take(t testing.TB, s Setup, ds dsvc.Datastore) snapshot {
	ctx := ctxT(t)
	sn := snapshot{dns: map[string][]dsvc.DNRecord{}}
	dts, err := s.Registry.List(ctx, ds, dsvc.DHCPTab)
	must(t, err, "List")
	for range dts {
		h := open(t, s, ds, dsvc.DHCPTab, "dhcptab", dsvc.Read)
		sn.dt, err = h.LookupDT(ctx, false, 0, -1, nil)
		must(t, err, "LookupDT")
		h.Close()
	}
	nets, err := s.Registry.List(ctx, ds, dsvc.Network)
	must(t, err, "List")
	for _, n := range nets {
		h := open(t, s, ds, dsvc.Network, n, dsvc.Read)
		rs, err := h.LookupDN(ctx, false, 0, -1, nil)
		must(t, err, "LookupDN")
		sn.dns[h.Prefix().String()] = rs
		h.Close()
	}
	return sn
}

func sameSnap(t testing.TB, got, want snapshot, sigs bool, what string) {
	t.Helper()
	strip := func(sn snapshot) snapshot {
		if sigs {
			return sn
		}
		out := snapshot{dns: map[string][]dsvc.DNRecord{}}
		for _, r := range sn.dt {
			r.Sig = 0
			out.dt = append(out.dt, r)
		}
		for k, rs := range sn.dns {
			for _, r := range rs {
				r.Sig = 0
				out.dns[k] = append(out.dns[k], r)
			}
		}
		return out
	}
	got, want = strip(got), strip(want)
	sameDT(t, got.dt, want.dt, what+": dhcptab")
	if len(got.dns) != len(want.dns) {
		t.Fatalf("%s: %d networks, want %d", what, len(got.dns), len(want.dns))
	}
	for k, rs := range want.dns {
		sameDN(t, got.dns[k], rs, what+": "+k)
	}
}

// populate loads the spec data and a second, small network.
func populate(t testing.TB, s Setup, n int) dsvc.Datastore {
	ds, dt, dn, _, _ := load(t, s, n)
	dt.Close()
	dn.Close()
	h := open(t, s, ds, dsvc.Network, "192.168.7.0/28", crw)
	r := dsvc.DNRecord{CID: []byte{7}, CIP: netip.MustParseAddr("192.168.7.3"), SIP: specSIP1, Macro: "small"}
	must(t, h.AddDN(ctxT(t), &r), "Add")
	h.Close()
	return ds
}

func canImport(t testing.TB, s Setup, ds dsvc.Datastore) bool {
	h := open(t, s, ds, dsvc.Network, "10.0.0.0", dsvc.Read)
	defer h.Close()
	return h.CanImport()
}

func testUpgrade(t *testing.T, s Setup) {
	ctx := ctxT(t)
	ds0 := s.Datastore(t)
	var versions []int
	for _, m := range s.Registry.Modules() {
		if m.Name == ds0.Module || ds0.Module == "" && m.Name == dsvc.DefaultModule {
			versions = append(versions, m.Version)
		}
	}
	if len(versions) < 2 {
		t.Skip("one container version registered")
	}
	old, cur := versions[0], versions[len(versions)-1]
	ds := s.Datastore(t)
	ds.Version = old
	must(t, s.Registry.MkLocation(ctx, ds), "MkLocation")
	loadAt(t, s, ds)
	before := take(t, s, ds)
	curDS := ds
	curDS.Version = dsvc.CurrentVersion
	if names, _ := s.Registry.List(ctx, curDS, dsvc.Network); len(names) != 0 {
		t.Fatalf("version %d containers before the upgrade: %q", cur, names)
	}
	must(t, s.Registry.Upgrade(ctx, ds, dsvc.CurrentVersion), "Upgrade")
	after := take(t, s, curDS)
	sameSnap(t, after, before, true, "upgraded")
	h := open(t, s, curDS, dsvc.DHCPTab, "dhcptab", dsvc.Read)
	if h.Datastore().Version != cur {
		t.Fatalf("CurrentVersion opened version %d, want %d", h.Datastore().Version, cur)
	}
	// The old version is kept until removed.
	sameSnap(t, take(t, s, ds), before, true, "old version kept")
	wantCode(t, s.Registry.Upgrade(ctx, ds, dsvc.CurrentVersion), dsvc.CodeTableExists, "Upgrade twice")
	must(t, s.Registry.Remove(ctx, ds, dsvc.DHCPTab, "dhcptab"), "Remove old")
	sameSnap(t, take(t, s, curDS), before, true, "new version after removing the old")
	wantCode(t, s.Registry.Upgrade(ctx, curDS, cur), dsvc.CodeInval, "Upgrade to the same version")
}

func loadAt(t testing.TB, s Setup, ds dsvc.Datastore) {
	ctx := ctxT(t)
	dt := open(t, s, ds, dsvc.DHCPTab, "dhcptab", crw)
	dts := specDhcptab()
	for i := range dts {
		must(t, dt.AddDT(ctx, &dts[i]), "AddDT")
	}
	dn := open(t, s, ds, dsvc.Network, specNet.String(), crw)
	for i := range 200 {
		r := specRecord(i)
		must(t, dn.AddDN(ctx, &r), "AddDN")
		m := r
		m.Comment = "modified once"
		if i%5 == 0 {
			must(t, dn.ModifyDN(ctx, &r, &m), "ModifyDN") // signatures past counter 1
		}
	}
}

func testConvert(t *testing.T, s Setup) {
	ctx := ctxT(t)
	src := populate(t, s, 500)
	before := take(t, s, src)
	type dest struct {
		name string
		ds   func(testing.TB) dsvc.Datastore
	}
	dests := []dest{{"same module, another location", s.Datastore}}
	sh := open(t, s, src, dsvc.DHCPTab, "dhcptab", dsvc.Read)
	resolved := sh.Datastore()
	sh.Close()
	for _, m := range s.Registry.Modules() {
		if m.Name == resolved.Module && m.Version != resolved.Version {
			v := m.Version
			dests = append(dests, dest{"version", func(t testing.TB) dsvc.Datastore { d := s.Datastore(t); d.Version = v; return d }})
		}
		if p, ok := s.Peers[m.Name]; ok && m.Name != resolved.Module {
			dests = append(dests, dest{m.Name, p})
		}
	}
	for _, d := range dests {
		to := d.ds(t)
		last, total := -1, -1
		must(t, dsvc.Convert(ctx, src, to, s.Registry, func(done, tot int) { last, total = done, tot }), "Convert to "+d.name)
		if last != total || total != 15+10+500+1 {
			t.Fatalf("%s: progress ended at %d of %d", d.name, last, total)
		}
		got := take(t, s, to)
		sameSnap(t, got, before, canImport(t, s, to), "converted to "+d.name)
		sameSnap(t, take(t, s, src), before, true, "source after converting to "+d.name)
		// And back, to a fresh location of the module under test.
		back := s.Datastore(t)
		must(t, dsvc.Convert(ctx, to, back, s.Registry, nil), "Convert back from "+d.name)
		sameSnap(t, take(t, s, back), before, canImport(t, s, to) && canImport(t, s, back), "back from "+d.name)
	}
	wantCode(t, dsvc.Convert(ctx, src, src, s.Registry, nil), dsvc.CodeInval, "Convert onto itself")

	// A failure midway (the destination already has one of the networks):
	// the source is intact and what the conversion created is removed.
	to := fresh(t, s)
	h := open(t, s, to, dsvc.Network, "192.168.7.0/28", crw)
	pre := dsvc.DNRecord{CID: []byte{1}, CIP: netip.MustParseAddr("192.168.7.9"), SIP: specSIP2, Macro: "pre"}
	must(t, h.AddDN(ctx, &pre), "Add")
	h.Close()
	err := dsvc.Convert(ctx, src, to, s.Registry, nil)
	if !errors.Is(err, dsvc.ErrExists) {
		t.Fatalf("Convert onto an existing container: %v", err)
	}
	sameSnap(t, take(t, s, src), before, true, "source after a failed conversion")
	left := take(t, s, to)
	if len(left.dt) != 0 || len(left.dns) != 1 || len(left.dns["192.168.7.0/28"]) != 1 {
		t.Fatalf("destination after a failed conversion: %d dhcptab records, networks %v", len(left.dt), left.dns)
	}
}
