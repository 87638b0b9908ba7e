package postgres_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/postgres"
)

var ctx = context.Background()

func newMod(t testing.TB) *postgres.Module {
	m := postgres.New(nil)
	t.Cleanup(m.Close)
	return m
}

// newDN makes a location with one network container and returns its table.
func newDN(t testing.TB, m *postgres.Module, pfx netip.Prefix) (string, *postgres.DNTable) {
	loc := freshLocation(t)
	if err := m.MkLocation(ctx, loc); err != nil {
		t.Fatal(err)
	}
	h, err := m.OpenDN(ctx, loc, "postgres1_"+pfx.Addr().String(), pfx, dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	return loc, h.(*postgres.DNTable)
}

var net24 = netip.MustParsePrefix("10.1.2.0/24")

func randDN(rng *rand.Rand, i int) dsvc.DNRecord {
	pick := func(n int) int { return rng.IntN(n) }
	return dsvc.DNRecord{
		CID:     [][]byte{{0}, {1, 2, 3}, {1, 2, 4}, {0xff}}[pick(4)],
		Flags:   dsvc.DNFlags(pick(16)),
		CIP:     netip.AddrFrom4([4]byte{10, 1, 2, byte(i)}),
		SIP:     []netip.Addr{netip.MustParseAddr("10.1.2.1"), netip.MustParseAddr("10.1.2.2")}[pick(2)],
		Lease:   []uint32{0, 1e9, dsvc.LeasePermanent}[pick(3)],
		Macro:   []string{"", "net", "Sterm"}[pick(3)],
		Comment: []string{"", "x\xe9\x80"}[pick(2)],
	}
}

// TestQueryMatchesMatchDN checks the SQL translation of random queries
// against dsvc.MatchDN on random records, DYNAMIC quirk included.
func TestQueryMatchesMatchDN(t *testing.T) {
	needServer(t)
	m := newMod(t)
	_, h := newDN(t, m, net24)
	rng := rand.New(rand.NewPCG(1, 2))
	var rs []dsvc.DNRecord
	for i := 1; i < 255; i++ {
		rs = append(rs, randDN(rng, i))
	}
	if err := h.Import(ctx, rs); err != nil {
		t.Fatal(err)
	}
	for n := 0; n < 400; n++ {
		var q dsvc.Query
		for f := dsvc.Query(1); f <= dsvc.DNQFBootpOnly; f <<= 1 {
			switch rng.IntN(4) {
			case 0:
				q = q.Eq(f)
			case 1:
				q = q.Neq(f)
			}
		}
		if n < 4 { // the quirk on its own
			q = [...]dsvc.Query{0, dsvc.Query(0).Eq(dsvc.DNQFDynamic), dsvc.Query(0).Neq(dsvc.DNQFDynamic), dsvc.Query(0).Neq(dsvc.DNQFAutomatic)}[n]
		}
		target := randDN(rng, 1+rng.IntN(254))
		var want []netip.Addr
		for i := range rs {
			if dsvc.MatchDN(q, &rs[i], &target) {
				want = append(want, rs[i].CIP)
			}
		}
		got, err := h.Lookup(ctx, false, q, -1, &target)
		if err != nil {
			t.Fatal(err)
		}
		var gotIPs []netip.Addr
		for _, r := range got {
			gotIPs = append(gotIPs, r.CIP)
		}
		if !slices.Equal(gotIPs, want) {
			t.Fatalf("query %#08x target %+v: got %d records, MatchDN %d", uint32(q), target, len(gotIPs), len(want))
		}
		c, err := h.Count(ctx, q, &target)
		if err != nil || c != len(want) {
			t.Fatalf("Count %#08x: %d, %v; want %d", uint32(q), c, err, len(want))
		}
	}
	// The records read back are the ones imported, signatures included.
	got, err := h.Lookup(ctx, false, 0, -1, nil)
	if err != nil || len(got) != len(rs) {
		t.Fatal(len(got), err)
	}
	for i := range rs {
		g, w := got[i], rs[i]
		if !bytes.Equal(g.CID, w.CID) || g.Flags != w.Flags || g.CIP != w.CIP || g.SIP != w.SIP || g.Lease != w.Lease || g.Macro != w.Macro || g.Comment != w.Comment || g.Sig != w.Sig {
			t.Fatalf("record %d: got %+v, want %+v", i, g, w)
		}
	}
}

func TestQueryMatchesMatchDT(t *testing.T) {
	needServer(t)
	m := newMod(t)
	loc := freshLocation(t)
	if err := m.MkLocation(ctx, loc); err != nil {
		t.Fatal(err)
	}
	hh, err := m.OpenDT(ctx, loc, "postgres1_dhcptab", dsvc.Create|dsvc.Read|dsvc.Write)
	if err != nil {
		t.Fatal(err)
	}
	h := hh.(*postgres.DTTable)
	var rs []dsvc.DTRecord
	for _, k := range []string{"A", "B", "Sterm", "sTERM"} {
		for _, ty := range []dsvc.DTType{dsvc.DTSymbol, dsvc.DTMacro} {
			rs = append(rs, dsvc.DTRecord{Key: k, Type: ty, Value: ":x=\xff:", Sig: dsvc.RandomSig()})
		}
	}
	if err := h.Import(ctx, rs); err != nil {
		t.Fatal(err)
	}
	for q := dsvc.Query(0); q < 1<<18; q++ {
		if !q.Valid(dsvc.DTQAll) {
			continue
		}
		for _, tg := range rs[:4] {
			var want []dsvc.DTRecord
			for _, r := range rs {
				if dsvc.MatchDT(q, &r, &tg) {
					want = append(want, r)
				}
			}
			got, err := h.Lookup(ctx, false, q, -1, &tg)
			if err != nil || len(got) != len(want) {
				t.Fatalf("query %#x target %v: %d records, %v; want %d", uint32(q), tg, len(got), err, len(want))
			}
			for _, g := range got {
				if !slices.Contains(want, g) {
					t.Fatalf("query %#x: %+v", uint32(q), g)
				}
			}
		}
	}
}

// TestCompareAndSet: a stale signature changes nothing and is told from a
// missing record.
func TestCompareAndSet(t *testing.T) {
	needServer(t)
	m := newMod(t)
	_, h := newDN(t, m, net24)
	r := dsvc.DNRecord{CID: []byte{1}, CIP: netip.MustParseAddr("10.1.2.5"), SIP: netip.MustParseAddr("10.1.2.1")}
	if err := h.Add(ctx, &r); err != nil {
		t.Fatal(err)
	}
	dup := r
	if err := h.Add(ctx, &dup); dsvc.CodeOf(err) != dsvc.CodeExists {
		t.Fatalf("Add again: %v", err)
	}
	nr := r
	nr.Lease = 7
	if err := h.Modify(ctx, &r, &nr); err != nil || nr.Sig != dsvc.NextSig(r.Sig) {
		t.Fatalf("Modify: %v, sig %#x", err, nr.Sig)
	}
	stale := nr
	stale.Lease = 9
	if err := h.Modify(ctx, &r, &stale); dsvc.CodeOf(err) != dsvc.CodeCollision {
		t.Fatalf("Modify with a stale signature: %v", err)
	}
	if err := h.Delete(ctx, &r); dsvc.CodeOf(err) != dsvc.CodeCollision {
		t.Fatalf("Delete with a stale signature: %v", err)
	}
	got, _ := h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &r)
	if len(got) != 1 || got[0].Lease != 7 || got[0].Sig != nr.Sig {
		t.Fatalf("after the collisions: %+v", got)
	}
	if err := h.Delete(ctx, &nr); err != nil {
		t.Fatal(err)
	}
	if err := h.Modify(ctx, &nr, &stale); dsvc.CodeOf(err) != dsvc.CodeNoEnt {
		t.Fatalf("Modify of a deleted record: %v", err)
	}
	if err := h.Delete(ctx, &dsvc.DNRecord{CIP: r.CIP}); dsvc.CodeOf(err) != dsvc.CodeNoEnt {
		t.Fatalf("Delete of a deleted record: %v", err)
	}
}

// TestErrorMapping: the server's failures come back as their dsvc codes.
func TestErrorMapping(t *testing.T) {
	dsn := needServer(t)
	m := newMod(t)
	loc, h := newDN(t, m, net24)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cases := []struct {
		what string
		loc  string
		want dsvc.Code
	}{
		{"connection refused", fmt.Sprintf("host=127.0.0.1 port=%d user=corral dbname=corral sslmode=disable connect_timeout=5", port), dsvc.CodeUnavailable},
		{"unknown role", dsn + " user=nosuchrole", dsvc.CodeNoCred},
		{"missing database", dsn + " dbname=nosuchdb", dsvc.CodeNoLocation},
		{"no catalog", freshLocation(t), dsvc.CodeNoLocation},
		{"not a connection string", "host=a port=notaport", dsvc.CodeBadPath},
	}
	for _, c := range cases {
		if err := m.Status(ctx, c.loc); dsvc.CodeOf(err) != c.want {
			t.Errorf("%s: Status: %v, want %v", c.what, err, c.want)
		}
	}

	conn, err := pgx.Connect(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// A table made behind the module's back: creating it is TableExists.
	if _, err := conn.Exec(ctx, `CREATE TABLE "postgres1_10_9_9_0" (x int)`); err != nil {
		t.Fatal(err)
	}
	_, err = m.OpenDN(ctx, loc, "postgres1_10.9.9.0", netip.MustParsePrefix("10.9.9.0/24"), dsvc.Create|dsvc.Read|dsvc.Write)
	if dsvc.CodeOf(err) != dsvc.CodeTableExists {
		t.Errorf("Create over a stray table: %v", err)
	}
	if names, _ := m.ListDN(ctx, loc); len(names) != 1 {
		t.Errorf("the failed create left a catalog entry: %q", names)
	}
	// A table dropped behind its back: NoTable.
	if _, err := conn.Exec(ctx, `DROP TABLE "postgres1_10_1_2_0"`); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Count(ctx, 0, nil); dsvc.CodeOf(err) != dsvc.CodeNoTable {
		t.Errorf("Count of a dropped table: %v", err)
	}
}

func TestLocToken(t *testing.T) {
	m := newMod(t)
	a, err1 := m.LocToken("postgres://dhcp@db.example:5432/dsvc?search_path=s1")
	b, err2 := m.LocToken("host=db.example user=dhcp dbname=dsvc search_path=s1")
	if err1 != nil || err2 != nil || a != b {
		t.Fatalf("%q %v / %q %v", a, err1, b, err2)
	}
	c, _ := m.LocToken("host=db.example user=dhcp dbname=dsvc search_path=s2")
	if c == a {
		t.Fatal("two schemas, one token")
	}
}

// TestImportAllOrNothing: an import that meets a stored record stores
// none of its records and leaves their signatures as given.
func TestImportAllOrNothing(t *testing.T) {
	needServer(t)
	m := newMod(t)
	_, h := newDN(t, m, net24)
	r := dsvc.DNRecord{CID: []byte{1}, CIP: netip.MustParseAddr("10.1.2.9"), SIP: netip.MustParseAddr("10.1.2.1")}
	if err := h.Add(ctx, &r); err != nil {
		t.Fatal(err)
	}
	rs := []dsvc.DNRecord{randDN(rand.New(rand.NewPCG(3, 4)), 8), r}
	rs[1].Sig = 0
	if err := h.Import(ctx, rs); dsvc.CodeOf(err) != dsvc.CodeExists {
		t.Fatalf("Import over a stored record: %v", err)
	}
	if rs[0].Sig != 0 || rs[1].Sig != 0 {
		t.Fatalf("a failed import wrote signatures back: %#x %#x", rs[0].Sig, rs[1].Sig)
	}
	if n, err := h.Count(ctx, 0, nil); err != nil || n != 1 {
		t.Fatalf("after a failed import: %d records, %v", n, err)
	}
}
