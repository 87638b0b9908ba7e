package binfiles

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/corralhq/corral/dsvc"
)

var ctx = context.Background()

func TestLocation(t *testing.T) {
	m := New(nil)
	dir := t.TempDir()
	loc := filepath.Join(dir, "loc")
	wantCode(t, m.Status(ctx, loc), dsvc.CodeNoLocation)
	if err := m.MkLocation(ctx, loc); err != nil {
		t.Fatal(err)
	}
	wantCode(t, m.MkLocation(ctx, loc), dsvc.CodeExists)
	wantCode(t, m.Status(ctx, loc), dsvc.CodeSuccess)
	if l, err := m.ListDN(ctx, loc); err != nil || len(l) != 0 {
		t.Fatalf("ListDN empty: %v %v", l, err)
	}
	if _, err := m.ListDT(ctx, filepath.Join(dir, "nope")); dsvc.CodeOf(err) != dsvc.CodeNoLocation {
		t.Fatalf("ListDT missing: %v", err)
	}
	if err := os.Symlink(loc, filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	a, _ := m.LocToken(loc + "/")
	b, _ := m.LocToken(filepath.Join(dir, "alias"))
	if a != b || a == "" {
		t.Fatalf("LocToken %q vs %q", a, b)
	}
	if m.APIVersion() != dsvc.APIVersion || m.Synch() != dsvc.SynchLockService || m.Name() != "binfiles" || m.Version() != 1 {
		t.Fatal("identity")
	}
	wantCode(t, m.Configure("bogus"), dsvc.CodeModuleConfig)
}

func TestOpenModes(t *testing.T) {
	m := New(nil)
	loc := t.TempDir()
	name := "binfiles1_10.0.0.0"
	_, err := m.OpenDN(ctx, loc, name, net24, rw)
	wantCode(t, err, dsvc.CodeNoTable)
	if !errorsIsNoEnt(err) {
		t.Fatal("NoTable must match ErrNoEnt")
	}
	_, err = m.OpenDN(ctx, loc, name, net24, dsvc.Create|dsvc.Read)
	wantCode(t, err, dsvc.CodeInval)
	_, err = m.OpenDN(ctx, loc, name, netipMust("10.0.1.0/24"), create)
	wantCode(t, err, dsvc.CodeInval)
	h, err := m.OpenDN(ctx, loc, name, net24, create)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_, err = m.OpenDN(ctx, loc, name, net24, create)
	wantCode(t, err, dsvc.CodeTableExists)
	// An existing container knows its network; a different one is refused.
	h2, err := m.OpenDN(ctx, loc, name, netip0, rw)
	_ = h2
	if err != nil {
		t.Fatal(err)
	}
	if h2.(*DNTable).Prefix() != net24 {
		t.Fatal("network not from the file")
	}
	_, err = m.OpenDN(ctx, loc, name, netipMust("10.0.0.0/16"), rw)
	wantCode(t, err, dsvc.CodeInval)
	if _, err := m.OpenDT(ctx, loc, "binfiles1_dhcptab", create); err != nil {
		t.Fatal(err)
	}
	_, err = m.OpenDT(ctx, loc, "files1_dhcptab", rw)
	wantCode(t, err, dsvc.CodeInval)
	if l, _ := m.ListDN(ctx, loc); !slices.Equal(l, []string{name}) {
		t.Fatalf("ListDN %v", l)
	}
	if l, _ := m.ListDT(ctx, loc); !slices.Equal(l, []string{"binfiles1_dhcptab"}) {
		t.Fatalf("ListDT %v", l)
	}
	// A leftover of a torn create is not a container; one not written
	// for over a minute is a dead create's and is removed, a fresh one (a
	// create in progress) is kept.
	stale := filepath.Join(loc, ".binfiles1_10_0_9_0.tmp-1")
	fresh := filepath.Join(loc, ".binfiles1_10_0_8_0.tmp-2")
	os.WriteFile(stale, nil, 0o644)
	os.WriteFile(fresh, nil, 0o644)
	old := time.Now().Add(-staleAfter - time.Second)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.ListDN(ctx, loc); len(l) != 1 {
		t.Fatalf("ListDN with leftover %v", l)
	}
	if _, err := os.Stat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stale temporary file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("fresh temporary file: %v", err)
	}
	wantCode(t, m.RemoveDN(ctx, loc, name), dsvc.CodeSuccess)
	wantCode(t, m.RemoveDN(ctx, loc, name), dsvc.CodeNoTable)
	// The open handle now fails and does not bring the file back.
	_, err = h.Lookup(ctx, false, 0, -1, nil)
	wantCode(t, err, dsvc.CodeNoTable)
	wantCode(t, h.Add(ctx, &dsvc.DNRecord{CID: []byte{0}, CIP: ip("10.0.0.1")}), dsvc.CodeNoTable)
	if l, _ := m.ListDN(ctx, loc); len(l) != 0 {
		t.Fatalf("removed container back: %v", l)
	}
	wantCode(t, m.RemoveDT(ctx, loc, "binfiles1_dhcptab"), dsvc.CodeSuccess)
}

func TestDNSPL(t *testing.T) {
	_, loc, h := newDN(t, net24)
	r := dsvc.DNRecord{CID: []byte{1, 2, 3}, Flags: dsvc.DNManual, CIP: ip("10.0.0.5"), SIP: ip("10.0.0.1"), Lease: 1000, Macro: "m", Comment: "c"}
	if err := h.Add(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if r.Sig&(1<<48-1) != 1 {
		t.Fatalf("new sig %#x: counter not 1", r.Sig)
	}
	dup := r
	wantCode(t, h.Add(ctx, &dup), dsvc.CodeExists)
	wantCode(t, h.Add(ctx, &dsvc.DNRecord{CID: []byte{1}, CIP: ip("10.0.1.1")}), dsvc.CodeInval)
	got, err := h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &r)
	if err != nil || len(got) != 1 || !equalDN(&got[0], &r) {
		t.Fatalf("lookup %v %v", got, err)
	}
	// Modify changes every field and bumps the counter by one.
	orig := got[0]
	nr := dsvc.DNRecord{CID: []byte{9}, Flags: dsvc.DNBootpOnly | dsvc.DNUnusable, CIP: ip("10.0.0.5"), SIP: ip("10.0.0.2"), Lease: dsvc.LeasePermanent, Macro: "n", Comment: "d"}
	if err := h.Modify(ctx, &orig, &nr); err != nil {
		t.Fatal(err)
	}
	if nr.Sig != orig.Sig+1 {
		t.Fatalf("sig %#x after %#x", nr.Sig, orig.Sig)
	}
	// Stale signature: collision, nothing changes.
	stale := nr
	wantCode(t, h.Modify(ctx, &orig, &stale), dsvc.CodeCollision)
	wantCode(t, h.Delete(ctx, &orig), dsvc.CodeCollision)
	got, _ = h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &nr)
	if len(got) != 1 || !equalDN(&got[0], &nr) {
		t.Fatalf("after collision %v", got)
	}
	// The index follows the CID: the old one finds nothing.
	if n, _ := h.Count(ctx, dsvc.Query(0).Eq(dsvc.DNQCID), &r); n != 0 {
		t.Fatalf("old cid still indexed: %d", n)
	}
	// Rename onto a stored CIP: exists; to a free one: moves.
	other := dsvc.DNRecord{CID: []byte{0}, CIP: ip("10.0.0.6")}
	h.Add(ctx, &other)
	mv := nr
	mv.CIP = ip("10.0.0.6")
	wantCode(t, h.Modify(ctx, &nr, &mv), dsvc.CodeExists)
	mv.CIP = ip("10.0.0.7")
	if err := h.Modify(ctx, &nr, &mv); err != nil {
		t.Fatal(err)
	}
	if n, _ := h.Count(ctx, dsvc.Query(0).Eq(dsvc.DNQCIP), &nr); n != 0 {
		t.Fatal("renamed record still at its old cip")
	}
	if got, _ := h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCID), -1, &mv); len(got) != 1 || got[0].CIP != mv.CIP {
		t.Fatalf("by cid after rename: %v", got)
	}
	wantCode(t, h.Modify(ctx, &nr, &mv), dsvc.CodeNoEnt)
	wantCode(t, h.Delete(ctx, &nr), dsvc.CodeNoEnt)
	del := mv
	if err := h.Delete(ctx, &del); err != nil {
		t.Fatal(err)
	}
	other.Sig = 0 // unconditional
	if err := h.Delete(ctx, &other); err != nil {
		t.Fatal(err)
	}
	if n, _ := h.Count(ctx, 0, nil); n != 0 {
		t.Fatalf("%d records left", n)
	}
	if verify(t, dnPath(loc, net24)) != 0 {
		t.Fatal("records left in the file")
	}
}

func equalDN(a, b *dsvc.DNRecord) bool {
	return bytes.Equal(a.CID, b.CID) && a.Flags == b.Flags && a.CIP == b.CIP && a.SIP == b.SIP &&
		a.Lease == b.Lease && a.Macro == b.Macro && a.Comment == b.Comment && a.Sig == b.Sig
}

func TestDTSPL(t *testing.T) {
	_, _, h := newDT(t)
	s := dsvc.DTRecord{Key: "Sterm", Type: dsvc.DTSymbol, Value: "Vendor=SUNW.i86pc,7,ASCII,1,0"}
	m := dsvc.DTRecord{Key: "Sterm", Type: dsvc.DTMacro, Value: ":Subnet=255.255.255.0:"}
	for _, r := range []*dsvc.DTRecord{&s, &m} {
		if err := h.Add(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	dup := s
	wantCode(t, h.Add(ctx, &dup), dsvc.CodeExists)
	// Keys are case-sensitive: the rename Sterm → sTERM is a new key.
	ren := s
	ren.Key = "sTERM"
	if err := h.Modify(ctx, &s, &ren); err != nil {
		t.Fatal(err)
	}
	if ren.Sig != s.Sig+1 {
		t.Fatal("sig not bumped")
	}
	wantCode(t, h.Modify(ctx, &s, &ren), dsvc.CodeNoEnt)
	// Renaming the macro onto the symbol's key and type: exists.
	onto := m
	onto.Type = dsvc.DTSymbol
	onto.Key = "sTERM"
	wantCode(t, h.Modify(ctx, &m, &onto), dsvc.CodeExists)
	got, _ := h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DTQKey), -1, &dsvc.DTRecord{Key: "Sterm"})
	if len(got) != 1 || got[0] != m {
		t.Fatalf("by key: %v", got)
	}
	stale := m
	stale.Sig++
	wantCode(t, h.Delete(ctx, &stale), dsvc.CodeCollision)
	wantCode(t, h.Modify(ctx, &stale, &dsvc.DTRecord{Key: "x", Type: dsvc.DTMacro}), dsvc.CodeCollision)
	if err := h.Delete(ctx, &m); err != nil {
		t.Fatal(err)
	}
	wantCode(t, h.Delete(ctx, &m), dsvc.CodeNoEnt)
	ren.Sig = 0
	if err := h.Delete(ctx, &ren); err != nil {
		t.Fatal(err)
	}
	if n, _ := h.Count(ctx, 0, nil); n != 0 {
		t.Fatalf("%d left", n)
	}
}

func TestAccess(t *testing.T) {
	m, loc, _ := newDN(t, net24)
	ro, err := m.OpenDN(ctx, loc, "binfiles1_10.0.0.0", net24, dsvc.Read)
	if err != nil {
		t.Fatal(err)
	}
	r := dsvc.DNRecord{CID: []byte{0}, CIP: ip("10.0.0.3")}
	wantCode(t, ro.Add(ctx, &r), dsvc.CodeAccess)
	wantCode(t, ro.Modify(ctx, &r, &r), dsvc.CodeAccess)
	wantCode(t, ro.Delete(ctx, &r), dsvc.CodeAccess)
	wantCode(t, ro.(dsvc.DNImporter).Import(ctx, []dsvc.DNRecord{r}), dsvc.CodeAccess)
	wo, _ := m.OpenDN(ctx, loc, "binfiles1_10.0.0.0", net24, dsvc.Write)
	_, err = wo.Lookup(ctx, false, 0, -1, nil)
	wantCode(t, err, dsvc.CodeAccess)
	_, err = wo.Count(ctx, 0, nil)
	wantCode(t, err, dsvc.CodeAccess)
	if err := wo.Add(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if n, _ := ro.Count(ctx, 0, nil); n != 1 {
		t.Fatal("read-only handle does not see the write")
	}
	wo.Close()
	wantCode(t, wo.Close(), dsvc.CodeInval)
	wantCode(t, wo.Add(ctx, &r), dsvc.CodeInval)
	_, _, dt := newDT(t)
	wantCode(t, dt.Close(), dsvc.CodeSuccess)
	_, err = dt.Lookup(ctx, false, 0, -1, nil)
	wantCode(t, err, dsvc.CodeInval)
}

// TestDeleteRecreate is the seed's scenario: A adds, B looks up, A deletes
// and adds the same key again, B's modify must collide.
func TestDeleteRecreate(t *testing.T) {
	_, _, h := newDN(t, net24)
	_, _, d := newDT(t)
	for i := range 200 {
		a := dsvc.DNRecord{CID: []byte{1}, CIP: nthIP(net24, 1+i%250)}
		if err := h.Add(ctx, &a); err != nil {
			t.Fatal(err)
		}
		b, _ := h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), 1, &a)
		a.Sig = 0
		h.Delete(ctx, &a)
		if err := h.Add(ctx, &a); err != nil {
			t.Fatal(err)
		}
		nb := b[0]
		nb.Macro = "b"
		wantCode(t, h.Modify(ctx, &b[0], &nb), dsvc.CodeCollision)
		a.Sig = 0
		h.Delete(ctx, &a)

		x := dsvc.DTRecord{Key: "k", Type: dsvc.DTMacro}
		d.Add(ctx, &x)
		y := x
		x.Sig = 0
		d.Delete(ctx, &x)
		d.Add(ctx, &x)
		wantCode(t, d.Modify(ctx, &y, &dsvc.DTRecord{Key: "k", Type: dsvc.DTMacro, Value: "v"}), dsvc.CodeCollision)
		x.Sig = 0
		d.Delete(ctx, &x)
	}
}

func TestImportKeepsSignatures(t *testing.T) {
	_, loc, h := newDN(t, net24)
	rs := []dsvc.DNRecord{
		{CID: []byte{1}, CIP: ip("10.0.0.1"), Sig: dsvc.NewSig(7) + 41},
		{CID: []byte{1}, CIP: ip("10.0.0.2"), Sig: dsvc.NewSig(9)},
	}
	if err := h.Import(ctx, rs); err != nil {
		t.Fatal(err)
	}
	got, _ := h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCID), -1, &rs[0])
	if len(got) != 2 || got[0].Sig != rs[0].Sig || got[1].Sig != rs[1].Sig {
		t.Fatalf("import: %v", got)
	}
	// One stored record in a batch: ErrExists, nothing of the batch stored.
	wantCode(t, h.Import(ctx, []dsvc.DNRecord{{CID: []byte{2}, CIP: ip("10.0.0.3"), Sig: 5}, rs[0]}), dsvc.CodeExists)
	if verify(t, dnPath(loc, net24)) != 2 {
		t.Fatal("partial import stored")
	}
	_, _, d := newDT(t)
	drs := []dsvc.DTRecord{{Key: "a", Type: dsvc.DTMacro, Sig: 77}, {Key: "a", Type: dsvc.DTSymbol, Sig: 78}}
	if err := d.Import(ctx, drs); err != nil {
		t.Fatal(err)
	}
	dg, _ := d.Lookup(ctx, false, 0, -1, nil)
	if len(dg) != 2 || dg[0].Sig+dg[1].Sig != 155 {
		t.Fatalf("dt import %v", dg)
	}
	wantCode(t, d.Import(ctx, drs[:1]), dsvc.CodeExists)
}

func TestCorruptData(t *testing.T) {
	_, loc, h := newDN(t, net24)
	for i := 1; i <= 3; i++ {
		h.Add(ctx, &dsvc.DNRecord{CID: []byte{0}, CIP: nthIP(net24, i)})
	}
	path := dnPath(loc, net24)
	db, err := bolt.Open(path, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCIP).Put(cipKey(nthIP(net24, 2)), []byte{2, 0, 0})
	})
	db.Close()
	_, err = h.Lookup(ctx, false, 0, -1, nil)
	wantCode(t, err, dsvc.CodeInternal)
	got, err := h.Lookup(ctx, true, 0, -1, nil)
	if err != nil || len(got) != 1 || got[0].CIP != nthIP(net24, 1) {
		t.Fatalf("partial: %v %v", got, err)
	}
	_, err = h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: nthIP(net24, 2)})
	wantCode(t, err, dsvc.CodeInternal)
	wantCode(t, h.Delete(ctx, &dsvc.DNRecord{CIP: nthIP(net24, 2)}), dsvc.CodeInternal)
	// A file that is not bbolt at all.
	os.WriteFile(path, bytes.Repeat([]byte{0xa5}, 8192), 0o644)
	_, err = h.Count(ctx, 0, nil)
	wantCode(t, err, dsvc.CodeInternal)
	m := New(nil)
	_, err = m.OpenDN(ctx, loc, "binfiles1_10.0.0.0", net24, rw)
	wantCode(t, err, dsvc.CodeInternal)
}

func TestNoResources(t *testing.T) {
	m, loc, _ := newDN(t, netipMust("10.1.0.0/16"))
	if err := m.Configure("maxsize=65536"); err != nil {
		t.Fatal(err)
	}
	h, err := m.OpenDN(ctx, loc, "binfiles1_10.1.0.0", netip0, rw)
	if err != nil {
		t.Fatal(err)
	}
	var last error
	n := 0
	for i := 1; i < 5000 && last == nil; i++ {
		var rs []dsvc.DNRecord
		for j := range 50 {
			rs = append(rs, dsvc.DNRecord{CID: bytes.Repeat([]byte{byte(i)}, 64), CIP: nthIP(netipMust("10.1.0.0/16"), i*50+j), Comment: "padding padding padding"})
		}
		if last = h.(*DNTable).Import(ctx, rs); last == nil {
			n += 50
		}
	}
	wantCode(t, last, dsvc.CodeNoResources)
	if c, _ := h.Count(ctx, 0, nil); c != n {
		t.Fatalf("after a full file: %d records, want %d", c, n)
	}
}
