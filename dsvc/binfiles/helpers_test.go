package binfiles

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/corralhq/corral/dsvc"
)

const (
	rw     = dsvc.Read | dsvc.Write
	create = dsvc.Create | dsvc.Read | dsvc.Write
)

var net24 = netip.MustParsePrefix("10.0.0.0/24")

func newDN(t testing.TB, net netip.Prefix) (*Module, string, *DNTable) {
	t.Helper()
	m := New(nil)
	loc := t.TempDir()
	h, err := m.OpenDN(context.Background(), loc, "binfiles1_"+net.Addr().String(), net, create)
	if err != nil {
		t.Fatal(err)
	}
	return m, loc, h.(*DNTable)
}

func newDT(t testing.TB) (*Module, string, *DTTable) {
	t.Helper()
	m := New(nil)
	loc := t.TempDir()
	h, err := m.OpenDT(context.Background(), loc, "binfiles1_dhcptab", create)
	if err != nil {
		t.Fatal(err)
	}
	return m, loc, h.(*DTTable)
}

func wantCode(t testing.TB, err error, c dsvc.Code) {
	t.Helper()
	if dsvc.CodeOf(err) != c || (c != dsvc.CodeSuccess && !errors.Is(err, &dsvc.Error{Code: c})) {
		t.Fatalf("got %v, want %v", err, c)
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// nthIP is the n-th address of net (n from 0).
func nthIP(net netip.Prefix, n int) netip.Addr {
	a := net.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// verify checks the file's invariants: every record decodes, the CID
// index holds exactly one entry per record, and no entry names a missing
// record.
func verify(t testing.TB, path string) int {
	t.Helper()
	db, err := bolt.Open(path, 0o644, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	err = db.View(func(tx *bolt.Tx) error {
		recs, idx := tx.Bucket(bucketCIP), tx.Bucket(bucketCID)
		want := map[string]bool{}
		if err := recs.ForEach(func(k, v []byte) error {
			r, err := decodeDN(k, v)
			if err != nil {
				return err
			}
			want[string(cidKey(r.CID, r.CIP))] = true
			n++
			return nil
		}); err != nil {
			return err
		}
		got := 0
		if err := idx.ForEach(func(k, _ []byte) error {
			if !want[string(k)] {
				return fmt.Errorf("index entry %x names no record", k)
			}
			got++
			return nil
		}); err != nil {
			return err
		}
		if got != len(want) {
			return fmt.Errorf("index has %d entries for %d records", got, len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func dnPath(loc string, net netip.Prefix) string {
	return filepath.Join(loc, "binfiles1_"+fmt.Sprint(net.Addr().As4()[0])+"_"+fmt.Sprint(net.Addr().As4()[1])+"_"+fmt.Sprint(net.Addr().As4()[2])+"_"+fmt.Sprint(net.Addr().As4()[3]))
}

func netipMust(s string) netip.Prefix { return netip.MustParsePrefix(s) }

var netip0 netip.Prefix

func errorsIsNoEnt(err error) bool { return errors.Is(err, dsvc.ErrNoEnt) }
