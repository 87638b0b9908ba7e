package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/buildinfo"
	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// request sends one admin request to the agent owning dataDir and returns
// the reply body.
func request(ctx context.Context, dataDir string, op uint16) ([]byte, error) {
	return requestBody(ctx, dataDir, op, nil)
}

func requestBody(ctx context.Context, dataDir string, op uint16, body []byte) ([]byte, error) {
	rep, err := requestFrame(ctx, dataDir, op, body)
	if err != nil {
		return nil, err
	}
	return rep.Body, nil
}

// requestFrame is requestBody with the whole reply, whose version says
// the layout of a body that changed between versions.
func requestFrame(ctx context.Context, dataDir string, op uint16, body []byte) (*proto.Frame, error) {
	path := datadir.AdminSocket(dataDir)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, socketError(path, err)
	}
	// A local link with an empty cluster name matches the agent's.
	cfg := &transport.Config{NodeName: "corral-cli", Protocols: protos.All(), HandshakeTimeout: 5 * time.Second}
	l, err := transport.Connect(ctx, conn, cfg, proto.ReasonAdmin)
	if err != nil {
		return nil, err
	}
	defer l.Close(proto.CodeShutdown, "done")
	// Replies go to Call; the agent sends nothing else.
	l.Start(func(_ *transport.Link, f *proto.Frame) error {
		return proto.Errorf(proto.CodeState, "unexpected %s frame", admin.Ops().Name(f.Opcode))
	})
	rep, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: op}, Body: body})
	if errors.Is(err, transport.ErrClosed) {
		return nil, fmt.Errorf("agent closed the admin connection: %w", err)
	}
	if err != nil {
		return nil, err
	}
	return rep, nil
}

// dataDirFlag is --data-dir of a tool: the agent and every tool default
// to the same place, $CORRAL_DATA_DIR or /var/lib/corral.
func dataDirFlag(cmd *cobra.Command, dataDir *string, usage string) {
	cmd.Flags().StringVar(dataDir, "data-dir", datadir.Dir(), usage+" (default $"+datadir.EnvVar+", else "+datadir.Default+")")
}

// waitForSocket waits, at most wait, until something accepts on the unix
// socket at path: an agent just started creates it within moments. A
// socket this user may not open is reported at once.
func waitForSocket(ctx context.Context, path string, wait time.Duration) error {
	if wait <= 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			conn.Close()
			return nil
		}
		if errors.Is(err, fs.ErrPermission) || ctx.Err() != nil {
			return socketError(path, err)
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return socketError(path, err)
		case <-t.C:
		}
	}
}

// waitInView waits, at most wait, until the agent at dataDir is in a view
// that has a leader; then, or when the time is up, members shows what is.
func waitInView(ctx context.Context, dataDir string, wait time.Duration) {
	if wait <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		if body, err := request(ctx, dataDir, admin.OpMembers); err == nil {
			ms, err := admin.ParseMembers(body)
			if body, verr := request(ctx, dataDir, admin.OpView); err == nil && verr == nil && len(ms) > 0 {
				if v, err := admin.ParseViewInfo(body); err == nil && v.Leader != 0 {
					for _, m := range v.Members {
						if m.ID == ms[0].ID {
							return
						}
					}
				}
			}
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// socketError says why the socket at path could not be reached: a
// permission error is not a missing agent.
func socketError(path string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		who := "root, or a member of the agent's --client-socket-group"
		if filepath.Base(path) == datadir.AdminSocketName {
			who = "root (the admin socket is the agent owner's only)"
		}
		return fmt.Errorf("permission denied on %s: run as %s: %w", path, who, err)
	}
	return fmt.Errorf("no agent at %s (is it running? is --data-dir or $%s right?): %w", path, datadir.EnvVar, err)
}

func membersCmd() *cobra.Command {
	var dataDir string
	var asJSON bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the nodes this agent knows, the state of its links to them, and whether the cluster has quorum",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := waitForSocket(cmd.Context(), datadir.AdminSocket(dataDir), wait); err != nil {
				return err
			}
			waitInView(cmd.Context(), dataDir, wait)
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			body, err := request(ctx, dataDir, admin.OpMembers)
			if err != nil {
				return err
			}
			ms, err := admin.ParseMembers(body)
			if err != nil {
				return err
			}
			body, err = request(ctx, dataDir, admin.OpView)
			if err != nil {
				return err
			}
			view, err := admin.ParseViewInfo(body)
			if err != nil {
				return err
			}
			rows := memberRows(ms, view)
			qb, qerr := requestV2(ctx, dataDir, admin.OpQuorum, nil)
			var q admin.QuorumInfo
			if qerr == nil {
				q, qerr = admin.ParseQuorumInfo(qb)
			}
			if qerr != nil && !errors.Is(qerr, errOldAgent) {
				return qerr
			}
			if qerr == nil {
				for i := range rows {
					if rows[i].State == admin.StateSelf.String() {
						rows[i].QuorumJSON = quorumOf(q)
					}
				}
			}
			// Direct or routed, from ROUTES: an agent too old for it
			// leaves the column empty.
			rs, rerr := requestRoutes(ctx, dataDir)
			if rerr != nil && !errors.Is(rerr, errRoutesTooOld) {
				return rerr
			}
			if rerr == nil {
				rows = joinRoutes(rows, rs, view.Instance)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			fmt.Printf("view %d, leader %d, term %d, applied %d\n", view.Instance, view.Leader, view.Term, view.Applied)
			if qerr == nil {
				fmt.Println(quorumLine(q))
			} else {
				fmt.Println("Quorate: unknown (" + qerr.Error() + ")")
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tADDR\tSTATE\tPATH\tMEMBER\tBORN_ON\tROLE\tPEER_VERSION\tRTT")
			for _, r := range rows {
				rtt, ver, born, role, member, path := "-", "-", "-", "-", "no", r.Path
				switch {
				case r.Path == "routed":
					path = fmt.Sprintf("via %d", r.Via)
				case r.Path == "" || r.Path == "none":
					path = "-"
				}
				if r.RTTms != nil {
					rtt = (time.Duration(*r.RTTms * float64(time.Millisecond))).Round(time.Microsecond).String()
				}
				if r.PeerVersion != nil {
					ver = fmt.Sprint(*r.PeerVersion)
				}
				if r.Member {
					member, born, role = "yes", fmt.Sprint(r.BornOn), r.Role
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, r.Addr, r.State, path, member, born, role, ver, rtt)
			}
			return w.Flush()
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent to ask")
	cmd.Flags().DurationVar(&wait, "wait", 0, "wait up to this long for the agent to answer and this node to be in a view with a leader (an agent starting)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.AddCommand(removeCmd("remove"))
	return cmd
}

// memberJSON is the JSON form of a member; its keys are a stable interface.
type memberJSON struct {
	ID          uint64   `json:"id"`
	Name        string   `json:"name"`
	Addr        string   `json:"addr"`
	State       string   `json:"state"` // link state: self, up or down
	PeerVersion *uint8   `json:"peer_version"`
	RTTms       *float64 `json:"rtt_ms"`
	Since       string   `json:"since,omitempty"`
	// Path says how this node reaches the member: self, direct, routed
	// (through Via, the next hop) or none; absent when the agent is too
	// old for ROUTES.
	Path   string `json:"path,omitempty"`
	Direct bool   `json:"direct"`
	Via    uint64 `json:"via,omitempty"`
	View   uint64 `json:"view"`   // instance of the view below
	Member bool   `json:"member"` // in the view
	BornOn uint64 `json:"born_on,omitempty"`
	Role   string `json:"role,omitempty"` // voter or non-voter
	Leader bool   `json:"leader"`
	// Quorum is this node's judgement of quorum, on its own (self) row.
	*QuorumJSON `json:",omitempty"`
}

// memberRows joins the link table and the view: every node in either.
func memberRows(ms []admin.Member, v admin.ViewInfo) []memberJSON {
	var out []memberJSON
	seen := make(map[uint64]bool)
	for _, m := range ms {
		j := memberJSON{ID: m.ID, Name: m.Name, Addr: m.Addr, State: m.State.String(), View: v.Instance}
		if m.PeerVersion > 0 {
			ver := m.PeerVersion
			j.PeerVersion = &ver
		}
		if m.RTT > 0 {
			r := float64(m.RTT) / 1000
			j.RTTms = &r
		}
		if m.Since != 0 {
			j.Since = time.Unix(0, m.Since).UTC().Format(time.RFC3339Nano)
		}
		out = append(out, j)
		if m.ID != 0 {
			seen[m.ID] = true
		}
	}
	for _, vm := range v.Members {
		if !seen[vm.ID] {
			out = append(out, memberJSON{ID: vm.ID, Name: vm.Name, Addr: vm.Addr, State: "down", View: v.Instance})
		}
	}
	for i := range out {
		for _, vm := range v.Members {
			if vm.ID == out[i].ID {
				out[i].Member, out[i].BornOn, out[i].Role = true, vm.BornOn, "non-voter"
				if vm.Voter {
					out[i].Role = "voter"
				}
			}
		}
		out[i].Leader = out[i].ID != 0 && out[i].ID == v.Leader
	}
	return out
}

// joinRoutes fills each row's path from the agent's ROUTES rows, and adds
// a row (link down) for each node reached by route that neither the link
// table nor the view of instance view has: one not yet joined, say.
func joinRoutes(rows []memberJSON, rs []admin.Route, view uint64) []memberJSON {
	byID := make(map[uint64]admin.Route, len(rs))
	for _, r := range rs {
		byID[r.ID] = r
	}
	seen := make(map[uint64]bool, len(rows))
	for _, m := range rows {
		seen[m.ID] = true
	}
	for _, r := range rs {
		if r.Up && !seen[r.ID] {
			rows = append(rows, memberJSON{ID: r.ID, State: admin.StateDown.String(), View: view})
		}
	}
	for i := range rows {
		m := &rows[i]
		if m.State == admin.StateSelf.String() {
			m.Path = "self"
			continue
		}
		r, ok := byID[m.ID]
		if !ok || m.ID == 0 {
			m.Path = "none"
			continue
		}
		m.Path, m.Direct = pathOf(r), r.Direct
		if m.Path == "routed" {
			m.Via = r.NextHop
		}
	}
	return rows
}

func joinCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "join ADDR",
		Short: "Have the agent reach the cluster through the member at ADDR (HOST:PORT)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			if _, err := requestBody(ctx, dataDir, admin.OpJoin, admin.AppendJoinRequest(nil, admin.JoinRequest{Addr: args[0]})); err != nil {
				return err
			}
			fmt.Printf("linked to %s; the agent joins the cluster through it unless it is a member already\n", args[0])
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent")
	return cmd
}

func leaveCmd() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "leave",
		Short: "Take the agent out of the cluster view and stop it",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 40*time.Second)
			defer cancel()
			// Who is leaving, for the message: the self row of MEMBERS.
			who := "this node"
			if body, err := request(ctx, dataDir, admin.OpMembers); err == nil {
				if ms, err := admin.ParseMembers(body); err == nil && len(ms) > 0 && ms[0].State == admin.StateSelf {
					who = fmt.Sprintf("node %s (id %d)", ms[0].Name, ms[0].ID)
				}
			}
			if _, err := request(ctx, dataDir, admin.OpLeave); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s left the cluster; its agent stopped\n", who)
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent")
	return cmd
}

func versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the binary version and the protocol versions it speaks",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ranges := protos.Ranges()
			if asJSON {
				type rj struct {
					Min uint8 `json:"min"`
					Max uint8 `json:"max"`
				}
				v := struct {
					Version   string        `json:"version"`
					Protocols map[string]rj `json:"protocols"`
				}{Version: buildinfo.Version, Protocols: map[string]rj{}}
				for _, r := range ranges {
					v.Protocols[r.Proto.String()] = rj{r.Min, r.Max}
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			fmt.Printf("corral %s\n", buildinfo.Version)
			for _, r := range ranges {
				fmt.Printf("  %-7s protocol versions %d..%d\n", r.Proto, r.Min, r.Max)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
