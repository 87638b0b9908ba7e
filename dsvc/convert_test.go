package dsvc_test

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/dsvctest"
	"github.com/corralhq/corral/dsvc/files"
)

var errInjected = errors.New("injected failure")

// failing is the files module under another name whose network handles
// fail their second Import: a conversion into it fails midway.
type failing struct{ *files.Module }

func (failing) Name() string { return "flaky" }
func (f failing) OpenDN(ctx context.Context, loc, c string, net netip.Prefix, fl dsvc.OpenFlags) (dsvc.DNHandle, error) {
	// The file names follow the internal name's module part; keep files'.
	h, err := f.Module.OpenDN(ctx, loc, "files1"+c[len("flaky1"):], net, fl)
	if err != nil {
		return nil, err
	}
	return &failingDN{DNHandle: h}, nil
}
func (f failing) OpenDT(ctx context.Context, loc, c string, fl dsvc.OpenFlags) (dsvc.DTHandle, error) {
	return f.Module.OpenDT(ctx, loc, "files1"+c[len("flaky1"):], fl)
}
func (f failing) ListDN(ctx context.Context, loc string) ([]string, error) { return nil, nil }
func (f failing) RemoveDN(ctx context.Context, loc, c string) error {
	return f.Module.RemoveDN(ctx, loc, "files1"+c[len("flaky1"):])
}
func (f failing) RemoveDT(ctx context.Context, loc, c string) error {
	return f.Module.RemoveDT(ctx, loc, "files1"+c[len("flaky1"):])
}

type failingDN struct {
	dsvc.DNHandle
	calls int
}

func (h *failingDN) Prefix() netip.Prefix { return h.DNHandle.(dsvc.DNPrefixer).Prefix() }
func (h *failingDN) Import(ctx context.Context, rs []dsvc.DNRecord) error {
	if h.calls++; h.calls == 2 {
		return errInjected
	}
	return h.DNHandle.(dsvc.DNImporter).Import(ctx, rs)
}

func TestConvertFailureMidway(t *testing.T) {
	ctx := context.Background()
	r, err := dsvc.NewRegistry(dsvc.Options{Locker: &dsvctest.MemLocker{}}, files.New(), failing{files.New()})
	if err != nil {
		t.Fatal(err)
	}
	src := dsvc.Datastore{Module: "files", Location: filepath.Join(t.TempDir(), "src"), Version: 1}
	r.MkLocation(ctx, src)
	dt, _ := r.Open(ctx, src, dsvc.DHCPTab, "dhcptab", dsvc.Create|dsvc.Read|dsvc.Write)
	sym := dsvc.DTRecord{Key: "Locale", Type: 's', Value: "x"}
	if err := dt.AddDT(ctx, &sym); err != nil {
		t.Fatal(err)
	}
	dt.Close()
	dn, _ := r.Open(ctx, src, dsvc.Network, "10.0.0.0/20", dsvc.Create|dsvc.Read|dsvc.Write)
	var rs []dsvc.DNRecord
	base := netip.MustParseAddr("10.0.0.0")
	for i := range 1500 { // three import batches
		base = base.Next()
		rs = append(rs, dsvc.DNRecord{CID: []byte{1, byte(i)}, CIP: base, SIP: base, Sig: dsvc.NewSig(uint16(i)) + 5})
	}
	if err := dn.ImportDN(ctx, rs); err != nil {
		t.Fatal(err)
	}
	before, _ := dn.LookupDN(ctx, false, 0, -1, nil)

	dst := dsvc.Datastore{Module: "flaky", Location: filepath.Join(t.TempDir(), "dst"), Version: 1}
	var progress []int
	err = dsvc.Convert(ctx, src, dst, r, func(done, total int) { progress = append(progress, done) })
	if !errors.Is(err, errInjected) || dsvc.CodeOf(err) != dsvc.CodeInternal {
		t.Fatalf("Convert: %v, want the injected failure as ErrInternal", err)
	}
	if !slices.Equal(progress, []int{0, 1, 513}) {
		t.Fatalf("progress %v, want [0 1 513] (dhcptab, first batch, then the failure)", progress)
	}
	after, _ := dn.LookupDN(ctx, false, 0, -1, nil)
	if !slices.EqualFunc(before, after, func(a, b dsvc.DNRecord) bool { return a.CIP == b.CIP && a.Sig == b.Sig }) || len(after) != 1500 {
		t.Fatal("the source changed")
	}
	dn.Close()
	// What the conversion created is gone: the dhcptab and the half network.
	ls, err := files.New().ListDT(ctx, dst.Location)
	lsn, _ := files.New().ListDN(ctx, dst.Location)
	if err != nil || len(ls) != 0 || len(lsn) != 0 {
		t.Fatalf("destination keeps %q %q (%v)", ls, lsn, err)
	}
}
