package replicated_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/replicated"
	"github.com/corralhq/corral/rsm"
)

const (
	success = dsvc.CodeSuccess
	OpAdd   = replicated.OpAdd
	OpMod   = replicated.OpModify
	OpDel   = replicated.OpDelete
	OpImp   = replicated.OpImport
)

// setup makes the location, the dhcptab and the 10.0.0.0/24 network.
func setup(t testing.TB) *pair {
	p := newPair(t)
	p.want(success, mkloc(loc))
	p.want(success, create(dsvc.DHCPTab, tab, netip.Prefix{}))
	if r := p.want(success, create(dsvc.Network, net, net24)); r.Prefix != net24 {
		t.Fatalf("CREATE replied prefix %v", r.Prefix)
	}
	return p
}

func TestLocationsAndContainers(t *testing.T) {
	p := newPair(t)
	m := p.m()
	if err := m.Status(loc); !errors.Is(err, dsvc.ErrNoLocation) {
		t.Fatalf("Status before MKLOC: %v", err)
	}
	p.want(dsvc.CodeNoLocation, create(dsvc.DHCPTab, tab, netip.Prefix{}))
	p.want(success, mkloc(loc))
	p.want(dsvc.CodeExists, mkloc(loc))
	p.want(dsvc.CodeInval, mkloc(""))
	p.want(dsvc.CodeInval, mkloc("a\x00b"))
	must(t, m.Status(loc))

	p.want(success, create(dsvc.DHCPTab, tab, netip.Prefix{}))
	p.want(dsvc.CodeTableExists, create(dsvc.DHCPTab, tab, netip.Prefix{}))
	p.want(success, create(dsvc.Network, net, net24))
	p.want(dsvc.CodeTableExists, create(dsvc.Network, net, net24))
	p.want(success, create(dsvc.Network, "cluster1_10.1.0.0", netip.MustParsePrefix("10.1.0.0/16")))
	for _, bad := range []string{"10.0.0.1/24", "0.0.0.0/0"} {
		p.want(dsvc.CodeInval, create(dsvc.Network, "x", netip.MustParsePrefix(bad)))
	}
	p.want(dsvc.CodeInval, create(dsvc.Network, "", net24))

	names, err := m.List(loc, dsvc.Network)
	if err != nil || !reflect.DeepEqual(names, []string{"cluster1_10.0.0.0", "cluster1_10.1.0.0"}) {
		t.Fatalf("List networks: %q %v", names, err)
	}
	if names, _ := m.List(loc, dsvc.DHCPTab); !reflect.DeepEqual(names, []string{tab}) {
		t.Fatalf("List dhcptab: %q", names)
	}
	if _, err := m.List("nowhere", dsvc.DHCPTab); !errors.Is(err, dsvc.ErrNoLocation) {
		t.Fatalf("List of no location: %v", err)
	}
	if pf, err := m.Container(loc, dsvc.Network, net); err != nil || pf != net24 {
		t.Fatalf("Container: %v %v", pf, err)
	}
	if _, err := m.Container(loc, dsvc.Network, "cluster1_10.9.0.0"); !errors.Is(err, dsvc.ErrNoTable) {
		t.Fatalf("Container of none: %v", err)
	}

	// Operations on a missing container or location.
	p.want(dsvc.CodeNoTable, replicated.Command{Op: OpAdd, Loc: loc, Kind: dsvc.DHCPTab, Container: "nope", DT: []dsvc.DTRecord{dt('m', "k", "", 0)}})
	p.want(dsvc.CodeNoTable, replicated.Command{Op: replicated.OpRemove, Loc: loc, Kind: dsvc.Network, Container: "nope"})
	p.want(dsvc.CodeNoLocation, replicated.Command{Op: OpAdd, Loc: "nowhere", Kind: dsvc.DHCPTab, Container: tab, DT: []dsvc.DTRecord{dt('m', "k", "", 0)}})

	// REMOVE takes the records with it, from the Tx too.
	p.want(success, dnCmd(OpAdd, 1, dn("10.0.0.5", "\x01\x02", 0)))
	p.want(success, replicated.Command{Op: replicated.OpRemove, Loc: loc, Kind: dsvc.Network, Container: net})
	if _, err := m.LookupDN(loc, net, 0, -1, nil); !errors.Is(err, dsvc.ErrNoTable) {
		t.Fatalf("lookup after REMOVE: %v", err)
	}
	for k := range p.txs[0].m {
		if k[0] == 'n' {
			t.Fatalf("REMOVE left record key %x", k)
		}
	}
	// Created again, it is empty.
	p.want(success, create(dsvc.Network, net, net24))
	if n, err := m.CountDN(loc, net, 0, nil); n != 0 || err != nil {
		t.Fatalf("re-created container has %d records (%v)", n, err)
	}
}

func TestDTRules(t *testing.T) {
	p := setup(t)
	m := p.m()
	r := p.want(success, dtCmd(OpAdd, 7, dt('m', "Locale", ":UTCoffst=-18000:", 0)))
	if r.Sig != dsvc.NewSig(7) {
		t.Fatalf("ADD sig %#x, want NewSig(7) %#x", r.Sig, dsvc.NewSig(7))
	}
	p.want(dsvc.CodeExists, dtCmd(OpAdd, 8, dt('m', "Locale", "x", 0)))
	sym := p.want(success, dtCmd(OpAdd, 9, dt('s', "Locale", "Site,130,ASCII,1,0", 0))).Sig // same key, other type
	p.want(dsvc.CodeInval, dtCmd(OpAdd, 1, dt('m', "", "x", 0)))
	p.want(dsvc.CodeInval, dtCmd(OpAdd, 1, dt('x', "k", "x", 0)))
	p.want(dsvc.CodeInval, dtCmd(OpAdd, 1, dt('m', "k", "a\nb", 0)))

	// Modify: missing, stale, rename onto another, then good.
	p.want(dsvc.CodeNoEnt, dtCmd(OpMod, 0, dt('m', "None", "", 1), dt('m', "None", "v", 0)))
	p.want(dsvc.CodeCollision, dtCmd(OpMod, 0, dt('m', "Locale", "", r.Sig+1), dt('m', "Locale", "changed", 0)))
	if rs, _ := m.LookupDT(loc, tab, dsvc.Query(0).Eq(dsvc.DTQKey|dsvc.DTQType), -1, &dsvc.DTRecord{Key: "Locale", Type: 'm'}); len(rs) != 1 || rs[0].Value != ":UTCoffst=-18000:" || rs[0].Sig != r.Sig {
		t.Fatalf("a collision changed the record: %+v", rs)
	}
	p.want(dsvc.CodeExists, dtCmd(OpMod, 0, dt('m', "Locale", "", r.Sig), dt('s', "Locale", "x", 0)))
	p.want(dsvc.CodeInval, dtCmd(OpMod, 0, dt('m', "Locale", "", r.Sig), dt('m', "", "x", 0)))
	r2 := p.want(success, dtCmd(OpMod, 0, dt('m', "Locale", "", r.Sig), dt('m', "Locale2", ":v:", 12345)))
	if r2.Sig != dsvc.NextSig(r.Sig) {
		t.Fatalf("MODIFY sig %#x, want %#x", r2.Sig, dsvc.NextSig(r.Sig))
	}
	rs, _ := m.LookupDT(loc, tab, 0, -1, nil)
	want := []dsvc.DTRecord{dt('s', "Locale", "Site,130,ASCII,1,0", sym), dt('m', "Locale2", ":v:", r2.Sig)}
	if !reflect.DeepEqual(rs, want) {
		t.Fatalf("after rename: %+v, want %+v", rs, want)
	}

	// Delete: missing, stale, by signature, unconditional.
	p.want(dsvc.CodeNoEnt, dtCmd(OpDel, 0, dt('m', "Locale", "", 0)))
	p.want(dsvc.CodeCollision, dtCmd(OpDel, 0, dt('m', "Locale2", "", r.Sig)))
	p.want(success, dtCmd(OpDel, 0, dt('m', "Locale2", "", r2.Sig)))
	p.want(success, dtCmd(OpDel, 0, dt('s', "Locale", "", 0)))
	if n, _ := m.CountDT(loc, tab, 0, nil); n != 0 {
		t.Fatalf("%d records after deleting all", n)
	}

	// The seed's delete and re-create: a client holding the old record's
	// signature must not modify the new one.
	old := p.want(success, dtCmd(OpAdd, 1, dt('m', "Mac", ":a:", 0))).Sig
	p.want(success, dtCmd(OpDel, 0, dt('m', "Mac", "", old)))
	p.want(success, dtCmd(OpAdd, 2, dt('m', "Mac", ":b:", 0)))
	p.want(dsvc.CodeCollision, dtCmd(OpMod, 0, dt('m', "Mac", "", old), dt('m', "Mac", ":c:", 0)))
}

func TestDNRules(t *testing.T) {
	p := setup(t)
	m := p.m()
	a := p.want(success, dnCmd(OpAdd, 3, dn("10.0.0.5", "\x01\xaa", 0))).Sig
	if a != dsvc.NewSig(3) {
		t.Fatalf("ADD sig %#x", a)
	}
	b := p.want(success, dnCmd(OpAdd, 4, dn("10.0.0.6", "\x01\xbb", 0))).Sig
	p.want(dsvc.CodeExists, dnCmd(OpAdd, 5, dn("10.0.0.5", "\x01\xcc", 0)))
	p.want(dsvc.CodeInval, dnCmd(OpAdd, 5, dn("10.0.1.5", "\x01", 0))) // not in the network
	p.want(dsvc.CodeInval, dnCmd(OpAdd, 5, dn("10.0.0.7", "", 0)))     // no client id
	bad := dn("10.0.0.7", "\x01", 0)
	bad.Flags = 0x10
	p.want(dsvc.CodeInval, dnCmd(OpAdd, 5, bad))

	p.want(dsvc.CodeNoEnt, dnCmd(OpMod, 0, dn("10.0.0.9", "", 1), dn("10.0.0.9", "\x01", 0)))
	p.want(dsvc.CodeCollision, dnCmd(OpMod, 0, dn("10.0.0.5", "", b), dn("10.0.0.5", "\x01", 0)))
	p.want(dsvc.CodeExists, dnCmd(OpMod, 0, dn("10.0.0.5", "", a), dn("10.0.0.6", "\x01", 0)))
	p.want(dsvc.CodeInval, dnCmd(OpMod, 0, dn("10.0.0.5", "", a), dn("10.0.2.5", "\x01", 0)))

	// A modify that changes the client id moves it in the index; one that
	// renames moves the record.
	a2 := p.want(success, dnCmd(OpMod, 0, dn("10.0.0.5", "", a), dn("10.0.0.5", "\x01\xdd", 0))).Sig
	if a2 != dsvc.NextSig(a) {
		t.Fatalf("MODIFY sig %#x", a2)
	}
	byCID := func(cid string) []dsvc.DNRecord {
		rs, err := m.LookupDN(loc, net, dsvc.Query(0).Eq(dsvc.DNQCID), -1, &dsvc.DNRecord{CID: []byte(cid)})
		must(t, err)
		return rs
	}
	if rs := byCID("\x01\xaa"); len(rs) != 0 {
		t.Fatalf("old client id still indexed: %+v", rs)
	}
	if rs := byCID("\x01\xdd"); len(rs) != 1 || rs[0].CIP != ip("10.0.0.5") {
		t.Fatalf("new client id: %+v", rs)
	}
	a3 := p.want(success, dnCmd(OpMod, 0, dn("10.0.0.5", "", a2), dn("10.0.0.8", "\x01\xdd", 0))).Sig
	if rs := byCID("\x01\xdd"); len(rs) != 1 || rs[0].CIP != ip("10.0.0.8") || rs[0].Sig != a3 {
		t.Fatalf("after rename: %+v", rs)
	}
	if n, _ := m.CountDN(loc, net, dsvc.Query(0).Eq(dsvc.DNQCIP), &dsvc.DNRecord{CIP: ip("10.0.0.5")}); n != 0 {
		t.Fatal("renamed record still at its old address")
	}

	p.want(dsvc.CodeNoEnt, dnCmd(OpDel, 0, dn("10.0.0.5", "", 0)))
	p.want(dsvc.CodeCollision, dnCmd(OpDel, 0, dn("10.0.0.8", "", a2)))
	p.want(success, dnCmd(OpDel, 0, dn("10.0.0.8", "", a3)))
	p.want(success, dnCmd(OpDel, 0, dn("10.0.0.6", "", 0)))
	if n, _ := m.CountDN(loc, net, 0, nil); n != 0 {
		t.Fatalf("%d records left", n)
	}
}

func TestImport(t *testing.T) {
	p := setup(t)
	m := p.m()
	p.want(success, dnCmd(OpAdd, 1, dn("10.0.0.3", "\x01\x03", 0)))
	// Signatures kept; 0 gets NewSig(Gen).
	p.want(success, dnCmd(OpImp, 9, dn("10.0.0.2", "\x00", 0xabc0000000007), dn("10.0.0.4", "\x00", 0), dn("10.0.0.1", "\x00", 5)))
	rs, _ := m.LookupDN(loc, net, 0, -1, nil)
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%v %x %#x", r.CIP, r.CID, r.Sig))
	}
	want := []string{"10.0.0.1 00 0x5", "10.0.0.2 00 0xabc0000000007", fmt.Sprintf("10.0.0.3 0103 %#x", dsvc.NewSig(1)), fmt.Sprintf("10.0.0.4 00 %#x", dsvc.NewSig(9))}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after IMPORT: %q, want %q", got, want)
	}
	// A stored address, or one twice in the command: Exists, nothing written.
	before := dump(t, m, loc)
	p.want(dsvc.CodeExists, dnCmd(OpImp, 9, dn("10.0.0.9", "\x00", 0), dn("10.0.0.3", "\x00", 0)))
	p.want(dsvc.CodeExists, dnCmd(OpImp, 9, dn("10.0.0.9", "\x00", 0), dn("10.0.0.9", "\x00", 0)))
	p.want(success, dtCmd(OpImp, 9, dt('m', "once", "", 0)))
	p.want(dsvc.CodeExists, dtCmd(OpImp, 9, dt('m', "twice", "", 0), dt('m', "once", "", 0)))
	p.want(success, dtCmd(OpDel, 0, dt('m', "once", "", 0)))
	if after := dump(t, m, loc); after != before {
		t.Fatalf("a refused IMPORT changed the state:\n%s\nwas\n%s", after, before)
	}
	// One bad record: nothing is written.
	p.want(dsvc.CodeInval, dnCmd(OpImp, 9, dn("10.0.0.9", "\x00", 0), dn("10.0.1.9", "\x00", 0)))
	p.want(dsvc.CodeInval, dtCmd(OpImp, 9, dt('m', "ok", "", 0), dt('m', "bad ", "", 0)))
	if after := dump(t, m, loc); after != before {
		t.Fatalf("a refused IMPORT changed the state:\n%s\nwas\n%s", after, before)
	}
	p.want(success, dtCmd(OpImp, 2, dt('s', "b", "v", 6), dt('m', "a", "", 0)))
	rt, _ := m.LookupDT(loc, tab, 0, -1, nil)
	if !reflect.DeepEqual(rt, []dsvc.DTRecord{dt('m', "a", "", dsvc.NewSig(2)), dt('s', "b", "v", 6)}) {
		t.Fatalf("dhcptab after IMPORT: %+v", rt)
	}
}

func TestBadCommands(t *testing.T) {
	p := setup(t)
	before := snapshot(t, p.m(), p.txs[0])
	for _, b := range [][]byte{nil, {2, 1}, {1, 99, 0, 0, 0, 0}, []byte("garbage that is not a command")} {
		if r := p.raw(b); r.Code != dsvc.CodeInval || r.Message == "" {
			t.Fatalf("command %x: reply %+v", b, r)
		}
	}
	if !bytes.Equal(before, snapshot(t, p.m(), p.txs[0])) {
		t.Fatal("a bad command changed the state")
	}
	// A failed Tx is the one Apply error.
	tx := newTx()
	tx.failPut = errors.New("disk full")
	c, _ := replicated.AppendCommand(nil, &replicated.Command{Op: replicated.OpMkLoc, Loc: "x"})
	if _, err := replicated.New().Apply(tx, rsm.Entry{Index: 1, Cmd: c}); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Apply with a failing Tx: %v", err)
	}
}

func TestLookups(t *testing.T) {
	p := setup(t)
	m := p.m()
	p.want(success, dtCmd(OpImp, 1, dt('s', "b", "", 1), dt('m', "b", "", 1), dt('m', "a", "", 1), dt('s', "c", "", 1)))
	keys := func(rs []dsvc.DTRecord) string {
		var s []string
		for _, r := range rs {
			s = append(s, string(r.Type)+r.Key)
		}
		return strings.Join(s, " ")
	}
	q := dsvc.Query(0)
	for _, tc := range []struct {
		q     dsvc.Query
		count int
		tgt   *dsvc.DTRecord
		want  string
	}{
		{0, -1, nil, "ma mb sb sc"},
		{0, 2, nil, "ma mb"},
		{q.Eq(dsvc.DTQKey), -1, &dsvc.DTRecord{Key: "b"}, "mb sb"},
		{q.Eq(dsvc.DTQKey | dsvc.DTQType), -1, &dsvc.DTRecord{Key: "b", Type: 's'}, "sb"},
		{q.Eq(dsvc.DTQType), -1, &dsvc.DTRecord{Type: 's'}, "sb sc"},
		{q.Neq(dsvc.DTQKey), -1, &dsvc.DTRecord{Key: "b"}, "ma sc"},
		{q.Neq(dsvc.DTQType).Eq(dsvc.DTQKey), -1, &dsvc.DTRecord{Key: "b", Type: 's'}, "mb"},
	} {
		rs, err := m.LookupDT(loc, tab, tc.q, tc.count, tc.tgt)
		n, err2 := m.CountDT(loc, tab, tc.q, tc.tgt)
		if err != nil || err2 != nil || keys(rs) != tc.want || (tc.count < 0 && n != len(rs)) {
			t.Errorf("LookupDT %#x count %d: %q (count %d) %v %v, want %q", uint32(tc.q), tc.count, keys(rs), n, err, err2, tc.want)
		}
	}
	if _, err := m.LookupDT(loc, tab, 0x04, -1, &dsvc.DTRecord{}); !errors.Is(err, dsvc.ErrInval) {
		t.Errorf("query outside DTQAll: %v", err)
	}
	if _, err := m.LookupDT(loc, tab, q.Eq(dsvc.DTQKey), -1, nil); !errors.Is(err, dsvc.ErrInval) {
		t.Errorf("query without a target: %v", err)
	}

	var rs []dsvc.DNRecord
	for i := 9; i >= 1; i-- { // out of order on purpose
		r := dn(fmt.Sprintf("10.0.0.%d", i), "\x00", 0)
		if i%3 == 0 {
			r.CID, r.Flags = []byte{1, byte(i)}, dsvc.DNManual
		}
		rs = append(rs, r)
	}
	p.want(success, dnCmd(OpImp, 1, rs...))
	cips := func(rs []dsvc.DNRecord) string {
		var s []string
		for _, r := range rs {
			s = append(s, fmt.Sprint(r.CIP.As4()[3]))
		}
		return strings.Join(s, " ")
	}
	for _, tc := range []struct {
		q     dsvc.Query
		count int
		tgt   *dsvc.DNRecord
		want  string
	}{
		{0, -1, nil, "1 2 3 4 5 6 7 8 9"},
		{q.Eq(dsvc.DNQCID), -1, &dsvc.DNRecord{CID: []byte{0}}, "1 2 4 5 7 8"},
		{q.Eq(dsvc.DNQCID), 2, &dsvc.DNRecord{CID: []byte{0}}, "1 2"},
		{q.Eq(dsvc.DNQCID), -1, &dsvc.DNRecord{CID: []byte{1, 6}}, "6"},
		{q.Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: ip("10.0.0.4")}, "4"},
		{q.Eq(dsvc.DNQCIP).Eq(dsvc.DNQFManual), -1, &dsvc.DNRecord{CIP: ip("10.0.0.4"), Flags: dsvc.DNManual}, ""},
		{q.Eq(dsvc.DNQFManual), -1, &dsvc.DNRecord{Flags: dsvc.DNManual}, "3 6 9"},
		{q.Neq(dsvc.DNQCID), 3, &dsvc.DNRecord{CID: []byte{0}}, "3 6 9"},
		{q.Eq(dsvc.DNQFDynamic), -1, &dsvc.DNRecord{}, "1 2 3 4 5 6 7 8 9"},
		{q.Neq(dsvc.DNQFDynamic), -1, &dsvc.DNRecord{}, ""},
		{q.Eq(dsvc.DNQCID).Neq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CID: []byte{0}, CIP: ip("10.0.0.2")}, "1 4 5 7 8"},
		{0, 0, nil, ""},
	} {
		rs, err := m.LookupDN(loc, net, tc.q, tc.count, tc.tgt)
		n, err2 := m.CountDN(loc, net, tc.q, tc.tgt)
		if err != nil || err2 != nil || cips(rs) != tc.want || (tc.count < 0 && n != len(rs)) {
			t.Errorf("LookupDN %#x count %d: %q (count %d) %v %v, want %q", uint32(tc.q), tc.count, cips(rs), n, err, err2, tc.want)
		}
	}
	// A record handed out is the caller's.
	got, _ := m.LookupDN(loc, net, q.Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: ip("10.0.0.3")})
	got[0].CID[1] = 0xff
	if again, _ := m.LookupDN(loc, net, q.Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: ip("10.0.0.3")}); again[0].CID[1] != 3 {
		t.Fatal("changing a returned client id changed the machine's record")
	}
	if _, err := m.LookupDN(loc, "nope", 0, -1, nil); !errors.Is(err, dsvc.ErrNoTable) {
		t.Errorf("lookup of no container: %v", err)
	}
	if _, err := m.CountDN("nowhere", net, 0, nil); !errors.Is(err, dsvc.ErrNoLocation) {
		t.Errorf("count in no location: %v", err)
	}
}

// rich builds a state with two locations, both kinds, renames, deletes.
func rich(t testing.TB) *pair {
	p := setup(t)
	p.want(success, mkloc("/other"))
	p.want(success, replicated.Command{Op: replicated.OpCreate, Loc: "/other", Kind: dsvc.Network, Container: "cluster1_192.168.0.0", Prefix: netip.MustParsePrefix("192.168.0.0/16")})
	p.want(success, replicated.Command{Op: replicated.OpCreate, Loc: "/other", Kind: dsvc.DHCPTab, Container: "cluster1_dhcptab"})
	p.want(success, dtCmd(OpAdd, 1, dt('m', "Locale", ":UTCoffst=-18000:", 0)))
	p.want(success, dtCmd(OpAdd, 2, dt('s', "Site", "Site,130,ASCII,1,0", 0)))
	for i := 1; i <= 40; i++ {
		sig := p.want(success, dnCmd(OpAdd, uint16(i), dn(fmt.Sprintf("10.0.0.%d", i), "\x00", 0))).Sig
		if i%4 == 0 {
			p.want(success, dnCmd(OpMod, 0, dn(fmt.Sprintf("10.0.0.%d", i), "", sig), dn(fmt.Sprintf("10.0.0.%d", 100+i), "\x01\x02", 0)))
		}
		if i%7 == 0 && i%4 != 0 {
			p.want(success, dnCmd(OpDel, 0, dn(fmt.Sprintf("10.0.0.%d", i), "", 0)))
		}
	}
	p.want(success, replicated.Command{Op: OpImp, Loc: "/other", Kind: dsvc.Network, Container: "cluster1_192.168.0.0", Gen: 5,
		DN: []dsvc.DNRecord{{CID: []byte{0}, CIP: ip("192.168.3.4"), SIP: ip("192.168.0.1"), Lease: dsvc.LeasePermanent, Sig: 77}}})
	return p
}

func TestSnapshotRestoreLoad(t *testing.T) {
	p := rich(t)
	locs := []string{loc, "/other", "/none"}
	want := dump(t, p.m(), locs...)
	if d := dump(t, p.ms[1], locs...); d != want {
		t.Fatalf("two machines fed the same entries differ:\n%s\n%s", d, want)
	}
	s1 := snapshot(t, p.m(), p.txs[0])
	if s := snapshot(t, p.ms[1], p.txs[1]); !bytes.Equal(s, s1) {
		t.Fatal("two machines fed the same entries snapshot differently")
	}

	m3, tx3 := replicated.New(), newTx()
	must(t, m3.Restore(tx3, bytes.NewReader(s1)))
	if d := dump(t, m3, locs...); d != want {
		t.Fatalf("restored machine reads differently:\n%s\nwant\n%s", d, want)
	}
	if s := snapshot(t, m3, tx3); !bytes.Equal(s, s1) {
		t.Fatal("the restored machine's snapshot differs")
	}
	if !reflect.DeepEqual(tx3.m, p.txs[0].m) {
		t.Fatal("the restored key space differs from the original")
	}

	m4 := replicated.New()
	must(t, m4.Load(p.txs[0]))
	if d := dump(t, m4, locs...); d != want {
		t.Fatalf("loaded machine reads differently:\n%s\nwant\n%s", d, want)
	}

	// The restored machine goes on like the original.
	for i, pm := range []struct {
		m  *replicated.Machine
		tx *memTx
	}{{p.m(), p.txs[0]}, {m3, tx3}, {m4, p.txs[0].clone()}} {
		c, _ := replicated.AppendCommand(nil, ptr(dnCmd(OpAdd, 42, dn("10.0.0.200", "\x05", 0))))
		res, err := pm.m.Apply(pm.tx, rsm.Entry{Index: 1000, Cmd: c})
		if r, _ := replicated.ParseReply(res.Reply); err != nil || r.Code != success {
			t.Fatalf("machine %d after restore: %+v %v", i, r, err)
		}
	}

	// Restoring an empty section, or over an old state, gives exactly
	// the snapshot's state.
	must(t, m3.Restore(newTx(), bytes.NewReader(nil)))
	if err := m3.Status(loc); !errors.Is(err, dsvc.ErrNoLocation) {
		t.Fatalf("after restoring empty: %v", err)
	}
}

func (t *memTx) clone() *memTx {
	c := newTx()
	for k, v := range t.m {
		c.m[k] = bytes.Clone(v)
	}
	return c
}

func ptr[T any](v T) *T { return &v }

func TestRestoreRefuses(t *testing.T) {
	p := rich(t)
	good := snapshot(t, p.m(), p.txs[0])
	m := replicated.New()
	must(t, m.Restore(newTx(), bytes.NewReader(good)))
	want := dump(t, m, loc)
	for name, b := range map[string][]byte{
		"version 2":  append([]byte{2}, good[1:]...),
		"reserved":   append([]byte{1, 0, 1}, good[3:]...),
		"truncated":  good[:len(good)-1],
		"header":     good[:2],
		"trailing":   append(bytes.Clone(good), 0),
		"bad tag":    append(bytes.Clone(good[:len(good)-1]), 9, 0, 0, 0, 0, 0),
		"huge item":  append(bytes.Clone(good[:4]), 1, 0, 0, 0, 1),
		"rec first":  append(bytes.Clone(good[:4]), 3, 0, 0, 0, 0, 0),
		"empty loc":  append(bytes.Clone(good[:4]), 1, 0, 0, 0, 0, 0),
		"loc repeat": append(bytes.Clone(good[:4]), 1, 1, 0, 0, 0, 'a', 1, 1, 0, 0, 0, 'a', 0),
	} {
		tx := newTx()
		if err := m.Restore(tx, bytes.NewReader(b)); !errors.Is(err, replicated.ErrSnapshot) {
			t.Errorf("%s: %v, want ErrSnapshot", name, err)
		}
		if d := dump(t, m, loc); d != want {
			t.Errorf("%s: a refused snapshot changed the mirror", name)
		}
	}
}

// TestConcurrentReads runs reads on other goroutines while entries apply;
// run with -race. Every record read is whole: its signature counts its
// modifies, and a lookup by address always finds it.
func TestConcurrentReads(t *testing.T) {
	p := setup(t)
	var sigs [16]uint64
	for i := range sigs {
		sigs[i] = p.want(success, dnCmd(OpAdd, 1, dn(fmt.Sprintf("10.0.0.%d", i+1), "\x00", 0))).Sig
	}
	m := p.m()
	done := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				cip := ip(fmt.Sprintf("10.0.0.%d", n%16+1))
				rs, err := m.LookupDN(loc, net, dsvc.Query(0).Eq(dsvc.DNQCIP), -1, &dsvc.DNRecord{CIP: cip})
				if err != nil || len(rs) != 1 || rs[0].Lease != uint32(rs[0].Sig&0xffff)-1+1000 {
					errs <- fmt.Errorf("lookup %v: %+v %v", cip, rs, err)
					return
				}
				if c, err := m.CountDN(loc, net, 0, nil); err != nil || c != 16 {
					errs <- fmt.Errorf("count %d %v", c, err)
					return
				}
			}
		}()
	}
	for round := 0; round < 100; round++ {
		for i := range sigs {
			cip := fmt.Sprintf("10.0.0.%d", i+1)
			nr := dn(cip, "\x00", 0)
			nr.Lease = uint32(dsvc.NextSig(sigs[i])&0xffff) + 999 // the lease tells the signature
			sigs[i] = p.want(success, dnCmd(OpMod, 0, dn(cip, "", sigs[i]), nr)).Sig
		}
	}
	close(done)
	wg.Wait()
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// slash16 is the capacity: a full /16 in one network container.
func slash16() []dsvc.DNRecord {
	rs := make([]dsvc.DNRecord, 0, 65536)
	for i := 0; i < 65536; i++ {
		rs = append(rs, dsvc.DNRecord{CID: []byte{0}, CIP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}),
			SIP: ip("10.1.0.1"), Macro: "m", Comment: "free", Sig: uint64(i + 1)})
	}
	return rs
}

func TestCapacitySlash16(t *testing.T) {
	if testing.Short() {
		t.Skip("a /16: 65536 records")
	}
	start := time.Now()
	p := newPair(t)
	p.want(success, mkloc(loc))
	const name = "cluster1_10.1.0.0"
	p.want(success, replicated.Command{Op: replicated.OpCreate, Loc: loc, Kind: dsvc.Network, Container: name, Prefix: netip.MustParsePrefix("10.1.0.0/16")})
	c := replicated.Command{Op: OpImp, Loc: loc, Kind: dsvc.Network, Container: name, DN: slash16()}
	p.want(success, c)
	m := p.m()
	if n, err := m.CountDN(loc, name, 0, nil); n != 65536 || err != nil {
		t.Fatalf("count %d %v", n, err)
	}
	free, err := m.LookupDN(loc, name, dsvc.Query(0).Eq(dsvc.DNQCID), 1, &dsvc.DNRecord{CID: []byte{0}})
	if err != nil || len(free) != 1 || free[0].CIP != ip("10.1.0.0") {
		t.Fatalf("first free: %+v %v", free, err)
	}
	// Taking addresses one by one moves them out of the free index.
	for i := 0; i < 256; i++ {
		r := free[0]
		nr := r
		nr.CID = []byte{1, byte(i)}
		p.want(success, replicated.Command{Op: OpMod, Loc: loc, Kind: dsvc.Network, Container: name, DN: []dsvc.DNRecord{r, nr}})
		free, _ = m.LookupDN(loc, name, dsvc.Query(0).Eq(dsvc.DNQCID), 1, &dsvc.DNRecord{CID: []byte{0}})
	}
	if free[0].CIP != ip("10.1.1.0") {
		t.Fatalf("first free after 256 taken: %v", free[0].CIP)
	}
	s := snapshot(t, m, p.txs[0])
	m2, tx2 := replicated.New(), newTx()
	must(t, m2.Restore(tx2, bytes.NewReader(s)))
	if !bytes.Equal(snapshot(t, m2, tx2), s) {
		t.Fatal("second snapshot differs")
	}
	a, _ := m.LookupDN(loc, name, 0, -1, nil)
	b, _ := m2.LookupDN(loc, name, 0, -1, nil)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("restored /16 reads differently")
	}
	t.Logf("/16: import, 256 modifies, snapshot of %d bytes and restore in %v (two machines)", len(s), time.Since(start))
}
