package dsvctest

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/corralhq/corral/dsvc"
)

func findDT(t testing.TB, h *dsvc.Handle, key string, typ dsvc.DTType) (dsvc.DTRecord, bool) {
	t.Helper()
	rs, err := h.LookupDT(ctxT(t), false, dsvc.Query(0).Eq(dsvc.DTQKey|dsvc.DTQType), -1, &dsvc.DTRecord{Key: key, Type: typ})
	must(t, err, "LookupDT "+key)
	if len(rs) > 1 {
		t.Fatalf("%d records of key %q", len(rs), key)
	}
	if len(rs) == 0 {
		return dsvc.DTRecord{}, false
	}
	return rs[0], true
}

func findDN(t testing.TB, h *dsvc.Handle, cip netip.Addr) (dsvc.DNRecord, bool) {
	t.Helper()
	rs, err := h.LookupDN(ctxT(t), false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: cip})
	must(t, err, "LookupDN "+cip.String())
	if len(rs) > 1 {
		t.Fatalf("%d records of %v", len(rs), cip)
	}
	if len(rs) == 0 {
		return dsvc.DNRecord{}, false
	}
	return rs[0], true
}

func testModifyDelete(t *testing.T, s Setup) {
	ctx := ctxT(t)
	_, dt, dn, _, _ := load(t, s, 300)

	// Rename Sterm → sTERM: keys are case-sensitive, so a new key.
	st, _ := findDT(t, dt, "Sterm", 's')
	nr := st
	nr.Key = "sTERM"
	must(t, dt.ModifyDT(ctx, &st, &nr), "rename Sterm")
	if nr.Sig != dsvc.NextSig(st.Sig) {
		t.Fatalf("signature after modify %#x, want %#x", nr.Sig, dsvc.NextSig(st.Sig))
	}
	if _, ok := findDT(t, dt, "Sterm", 's'); ok {
		t.Fatal("Sterm still there")
	}
	if got, ok := findDT(t, dt, "sTERM", 's'); !ok || got != nr {
		t.Fatalf("sTERM: %+v", got)
	}
	// Stale signature: collision, nothing written.
	wantCode(t, dt.ModifyDT(ctx, &st, &dsvc.DTRecord{Key: "Sterm2", Type: 's', Value: "x"}), dsvc.CodeNoEnt, "modify the old name")
	stale := nr
	stale.Sig = st.Sig
	mod := nr
	mod.Value = "changed"
	wantCode(t, dt.ModifyDT(ctx, &stale, &mod), dsvc.CodeCollision, "stale signature")
	if got, _ := findDT(t, dt, "sTERM", 's'); got != nr {
		t.Fatalf("after a collision: %+v, want %+v", got, nr)
	}
	// Change a macro's value.
	at, _ := findDT(t, dt, "atlantic", 'm')
	at2 := at
	at2.Value = ":Include=Locale:LeaseTim=3600:"
	must(t, dt.ModifyDT(ctx, &at, &at2), "modify atlantic")
	if got, _ := findDT(t, dt, "atlantic", 'm'); got != at2 {
		t.Fatalf("atlantic: %+v", got)
	}
	// Rename onto an existing key: exists.
	on := at2
	on.Key = "Locale"
	wantCode(t, dt.ModifyDT(ctx, &at2, &on), dsvc.CodeExists, "rename onto Locale")
	// Delete: stale sig collides, sig 0 is unconditional, unknown NoEnt.
	wantCode(t, dt.DeleteDT(ctx, &at), dsvc.CodeCollision, "delete with a stale signature")
	must(t, dt.DeleteDT(ctx, &at2), "delete with the signature")
	wantCode(t, dt.DeleteDT(ctx, &at2), dsvc.CodeNoEnt, "delete again")
	must(t, dt.DeleteDT(ctx, &dsvc.DTRecord{Key: "Locale", Type: 'm'}), "delete with signature 0")
	if _, ok := findDT(t, dt, "Locale", 'm'); ok {
		t.Fatal("Locale still there")
	}

	// Network: change lease and flags, then every field (a new CIP).
	r, _ := findDN(t, dn, addrAdd(specNet.Addr(), 11))
	r2 := r
	r2.Lease, r2.Flags = 1800000000, dsvc.DNManual|dsvc.DNBootpOnly
	must(t, dn.ModifyDN(ctx, &r, &r2), "modify lease and flags")
	if got, _ := findDN(t, dn, r.CIP); !dnEqual(got, r2) || r2.Sig != dsvc.NextSig(r.Sig) {
		t.Fatalf("after modify: %+v, want %+v", got, r2)
	}
	r3 := dsvc.DNRecord{CID: []byte{9, 8, 7}, Flags: dsvc.DNUnusable, CIP: addrAdd(specNet.Addr(), 2000), SIP: netip.MustParseAddr("10.0.0.9"), Lease: 5, Macro: "other", Comment: "moved"}
	must(t, dn.ModifyDN(ctx, &r2, &r3), "modify every field")
	if _, ok := findDN(t, dn, r.CIP); ok {
		t.Fatal("old CIP still there")
	}
	if got, ok := findDN(t, dn, r3.CIP); !ok || !dnEqual(got, r3) || r3.Sig != dsvc.NextSig(r2.Sig) {
		t.Fatalf("moved record: %+v, want %+v", got, r3)
	}
	onto := r3
	onto.CIP = addrAdd(specNet.Addr(), 12)
	wantCode(t, dn.ModifyDN(ctx, &r3, &onto), dsvc.CodeExists, "move onto an existing CIP")
	wantCode(t, dn.ModifyDN(ctx, &r2, &r2), dsvc.CodeNoEnt, "modify a moved record")
	st3 := r3
	st3.Sig++
	wantCode(t, dn.ModifyDN(ctx, &st3, &r3), dsvc.CodeCollision, "modify with a stale signature")
	wantCode(t, dn.DeleteDN(ctx, &st3), dsvc.CodeCollision, "delete with a stale signature")
	must(t, dn.DeleteDN(ctx, &r3), "delete")
	wantCode(t, dn.DeleteDN(ctx, &r3), dsvc.CodeNoEnt, "delete again")
	must(t, dn.DeleteDN(ctx, &dsvc.DNRecord{CIP: addrAdd(specNet.Addr(), 12)}), "delete with signature 0")
	if c, _ := dn.CountDN(ctx, 0, nil); c != 298 {
		t.Fatalf("%d records left, want 298", c)
	}
}

func testHandleModes(t *testing.T, s Setup) {
	ctx := ctxT(t)
	ds, _, _, dts, _ := load(t, s, 10)
	ro := open(t, s, ds, dsvc.Network, "10.0.0.0", dsvc.Read)
	rec, _ := findDN(t, ro, addrAdd(specNet.Addr(), 1))
	wantCode(t, ro.AddDN(ctx, &dsvc.DNRecord{CID: []byte{1}, CIP: addrAdd(specNet.Addr(), 50), SIP: specSIP1}), dsvc.CodeAccess, "Add on a Read handle")
	wantCode(t, ro.ModifyDN(ctx, &rec, &rec), dsvc.CodeAccess, "Modify on a Read handle")
	wantCode(t, ro.DeleteDN(ctx, &rec), dsvc.CodeAccess, "Delete on a Read handle")
	rodt := open(t, s, ds, dsvc.DHCPTab, "dhcptab", dsvc.Read)
	wantCode(t, rodt.DeleteDT(ctx, &dts[0]), dsvc.CodeAccess, "DeleteDT on a Read handle")
	wo := open(t, s, ds, dsvc.Network, "10.0.0.0", dsvc.Write)
	_, err := wo.LookupDN(ctx, false, 0, -1, nil)
	wantCode(t, err, dsvc.CodeAccess, "Lookup on a Write handle")
	_, err = wo.CountDN(ctx, 0, nil)
	wantCode(t, err, dsvc.CodeAccess, "Count on a Write handle")
	must(t, wo.DeleteDN(ctx, &rec), "Delete on a Write handle")
	must(t, wo.Close(), "Close")
	wantCode(t, wo.Close(), dsvc.CodeInval, "second Close")
	_, err = wo.LookupDN(ctx, false, 0, -1, nil)
	wantCode(t, err, dsvc.CodeInval, "use after Close")
}

func testNonBlock(t *testing.T, s Setup) {
	if s.Locker == nil {
		t.Skip("module needs no lock service")
	}
	ctx := ctxT(t)
	ds, _, _, _, _ := load(t, s, 10)
	nb := open(t, s, ds, dsvc.Network, "10.0.0.0", rw|dsvc.NonBlock)
	rec, _ := findDN(t, nb, addrAdd(specNet.Addr(), 2))
	key, err := s.Registry.LockKey(nb.Datastore(), dsvc.Network, "10.0.0.0")
	must(t, err, "LockKey")
	u, err := s.Locker.Lock(ctx, key, true, false)
	must(t, err, "hold the write lock")
	_, err = nb.LookupDN(ctx, false, 0, -1, nil)
	wantCode(t, err, dsvc.CodeBusy, "Lookup while locked")
	_, err = nb.CountDN(ctx, 0, nil)
	wantCode(t, err, dsvc.CodeBusy, "Count while locked")
	nr := specRecord(200)
	wantCode(t, nb.AddDN(ctx, &nr), dsvc.CodeBusy, "Add while locked")
	wantCode(t, nb.ModifyDN(ctx, &rec, &rec), dsvc.CodeBusy, "Modify while locked")
	wantCode(t, nb.DeleteDN(ctx, &rec), dsvc.CodeBusy, "Delete while locked")
	must(t, u.Unlock(), "Unlock")
	u, err = s.Locker.Lock(ctx, key, false, false)
	must(t, err, "hold a read lock")
	_, err = nb.LookupDN(ctx, false, 0, -1, nil)
	must(t, err, "Lookup beside a reader")
	wantCode(t, nb.AddDN(ctx, &nr), dsvc.CodeBusy, "Add beside a reader")
	must(t, u.Unlock(), "Unlock")
	must(t, nb.AddDN(ctx, &nr), "Add once released")
	must(t, nb.ModifyDN(ctx, &rec, &rec), "Modify once released")
	must(t, nb.DeleteDN(ctx, &rec), "Delete once released")
}

// testDeleteRecreate is the seed's scenario: A adds, B looks up, A deletes
// and adds a record of the same key, B's modify must collide. The
// signatures' random 16-bit generations make it a collision unless the two
// generations happen to be equal (1 in 65536), which is logged, not failed.
func testDeleteRecreate(t *testing.T, s Setup) {
	ctx := ctxT(t)
	ds := fresh(t, s)
	a := open(t, s, ds, dsvc.Network, "10.0.0.0/24", crw)
	b := open(t, s, ds, dsvc.Network, "10.0.0.0", rw)
	adt := open(t, s, ds, dsvc.DHCPTab, "dhcptab", crw)
	bdt := open(t, s, ds, dsvc.DHCPTab, "dhcptab", rw)
	cip := netip.MustParseAddr("10.0.0.7")
	same := 0
	const iters = 100
	for i := range iters {
		r := dsvc.DNRecord{CID: []byte{1}, CIP: cip, SIP: specSIP1, Macro: "m"}
		must(t, a.AddDN(ctx, &r), "A adds")
		seen, ok := findDN(t, b, cip)
		if !ok {
			t.Fatal("B does not see A's record")
		}
		must(t, a.DeleteDN(ctx, &r), "A deletes")
		r2 := dsvc.DNRecord{CID: []byte{2}, CIP: cip, SIP: specSIP1, Macro: "m"}
		must(t, a.AddDN(ctx, &r2), "A adds again")
		upd := seen
		upd.Macro = fmt.Sprintf("B%d", i)
		err := b.ModifyDN(ctx, &seen, &upd)
		switch {
		case r2.Sig == seen.Sig && err == nil:
			same++
		case !errors.Is(err, dsvc.ErrCollision):
			t.Fatalf("iteration %d: B's modify of a re-created record: %v (sigs %#x, %#x)", i, err, seen.Sig, r2.Sig)
		}
		must(t, a.DeleteDN(ctx, &dsvc.DNRecord{CIP: cip}), "cleanup")

		d := dsvc.DTRecord{Key: "k", Type: 'm', Value: ":a:"}
		must(t, adt.AddDT(ctx, &d), "A adds DT")
		dseen, _ := findDT(t, bdt, "k", 'm')
		must(t, adt.DeleteDT(ctx, &d), "A deletes DT")
		d2 := dsvc.DTRecord{Key: "k", Type: 'm', Value: ":b:"}
		must(t, adt.AddDT(ctx, &d2), "A adds DT again")
		dupd := dseen
		dupd.Value = ":B:"
		err = bdt.ModifyDT(ctx, &dseen, &dupd)
		switch {
		case d2.Sig == dseen.Sig && err == nil:
			same++
		case !errors.Is(err, dsvc.ErrCollision):
			t.Fatalf("iteration %d: B's DT modify: %v", i, err)
		}
		must(t, adt.DeleteDT(ctx, &dsvc.DTRecord{Key: "k", Type: 'm'}), "cleanup")
	}
	if same > 0 {
		t.Logf("%d of %d re-creations drew the same 16-bit generation", same, 2*iters)
	}
}

func testValidation(t *testing.T, s Setup) {
	ctx := ctxT(t)
	ds, dt, dn, dts, dns := load(t, s, 20)
	good := specRecord(50)
	bad := func(f func(r *dsvc.DNRecord)) *dsvc.DNRecord { r := good; f(&r); return &r }
	for what, r := range map[string]*dsvc.DNRecord{
		"cip off the network": bad(func(r *dsvc.DNRecord) { r.CIP = netip.MustParseAddr("10.0.16.1") }),
		"cip IPv6":            bad(func(r *dsvc.DNRecord) { r.CIP = netip.MustParseAddr("::1") }),
		"cid of 0":            bad(func(r *dsvc.DNRecord) { r.CID = nil }),
		"cid of 65":           bad(func(r *dsvc.DNRecord) { r.CID = make([]byte, 65) }),
		"flag 0x10":           bad(func(r *dsvc.DNRecord) { r.Flags = 0x10 }),
		"macro of 129":        bad(func(r *dsvc.DNRecord) { r.Macro = string(make([]byte, 129)) }),
		"comment of 49":       bad(func(r *dsvc.DNRecord) { r.Comment = "0123456789012345678901234567890123456789012345678" }),
		"comment newline":     bad(func(r *dsvc.DNRecord) { r.Comment = "a\nb" }),
		"no sip":              bad(func(r *dsvc.DNRecord) { r.SIP = netip.Addr{} }),
	} {
		wantCode(t, dn.AddDN(ctx, r), dsvc.CodeInval, "Add, "+what)
		orig := dns[1]
		wantCode(t, dn.ModifyDN(ctx, &orig, r), dsvc.CodeInval, "Modify, "+what)
	}
	wantCode(t, dn.DeleteDN(ctx, &dsvc.DNRecord{CIP: netip.MustParseAddr("10.1.0.1")}), dsvc.CodeInval, "Delete off the network")
	okLen := good
	okLen.CID, okLen.Comment = make([]byte, 64), "012345678901234567890123456789012345678901234567"
	must(t, dn.AddDN(ctx, &okLen), "cid of 64, comment of 48")
	key := func(k string, typ dsvc.DTType) *dsvc.DTRecord { return &dsvc.DTRecord{Key: k, Type: typ, Value: ":x:"} }
	k129 := ""
	for range 129 {
		k129 += "k"
	}
	for what, r := range map[string]*dsvc.DTRecord{
		"key of 129":        key(k129, 'm'),
		"empty key":         key("", 'm'),
		"type x":            key("x", 'x'),
		"trailing space":    key("key ", 'm'),
		"non-printable key": key("k\tey", 'm'),
		"non-ASCII key":     key("kéy", 'm'),
		"newline in value":  {Key: "v", Type: 'm', Value: "a\nb"},
	} {
		wantCode(t, dt.AddDT(ctx, r), dsvc.CodeInval, "AddDT, "+what)
	}
	must(t, dt.AddDT(ctx, key(k129[:128], 'm')), "key of 128")
	must(t, dt.AddDT(ctx, key("inner space", 'm')), "key with a space inside")
	for _, name := range []string{"10.0.0.256", "255.255.255.255", "10.0.0.1/24", "10.0.0", "dhcptab"} {
		_, err := s.Registry.Open(ctx, ds, dsvc.Network, name, crw)
		wantCode(t, err, dsvc.CodeInval, "network name "+name)
	}
	_, err := s.Registry.Open(ctx, ds, dsvc.DHCPTab, "dhcptab2", rw)
	wantCode(t, err, dsvc.CodeInval, "dhcptab name")
	// Nothing stored changed but the three good adds.
	all, err := dn.LookupDN(ctx, false, 0, -1, nil)
	must(t, err, "Lookup")
	sameDN(t, all, append(dns, okLen), "network after refused writes")
	alt, err := dt.LookupDT(ctx, false, 0, -1, nil)
	must(t, err, "Lookup")
	if len(alt) != len(dts)+2 {
		t.Fatalf("dhcptab has %d records, want %d", len(alt), len(dts)+2)
	}
}

func testCapacity(t *testing.T, s Setup) {
	ctx := ctxT(t)
	bits := 24
	if Soak() {
		bits = s.SoakCapacityBits
		if bits == 0 {
			bits = 16
		}
	}
	ds := fresh(t, s)
	net := netip.PrefixFrom(netip.MustParseAddr("10.64.0.0"), bits).Masked()
	h := open(t, s, ds, dsvc.Network, net.String(), crw)
	size := 1 << (32 - bits)
	rs := make([]dsvc.DNRecord, size)
	for i := range rs {
		rs[i] = dsvc.DNRecord{CID: []byte{0}, CIP: addrAdd(net.Addr(), i), SIP: specSIP1, Macro: "cap"}
	}
	if h.CanImport() {
		must(t, h.ImportDN(ctx, rs), "Import a full network")
	} else {
		for i := range rs {
			must(t, h.AddDN(ctx, &rs[i]), "Add")
		}
	}
	for i := range size {
		n := rs[i]
		n.Lease, n.Flags = uint32(i), dsvc.DNManual
		must(t, h.ModifyDN(ctx, &rs[i], &n), "Modify")
		rs[i] = n
	}
	extra := dsvc.DNRecord{CID: []byte{1}, CIP: addrAdd(net.Addr(), size/2), SIP: specSIP1}
	if err := h.AddDN(ctx, &extra); !errors.Is(err, dsvc.ErrExists) && !errors.Is(err, dsvc.ErrNoResources) {
		t.Fatalf("Add to a full network: %v, want ErrExists or ErrNoResources", err)
	}
	for _, i := range []int{0, 1, size / 3, size - 1} {
		if got, ok := findDN(t, h, rs[i].CIP); !ok || !dnEqual(got, rs[i]) {
			t.Fatalf("record %d: %+v, want %+v", i, got, rs[i])
		}
	}
	for i := range rs {
		must(t, h.DeleteDN(ctx, &rs[i]), "Delete")
	}
	if c, err := h.CountDN(ctx, 0, nil); c != 0 || err != nil {
		t.Fatalf("after deleting all: %d, %v", c, err)
	}
}
