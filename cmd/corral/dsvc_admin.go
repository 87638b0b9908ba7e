package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/corralhq/corral/dsvc"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// dsvcCmd is `corral dsvc`: the datastore as a whole (modules, convert,
// upgrade, verify). Exit statuses as pntadm's.
func dsvcCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dsvc", Short: "data-service datastores: modules, convert, upgrade, verify"}
	cmd.AddCommand(dsvcModulesCmd(), dsvcConvertCmd(), dsvcUpgradeCmd(), dsvcVerifyCmd())
	return cmd
}

func dsvcModulesCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "modules",
		Short: "list the data-service modules and their container versions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := newDsvcRegistry(nil)
			if err != nil {
				return err
			}
			type mj struct {
				Name    string `json:"name"`
				Version int    `json:"version"`
				Synch   string `json:"synch"`
			}
			var ms []mj
			for _, m := range reg.Modules() {
				s := "none"
				if m.Synch == dsvc.SynchLockService {
					s = "lock-service"
				}
				ms = append(ms, mj{m.Name, m.Version, s})
			}
			if asJSON {
				return json.NewEncoder(cmd.OutOrStdout()).Encode(ms)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tVERSION\tSYNCH")
			for _, m := range ms {
				fmt.Fprintf(tw, "%s\t%d\t%s\n", m.Name, m.Version, m.Synch)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func dsvcConvertCmd() *cobra.Command {
	var from, to dsFlags
	var quiet bool
	cmd := &cobra.Command{
		Use:   "convert -r module -p path --to-resource module --to-path path",
		Short: "copy every container, record and signature to another datastore",
		Long: `convert copies the dhcptab and every network container of a datastore to a new
one (dhcpconfig -C), keeping every signature when the destination module can.
The source is only read; on failure the destination is removed again. Stop the
server using the source first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("to-resource") && !cmd.Flags().Changed("to-path") {
				return usage("give the destination: --to-resource and/or --to-path")
			}
			reg, err := from.registry()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			bar := !quiet && isTerminal(out)
			last := -1
			progress := func(done, total int) {
				if !bar {
					return
				}
				pct := 100
				if total > 0 {
					pct = done * 100 / total
				}
				if pct == last && done != total {
					return
				}
				last = pct
				const width = 40
				n := pct * width / 100
				fmt.Fprintf(out, "\r[%s%s] %3d%% %d/%d records", strings.Repeat("=", n), strings.Repeat(" ", width-n), pct, done, total)
				if done == total {
					fmt.Fprintln(out)
				}
			}
			total := 0
			counting := func(done, t int) { total = t; progress(done, t) }
			if err := dsvc.Convert(cmd.Context(), from.datastore(), to.datastore(), reg, counting); err != nil {
				if bar {
					fmt.Fprintln(out)
				}
				return failed(err)
			}
			if !quiet {
				fmt.Fprintf(out, "converted %d records\n", total)
			}
			return nil
		},
	}
	from.add(cmd.Flags())
	f := cmd.Flags()
	f.StringVar(&to.resource, "to-resource", "", "destination module (default "+dsvc.DefaultModule+")")
	f.StringVar(&to.path, "to-path", "", "destination location (default $CORRAL_DATA_DIR/dsvc)")
	f.StringVar(&to.config, "to-config", "", "destination module configuration")
	f.BoolVarP(&quiet, "quiet", "q", false, "no progress and no summary")
	return toolFlags(cmd)
}

func dsvcUpgradeCmd() *cobra.Command {
	var ds dsFlags
	var fromV, toV int
	cmd := &cobra.Command{
		Use:   "upgrade -r module -p path [--from N] [--to N]",
		Short: "copy every container to another container version of its module",
		Long: `upgrade copies every container of a datastore at container version --from to
version --to of the same module (default: the newest registered), keeping
every record and signature. The old containers stay until removed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := ds.registry()
			if err != nil {
				return err
			}
			d := ds.datastore()
			d.Version = fromV
			return failed(reg.Upgrade(cmd.Context(), d, toV))
		},
	}
	ds.add(cmd.Flags())
	cmd.Flags().IntVar(&fromV, "from", 1, "container version to upgrade from")
	cmd.Flags().IntVar(&toV, "to", dsvc.CurrentVersion, "container version to upgrade to (default the newest)")
	return toolFlags(cmd)
}

// verifyResult is one container in `dsvc verify --json`.
type verifyResult struct {
	Container string   `json:"container"`
	Records   int      `json:"records"`
	Errors    []string `json:"errors,omitempty"`
}

func dsvcVerifyCmd() *cobra.Command {
	var ds dsFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify -r module -p path [--json]",
		Short: "open every container, read and check every record",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			reg, err := ds.registry()
			if err != nil {
				return err
			}
			ctx, d := cmd.Context(), ds.datastore()
			if err := reg.Status(ctx, d); err != nil {
				return failed(err)
			}
			var res []verifyResult
			worst := exitOK
			note := func(v *verifyResult, err error) {
				v.Errors = append(v.Errors, err.Error())
				worst = max(worst, exitStatus(err))
			}
			tabs, err := reg.List(ctx, d, dsvc.DHCPTab)
			if err != nil {
				return failed(err)
			}
			nets, err := reg.List(ctx, d, dsvc.Network)
			if err != nil {
				return failed(err)
			}
			for _, name := range append(tabs, nets...) {
				kind := dsvc.Network
				if name == "dhcptab" {
					kind = dsvc.DHCPTab
				}
				v := verifyResult{Container: name}
				h, err := reg.Open(ctx, d, kind, name, dsvc.Read)
				if err != nil {
					note(&v, err)
					res = append(res, v)
					continue
				}
				if kind == dsvc.DHCPTab {
					rs, err := h.LookupDT(ctx, false, 0, -1, &dsvc.DTRecord{})
					if err != nil {
						note(&v, err)
					}
					v.Records = len(rs)
					for i := range rs {
						if err := dsvc.ValidateDT(&rs[i], true); err != nil {
							note(&v, fmt.Errorf("record %q (%c): %w", rs[i].Key, rs[i].Type, err))
						}
					}
				} else {
					rs, err := h.LookupDN(ctx, false, 0, -1, &dsvc.DNRecord{})
					if err != nil {
						note(&v, err)
					}
					v.Records = len(rs)
					for i := range rs {
						if err := dsvc.ValidateDN(&rs[i], h.Prefix(), true); err != nil {
							note(&v, fmt.Errorf("record %v: %w", rs[i].CIP, err))
						}
						if rs[i].Sig == 0 {
							note(&v, fmt.Errorf("record %v: signature 0", rs[i].CIP))
						}
					}
				}
				if err := h.Close(); err != nil {
					note(&v, err)
				}
				res = append(res, v)
			}
			if asJSON {
				if res == nil {
					res = []verifyResult{}
				}
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(res); err != nil {
					return err
				}
			} else {
				for _, v := range res {
					status := "ok"
					if len(v.Errors) > 0 {
						status = fmt.Sprintf("%d errors", len(v.Errors))
					}
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %d records, %s\n", v.Container, v.Records, status)
					for _, e := range v.Errors {
						fmt.Fprintf(cmd.ErrOrStderr(), "%s: %s\n", v.Container, e)
					}
				}
			}
			if worst != exitOK {
				return &exitError{code: worst, err: fmt.Errorf("verify: errors found")}
			}
			return nil
		},
	}
	ds.add(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return toolFlags(cmd)
}

// toolFlags makes flag errors usage errors (exit 3).
func toolFlags(c *cobra.Command) *cobra.Command {
	c.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage("%v", err) })
	return c
}

// isTerminal reports whether w is a terminal (the progress bar is only
// drawn on one; x/term is not a dependency, x/sys/unix is).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
