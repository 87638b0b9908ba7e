package files

import (
	"bytes"
	"context"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/dsvctest"
)

var rewrite = flag.Bool("rewrite", false, "rewrite testdata/golden from the current writer")

func registry(t testing.TB, mods ...dsvc.Module) *dsvc.Registry {
	t.Helper()
	if len(mods) == 0 {
		mods = []dsvc.Module{New()}
	}
	r, err := dsvc.NewRegistry(dsvc.Options{Locker: &dsvctest.MemLocker{}}, mods...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var goldenDT = []dsvc.DTRecord{
	{Key: "Locale", Type: 's', Value: "Vendor=SUNW.Ultra-1 SUNW.i86pc,1,IP,1,0", Sig: dsvc.NewSig(1)},
	{Key: "atlantic", Type: 'm', Value: ":Include=Locale:Timeserv=10.0.0.1:LeaseTim=86400:", Sig: dsvc.NewSig(2)},
	{Key: "a|pipe and \\ back", Type: 'm', Value: ":x=1|2:", Sig: dsvc.NewSig(0xffff)},
	{Key: "gone", Type: 'm', Value: ":", Sig: dsvc.NewSig(4)},
}

func goldenDN() []dsvc.DNRecord {
	a := netip.MustParseAddr
	return []dsvc.DNRecord{
		{CIP: a("10.0.0.5"), CID: []byte{0x01, 0x08, 0x00, 0x20, 0xff, 0xff, 0xff}, Flags: dsvc.DNManual, SIP: a("10.0.0.1"), Lease: 946684800, Sig: 12345678901234567, Macro: "atlantic", Comment: "a | comment \\ here"},
		{CIP: a("10.0.0.6"), CID: []byte{0}, Flags: dsvc.DNDynamic, SIP: a("10.0.0.1"), Lease: 0, Sig: dsvc.NewSig(7), Macro: "atlantic"},
		{CIP: a("10.0.0.7"), CID: []byte("client"), Flags: dsvc.DNAutomatic | dsvc.DNBootpOnly | dsvc.DNUnusable, SIP: a("10.0.0.2"), Lease: dsvc.LeasePermanent, Sig: dsvc.NewSig(8), Macro: "", Comment: ""},
		{CIP: a("10.0.0.8"), CID: []byte{1}, SIP: a("10.0.0.2"), Sig: dsvc.NewSig(9), Macro: "gone"},
	}
}

// writeGolden makes the golden containers at a location with Import (fixed
// signatures), one Modify (signature + 1) and one Delete.
func writeGolden(t *testing.T, r *dsvc.Registry, ds dsvc.Datastore) {
	ctx := context.Background()
	if err := r.MkLocation(ctx, ds); err != nil {
		t.Fatal(err)
	}
	h, err := r.Open(ctx, ds, dsvc.DHCPTab, "dhcptab", dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	dt := append([]dsvc.DTRecord(nil), goldenDT...)
	if err := h.ImportDT(ctx, dt); err != nil {
		t.Fatal(err)
	}
	m := dt[1]
	m.Value = ":Include=Locale:LeaseTim=3600:"
	if err := h.ModifyDT(ctx, &dt[1], &m); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteDT(ctx, &dt[3]); err != nil {
		t.Fatal(err)
	}
	h.Close()
	h, err = r.Open(ctx, ds, dsvc.Network, "10.0.0.0/24", dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	dn := goldenDN()
	if err := h.ImportDN(ctx, dn); err != nil {
		t.Fatal(err)
	}
	n := dn[1]
	n.CID, n.Lease, n.Flags = []byte{0xab, 0xcd}, 1700000000, dsvc.DNManual
	if err := h.ModifyDN(ctx, &dn[1], &n); err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteDN(ctx, &dn[3]); err != nil {
		t.Fatal(err)
	}
	h.Close()
}

func TestGolden(t *testing.T) {
	v2, _ := NewVersion(2)
	for _, m := range []*Module{New(), v2} {
		r := registry(t, m)
		dir := filepath.Join(t.TempDir(), "loc")
		writeGolden(t, r, dsvc.Datastore{Location: dir, Version: m.Version()})
		for _, name := range []string{"dhcptab", "10_0_0_0"} {
			f := m.prefix() + name
			got, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			gold := filepath.Join("testdata", "golden", f)
			if *rewrite {
				if err := os.WriteFile(gold, got, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			want, err := os.ReadFile(gold)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s:\n%s\nwant:\n%s", f, gold, got, want)
			}
		}
	}
}

// TestHandWritten reads files written by hand: comments between records,
// continuation lines, lower-case hex, lease -1, no "# network" line.
func TestHandWritten(t *testing.T) {
	ctx := context.Background()
	r := registry(t)
	dir := t.TempDir()
	for _, f := range []string{"files1_dhcptab", "files1_10_0_0_0"} {
		b, err := os.ReadFile(filepath.Join("testdata", "hand", f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, f), b, 0o644)
	}
	ds := dsvc.Datastore{Location: dir, Version: 1}
	h, err := r.Open(ctx, ds, dsvc.DHCPTab, "dhcptab", dsvc.Read)
	if err != nil {
		t.Fatal(err)
	}
	dt, err := h.LookupDT(ctx, false, 0, -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	wantDT := []dsvc.DTRecord{
		{Key: "Locale", Type: 's', Sig: 1, Value: "Vendor=SUNW.Ultra-1 SUNW.i86pc,1,IP,1,0"},
		{Key: "atlantic", Type: 'm', Sig: 2, Value: ":Include=Locale:Timeserv=10.0.0.1:LeaseTim=86400:DNSdmain=\"example.com\":"},
	}
	if !reflect.DeepEqual(dt, wantDT) {
		t.Errorf("dhcptab:\n%+v\nwant\n%+v", dt, wantDT)
	}
	_, err = r.Open(ctx, ds, dsvc.Network, "10.0.0.0", dsvc.Read)
	if dsvc.CodeOf(err) != dsvc.CodeInval {
		t.Fatalf("no prefix anywhere: %v, want ErrInval", err)
	}
	h, err = r.Open(ctx, ds, dsvc.Network, "10.0.0.0/24", dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	dn, err := h.LookupDN(ctx, false, 0, -1, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	wantDN := []dsvc.DNRecord{
		{CIP: a("10.0.0.5"), CID: []byte{0x01, 0x08, 0x00, 0x20, 0xff, 0xff, 0xff}, Flags: dsvc.DNManual, SIP: a("10.0.0.1"), Lease: dsvc.LeasePermanent, Sig: 9, Macro: "atlantic", Comment: "printer"},
		{CIP: a("10.0.0.6"), CID: []byte{0}, SIP: a("10.0.0.1"), Sig: 10, Macro: "atlantic"},
	}
	if !reflect.DeepEqual(dn, wantDN) {
		t.Errorf("network:\n%+v\nwant\n%+v", dn, wantDN)
	}
	// Written back by the module, the hand comments stay.
	mod := dn[1]
	mod.Comment = "edited"
	if err := h.ModifyDN(ctx, &dn[1], &mod); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "files1_10_0_0_0"))
	if !bytes.Contains(b, []byte("# the printer\n")) || !bytes.Contains(b, []byte("|edited\n")) {
		t.Errorf("after modify:\n%s", b)
	}

	// A file under another container's name: header mismatch.
	b, _ = os.ReadFile(filepath.Join(dir, "files1_dhcptab"))
	os.WriteFile(filepath.Join(dir, "files1_10_0_1_0"), b, 0o644)
	_, err = r.Open(ctx, ds, dsvc.Network, "10.0.1.0/24", dsvc.Read)
	if dsvc.CodeOf(err) != dsvc.CodeInternal {
		t.Fatalf("header mismatch: %v, want ErrInternal", err)
	}
	// A torn line is ErrInternal naming it, at lookup.
	os.WriteFile(filepath.Join(dir, "files1_10_0_0_0"), append(b[:0:0], []byte("# files1_10_0_0_0\n10.0.0.9|01|00|10.0.0.1\n")...), 0o644)
	_, err = h.LookupDN(ctx, false, 0, -1, nil)
	if dsvc.CodeOf(err) != dsvc.CodeInternal || !bytes.Contains([]byte(err.Error()), []byte("line 2")) {
		t.Fatalf("torn line: %v", err)
	}
	h.Close()
}
