package files

import (
	"context"
	"math/rand"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/corralhq/corral/dsvc"
)

// Two Module values stand for two processes on one location: each sees
// the other's writes, an append by hand and a same-size edit by rename,
// though it has the file cached.
func TestCacheSeesOtherWriters(t *testing.T) {
	ctx := context.Background()
	loc := t.TempDir()
	const name = "files1_10.0.0.0"
	net := netip.MustParsePrefix("10.0.0.0/24")
	a, b := New(), New()
	ha, err := a.OpenDN(ctx, loc, name, net, dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	hb, err := b.OpenDN(ctx, loc, name, net, dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	all := dsvc.Query(0)
	lease := func(h dsvc.DNHandle, ip string) uint32 {
		t.Helper()
		rs, err := h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: netip.MustParseAddr(ip)})
		if err != nil || len(rs) != 1 {
			t.Fatalf("lookup %s: %v, %v", ip, rs, err)
		}
		return rs[0].Lease
	}
	r := dsvc.DNRecord{CID: []byte{1}, CIP: netip.MustParseAddr("10.0.0.5"), SIP: netip.MustParseAddr("10.0.0.1"), Lease: 1000000001}
	if err := ha.Add(ctx, &r); err != nil {
		t.Fatal(err)
	}
	if got := lease(hb, "10.0.0.5"); got != 1000000001 { // b reads and caches
		t.Fatalf("b: lease %d", got)
	}
	// Modifies by a that keep the file's size, each seen by b.
	for l := uint32(1000000002); l < 1000000010; l++ {
		nr := r
		nr.Lease = l
		if err := ha.Modify(ctx, &r, &nr); err != nil {
			t.Fatal(err)
		}
		r = nr
		if got := lease(hb, "10.0.0.5"); got != l {
			t.Fatalf("b after a's modify: lease %d, want %d", got, l)
		}
	}
	// A stale signature from b's point of view is still a collision.
	stale := r
	stale.Sig--
	if err := hb.Modify(ctx, &stale, &r); dsvc.CodeOf(err) != dsvc.CodeCollision {
		t.Fatalf("b modify with stale signature: %v", err)
	}
	// An append by hand, in place.
	p := filepath.Join(loc, fileName(name))
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("10.0.0.6|02|00|10.0.0.1|0|1||\n")
	f.Close()
	if rs, err := ha.Lookup(ctx, false, all, -1, &dsvc.DNRecord{}); err != nil || len(rs) != 2 {
		t.Fatalf("a after a hand append: %v, %v", rs, err)
	}
	// An edit of the same size through another file renamed over it.
	data, _ := os.ReadFile(p)
	data = []byte(strings.Replace(string(data), "10.0.0.6|02|", "10.0.0.6|03|", 1))
	os.WriteFile(p+".tmp", data, 0o644)
	if err := os.Rename(p+".tmp", p); err != nil {
		t.Fatal(err)
	}
	rs, err := hb.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: netip.MustParseAddr("10.0.0.6")})
	if err != nil || len(rs) != 1 || rs[0].CID[0] != 3 {
		t.Fatalf("b after an edit by rename: %v, %v", rs, err)
	}
	// What Lookup returns is the caller's: changing it changes no cache.
	rs[0].CID[0] = 9
	rs, _ = hb.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: netip.MustParseAddr("10.0.0.6")})
	if rs[0].CID[0] != 3 {
		t.Fatalf("a caller's change reached the cache: %v", rs)
	}
}

// The entries a write works out from the old ones are those a parse of the
// new file gives.
func TestCacheWritesAsParsed(t *testing.T) {
	ctx := context.Background()
	loc := t.TempDir()
	const name = "files1_10.0.0.0"
	m := New()
	h, err := m.OpenDN(ctx, loc, name, netip.MustParsePrefix("10.0.0.0/24"), dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(loc, fileName(name))
	check := func(what string) {
		t.Helper()
		s := m.cache.get(p)
		if s == nil {
			t.Fatalf("%s: not cached", what)
		}
		data, _ := os.ReadFile(p)
		want, err := h.(*dnTable).parse(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(s.dn, want) && !(len(s.dn) == 0 && len(want) == 0) {
			t.Fatalf("%s: cached %+v, parsed %+v", what, s.dn, want)
		}
	}
	recs := map[int]dsvc.DNRecord{}
	rnd := rand.New(rand.NewSource(1))
	for n := 0; n < 300; n++ {
		i := rnd.Intn(20)
		r, ok := recs[i]
		switch {
		case !ok:
			r = dsvc.DNRecord{CID: []byte{byte(i)}, CIP: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), SIP: netip.MustParseAddr("10.0.0.254"), Comment: strings.Repeat("x", rnd.Intn(5))}
			if err := h.Add(ctx, &r); err != nil {
				t.Fatal(err)
			}
			recs[i] = r
			check("add")
		case rnd.Intn(3) == 0:
			if err := h.Delete(ctx, &r); err != nil {
				t.Fatal(err)
			}
			delete(recs, i)
			check("delete")
		default:
			nr := r
			nr.Comment = strings.Repeat("y|\\", rnd.Intn(4))
			if err := h.Modify(ctx, &r, &nr); err != nil {
				t.Fatal(err)
			}
			recs[i] = nr
			check("modify")
		}
	}
}
