package dhcptab

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/corralhq/corral/dsvc"
)

// Table is a built dhcptab: the symbols and every macro with its Includes
// expanded. It is immutable after Build and safe for concurrent use.
type Table struct {
	// syms is ordered so that a key (an index) sorts as the options go on
	// the wire: option symbols (Standard, Extend, Site) by code, then
	// Field, Internal, and Vendor symbols by sub-option code.
	syms   []Symbol
	byName map[string]uint16
	optKey [256]int32 // option code → key; -1 none
	nOpt   int        // keys below nOpt are options
	// Keys of the symbols the server interprets.
	kLeaseNeg, kEchoVC, kHostname uint16
	macros                        map[string]*flat
}

// item is one symbol's state in an expanded macro.
type item struct {
	key  uint16
	op   Op     // Set, Flag or Delete; Delete also removes it from lower levels
	val  []byte // Set: the encoded value
	vend bool   // a Vendor symbol (filtered by class)
}

// flat is a macro with its Includes expanded: the last state of every
// symbol it touches, sorted by key.
type flat struct {
	items []item
	depth int // levels of Include below it
}

// op is a parsed, checked macro entry before expansion.
type op struct {
	name    string // the entry's symbol, for errors
	include string
	it      item
}

// Build makes a Table of the Standard symbols and the dhcptab records.
// Every record is checked; the errors (each an *Error naming its record
// and, inside a macro, the symbol) say what was left out: a symbol record
// in error is not defined, a macro entry in error is dropped from its
// macro, a macro whose value does not parse is not defined. The rest of
// the table builds.
func Build(recs []dsvc.DTRecord) (*Table, []error) {
	var errs []error
	fail := func(key string, typ dsvc.DTType, sym string, err error) {
		errs = append(errs, &Error{Key: key, Type: typ, Symbol: sym, Err: err})
	}
	sorted := slices.Clone(recs)
	slices.SortStableFunc(sorted, func(a, b dsvc.DTRecord) int {
		return cmp.Or(cmp.Compare(a.Type, b.Type), cmp.Compare(a.Key, b.Key))
	})

	syms := Standard()
	names := make(map[string]bool, len(syms))
	for _, s := range syms {
		names[s.Name] = true
	}
	var macroRecs []dsvc.DTRecord
	for i, r := range sorted {
		if i > 0 && sorted[i-1].Type == r.Type && sorted[i-1].Key == r.Key {
			fail(r.Key, r.Type, "", fmt.Errorf("%w: a second record with this key", ErrDuplicate))
			continue
		}
		switch r.Type {
		case dsvc.DTMacro:
			macroRecs = append(macroRecs, r)
			continue
		case dsvc.DTSymbol:
		default:
			fail(r.Key, r.Type, "", fmt.Errorf("%w: %q", ErrRecordType, r.Type))
			continue
		}
		s, err := ParseSymbol(r.Key, r.Value)
		if err == nil && names[s.Name] {
			err = fmt.Errorf("%w: %s", ErrDuplicate, s.Name)
		}
		if err == nil {
			err = clash(syms, s)
		}
		if err != nil {
			fail(r.Key, r.Type, "", err)
			continue
		}
		names[s.Name] = true
		syms = append(syms, s)
	}

	t := newTable(syms)
	ops := make(map[string][]op, len(macroRecs))
	for _, r := range macroRecs {
		if err := checkName(r.Key); err != nil {
			fail(r.Key, r.Type, "", err)
			continue
		}
		entries, err := ParseMacro(r.Value)
		if err != nil {
			fail(r.Key, r.Type, "", err)
			continue
		}
		list := []op{}
		includes := 0
		for _, e := range entries {
			o, err := t.check(e, &includes)
			if err != nil {
				fail(r.Key, r.Type, e.Name, err)
				continue
			}
			list = append(list, o)
		}
		ops[r.Key] = list
	}

	// Includes: undefined targets, then cycles, are dropped before the
	// expansion, so what a macro expands to never depends on which macro
	// was expanded first.
	for _, r := range macroRecs {
		list, ok := ops[r.Key]
		if !ok {
			continue
		}
		kept := list[:0]
		for _, o := range list {
			if o.include != "" {
				if _, ok := ops[o.include]; !ok {
					fail(r.Key, r.Type, SymInclude, fmt.Errorf("%w: %s", ErrUndefinedMacro, o.include))
					continue
				}
			}
			kept = append(kept, o)
		}
		ops[r.Key] = kept
	}
	for name, scc := range components(ops) {
		kept := ops[name][:0]
		for _, o := range ops[name] {
			if o.include != "" && scc[o.include] {
				fail(name, dsvc.DTMacro, SymInclude, fmt.Errorf("%w: Include=%s", ErrCircular, o.include))
				continue
			}
			kept = append(kept, o)
		}
		ops[name] = kept
	}

	t.macros = make(map[string]*flat, len(ops))
	for _, r := range macroRecs {
		if _, ok := ops[r.Key]; ok {
			t.expand(r.Key, ops, fail)
		}
	}
	slices.SortStableFunc(errs, func(a, b error) int {
		x, y := a.(*Error), b.(*Error)
		return cmp.Or(cmp.Compare(x.Type, y.Type), cmp.Compare(x.Key, y.Key))
	})
	return t, errs
}

// clash refuses a site symbol whose code another symbol already has
// (for Vendor symbols: one sharing a class).
func clash(syms []Symbol, s Symbol) error {
	for _, o := range syms {
		if o.Code != s.Code {
			continue
		}
		switch {
		case s.Context == ContextVendor && o.Context == ContextVendor:
			for _, c := range s.Vendor {
				if slices.Contains(o.Vendor, c) {
					return fmt.Errorf("%w: %s has code %d for class %s", ErrDuplicate, o.Name, s.Code, c)
				}
			}
		case s.Context != ContextVendor && o.Context != ContextVendor && isOption(o.Context):
			return fmt.Errorf("%w: %s has code %d", ErrDuplicate, o.Name, s.Code)
		}
	}
	return nil
}

func isOption(c Context) bool { return c == ContextStandard || c == ContextExtend || c == ContextSite }

func newTable(syms []Symbol) *Table {
	rank := func(c Context) int {
		switch {
		case isOption(c):
			return 0
		case c == ContextField:
			return 1
		case c == ContextInternal:
			return 2
		}
		return 3
	}
	slices.SortFunc(syms, func(a, b Symbol) int {
		return cmp.Or(cmp.Compare(rank(a.Context), rank(b.Context)), cmp.Compare(a.Code, b.Code), cmp.Compare(a.Name, b.Name))
	})
	t := &Table{syms: syms, byName: make(map[string]uint16, len(syms))}
	for i := range t.optKey {
		t.optKey[i] = -1
	}
	for i, s := range syms {
		t.byName[s.Name] = uint16(i)
		if isOption(s.Context) {
			t.optKey[s.Code] = int32(i)
			t.nOpt = i + 1
		}
	}
	t.kLeaseNeg, t.kEchoVC, t.kHostname = t.byName[SymLeaseNeg], t.byName[SymEchoVC], t.byName[SymHostname]
	return t
}

// check turns a macro entry into an op, or says why it is left out.
func (t *Table) check(e Entry, includes *int) (op, error) {
	k, ok := t.byName[e.Name]
	if !ok {
		return op{}, ErrUnknownSymbol
	}
	s := &t.syms[k]
	o := op{name: e.Name, it: item{key: k, op: e.Op, vend: s.Context == ContextVendor}}
	if e.Name == SymInclude {
		if e.Op != Set {
			return op{}, fmt.Errorf("%w: Include needs a macro name", ErrBadValue)
		}
		if *includes++; *includes > MaxIncludes {
			return op{}, fmt.Errorf("%w: more than %d", ErrTooManyIncludes, MaxIncludes)
		}
		name, err := unquote(e.Value)
		if err == nil {
			err = checkName(name)
		}
		if err != nil {
			return op{}, fmt.Errorf("%w: Include=%s", ErrBadValue, e.Value)
		}
		o.include = name
		return o, nil
	}
	switch e.Op {
	case Set:
		v, err := s.Encode(e.Value)
		if err != nil {
			return op{}, err
		}
		o.it.val = v
	case Flag:
		if s.Type != BOOLEAN && e.Name != SymHostname {
			return op{}, fmt.Errorf("%w: a %s needs a value", ErrBadValue, s.Type)
		}
	case Delete:
	}
	return o, nil
}

// components returns, for every macro on a cycle of Includes, the set of
// macros of its strongly connected component (Tarjan's algorithm).
func components(ops map[string][]op) map[string]map[string]bool {
	index := map[string]int{}
	low := map[string]int{}
	on := map[string]bool{}
	var stack []string
	out := map[string]map[string]bool{}
	var visit func(v string)
	visit = func(v string) {
		index[v], low[v] = len(index), len(index)
		stack = append(stack, v)
		on[v] = true
		for _, o := range ops[v] {
			w := o.include
			if w == "" {
				continue
			}
			if _, seen := index[w]; !seen {
				visit(w)
				low[v] = min(low[v], low[w])
			} else if on[w] {
				low[v] = min(low[v], index[w])
			}
		}
		if low[v] != index[v] {
			return
		}
		scc := map[string]bool{}
		for {
			w := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			on[w] = false
			scc[w] = true
			if w == v {
				break
			}
		}
		selfLoop := false
		for _, o := range ops[v] {
			selfLoop = selfLoop || o.include == v
		}
		if len(scc) > 1 || selfLoop {
			for w := range scc {
				out[w] = scc
			}
		}
	}
	names := make([]string, 0, len(ops))
	for n := range ops {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		if _, seen := index[n]; !seen {
			visit(n)
		}
	}
	return out
}

// expand returns the expanded macro name, expanding its Includes first
// (the graph has no cycles left). An Include that would nest more than
// MaxNesting levels is dropped.
func (t *Table) expand(name string, ops map[string][]op, fail func(string, dsvc.DTType, string, error)) *flat {
	if f, ok := t.macros[name]; ok {
		return f
	}
	state := map[uint16]item{}
	depth := 0
	for _, o := range ops[name] {
		if o.include == "" {
			state[o.it.key] = o.it
			continue
		}
		in := t.expand(o.include, ops, fail)
		if in.depth+1 > MaxNesting {
			fail(name, dsvc.DTMacro, SymInclude, fmt.Errorf("%w: Include=%s nests %d levels, at most %d", ErrNesting, o.include, in.depth+1, MaxNesting))
			continue
		}
		depth = max(depth, in.depth+1)
		for _, it := range in.items {
			state[it.key] = it
		}
	}
	f := &flat{depth: depth, items: make([]item, 0, len(state))}
	for _, it := range state {
		f.items = append(f.items, it)
	}
	slices.SortFunc(f.items, func(a, b item) int { return cmp.Compare(a.key, b.key) })
	t.macros[name] = f
	return f
}

// Symbol returns the definition of a symbol, built-in or from dhcptab.
func (t *Table) Symbol(name string) (Symbol, bool) {
	k, ok := t.byName[name]
	if !ok {
		return Symbol{}, false
	}
	return t.syms[k], true
}

// Symbols returns every symbol of the table, options first by code.
func (t *Table) Symbols() []Symbol { return slices.Clone(t.syms) }

// HasMacro reports whether the table defines a macro (pntadm -y).
func (t *Table) HasMacro(name string) bool {
	_, ok := t.macros[name]
	return ok
}
