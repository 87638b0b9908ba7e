package main

// corral dhcp stats and corral dhcp leases: a running server's counters
// (its /stats page) and the bindings in the datastore.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/corralhq/corral/dhcp/server"
	"github.com/corralhq/corral/dsvc"
	"github.com/spf13/cobra"
)

// statsTimeout bounds the whole /stats request.
const statsTimeout = 10 * time.Second

func dhcpStatsCmd() *cobra.Command {
	var addr, cfgPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "stats [--json] [--addr HOST:PORT | --config FILE]",
		Short: "print a running DHCP server's counters (its http address's /stats)",
		Long: `stats reads /stats from a running corral dhcp serve: the address given
with --addr, or the http key of its configuration file (--config).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			base, err := statsURL(addr, cfgPath)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), statsTimeout)
			defer cancel()
			r, raw, err := fetchStats(ctx, base+"/stats")
			if err != nil {
				return err
			}
			if asJSON {
				_, err := cmd.OutOrStdout().Write(raw)
				return err
			}
			return printStats(cmd.OutOrStdout(), r)
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "", "the server's http address, HOST:PORT")
	cmd.Flags().StringVar(&cfgPath, "config", "", "the server's TOML configuration: its http key is the address")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the server's JSON as it is")
	return cmd
}

// statsURL is the base URL of the server's http address.
func statsURL(addr, cfgPath string) (string, error) {
	switch {
	case addr != "" && cfgPath != "":
		return "", errors.New("give --addr or --config, not both")
	case cfgPath != "":
		cfg, err := server.LoadConfig(cfgPath)
		if err != nil {
			return "", err
		}
		if cfg.HTTP == "" {
			return "", fmt.Errorf("%s: no http address: the server serves no /stats", cfgPath)
		}
		addr = cfg.HTTP
		if _, port, _ := net.SplitHostPort(addr); port == "0" {
			return "", fmt.Errorf("%s: http %q picks a free port at start: give the server's --addr", cfgPath, addr)
		}
	case addr == "":
		return "", errors.New("give --addr HOST:PORT or --config FILE")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return "", fmt.Errorf("address %q: want HOST:PORT", addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1" // a wildcard listen address: this host
	}
	return "http://" + net.JoinHostPort(host, port), nil
}

func fetchStats(ctx context.Context, url string) (server.Report, []byte, error) {
	var r server.Report
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return r, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, nil, fmt.Errorf("no DHCP server answers (is it running, with http set in its configuration?): %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return r, nil, fmt.Errorf("%s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return r, nil, fmt.Errorf("%s: %s", url, resp.Status)
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, nil, fmt.Errorf("%s: not a DHCP server's stats: %w", url, err)
	}
	return r, raw, nil
}

func sortedKeys(m map[string]uint64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func printStats(out io.Writer, r server.Report) error {
	tw := tabwriter.NewWriter(out, 0, 8, 2, ' ', 0)
	if len(r.Received) == 0 {
		fmt.Fprintf(tw, "received\t-\t0\n")
	}
	for _, k := range sortedKeys(r.Received) {
		fmt.Fprintf(tw, "received\t%s\t%d\n", k, r.Received[k])
	}
	for _, k := range sortedKeys(r.Sent) {
		fmt.Fprintf(tw, "sent\t%s\t%d\n", k, r.Sent[k])
	}
	dropped := false
	for _, k := range sortedKeys(r.Drops) {
		if r.Drops[k] > 0 {
			fmt.Fprintf(tw, "dropped\t%s\t%d\n", k, r.Drops[k])
			dropped = true
		}
	}
	if !dropped {
		fmt.Fprintf(tw, "dropped\t-\t0\n")
	}
	for _, c := range []struct {
		name string
		v    uint64
	}{
		{"commits", r.Commits}, {"collisions", r.Collisions}, {"lost races", r.Lost}, {"naks", r.NAKs},
		{"declines", r.Declines}, {"releases", r.Releases}, {"store errors", r.StoreErrors},
		{"send errors", r.SendErrors}, {"takeovers", r.Takeovers}, {"offer cache", uint64(r.Offers)},
	} {
		fmt.Fprintf(tw, "%s\t\t%d\n", c.name, c.v)
	}
	if v := r.View; v.Instance != 0 {
		taken := "-"
		if len(v.Adopted) > 0 {
			taken = strings.Join(v.Adopted, ",")
		}
		fmt.Fprintf(tw, "view\t%d\t%d live, share %d\n", v.Instance, v.Live, v.Index+1)
		fmt.Fprintf(tw, "taken over\t%s\t\n", taken)
	}
	if s := r.Sockets; s != nil {
		fmt.Fprintf(tw, "datagrams\t\t%d\n", s.Received)
		if s.Batches > 0 {
			fmt.Fprintf(tw, "per read\t\t%.1f\n", float64(s.Received)/float64(s.Batches))
		}
		fmt.Fprintf(tw, "receive buffer\t\t%d\n", s.RcvBuf)
	}
	return tw.Flush()
}

// leaseJSON is one binding in dhcp leases --json.
type leaseJSON struct {
	Network     string `json:"network"`
	ClientID    string `json:"client_id"` // hex
	ClientIP    string `json:"client_ip"`
	Flags       string `json:"flags"`        // DYNAMIC, or PERMANENT+MANUAL+UNUSABLE+BOOTP keywords
	Expires     string `json:"expires"`      // RFC 3339 UTC; "" with no lease or a permanent one
	SecondsLeft int64  `json:"seconds_left"` // 0 once expired; -1 permanent
	Expired     bool   `json:"expired"`
	Owner       string `json:"owner"` // the record's server IP
	Macro       string `json:"macro"`
}

func dhcpLeasesCmd() *cobra.Command {
	var ds dsFlags
	var cfgPath string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "leases [--json] [--config FILE | -r MODULE -p PATH -u CONFIG] [NETWORK...]",
		Short: "list the bound records (those with a client id) of the DHCP datastore",
		Long: `leases reads the datastore directly, as pntadm does, and lists every record
with a client id: its IP, flags, lease expiry and seconds left, owner (the
server IP allowed to allocate it) and macro.

The datastore is the one of a server configuration (--config FILE, whose
networks are listed unless NETWORK arguments are given), or -r/-p/-u as
for pntadm (every network container unless NETWORK arguments are given).
A NETWORK is 10.0.0.0/24 or the container name 10.0.0.0.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLeases(cmd, ds, cfgPath, asJSON, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgPath, "config", "", "a DHCP server's TOML configuration: its datastore, lock directory and networks")
	f.BoolVar(&asJSON, "json", false, "print JSON")
	// dsFlags.add would take --config for -u; here --config is the server's file.
	f.StringVarP(&ds.resource, "resource", "r", "", "data-service module (RESOURCE): files, binfiles, postgres or cluster; default "+dsvc.DefaultModule)
	f.StringVarP(&ds.path, "path", "p", "", "datastore location (PATH); default $CORRAL_DATA_DIR/dsvc, for cluster /dsvc")
	f.StringVarP(&ds.config, "resource-config", "u", "", "module configuration (RESOURCE_CONFIG), e.g. cluster: data-dir=DIR,reads=local")
	f.StringVar(&ds.lockDir, "lock-dir", "", "lock service directory; default that of dsvc/lock")
	return cmd
}

func runLeases(cmd *cobra.Command, ds dsFlags, cfgPath string, asJSON bool, args []string) error {
	var nets []string
	if cfgPath != "" {
		for _, fl := range []string{"resource", "path", "resource-config"} {
			if cmd.Flags().Changed(fl) {
				return usage("--config names the datastore: -r, -p and -u do not go with it")
			}
		}
		cfg, err := server.LoadConfig(cfgPath)
		if err != nil {
			return usage("%v", err)
		}
		d := cfg.Datastore.DS()
		ds.resource, ds.path, ds.config = d.Module, d.Location, d.Config
		if !cmd.Flags().Changed("lock-dir") {
			ds.lockDir = cfg.LockDir
		}
		for _, n := range cfg.Networks {
			nets = append(nets, n.Prefix)
		}
	}
	for _, a := range args {
		if _, err := netip.ParsePrefix(a); err != nil {
			if ip, err := netip.ParseAddr(a); err != nil || !ip.Is4() {
				return usage("network %q: want 10.0.0.0/24 or 10.0.0.0", a)
			}
		}
	}
	if len(args) > 0 {
		nets = args
	}
	reg, err := ds.registry()
	if err != nil {
		return err
	}
	ctx, d := cmd.Context(), ds.datastore()
	if len(nets) == 0 {
		if nets, err = reg.List(ctx, d, dsvc.Network); err != nil {
			return failed(err)
		}
	}
	now := time.Now()
	out := []leaseJSON{}
	for _, n := range nets {
		ls, err := bound(ctx, reg, d, n, now)
		if err != nil {
			return err
		}
		out = append(out, ls...)
	}
	if asJSON {
		return json.NewEncoder(cmd.OutOrStdout()).Encode(out)
	}
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "Network\tClient ID\tClient IP\tFlags\tExpires\tLeft\tOwner\tMacro")
	for _, l := range out {
		exp, left := l.Expires, shortDuration(time.Duration(l.SecondsLeft)*time.Second)
		switch {
		case l.SecondsLeft < 0:
			exp, left = "never", "-"
		case exp == "":
			exp, left = "none", "-"
		case l.Expired:
			left = "expired"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", l.Network, l.ClientID, l.ClientIP, l.Flags, exp, left, l.Owner, l.Macro)
	}
	return tw.Flush()
}

// bound reads network's records with a client id, sorted by IP.
func bound(ctx context.Context, reg *dsvc.Registry, d dsvc.Datastore, network string, now time.Time) ([]leaseJSON, error) {
	h, err := reg.Open(ctx, d, dsvc.Network, network, dsvc.Read)
	if err != nil {
		return nil, failed(fmt.Errorf("network %s: %w", network, err))
	}
	defer h.Close()
	rs, err := h.LookupDN(ctx, false, 0, -1, &dsvc.DNRecord{})
	if err != nil {
		return nil, failed(fmt.Errorf("network %s: %w", network, err))
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].CIP.Less(rs[j].CIP) })
	name := strings.TrimSuffix(network, "/")
	if p := h.Prefix(); p.IsValid() {
		name = p.String()
	}
	var ls []leaseJSON
	for _, r := range rs {
		if len(r.CID) == 1 && r.CID[0] == 0 {
			continue // free
		}
		l := leaseJSON{Network: name, ClientID: strings.ToUpper(hex.EncodeToString(r.CID)), ClientIP: r.CIP.String(),
			Flags: flagWords(r.Flags), Owner: r.SIP.String(), Macro: r.Macro}
		switch {
		case r.Lease == dsvc.LeasePermanent || r.Flags&dsvc.DNAutomatic != 0:
			l.SecondsLeft = -1
		case r.Lease == 0:
			l.Expired = r.Flags&dsvc.DNManual == 0 // a dynamic binding without a lease is over
		default:
			exp := time.Unix(int64(r.Lease), 0).UTC()
			l.Expires = exp.Format(time.RFC3339)
			if left := exp.Sub(now); left > 0 {
				l.SecondsLeft = int64(left / time.Second)
			} else {
				l.Expired = true
			}
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// shortDuration is d in days and hours past two days, else as
// time.Duration prints it.
func shortDuration(d time.Duration) string {
	if d < 48*time.Hour {
		return d.String()
	}
	return fmt.Sprintf("%dd%dh", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
}
