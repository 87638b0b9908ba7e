package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/spf13/cobra"
)

// pntadmCmd is pntadm(1M): the network containers. -h client_hostname is
// accepted and ignored (with a note on stderr): corral has no hosts table
// to write it to, and the 48-byte comment is the administrator's.
func pntadmCmd() *cobra.Command { return newPntadm(dsFlags{}) }

type pntOpts struct {
	ds                                    dsFlags
	create, print, remove, list, batch    bool
	add, modify, del                      string
	comment, expire, flags, host, cid     string
	ascii                                 bool
	macro, server, newIP                  string
	verbose, raw, asJSON, checkMacro, yes bool
}

func newPntadm(inherit dsFlags) *cobra.Command {
	o := &pntOpts{ds: inherit}
	cmd := toolCommand(&cobra.Command{
		Use:   "pntadm -C|-A|-M|-D|-P|-R|-L|-B ... [network]",
		Short: "manage the network containers of the DHCP data service (Solaris pntadm)",
		Long: `pntadm manages network containers: one record per client IP address.

  -C network                          create the container (network as 10.0.0.0/24)
  -A name_IP [-c -e -f -h -i [-a] -m -s] network   add a record
  -M name_IP [-c -e -f -h -i [-a] -m -s -n new_IP] network   modify a record
  -D name_IP network                  delete a record
  -P [-v] [-x] [--json] network       print the records
  -R network                          remove the container
  -L [--json]                         list the network containers
  -B [-v] [batchfile]                 run pntadm command lines from a file or stdin

Exit status: 0 ok, 1 exists, 2 does not exist, 3 non-critical (bad input,
collision, busy; nothing changed), 4 critical (the datastore failed).`,
		RunE: func(cmd *cobra.Command, args []string) error { return o.run(cmd, args) },
	})
	f := cmd.Flags()
	f.BoolVarP(&o.create, "create", "C", false, "create a network container")
	f.StringVarP(&o.add, "add", "A", "", "add the record of client IP `name_IP`")
	f.StringVarP(&o.modify, "modify", "M", "", "modify the record of client IP `name_IP`")
	f.StringVarP(&o.del, "delete", "D", "", "delete the record of client IP `name_IP`")
	f.BoolVarP(&o.print, "print", "P", false, "print the container's records")
	f.BoolVarP(&o.remove, "remove", "R", false, "remove a network container")
	f.BoolVarP(&o.list, "list", "L", false, "list the network containers")
	f.BoolVarP(&o.batch, "batch", "B", false, "run command lines from a batch file (or stdin)")
	f.StringVarP(&o.comment, "comment", "c", "", "comment (at most 48 bytes)")
	f.StringVarP(&o.expire, "expire", "e", "", "lease expiry: mm/dd/yyyy (local time), 0 (none) or -1 (permanent)")
	f.StringVarP(&o.flags, "flags", "f", "", "flags: a number, or keywords DYNAMIC, PERMANENT, MANUAL, UNUSABLE, BOOTP joined by +")
	f.StringVarP(&o.host, "hostname", "h", "", "client host name (ignored: there is no hosts table)")
	f.StringVarP(&o.cid, "client-id", "i", "", "client id in hex (00: none)")
	f.BoolVarP(&o.ascii, "ascii", "a", false, "the -i client id is ASCII text, not hex")
	f.StringVarP(&o.macro, "macro", "m", "", "configuration macro (default UNKNOWN)")
	f.BoolVarP(&o.checkMacro, "check-macro", "y", false, "with -A/-M -m: the macro must exist in the dhcptab")
	f.StringVarP(&o.server, "server", "s", "", "server IP or host name (default: this host)")
	f.StringVarP(&o.newIP, "new-ip", "n", "", "with -M: the record's new client IP")
	f.BoolVarP(&o.verbose, "verbose", "v", false, "-P: flags as keywords, full lease dates; -B: echo each line")
	f.BoolVarP(&o.raw, "raw", "x", false, "-P: raw lease seconds and flag numbers")
	f.BoolVar(&o.asJSON, "json", false, "-P, -L: print JSON")
	o.ds.add(f)
	return cmd
}

func (o *pntOpts) run(cmd *cobra.Command, args []string) error {
	verb, err := oneVerb(cmd, "create", "add", "modify", "delete", "print", "remove", "list", "batch")
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
		return runBatch(cmd, file, o.verbose, func() *cobra.Command { return newPntadm(o.ds) })
	}
	if verb == "list" {
		if len(args) != 0 {
			return usage("-L takes no network")
		}
	} else if len(args) != 1 {
		return usage("give one network (e.g. 10.0.0.0/24)")
	}
	if verb != "add" && verb != "modify" {
		for _, fl := range []string{"comment", "expire", "flags", "hostname", "client-id", "ascii", "macro", "check-macro", "server", "new-ip"} {
			if cmd.Flags().Changed(fl) {
				return usage("--%s only goes with -A or -M", fl)
			}
		}
	}
	if verb == "add" && cmd.Flags().Changed("new-ip") {
		return usage("-n only goes with -M")
	}
	if o.host != "" {
		fmt.Fprintln(cmd.ErrOrStderr(), "pntadm: -h: no hosts table; the host name is not stored")
	}
	reg, err := o.ds.registry()
	if err != nil {
		return err
	}
	ctx, ds := cmd.Context(), o.ds.datastore()
	switch verb {
	case "list":
		names, err := reg.List(ctx, ds, dsvc.Network)
		if errors.Is(err, dsvc.ErrNoLocation) {
			err = nil // no datastore yet: no tables (Solaris prints nothing, exit 0)
		}
		if err != nil {
			return failed(err)
		}
		if o.asJSON {
			if names == nil {
				names = []string{}
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(names)
		}
		for _, n := range names {
			fmt.Fprintln(cmd.OutOrStdout(), n)
		}
		return nil
	case "remove":
		return failed(reg.Remove(ctx, ds, dsvc.Network, args[0]))
	case "create":
		if _, bits, err := dsvc.ParseNetwork(args[0]); err != nil {
			return failed(err)
		} else if bits < 0 {
			return usage("-C needs the prefix length (e.g. %s/24): there is no netmasks database", args[0])
		}
		if err := ensureLocation(cmd, reg, ds); err != nil {
			return err
		}
		h, err := reg.Open(ctx, ds, dsvc.Network, args[0], dsvc.Create|dsvc.Read|dsvc.Write)
		if err != nil {
			return failed(err)
		}
		return failed(h.Close())
	}
	if _, _, err := dsvc.ParseNetwork(args[0]); err != nil {
		return failed(err)
	}
	fl := dsvc.Read
	if verb != "print" {
		fl |= dsvc.Write
	}
	h, err := reg.Open(ctx, ds, dsvc.Network, args[0], fl)
	if err != nil {
		return failed(err)
	}
	defer h.Close()
	switch verb {
	case "print":
		return o.printRecords(cmd, h)
	case "delete":
		ip, err := hostIP(ctx, o.del)
		if err != nil {
			return err
		}
		return failed(h.DeleteDN(ctx, &dsvc.DNRecord{CIP: ip}))
	case "add":
		ip, err := hostIP(ctx, o.add)
		if err != nil {
			return err
		}
		r := dsvc.DNRecord{CID: []byte{0}, CIP: ip, Macro: "UNKNOWN"}
		if !cmd.Flags().Changed("server") {
			if r.SIP, err = thisHost(ctx); err != nil {
				return err
			}
		}
		if err := o.apply(cmd, reg, &r); err != nil {
			return err
		}
		return failed(h.AddDN(ctx, &r))
	case "modify":
		ip, err := hostIP(ctx, o.modify)
		if err != nil {
			return err
		}
		old, err := h.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), 1, &dsvc.DNRecord{CIP: ip})
		if err != nil {
			return failed(err)
		}
		if len(old) == 0 {
			return &exitError{code: exitNoEnt, err: fmt.Errorf("pntadm: %v: no such record in %s", ip, h.Name())}
		}
		r := old[0]
		r.CID = append([]byte(nil), r.CID...)
		if err := o.apply(cmd, reg, &r); err != nil {
			return err
		}
		return failed(h.ModifyDN(ctx, &old[0], &r))
	}
	return nil
}

// apply sets the fields -c -e -f -i -m -s -n give on r.
func (o *pntOpts) apply(cmd *cobra.Command, reg *dsvc.Registry, r *dsvc.DNRecord) error {
	ctx, ch := cmd.Context(), cmd.Flags().Changed
	var err error
	if ch("comment") {
		r.Comment = o.comment
	}
	if ch("expire") {
		if r.Lease, err = parseExpire(o.expire); err != nil {
			return err
		}
	}
	if ch("flags") {
		if r.Flags, err = parseDNFlags(o.flags); err != nil {
			return err
		}
	}
	if ch("client-id") {
		if o.ascii {
			if o.cid == "" {
				return usage("-a -i: empty client id")
			}
			r.CID = []byte(o.cid)
		} else if r.CID, err = hex.DecodeString(o.cid); err != nil || len(o.cid) == 0 {
			return usage("-i %q: want an even number of hex digits (or -a for ASCII)", o.cid)
		}
	} else if o.ascii {
		return usage("-a goes with -i")
	}
	if ch("macro") {
		r.Macro = o.macro
		if o.checkMacro {
			if err := macroExists(ctx, reg, o.ds.datastore(), o.macro); err != nil {
				return err
			}
		}
	}
	if ch("server") {
		if r.SIP, err = hostIP(ctx, o.server); err != nil {
			return err
		}
	}
	if ch("new-ip") {
		if r.CIP, err = hostIP(ctx, o.newIP); err != nil {
			return err
		}
	}
	return nil
}

func macroExists(ctx context.Context, reg *dsvc.Registry, ds dsvc.Datastore, name string) error {
	h, err := reg.Open(ctx, ds, dsvc.DHCPTab, "dhcptab", dsvc.Read)
	if err != nil {
		return failed(err)
	}
	defer h.Close()
	rs, err := h.LookupDT(ctx, false, dsvc.Query(0).Eq(dsvc.DTQKey|dsvc.DTQType), 1, &dsvc.DTRecord{Key: name, Type: dsvc.DTMacro})
	if err != nil {
		return failed(err)
	}
	if len(rs) == 0 {
		return &exitError{code: exitNoEnt, err: fmt.Errorf("-y: macro %q is not in the dhcptab", name)}
	}
	return nil
}

// hostIP is a dotted IPv4 address or a host name with one.
func hostIP(ctx context.Context, s string) (netip.Addr, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		if !a.Is4() {
			return netip.Addr{}, usage("%s is not an IPv4 address", s)
		}
		return a, nil
	}
	if s == "" || strings.ContainsAny(s, " /:") {
		return netip.Addr{}, usage("%q is not an IPv4 address or host name", s)
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", s)
	if err != nil || len(ips) == 0 {
		return netip.Addr{}, usage("%q is not an IPv4 address and does not resolve: %v", s, err)
	}
	return ips[0].Unmap(), nil
}

// thisHost is the default server address: this host's name (uname -n)
// resolved, else its first non-loopback IPv4 address, else 127.0.0.1.
func thisHost(ctx context.Context) (netip.Addr, error) {
	if name, err := os.Hostname(); err == nil {
		if ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip4", name); err == nil && len(ips) > 0 && !ips[0].Unmap().IsLoopback() {
			return ips[0].Unmap(), nil
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP.To4()); ok && !ip.IsLoopback() {
					return ip, nil
				}
			}
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1}), nil
}

func parseExpire(s string) (uint32, error) {
	switch s {
	case "0":
		return 0, nil
	case "-1":
		return dsvc.LeasePermanent, nil
	}
	t, err := time.ParseInLocation("01/02/2006", s, time.Local)
	if err != nil || t.Unix() <= 0 || t.Unix() >= int64(dsvc.LeasePermanent) {
		return 0, usage("-e %q: want mm/dd/yyyy (1970..2106), 0 or -1", s)
	}
	return uint32(t.Unix()), nil
}

var dnFlagNames = []struct {
	name string
	f    dsvc.DNFlags
}{{"PERMANENT", dsvc.DNAutomatic}, {"MANUAL", dsvc.DNManual}, {"UNUSABLE", dsvc.DNUnusable}, {"BOOTP", dsvc.DNBootpOnly}}

func parseDNFlags(s string) (dsvc.DNFlags, error) {
	if n, err := strconv.ParseUint(s, 0, 8); err == nil {
		if dsvc.DNFlags(n)&^dsvc.DNAll != 0 {
			return 0, usage("-f %s: flags outside %#02x", s, uint8(dsvc.DNAll))
		}
		return dsvc.DNFlags(n), nil
	}
	var f dsvc.DNFlags
	for _, w := range strings.Split(s, "+") {
		w = strings.ToUpper(strings.TrimSpace(w))
		found := w == "DYNAMIC"
		for _, k := range dnFlagNames {
			if w == k.name {
				f |= k.f
				found = true
			}
		}
		if !found {
			return 0, usage("-f %q: unknown flag %q (DYNAMIC, PERMANENT, MANUAL, UNUSABLE, BOOTP)", s, w)
		}
	}
	return f, nil
}

func flagWords(f dsvc.DNFlags) string {
	var w []string
	for _, k := range dnFlagNames {
		if f&k.f != 0 {
			w = append(w, k.name)
		}
	}
	if len(w) == 0 {
		return "DYNAMIC"
	}
	return strings.Join(w, "+")
}

// dnJSON is a network record in --json output. The signature is a decimal
// string: 64 bits do not survive a JSON number in most readers.
type dnJSON struct {
	ClientID  string `json:"client_id"` // hex
	Flags     uint8  `json:"flags"`
	ClientIP  string `json:"client_ip"`
	ServerIP  string `json:"server_ip"`
	Lease     uint32 `json:"lease"` // unix seconds; 4294967295 permanent
	Macro     string `json:"macro"`
	Comment   string `json:"comment"`
	Signature uint64 `json:"signature,string"`
}

func (o *pntOpts) printRecords(cmd *cobra.Command, h *dsvc.Handle) error {
	rs, err := h.LookupDN(cmd.Context(), false, 0, -1, &dsvc.DNRecord{})
	if err != nil {
		return failed(err)
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].CIP.Less(rs[j].CIP) })
	out := cmd.OutOrStdout()
	if o.asJSON {
		js := make([]dnJSON, 0, len(rs))
		for _, r := range rs {
			js = append(js, dnJSON{strings.ToUpper(hex.EncodeToString(r.CID)), uint8(r.Flags), r.CIP.String(), r.SIP.String(), r.Lease, r.Macro, r.Comment, r.Sig})
		}
		return json.NewEncoder(out).Encode(js)
	}
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Client ID\tFlags\tClient IP\tServer IP\tLease Expiration\tMacro\tComment")
	for _, r := range rs {
		flags := fmt.Sprintf("%02d", uint8(r.Flags))
		var lease string
		switch {
		case o.raw:
			flags = fmt.Sprintf("%02X", uint8(r.Flags))
			lease = strconv.FormatUint(uint64(r.Lease), 10)
		case r.Lease == 0:
			lease = "Zero"
		case r.Lease == dsvc.LeasePermanent:
			lease = "Forever"
		case o.verbose:
			lease = time.Unix(int64(r.Lease), 0).Format("01/02/2006 15:04:05 MST")
		default:
			lease = time.Unix(int64(r.Lease), 0).Format("01/02/2006")
		}
		if o.verbose && !o.raw {
			flags = flagWords(r.Flags)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", strings.ToUpper(hex.EncodeToString(r.CID)), flags, r.CIP, r.SIP, lease, r.Macro, r.Comment)
	}
	return tw.Flush()
}
