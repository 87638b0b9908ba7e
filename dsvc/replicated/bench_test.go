package replicated_test

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/replicated"
	"github.com/corralhq/corral/rsm"
)

// benchNet is a machine with a /16 of free records (one machine; the
// pair's second is not needed).
func benchNet(b *testing.B) (*replicated.Machine, *memTx, string) {
	m, tx := replicated.New(), newTx()
	const name = "cluster1_10.1.0.0"
	for i, c := range []replicated.Command{
		mkloc(loc),
		{Op: replicated.OpCreate, Loc: loc, Kind: dsvc.Network, Container: name, Prefix: netip.MustParsePrefix("10.1.0.0/16")},
		{Op: replicated.OpImport, Loc: loc, Kind: dsvc.Network, Container: name, DN: slash16()},
	} {
		cb, err := replicated.AppendCommand(nil, &c)
		must(b, err)
		if _, err := m.Apply(tx, rsm.Entry{Index: uint64(i + 1), Cmd: cb}); err != nil {
			b.Fatal(err)
		}
	}
	return m, tx, name
}

// BenchmarkApplyModify: parse, signature check, Tx write and mirror
// change of one MODIFY in a /16 (the fake Tx's cost included).
func BenchmarkApplyModify(b *testing.B) {
	m, tx, name := benchNet(b)
	recs, _ := m.LookupDN(loc, name, 0, 1024, nil)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := &recs[i%len(recs)]
		nr := *r
		nr.Lease = uint32(i)
		cb, _ := replicated.AppendCommand(nil, &replicated.Command{Op: replicated.OpModify, Loc: loc, Kind: dsvc.Network, Container: name, DN: []dsvc.DNRecord{*r, nr}})
		res, err := m.Apply(tx, rsm.Entry{Index: uint64(10 + i), Cmd: cb})
		if err != nil {
			b.Fatal(err)
		}
		rep, _ := replicated.ParseReply(res.Reply)
		if rep.Code != dsvc.CodeSuccess {
			b.Fatal(rep.Message)
		}
		r.Sig = rep.Sig
	}
}

// BenchmarkLookupDN: the DHCP server's lookups in a /16.
func BenchmarkLookupDN(b *testing.B) {
	m, _, name := benchNet(b)
	q := dsvc.Query(0)
	for _, bc := range []struct {
		name string
		q    dsvc.Query
		n    int
		t    func(i int) *dsvc.DNRecord
	}{
		{"cip", q.Eq(dsvc.DNQCIP), -1, func(i int) *dsvc.DNRecord {
			return &dsvc.DNRecord{CIP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}
		}},
		{"first-free", q.Eq(dsvc.DNQCID), 1, func(int) *dsvc.DNRecord { return &dsvc.DNRecord{CID: []byte{0}} }},
		{"scan-manual", q.Eq(dsvc.DNQFManual), -1, func(int) *dsvc.DNRecord { return &dsvc.DNRecord{Flags: dsvc.DNManual} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				rs, err := m.LookupDN(loc, name, bc.q, bc.n, bc.t(i))
				if err != nil || (bc.n > 0 && len(rs) != 1) {
					b.Fatal(fmt.Sprint(len(rs), err))
				}
			}
		})
	}
}
