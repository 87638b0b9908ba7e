package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/corralhq/corral/dsvc"
	"github.com/spf13/cobra"
)

// dhtadmCmd is dhtadm(1M): the dhcptab container. -g (signal the server)
// is not offered: corral's server rereads its datastore itself.
func dhtadmCmd() *cobra.Command { return newDhtadm(dsFlags{}) }

type dhtOpts struct {
	ds                                             dsFlags
	create, add, modify, del, print, remove, batch bool
	sym, macro, def, newName, edit                 string
	verbose, asJSON                                bool
}

// nullValue in -e sym=_NULL_VALUE_ sets a symbol without a value (a
// boolean symbol: ":sym:").
const nullValue = "_NULL_VALUE_"

func newDhtadm(inherit dsFlags) *cobra.Command {
	o := &dhtOpts{ds: inherit}
	cmd := toolCommand(&cobra.Command{
		Use:   "dhtadm -C|-A|-M|-D|-P|-R|-B ...",
		Short: "manage the dhcptab of the DHCP data service (Solaris dhtadm)",
		Long: `dhtadm manages the dhcptab: symbol definitions and macros.

  -C                                  create the dhcptab
  -A -s sym -d 'Context,Code,Type,Granularity,Maximum'   add a symbol
  -A -m macro -d ':sym=value:...:'    add a macro
  -M -s|-m name -d definition         replace a definition
  -M -s|-m name -n new_name           rename
  -M -m macro -e 'sym=value'          edit one symbol of a macro (sym= deletes it,
                                      sym=_NULL_VALUE_ sets it without a value)
  -D -s|-m name                       delete
  -P [--json]                         print the dhcptab
  -R                                  remove the dhcptab
  -B [-v] [batchfile]                 run dhtadm command lines from a file or stdin

Exit status: 0 ok, 1 exists, 2 does not exist, 3 non-critical (bad input,
collision, busy; nothing changed), 4 critical (the datastore failed).`,
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args) },
	})
	f := cmd.Flags()
	f.BoolVarP(&o.create, "create", "C", false, "create the dhcptab")
	f.BoolVarP(&o.add, "add", "A", false, "add a symbol or macro")
	f.BoolVarP(&o.modify, "modify", "M", false, "modify a symbol or macro")
	f.BoolVarP(&o.del, "delete", "D", false, "delete a symbol or macro")
	f.BoolVarP(&o.print, "print", "P", false, "print the dhcptab")
	f.BoolVarP(&o.remove, "remove", "R", false, "remove the dhcptab")
	f.BoolVarP(&o.batch, "batch", "B", false, "run command lines from a batch file (or stdin)")
	f.StringVarP(&o.sym, "symbol", "s", "", "the symbol `name`")
	f.StringVarP(&o.macro, "macro", "m", "", "the macro `name`")
	f.StringVarP(&o.def, "definition", "d", "", "the definition")
	f.StringVarP(&o.newName, "new-name", "n", "", "with -M: the new name")
	f.StringVarP(&o.edit, "edit", "e", "", "with -M -m: 'sym=value' to set, 'sym=' to delete")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "-B: echo each line")
	f.BoolVar(&o.asJSON, "json", false, "-P: print JSON")
	o.ds.add(f)
	return cmd
}

func (o *dhtOpts) run(cmd *cobra.Command, args []string) error {
	verb, err := oneVerb(cmd, "create", "add", "modify", "delete", "print", "remove", "batch")
	if err != nil {
		return err
	}
	if verb == "batch" {
		if len(args) > 1 {
			return usage("-B takes at most one batch file")
		}
		file := ""
		if len(args) == 1 {
			file = args[0]
		}
		return runBatch(cmd, file, o.verbose, func() *cobra.Command { return newDhtadm(o.ds) })
	}
	if len(args) != 0 {
		return usage("unexpected argument %q", args[0])
	}
	ch := cmd.Flags().Changed
	var key string
	var typ dsvc.DTType
	switch verb {
	case "add", "modify", "delete":
		switch {
		case ch("symbol") == ch("macro"):
			return usage("give one of -s symbol or -m macro")
		case ch("symbol"):
			key, typ = o.sym, dsvc.DTSymbol
		default:
			key, typ = o.macro, dsvc.DTMacro
		}
	default:
		for _, fl := range []string{"symbol", "macro"} {
			if ch(fl) {
				return usage("--%s only goes with -A, -M or -D", fl)
			}
		}
	}
	if verb != "add" && verb != "modify" && ch("definition") {
		return usage("-d only goes with -A or -M")
	}
	if verb != "modify" && (ch("new-name") || ch("edit")) {
		return usage("-n and -e only go with -M")
	}
	if verb == "add" && !ch("definition") {
		return usage("-A needs -d definition")
	}
	if verb == "modify" {
		n := 0
		for _, fl := range []string{"definition", "new-name", "edit"} {
			if ch(fl) {
				n++
			}
		}
		switch {
		case n == 0:
			return usage("-M needs -d, -n or -e")
		case ch("edit") && typ != dsvc.DTMacro:
			return usage("-e edits a macro (-m)")
		case ch("edit") && ch("definition"):
			return usage("-e and -d together")
		}
	}
	reg, err := o.ds.registry()
	if err != nil {
		return err
	}
	ctx, ds := cmd.Context(), o.ds.datastore()
	switch verb {
	case "remove":
		return failed(reg.Remove(ctx, ds, dsvc.DHCPTab, "dhcptab"))
	case "create":
		if err := ensureLocation(cmd, reg, ds); err != nil {
			return err
		}
		h, err := reg.Open(ctx, ds, dsvc.DHCPTab, "dhcptab", dsvc.Create|dsvc.Read|dsvc.Write)
		if err != nil {
			return failed(err)
		}
		return failed(h.Close())
	}
	fl := dsvc.Read
	if verb != "print" {
		fl |= dsvc.Write
	}
	h, err := reg.Open(ctx, ds, dsvc.DHCPTab, "dhcptab", fl)
	if err != nil {
		return failed(err)
	}
	defer h.Close()
	switch verb {
	case "print":
		return o.printTable(cmd, h)
	case "add":
		return failed(h.AddDT(ctx, &dsvc.DTRecord{Key: key, Type: typ, Value: o.def}))
	case "delete":
		return failed(h.DeleteDT(ctx, &dsvc.DTRecord{Key: key, Type: typ}))
	}
	old, err := h.LookupDT(ctx, false, dsvc.Query(0).Eq(dsvc.DTQKey|dsvc.DTQType), 1, &dsvc.DTRecord{Key: key, Type: typ})
	if err != nil {
		return failed(err)
	}
	if len(old) == 0 {
		return &exitError{code: exitNoEnt, err: fmt.Errorf("dhtadm: no %s %q in the dhcptab", typeWord(typ), key)}
	}
	r := old[0]
	if ch("definition") {
		r.Value = o.def
	}
	if ch("new-name") {
		r.Key = o.newName
	}
	if ch("edit") {
		if r.Value, err = editMacro(r.Value, o.edit); err != nil {
			return err
		}
	}
	return failed(h.ModifyDT(ctx, &old[0], &r))
}

// editMacro applies -e 'sym=value' to a macro definition ":a=1:b:c=x:":
// it replaces sym's value or appends it; "sym=" deletes it; "sym=_NULL_VALUE_"
// leaves it without a value.
func editMacro(def, edit string) (string, error) {
	sym, val, ok := strings.Cut(edit, "=")
	if !ok || sym == "" || strings.ContainsAny(sym, ":= ") {
		return "", usage("-e %q: want sym=value", edit)
	}
	item := sym + "=" + val
	if val == nullValue {
		item = sym
	}
	var out []string
	found := false
	for _, it := range splitMacro(def) {
		name, _, _ := strings.Cut(it, "=")
		if name != sym {
			out = append(out, it)
			continue
		}
		if !found && val != "" {
			out = append(out, item)
		}
		found = true
	}
	if !found {
		if val == "" {
			return "", &exitError{code: exitNoEnt, err: fmt.Errorf("-e %q: the macro has no symbol %s", edit, sym)}
		}
		out = append(out, item)
	}
	if len(out) == 0 {
		return ":", nil
	}
	return ":" + strings.Join(out, ":") + ":", nil
}

// splitMacro splits a macro definition at the colons outside double
// quotes, dropping empty items.
func splitMacro(def string) []string {
	var items []string
	start, quoted := 0, false
	for i := 0; i <= len(def); i++ {
		if i < len(def) {
			switch def[i] {
			case '"':
				quoted = !quoted
				continue
			case '\\':
				i++
				continue
			case ':':
				if quoted {
					continue
				}
			default:
				continue
			}
		}
		if it := def[start:min(i, len(def))]; it != "" {
			items = append(items, it)
		}
		start = i + 1
	}
	return items
}

func typeWord(t dsvc.DTType) string {
	if t == dsvc.DTSymbol {
		return "Symbol"
	}
	return "Macro"
}

// dtJSON is a dhcptab record in --json output; type "s" or "m".
type dtJSON struct {
	Name      string `json:"name"`
	Type      string `json:"type"`
	Value     string `json:"value"`
	Signature uint64 `json:"signature,string"`
}

func (o *dhtOpts) printTable(cmd *cobra.Command, h *dsvc.Handle) error {
	rs, err := h.LookupDT(cmd.Context(), false, 0, -1, &dsvc.DTRecord{})
	if err != nil {
		return failed(err)
	}
	// Symbols first, as Solaris prints them, then macros, each by name.
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Type != rs[j].Type {
			return rs[i].Type == dsvc.DTSymbol
		}
		return rs[i].Key < rs[j].Key
	})
	out := cmd.OutOrStdout()
	if o.asJSON {
		js := make([]dtJSON, 0, len(rs))
		for _, r := range rs {
			js = append(js, dtJSON{r.Key, string(r.Type), r.Value, r.Sig})
		}
		return json.NewEncoder(out).Encode(js)
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Name\tType\tValue")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", r.Key, typeWord(r.Type), r.Value)
	}
	return tw.Flush()
}
