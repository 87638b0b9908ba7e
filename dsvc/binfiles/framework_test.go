package binfiles

import (
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/lock"
)

// TestThroughFramework uses the module as applications do: by admin name,
// with the lock service of package dsvc/lock.
func TestThroughFramework(t *testing.T) {
	locks, err := lock.New(lock.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := dsvc.NewRegistry(dsvc.Options{Locker: locks}, New(nil))
	if err != nil {
		t.Fatal(err)
	}
	ds := dsvc.Datastore{Module: "binfiles", Location: t.TempDir(), Version: dsvc.CurrentVersion}
	h, err := reg.Open(ctx, ds, dsvc.Network, "10.0.0.0/24", create)
	if err != nil {
		t.Fatal(err)
	}
	r := dsvc.DNRecord{CID: []byte{0}, CIP: ip("10.0.0.9"), SIP: ip("10.0.0.1")}
	if err := h.AddDN(ctx, &r); err != nil {
		t.Fatal(err)
	}
	h.Close()
	// Reopened by address alone: the prefix comes from the file.
	h, err = reg.Open(ctx, ds, dsvc.Network, "10.0.0.0", rw|dsvc.NonBlock)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if h.Prefix() != net24 {
		t.Fatalf("prefix %v", h.Prefix())
	}
	if names, _ := reg.List(ctx, ds, dsvc.Network); len(names) != 1 || names[0] != "10.0.0.0" {
		t.Fatalf("List %v", names)
	}
	// A writer elsewhere holds the container: NonBlock gets ErrBusy at once.
	key, err := reg.LockKey(ds, dsvc.Network, "10.0.0.0")
	if err != nil {
		t.Fatal(err)
	}
	u, err := locks.Lock(ctx, key, true, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.LookupDN(ctx, false, 0, -1, nil)
	wantCode(t, err, dsvc.CodeBusy)
	u.Unlock()
	got, err := h.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &r)
	if err != nil || len(got) != 1 || got[0].Sig != r.Sig {
		t.Fatalf("lookup %v %v", got, err)
	}
	dt, err := reg.Open(ctx, ds, dsvc.DHCPTab, "dhcptab", create)
	if err != nil {
		t.Fatal(err)
	}
	defer dt.Close()
	if err := dt.AddDT(ctx, &dsvc.DTRecord{Key: "Locale", Type: dsvc.DTMacro, Value: ":UTCoffst=0:"}); err != nil {
		t.Fatal(err)
	}
}
