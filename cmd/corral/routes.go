package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/proto/admin"
)

// exitTooOld is the exit status of corral routes when the agent's admin
// protocol predates ROUTES: the agent works, it cannot answer this.
const exitTooOld = 2

// errRoutesTooOld is what an agent of admin version 1 or 2 gives for ROUTES.
var errRoutesTooOld = errors.New("agent too old for routes (ROUTES needs admin protocol version 3); upgrade the agent")

// requestRoutes asks the agent at dataDir for its ROUTES rows; an agent
// that does not define ROUTES gives errRoutesTooOld.
func requestRoutes(ctx context.Context, dataDir string) ([]admin.Route, error) {
	b, err := requestV2(ctx, dataDir, admin.OpRoutes, nil)
	if errors.Is(err, errOldAgent) {
		return nil, errRoutesTooOld
	}
	if err != nil {
		return nil, err
	}
	return admin.ParseRoutes(b)
}

// routeJSON is the JSON form of a ROUTES row; its keys are a stable
// interface. Node ids of 0 mean none.
type routeJSON struct {
	ID          uint64   `json:"id"`
	Name        string   `json:"name"`
	State       string   `json:"state"` // up (reachable) or down
	Path        string   `json:"path"`  // direct, routed or none
	Direct      bool     `json:"direct"`
	NextHop     uint64   `json:"next_hop"`
	NextHopName string   `json:"next_hop_name"`
	Alt         uint64   `json:"alt"`
	AltName     string   `json:"alt_name"`
	Metric      uint16   `json:"metric"`
	Hops        uint8    `json:"hops"`
	Seqno       uint16   `json:"seqno"`
	RTTms       *float64 `json:"rtt_ms"`
	Since       string   `json:"since,omitempty"`
}

// pathOf says how a row's node is reached: direct, routed or none.
func pathOf(r admin.Route) string {
	switch {
	case r.Direct:
		return "direct"
	case r.Up:
		return "routed"
	}
	return "none"
}

// routeRows names every row's nodes by the names of MEMBERS and the view.
func routeRows(rs []admin.Route, names map[uint64]string) []routeJSON {
	out := make([]routeJSON, 0, len(rs))
	for _, r := range rs {
		j := routeJSON{ID: r.ID, Name: names[r.ID], State: "down", Path: pathOf(r), Direct: r.Direct,
			Metric: r.Metric, Hops: r.Hops, Seqno: r.Seqno}
		if r.Up {
			j.State = "up"
		}
		if r.NextHop != 0 {
			j.NextHop, j.NextHopName = r.NextHop, names[r.NextHop]
		}
		if r.Alt != 0 {
			j.Alt, j.AltName = r.Alt, names[r.Alt]
		}
		if r.RTT > 0 {
			ms := float64(r.RTT) / 1000
			j.RTTms = &ms
		}
		if r.Since != 0 {
			j.Since = time.Unix(0, r.Since).UTC().Format(time.RFC3339Nano)
		}
		out = append(out, j)
	}
	return out
}

// nodeNames maps node ids to names, from the agent's MEMBERS and VIEW; a
// node neither names has no entry.
func nodeNames(ms []admin.Member, v admin.ViewInfo) map[uint64]string {
	names := make(map[uint64]string)
	for _, m := range v.Members {
		if m.Name != "" {
			names[m.ID] = m.Name
		}
	}
	for _, m := range ms {
		if m.ID != 0 && m.Name != "" {
			names[m.ID] = m.Name
		}
	}
	return names
}

// nodeLabel is "id (name)", or the id alone, or "-" for none.
func nodeLabel(id uint64, name string) string {
	switch {
	case id == 0:
		return "-"
	case name == "":
		return fmt.Sprint(id)
	}
	return fmt.Sprintf("%d (%s)", id, name)
}

func routesCmd() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "routes",
		Short: "List how this agent reaches every other node: direct or routed, next hop, alternate, metric, hops, sequence number",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			rs, err := requestRoutes(ctx, dataDir)
			if errors.Is(err, errRoutesTooOld) {
				return &exitError{code: exitTooOld, err: err}
			}
			if err != nil {
				return err
			}
			// Names are a nicety: a failure to get them leaves ids.
			var ms []admin.Member
			var view admin.ViewInfo
			if b, err := request(ctx, dataDir, admin.OpMembers); err == nil {
				ms, _ = admin.ParseMembers(b)
			}
			if b, err := request(ctx, dataDir, admin.OpView); err == nil {
				view, _ = admin.ParseViewInfo(b)
			}
			rows := routeRows(rs, nodeNames(ms, view))
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "DEST\tPATH\tNEXT_HOP\tALT\tMETRIC\tHOPS\tSEQNO\tSTATE\tSINCE")
			for _, r := range rows {
				metric, hops := "-", "-"
				if r.Hops > 0 {
					metric, hops = fmt.Sprint(r.Metric), fmt.Sprint(r.Hops)
				}
				since := "-"
				if r.Since != "" {
					since = r.Since
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", nodeLabel(r.ID, r.Name), r.Path,
					nodeLabel(r.NextHop, r.NextHopName), nodeLabel(r.Alt, r.AltName), metric, hops, r.Seqno, r.State, since)
			}
			return w.Flush()
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent to ask")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}
