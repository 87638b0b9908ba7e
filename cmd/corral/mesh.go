package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
)

// errEchoTooOld is what an agent of admin version 4 or older gives for
// MESH_ECHO.
var errEchoTooOld = errors.New("agent too old for mesh echo (MESH_ECHO needs admin protocol version 5); upgrade the agent")

// echoWaitSlack is how long the tool waits for a MESH_ECHO reply beyond
// count × interval: longer than the agent's own slack (30 s), so that
// the agent's reply, not the tool's deadline, ends a slow echo.
const echoWaitSlack = 60 * time.Second

// requestMeshEcho asks the agent at dataDir to run an echo and waits for
// its result.
func requestMeshEcho(ctx context.Context, dataDir string, e admin.MeshEcho) (admin.MeshEchoResult, error) {
	run := time.Duration(uint64(e.Count)*uint64(e.Interval)) * time.Microsecond
	ctx, cancel := context.WithTimeout(ctx, run+echoWaitSlack)
	defer cancel()
	b, err := requestV2(ctx, dataDir, admin.OpMeshEcho, admin.AppendMeshEcho(nil, &e))
	if errors.Is(err, errOldAgent) {
		return admin.MeshEchoResult{}, errEchoTooOld
	}
	if err != nil {
		return admin.MeshEchoResult{}, err
	}
	return admin.ParseMeshEchoResult(b)
}

// echoJSON is the JSON form of a MESH_ECHO result; its keys are a stable
// interface.
type echoJSON struct {
	Target     uint64  `json:"target"`
	Count      uint32  `json:"count"`
	Sent       uint32  `json:"sent"`
	Received   uint32  `json:"received"`
	Lost       uint32  `json:"lost"`
	OutOfOrder uint32  `json:"out_of_order"`
	Duplicates uint32  `json:"duplicates"`
	ElapsedMs  float64 `json:"elapsed_ms"`
	Code       uint16  `json:"code"`
	CodeName   string  `json:"code_name,omitempty"`
	Error      string  `json:"error,omitempty"`
	OK         bool    `json:"ok"`
}

// echoError names what made an echo fail, nil when it passed.
func echoError(e admin.MeshEcho, r admin.MeshEchoResult) error {
	switch {
	case r.Status.Code != proto.CodeNone:
		return fmt.Errorf("mesh echo to node %d: %s (code %d%s): %s", e.Target, r.Status.Code, uint16(r.Status.Code), meshCodeName(r.Status.Code), r.Status.Text)
	case r.Complete(e.Count):
		return nil
	}
	return fmt.Errorf("mesh echo to node %d: %d of %d frames came back (%d sent), %d out of order, %d duplicates",
		e.Target, r.Received, e.Count, r.Sent, r.OutOfOrder, r.Duplicates)
}

// meshCodeName is ", NAME" for the mesh's own codes (proto/SPEC.md), by
// the names the spec and the operators use.
func meshCodeName(c proto.Code) string {
	switch c {
	case proto.CodeLinkFail:
		return ", LINKFAIL"
	case proto.CodeNoRoute:
		return ", NOROUTE"
	case proto.CodeHopLimit:
		return ", HOPLIMIT"
	case proto.CodeBusy:
		return ", BUSY"
	}
	return ""
}

func meshCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mesh",
		Short: "Exercise the mesh: streams through routed paths",
	}
	cmd.AddCommand(meshEchoCmd())
	return cmd
}

func meshEchoCmd() *cobra.Command {
	var (
		dataDir  string
		to       uint64
		count    uint32
		size     uint32
		interval time.Duration
		asJSON   bool
	)
	cmd := &cobra.Command{
		Use:   "echo --to NODE",
		Short: "Stream frames to a node and back through the mesh; exit 0 when every frame came back once, in order",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == 0 {
				return errors.New("mesh echo: --to names the target node id")
			}
			if interval < 0 || interval/time.Microsecond > 1<<32-1 {
				return fmt.Errorf("mesh echo: --interval %v out of range", interval)
			}
			e := admin.MeshEcho{Target: to, Count: count, Size: size, Interval: uint32(interval / time.Microsecond)}
			// The agent checks the same; checking here names the flag.
			if _, err := admin.ParseMeshEcho(admin.AppendMeshEcho(nil, &e)); err != nil {
				return fmt.Errorf("mesh echo: %w", err)
			}
			r, err := requestMeshEcho(cmd.Context(), dataDir, e)
			if errors.Is(err, errEchoTooOld) {
				return &exitError{code: exitTooOld, err: err}
			}
			if err != nil {
				return err
			}
			failed := echoError(e, r)
			out := cmd.OutOrStdout()
			if asJSON {
				j := echoJSON{Target: to, Count: count, Sent: r.Sent, Received: r.Received, Lost: r.Sent - r.Received,
					OutOfOrder: r.OutOfOrder, Duplicates: r.Duplicates, ElapsedMs: float64(r.Elapsed) / 1000,
					Code: uint16(r.Status.Code), Error: r.Status.Text, OK: failed == nil}
				if r.Status.Code != proto.CodeNone {
					j.CodeName = r.Status.Code.String()
				}
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(j); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "echo to node %d: sent %d/%d, received %d, lost %d, out of order %d, duplicates %d, %v\n",
					to, r.Sent, count, r.Received, r.Sent-r.Received, r.OutOfOrder, r.Duplicates,
					(time.Duration(r.Elapsed) * time.Microsecond).Round(time.Millisecond))
			}
			return failed
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent that runs the echo")
	cmd.Flags().Uint64Var(&to, "to", 0, "node id to echo through (required)")
	cmd.Flags().Uint32Var(&count, "count", 100, "frames to send")
	cmd.Flags().Uint32Var(&size, "size", 64, "bytes of each frame (4..65536; the first 4 are its sequence number)")
	cmd.Flags().DurationVar(&interval, "interval", 10*time.Millisecond, "time between sends (0: as fast as the stream's window allows)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}
