package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/agent"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/transport"
)

// request sends one admin request to the agent owning dataDir and returns
// the reply body.
func request(ctx context.Context, dataDir string, op uint16) ([]byte, error) {
	path := agent.AdminSocket(dataDir)
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("no agent at %s: %w", path, err)
	}
	// A local link with an empty cluster name matches the agent's.
	cfg := &transport.Config{NodeName: "corral-cli", HandshakeTimeout: 5 * time.Second}
	l, err := transport.Connect(ctx, conn, cfg, proto.ReasonAdmin)
	if err != nil {
		return nil, err
	}
	defer l.Close(proto.CodeShutdown, "done")
	type answer struct {
		body []byte
		err  error
	}
	got := make(chan answer, 1)
	id := l.NextMsgID()
	l.Start(func(_ *transport.Link, f *proto.Frame) error {
		if f.MsgID != id || f.Opcode != op || f.Flags&proto.FlagReply == 0 {
			return proto.Errorf(proto.CodeState, "unexpected %s frame", admin.Ops.Name(f.Opcode))
		}
		if f.Flags&proto.FlagAbort != 0 {
			st, err := proto.ParseStatus(f.Body, "admin error")
			if err == nil {
				err = st.Err()
			}
			got <- answer{err: err}
			return nil
		}
		got <- answer{body: append([]byte(nil), f.Body...)}
		return nil
	})
	req := proto.Frame{Header: proto.Header{Opcode: op, MsgID: id, Flags: proto.FlagCreate | proto.FlagDelete}}
	if err := l.Send(ctx, &req); err != nil {
		return nil, err
	}
	select {
	case a := <-got:
		return a.body, a.err
	case <-l.Done():
		return nil, fmt.Errorf("agent closed the admin connection: %w", l.Err())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func membersCmd() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the nodes this agent knows and the state of its links to them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
			if asJSON {
				return printMembersJSON(ms)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNAME\tADDR\tSTATE\tPEER_VERSION\tRTT")
			for _, m := range ms {
				rtt, ver := "-", "-"
				if m.RTT > 0 {
					rtt = (time.Duration(m.RTT) * time.Microsecond).String()
				}
				if m.PeerVersion > 0 {
					ver = fmt.Sprint(m.PeerVersion)
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\n", m.ID, m.Name, m.Addr, m.State, ver, rtt)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", ".", "data directory of the agent to ask")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

// memberJSON is the JSON form of a member; its keys are a stable interface.
type memberJSON struct {
	ID          uint64   `json:"id"`
	Name        string   `json:"name"`
	Addr        string   `json:"addr"`
	State       string   `json:"state"`
	PeerVersion *uint8   `json:"peer_version"`
	RTTms       *float64 `json:"rtt_ms"`
	Since       string   `json:"since,omitempty"`
}

func printMembersJSON(ms []admin.Member) error {
	out := make([]memberJSON, len(ms))
	for i, m := range ms {
		j := memberJSON{ID: m.ID, Name: m.Name, Addr: m.Addr, State: m.State.String()}
		if m.PeerVersion > 0 {
			v := m.PeerVersion
			j.PeerVersion = &v
		}
		if m.RTT > 0 {
			r := float64(m.RTT) / 1000
			j.RTTms = &r
		}
		if m.Since != 0 {
			j.Since = time.Unix(0, m.Since).UTC().Format(time.RFC3339Nano)
		}
		out[i] = j
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func versionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the binary version and the protocol versions it speaks",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ranges := transport.DefaultRanges()
			if asJSON {
				type rj struct {
					Min uint8 `json:"min"`
					Max uint8 `json:"max"`
				}
				v := struct {
					Version   string        `json:"version"`
					Protocols map[string]rj `json:"protocols"`
				}{Version: agent.Version, Protocols: map[string]rj{}}
				for _, r := range ranges {
					v.Protocols[r.Proto.String()] = rj{r.Min, r.Max}
				}
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			fmt.Printf("corral %s\n", agent.Version)
			for _, r := range ranges {
				fmt.Printf("  %-7s protocol versions %d..%d\n", r.Proto, r.Min, r.Max)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
