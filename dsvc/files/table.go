package files

import (
	"bytes"
	"context"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/corralhq/corral/dsvc"
)

// table is an open container file. It holds no file open: every operation
// checks the file at the path afresh (the framework holds the container's
// lock around it), because writers of other processes replace it by
// rename, and reads and parses it only if it changed (cache.go).
type table struct {
	m      *Module
	path   string
	file   string // its name, as the header's first line has it
	net    netip.Prefix
	flags  dsvc.OpenFlags
	isDN   bool
	closed atomic.Bool
}

func (t *table) can(need dsvc.OpenFlags) error {
	if t.closed.Load() {
		return dsvc.Errorf(dsvc.CodeInval, "handle closed")
	}
	if t.flags&need == 0 {
		return dsvc.Errorf(dsvc.CodeAccess, "handle not opened for this")
	}
	return nil
}

func (t *table) close() error {
	if t.closed.Swap(true) {
		return dsvc.Errorf(dsvc.CodeInval, "handle already closed")
	}
	return nil
}

func corrupt(t *table, e entry, err error) error {
	return &dsvc.Error{Code: dsvc.CodeInternal, Detail: t.file + " line " + strconv.Itoa(e.line) + ": " + err.Error()}
}

// replace writes data as the table's file (Module.replace) and keeps it
// as the file's snapshot.
func (t *table) replace(data []byte) error {
	f, err := t.m.replace(t.path, data)
	if err != nil {
		return err
	}
	t.written(f, data)
	return nil
}

// splice returns data with [start,end) replaced by repl.
func splice(data []byte, start, end int, repl string) []byte {
	out := make([]byte, 0, len(data)-(end-start)+len(repl))
	out = append(out, data[:start]...)
	if start > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n') // an entry that ended the file without a newline
	}
	out = append(out, repl...)
	return append(out, data[end:]...)
}

// appendLines returns data with lines appended, in a new array (data may
// be a snapshot's).
func appendLines(data []byte, lines ...string) []byte {
	n := len(data) + 1
	for _, l := range lines {
		n += len(l)
	}
	data = append(make([]byte, 0, n), data...)
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	for _, l := range lines {
		data = append(data, l...)
	}
	return data
}

// ---- network containers

type dnTable struct{ *table }

type dnEntry struct {
	entry
	rec dsvc.DNRecord
}

var _ dsvc.DNImporter = (*dnTable)(nil)
var _ dsvc.DNPrefixer = (*dnTable)(nil)

func (t *dnTable) Prefix() netip.Prefix { return t.net }
func (t *dnTable) Close() error         { return t.close() }

func (t *dnTable) parse(data []byte) ([]dnEntry, error) {
	es := entries(data, false)
	out := make([]dnEntry, len(es))
	for i, e := range es {
		r, err := parseDN(e.text)
		if err != nil {
			return nil, corrupt(t.table, e, err)
		}
		out[i] = dnEntry{e, r}
	}
	return out, nil
}

func (t *dnTable) Lookup(ctx context.Context, partial bool, q dsvc.Query, count int, target *dsvc.DNRecord) ([]dsvc.DNRecord, error) {
	if err := t.can(dsvc.Read); err != nil {
		return nil, err
	}
	s, err := t.snap(ctx)
	if err != nil {
		return nil, err
	}
	es := s.dn
	if q.IsEq(dsvc.DNQCIP) { // at most the one record of the address
		if !target.CIP.Is4() {
			return nil, nil
		}
		i, ok := s.cipIndex()[target.CIP.As4()]
		if !ok {
			return nil, nil
		}
		es = es[i : i+1]
	}
	var out []dsvc.DNRecord
	for i := range es {
		if count >= 0 && len(out) >= count {
			break
		}
		if dsvc.MatchDN(q, &es[i].rec, target) {
			r := es[i].rec
			r.CID = append([]byte(nil), r.CID...) // the caller's to change
			out = append(out, r)
		}
	}
	return out, nil
}

func (t *dnTable) Count(ctx context.Context, q dsvc.Query, target *dsvc.DNRecord) (int, error) {
	rs, err := t.Lookup(ctx, false, q, -1, target)
	return len(rs), err
}

func findDN(es []dnEntry, cip netip.Addr) int {
	for i := range es {
		if es[i].rec.CIP == cip {
			return i
		}
	}
	return -1
}

func (t *dnTable) loadAll(ctx context.Context) ([]byte, []dnEntry, error) {
	if err := t.can(dsvc.Write); err != nil {
		return nil, nil, err
	}
	s, err := t.snap(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s.data, s.dn, nil
}

func (t *dnTable) Add(ctx context.Context, r *dsvc.DNRecord) error {
	data, es, err := t.loadAll(ctx)
	if err != nil {
		return err
	}
	if findDN(es, r.CIP) >= 0 {
		return dsvc.Errorf(dsvc.CodeExists, "client IP %v", r.CIP)
	}
	nr := *r
	nr.Sig = dsvc.RandomSig()
	line := formatDN(&nr)
	ndata := appendLines(data, line)
	if err := t.replaceDN(ndata, addedDN(data, es, line)); err != nil {
		return err
	}
	r.Sig = nr.Sig
	return nil
}

func (t *dnTable) Modify(ctx context.Context, orig, r *dsvc.DNRecord) error {
	data, es, err := t.loadAll(ctx)
	if err != nil {
		return err
	}
	if r.CIP != orig.CIP && findDN(es, r.CIP) >= 0 {
		return dsvc.Errorf(dsvc.CodeExists, "client IP %v", r.CIP)
	}
	i := findDN(es, orig.CIP)
	if i < 0 {
		return dsvc.Errorf(dsvc.CodeNoEnt, "client IP %v", orig.CIP)
	}
	if es[i].rec.Sig != orig.Sig {
		return dsvc.Errorf(dsvc.CodeCollision, "client IP %v: signature %d, stored %d", orig.CIP, orig.Sig, es[i].rec.Sig)
	}
	nr := *r
	nr.Sig = dsvc.NextSig(es[i].rec.Sig)
	line := formatDN(&nr)
	if err := t.replaceDN(splice(data, es[i].start, es[i].end, line), splicedDN(data, es, i, line)); err != nil {
		return err
	}
	r.Sig = nr.Sig
	return nil
}

func (t *dnTable) Delete(ctx context.Context, r *dsvc.DNRecord) error {
	data, es, err := t.loadAll(ctx)
	if err != nil {
		return err
	}
	i := findDN(es, r.CIP)
	if i < 0 {
		return dsvc.Errorf(dsvc.CodeNoEnt, "client IP %v", r.CIP)
	}
	if r.Sig != 0 && es[i].rec.Sig != r.Sig {
		return dsvc.Errorf(dsvc.CodeCollision, "client IP %v: signature %d, stored %d", r.CIP, r.Sig, es[i].rec.Sig)
	}
	return t.replaceDN(splice(data, es[i].start, es[i].end, ""), splicedDN(data, es, i, ""))
}

// replaceDN is replace with the new file's entries worked out from the
// old ones (es; nil: parse it).
func (t *dnTable) replaceDN(data []byte, es []dnEntry) error {
	if es == nil {
		return t.replace(data)
	}
	f, err := t.m.replace(t.path, data)
	if err != nil {
		return err
	}
	t.cache(f, data, es)
	return nil
}

// addedDN returns the entries of data (of entries es) with line appended,
// as entries would find them, or nil to have the new file parsed.
func addedDN(data []byte, es []dnEntry, line string) []dnEntry {
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil // appendLines adds a newline, which a parse gives the last entry
	}
	e, ok := lineEntry(line, len(data), bytes.Count(data, []byte("\n"))+1)
	if !ok {
		return nil
	}
	return append(es[:len(es):len(es)], e)
}

// splicedDN returns the entries of data (of entries es) with es[i]
// replaced by line ("": removed), or nil to have the new file parsed.
func splicedDN(data []byte, es []dnEntry, i int, line string) []dnEntry {
	old := es[i]
	if old.start == 0 || data[old.start-1] != '\n' || old.end > len(data) || data[old.end-1] != '\n' {
		return nil // splice adds a newline, or the entry ends the file without one
	}
	delta := len(line) - (old.end - old.start)
	out := make([]dnEntry, 0, len(es))
	out = append(out, es[:i]...)
	dl := 0
	if line != "" {
		e, ok := lineEntry(line, old.start, old.line)
		if !ok {
			return nil
		}
		out = append(out, e)
	} else {
		dl = -1 // a network record is one line
	}
	for _, e := range es[i+1:] {
		e.start += delta
		e.end += delta
		e.line += dl
		out = append(out, e)
	}
	return out
}

// lineEntry parses line (a record's, newline ended) as the entry it is at
// byte start, line number n.
func lineEntry(line string, start, n int) (dnEntry, bool) {
	text := strings.TrimSuffix(line, "\n")
	r, err := parseDN(text)
	if err != nil || len(text) == 0 || text[0] == '#' || strings.Contains(text, "\n") {
		return dnEntry{}, false
	}
	return dnEntry{entry{start: start, end: start + len(line), line: n, text: text}, r}, true
}

// Import appends rs with their signatures in one replace; ErrExists (and
// nothing written) if any CIP is stored or given twice.
func (t *dnTable) Import(ctx context.Context, rs []dsvc.DNRecord) error {
	data, es, err := t.loadAll(ctx)
	if err != nil {
		return err
	}
	seen := make(map[netip.Addr]bool, len(es)+len(rs))
	for i := range es {
		seen[es[i].rec.CIP] = true
	}
	lines := make([]string, len(rs))
	sigs := make([]uint64, len(rs))
	for i := range rs {
		if seen[rs[i].CIP] {
			return dsvc.Errorf(dsvc.CodeExists, "client IP %v", rs[i].CIP)
		}
		seen[rs[i].CIP] = true
		nr := rs[i]
		if nr.Sig == 0 {
			nr.Sig = dsvc.RandomSig()
		}
		sigs[i] = nr.Sig
		lines[i] = formatDN(&nr)
	}
	if err := t.replace(appendLines(data, lines...)); err != nil {
		return err
	}
	for i := range rs {
		rs[i].Sig = sigs[i]
	}
	return nil
}

// ---- the dhcptab

type dtTable struct{ *table }

type dtEntry struct {
	entry
	rec dsvc.DTRecord
}

var _ dsvc.DTImporter = (*dtTable)(nil)

func (t *dtTable) Close() error { return t.close() }

func (t *dtTable) parse(data []byte) ([]dtEntry, error) {
	es := entries(data, true)
	out := make([]dtEntry, len(es))
	for i, e := range es {
		r, err := parseDT(e.text)
		if err != nil {
			return nil, corrupt(t.table, e, err)
		}
		out[i] = dtEntry{e, r}
	}
	return out, nil
}

func (t *dtTable) Lookup(ctx context.Context, partial bool, q dsvc.Query, count int, target *dsvc.DTRecord) ([]dsvc.DTRecord, error) {
	if err := t.can(dsvc.Read); err != nil {
		return nil, err
	}
	s, err := t.snap(ctx)
	if err != nil {
		return nil, err
	}
	es := s.dt
	var out []dsvc.DTRecord
	for i := range es {
		if count >= 0 && len(out) >= count {
			break
		}
		if dsvc.MatchDT(q, &es[i].rec, target) {
			out = append(out, es[i].rec)
		}
	}
	return out, nil
}

func (t *dtTable) Count(ctx context.Context, q dsvc.Query, target *dsvc.DTRecord) (int, error) {
	rs, err := t.Lookup(ctx, false, q, -1, target)
	return len(rs), err
}

func findDT(es []dtEntry, key string, typ dsvc.DTType) int {
	for i := range es {
		if es[i].rec.Key == key && es[i].rec.Type == typ {
			return i
		}
	}
	return -1
}

func (t *dtTable) loadAll(ctx context.Context) ([]byte, []dtEntry, error) {
	if err := t.can(dsvc.Write); err != nil {
		return nil, nil, err
	}
	s, err := t.snap(ctx)
	if err != nil {
		return nil, nil, err
	}
	return s.data, s.dt, nil
}

func (t *dtTable) Add(ctx context.Context, r *dsvc.DTRecord) error {
	if err := storableDT(r); err != nil {
		return err
	}
	data, es, err := t.loadAll(ctx)
	if err != nil {
		return err
	}
	if findDT(es, r.Key, r.Type) >= 0 {
		return dsvc.Errorf(dsvc.CodeExists, "%c %q", r.Type, r.Key)
	}
	nr := *r
	nr.Sig = dsvc.RandomSig()
	if err := t.replace(appendLines(data, formatDT(&nr))); err != nil {
		return err
	}
	r.Sig = nr.Sig
	return nil
}

func (t *dtTable) Modify(ctx context.Context, orig, r *dsvc.DTRecord) error {
	if err := storableDT(r); err != nil {
		return err
	}
	data, es, err := t.loadAll(ctx)
	if err != nil {
		return err
	}
	if (r.Key != orig.Key || r.Type != orig.Type) && findDT(es, r.Key, r.Type) >= 0 {
		return dsvc.Errorf(dsvc.CodeExists, "%c %q", r.Type, r.Key)
	}
	i := findDT(es, orig.Key, orig.Type)
	if i < 0 {
		return dsvc.Errorf(dsvc.CodeNoEnt, "%c %q", orig.Type, orig.Key)
	}
	if es[i].rec.Sig != orig.Sig {
		return dsvc.Errorf(dsvc.CodeCollision, "%c %q: signature %d, stored %d", orig.Type, orig.Key, orig.Sig, es[i].rec.Sig)
	}
	nr := *r
	nr.Sig = dsvc.NextSig(es[i].rec.Sig)
	if err := t.replace(splice(data, es[i].start, es[i].end, formatDT(&nr))); err != nil {
		return err
	}
	r.Sig = nr.Sig
	return nil
}

func (t *dtTable) Delete(ctx context.Context, r *dsvc.DTRecord) error {
	data, es, err := t.loadAll(ctx)
	if err != nil {
		return err
	}
	i := findDT(es, r.Key, r.Type)
	if i < 0 {
		return dsvc.Errorf(dsvc.CodeNoEnt, "%c %q", r.Type, r.Key)
	}
	if r.Sig != 0 && es[i].rec.Sig != r.Sig {
		return dsvc.Errorf(dsvc.CodeCollision, "%c %q: signature %d, stored %d", r.Type, r.Key, r.Sig, es[i].rec.Sig)
	}
	return t.replace(splice(data, es[i].start, es[i].end, ""))
}

// Import is dnTable.Import for the dhcptab.
func (t *dtTable) Import(ctx context.Context, rs []dsvc.DTRecord) error {
	data, es, err := t.loadAll(ctx)
	if err != nil {
		return err
	}
	type key struct {
		k string
		t dsvc.DTType
	}
	seen := make(map[key]bool, len(es)+len(rs))
	for i := range es {
		seen[key{es[i].rec.Key, es[i].rec.Type}] = true
	}
	lines := make([]string, len(rs))
	sigs := make([]uint64, len(rs))
	for i := range rs {
		if err := storableDT(&rs[i]); err != nil {
			return err
		}
		k := key{rs[i].Key, rs[i].Type}
		if seen[k] {
			return dsvc.Errorf(dsvc.CodeExists, "%c %q", k.t, k.k)
		}
		seen[k] = true
		nr := rs[i]
		if nr.Sig == 0 {
			nr.Sig = dsvc.RandomSig()
		}
		sigs[i] = nr.Sig
		lines[i] = formatDT(&nr)
	}
	if err := t.replace(appendLines(data, lines...)); err != nil {
		return err
	}
	for i := range rs {
		rs[i].Sig = sigs[i]
	}
	return nil
}
