package postgres

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/corralhq/corral/dsvc"
)

// where builds a WHERE clause and its arguments, numbered from $1.
type where struct {
	conds []string
	args  []any
}

// cmp adds "col = $n" (eq) or "col <> $n".
func (w *where) cmp(col string, eq bool, v any) {
	w.args = append(w.args, v)
	op := "<>"
	if eq {
		op = "="
	}
	w.conds = append(w.conds, fmt.Sprintf("%s %s $%d", col, op, len(w.args)))
}

// arg adds an argument and returns its placeholder.
func (w *where) arg(v any) string {
	w.args = append(w.args, v)
	return fmt.Sprintf("$%d", len(w.args))
}

func (w *where) String() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// dtWhere is dsvc.MatchDT in SQL.
func dtWhere(q dsvc.Query, t *dsvc.DTRecord) *where {
	w := &where{}
	if q&dsvc.DTQKey != 0 {
		w.cmp("key", q.IsEq(dsvc.DTQKey), t.Key)
	}
	if q&dsvc.DTQType != 0 {
		w.cmp("type", q.IsEq(dsvc.DTQType), string(rune(t.Type)))
	}
	return w
}

var dnFlagBits = [...]struct {
	q dsvc.Query
	f dsvc.DNFlags
}{
	{dsvc.DNQFAutomatic, dsvc.DNAutomatic},
	{dsvc.DNQFManual, dsvc.DNManual},
	{dsvc.DNQFUnusable, dsvc.DNUnusable},
	{dsvc.DNQFBootpOnly, dsvc.DNBootpOnly},
}

// dnWhere is dsvc.MatchDN in SQL, with its DYNAMIC quirk: DNQFDynamic
// compares no bit, so equal selects every record and not-equal none.
func dnWhere(q dsvc.Query, t *dsvc.DNRecord) *where {
	w := &where{}
	if q&dsvc.DNQCID != 0 {
		w.cmp("cid", q.IsEq(dsvc.DNQCID), nonNil(t.CID))
	}
	if q&dsvc.DNQCIP != 0 {
		w.cmp("cip", q.IsEq(dsvc.DNQCIP), ip4(t.CIP))
	}
	if q&dsvc.DNQSIP != 0 {
		w.cmp("sip", q.IsEq(dsvc.DNQSIP), ip4(t.SIP))
	}
	if q&dsvc.DNQLease != 0 {
		w.cmp("lease", q.IsEq(dsvc.DNQLease), int64(t.Lease))
	}
	if q&dsvc.DNQMacro != 0 {
		w.cmp("macro", q.IsEq(dsvc.DNQMacro), t.Macro)
	}
	if q.IsNeq(dsvc.DNQFDynamic) {
		w.conds = append(w.conds, "FALSE")
	}
	for _, b := range dnFlagBits {
		if q&b.q == 0 {
			continue
		}
		op := "<>"
		if q.IsEq(b.q) {
			op = "="
		}
		w.conds = append(w.conds, fmt.Sprintf("flags & %d %s %s", b.f, op, w.arg(int16(t.Flags&b.f))))
	}
	return w
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// ip4 stores an IPv4 address as its 32-bit number; anything else (the
// zero Addr of a target) as -1, which no stored address equals.
func ip4(a netip.Addr) int64 {
	if !a.Is4() {
		return -1
	}
	b := a.As4()
	return int64(b[0])<<24 | int64(b[1])<<16 | int64(b[2])<<8 | int64(b[3])
}

func fromIP4(v int64) netip.Addr {
	if v < 0 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// limit is the LIMIT clause of a lookup of count records (< 0: all).
func limit(count int) string {
	if count < 0 {
		return ""
	}
	return fmt.Sprintf(" LIMIT %d", count)
}
