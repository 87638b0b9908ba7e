package binfiles

import (
	"bytes"

	"github.com/corralhq/corral/dsvc"
)

// test reports whether one selected field passes: equal must be what the
// query asks for that field (DSVC_QISEQ) when it is selected.
func test(q, f dsvc.Query, equal bool) bool {
	if q&f == 0 {
		return true
	}
	return q.IsEq(f) == equal
}

// matchDN is the Solaris record_match: every selected field compared, a
// flag field as one bit of (record & F) against (target & F). DYNAMIC is
// bit 0 of nothing, so Eq(DNQFDynamic) holds for every record and
// Neq(DNQFDynamic) for none (dsvc/query.go).
func matchDN(q dsvc.Query, r, t *dsvc.DNRecord) bool {
	if !test(q, dsvc.DNQCID, bytes.Equal(r.CID, t.CID)) ||
		!test(q, dsvc.DNQCIP, r.CIP == t.CIP) ||
		!test(q, dsvc.DNQSIP, r.SIP == t.SIP) ||
		!test(q, dsvc.DNQLease, r.Lease == t.Lease) ||
		!test(q, dsvc.DNQMacro, r.Macro == t.Macro) {
		return false
	}
	flags := [...]struct {
		q dsvc.Query
		f dsvc.DNFlags
	}{
		{dsvc.DNQFDynamic, dsvc.DNDynamic},
		{dsvc.DNQFAutomatic, dsvc.DNAutomatic},
		{dsvc.DNQFManual, dsvc.DNManual},
		{dsvc.DNQFUnusable, dsvc.DNUnusable},
		{dsvc.DNQFBootpOnly, dsvc.DNBootpOnly},
	}
	for _, fl := range flags {
		if !test(q, fl.q, r.Flags&fl.f == t.Flags&fl.f) {
			return false
		}
	}
	return true
}

func matchDT(q dsvc.Query, r, t *dsvc.DTRecord) bool {
	return test(q, dsvc.DTQKey, r.Key == t.Key) && test(q, dsvc.DTQType, r.Type == t.Type)
}
