package binfiles

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/corralhq/corral/dsvc"
)

// queryRecords: 64 records over a /24 whose fields vary independently:
// 4 client ids (shared), every flag combination, 2 servers, 2 leases, 2 macros.
func queryRecords() []dsvc.DNRecord {
	var rs []dsvc.DNRecord
	for i := range 64 {
		rs = append(rs, dsvc.DNRecord{
			CID:   []byte{byte(i % 2), 0xee}[:1+i%4/2], // {0} {1} {0 ee} {1 ee}
			Flags: dsvc.DNFlags(i % 16),
			CIP:   nthIP(net24, 1+i),
			SIP:   nthIP(net24, 250+i/16%2),
			Lease: uint32(100 * (i / 32)),
			Macro: fmt.Sprint("m", i/8%2),
		})
	}
	return rs
}

// want is the reference: every selected field written out by hand.
func want(rs []dsvc.DNRecord, sel []dsvc.Query, eq bool, t *dsvc.DNRecord) []dsvc.DNRecord {
	var out []dsvc.DNRecord
	for _, r := range rs {
		ok := true
		for _, f := range sel {
			var same bool
			switch f {
			case dsvc.DNQCID:
				same = bytes.Equal(r.CID, t.CID)
			case dsvc.DNQCIP:
				same = r.CIP == t.CIP
			case dsvc.DNQSIP:
				same = r.SIP == t.SIP
			case dsvc.DNQLease:
				same = r.Lease == t.Lease
			case dsvc.DNQMacro:
				same = r.Macro == t.Macro
			case dsvc.DNQFDynamic:
				same = true // bit 0 of nothing
			case dsvc.DNQFAutomatic:
				same = r.Flags&dsvc.DNAutomatic == t.Flags&dsvc.DNAutomatic
			case dsvc.DNQFManual:
				same = r.Flags&dsvc.DNManual == t.Flags&dsvc.DNManual
			case dsvc.DNQFUnusable:
				same = r.Flags&dsvc.DNUnusable == t.Flags&dsvc.DNUnusable
			case dsvc.DNQFBootpOnly:
				same = r.Flags&dsvc.DNBootpOnly == t.Flags&dsvc.DNBootpOnly
			}
			ok = ok && same == eq
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

func cips(rs []dsvc.DNRecord) []string {
	var s []string
	for _, r := range rs {
		s = append(s, r.CIP.String())
	}
	slices.Sort(s)
	return s
}

func TestDNQueries(t *testing.T) {
	_, _, h := newDN(t, net24)
	rs := queryRecords()
	if err := h.Import(ctx, rs); err != nil {
		t.Fatal(err)
	}
	fields := []dsvc.Query{dsvc.DNQCID, dsvc.DNQCIP, dsvc.DNQSIP, dsvc.DNQLease, dsvc.DNQMacro,
		dsvc.DNQFDynamic, dsvc.DNQFAutomatic, dsvc.DNQFManual, dsvc.DNQFUnusable, dsvc.DNQFBootpOnly}
	targets := []dsvc.DNRecord{rs[5], rs[42], {CID: []byte{7}, CIP: ip("10.0.0.200"), Flags: dsvc.DNAll}}
	check := func(name string, q dsvc.Query, sel []dsvc.Query, eq bool, tg *dsvc.DNRecord) {
		t.Helper()
		exp := cips(want(rs, sel, eq, tg))
		got, err := h.Lookup(ctx, false, q, -1, tg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if g := cips(got); !slices.Equal(g, exp) {
			t.Errorf("%s: got %d records %v, want %d %v", name, len(g), g, len(exp), exp)
		}
		if n, _ := h.Count(ctx, q, tg); n != len(exp) {
			t.Errorf("%s: count %d, want %d", name, n, len(exp))
		}
	}
	for ti := range targets {
		tg := &targets[ti]
		for _, f := range fields {
			check(fmt.Sprintf("t%d eq %#x", ti, f), dsvc.Query(0).Eq(f), []dsvc.Query{f}, true, tg)
			check(fmt.Sprintf("t%d neq %#x", ti, f), dsvc.Query(0).Neq(f), []dsvc.Query{f}, false, tg)
		}
		// Pairs with the index fields, as in.dhcpd asks.
		for _, f := range fields {
			for _, key := range []dsvc.Query{dsvc.DNQCID, dsvc.DNQCIP} {
				q := dsvc.Query(0).Eq(key).Eq(f)
				check(fmt.Sprintf("t%d eq %#x+%#x", ti, key, f), q, []dsvc.Query{key, f}, true, tg)
				exp := cips(want(want(rs, []dsvc.Query{key}, true, tg), []dsvc.Query{f}, false, tg))
				if f == key {
					continue
				}
				got, _ := h.Lookup(ctx, false, dsvc.Query(0).Eq(key).Neq(f), -1, tg)
				if g := cips(got); !slices.Equal(g, exp) {
					t.Errorf("t%d eq %#x neq %#x: %v, want %v", ti, key, f, g, exp)
				}
			}
		}
	}
	// The DYNAMIC quirk, stated plainly.
	if n, _ := h.Count(ctx, dsvc.Query(0).Eq(dsvc.DNQFDynamic), &rs[3]); n != len(rs) {
		t.Errorf("Eq(DYNAMIC) selects %d, want all %d", n, len(rs))
	}
	if n, _ := h.Count(ctx, dsvc.Query(0).Neq(dsvc.DNQFDynamic), &rs[3]); n != 0 {
		t.Errorf("Neq(DYNAMIC) selects %d, want none", n)
	}
	// A client id that is a prefix of another matches only itself.
	if n, _ := h.Count(ctx, dsvc.Query(0).Eq(dsvc.DNQCID), &dsvc.DNRecord{CID: []byte{1}}); n != 16 {
		t.Errorf("cid {1}: %d records, want 16", n)
	}
	// count limits; 0 returns nothing at once; bad bits and a missing target are ErrInval.
	if got, _ := h.Lookup(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCID), 3, &rs[1]); len(got) != 3 {
		t.Errorf("count 3 (cid): %d", len(got))
	}
	if got, _ := h.Lookup(ctx, false, 0, 5, nil); len(got) != 5 {
		t.Errorf("count 5: %d", len(got))
	}
	if got, err := h.Lookup(ctx, false, 0, 0, nil); got != nil || err != nil {
		t.Errorf("count 0: %v %v", got, err)
	}
	_, err := h.Lookup(ctx, false, 0x0400, -1, &rs[0])
	wantCode(t, err, dsvc.CodeInval)
	_, err = h.Count(ctx, dsvc.Query(0).Eq(dsvc.DNQCID), nil)
	wantCode(t, err, dsvc.CodeInval)
}

func TestDTQueries(t *testing.T) {
	_, _, h := newDT(t)
	var rs []dsvc.DTRecord
	for i := range 20 {
		rs = append(rs, dsvc.DTRecord{Key: fmt.Sprint("k", i%10), Type: []dsvc.DTType{dsvc.DTSymbol, dsvc.DTMacro}[i/10], Value: fmt.Sprint(i)})
	}
	if err := h.Import(ctx, rs); err != nil {
		t.Fatal(err)
	}
	tg := &dsvc.DTRecord{Key: "k3", Type: dsvc.DTMacro}
	for _, c := range []struct {
		q    dsvc.Query
		want func(r dsvc.DTRecord) bool
	}{
		{0, func(dsvc.DTRecord) bool { return true }},
		{dsvc.Query(0).Eq(dsvc.DTQKey), func(r dsvc.DTRecord) bool { return r.Key == "k3" }},
		{dsvc.Query(0).Neq(dsvc.DTQKey), func(r dsvc.DTRecord) bool { return r.Key != "k3" }},
		{dsvc.Query(0).Eq(dsvc.DTQType), func(r dsvc.DTRecord) bool { return r.Type == dsvc.DTMacro }},
		{dsvc.Query(0).Neq(dsvc.DTQType), func(r dsvc.DTRecord) bool { return r.Type != dsvc.DTMacro }},
		{dsvc.Query(0).Eq(dsvc.DTQAll), func(r dsvc.DTRecord) bool { return r.Key == "k3" && r.Type == dsvc.DTMacro }},
		{dsvc.Query(0).Eq(dsvc.DTQKey).Neq(dsvc.DTQType), func(r dsvc.DTRecord) bool { return r.Key == "k3" && r.Type != dsvc.DTMacro }},
		{dsvc.Query(0).Neq(dsvc.DTQKey).Eq(dsvc.DTQType), func(r dsvc.DTRecord) bool { return r.Key != "k3" && r.Type == dsvc.DTMacro }},
	} {
		var exp []string
		for _, r := range rs {
			if c.want(r) {
				exp = append(exp, r.Value)
			}
		}
		got, err := h.Lookup(ctx, false, c.q, -1, tg)
		var g []string
		for _, r := range got {
			g = append(g, r.Value)
		}
		slices.Sort(exp)
		slices.Sort(g)
		if err != nil || !slices.Equal(g, exp) {
			t.Errorf("query %#x: %v %v, want %v", c.q, g, err, exp)
		}
	}
	_, err := h.Lookup(ctx, false, 0x04, -1, tg)
	wantCode(t, err, dsvc.CodeInval)
}
