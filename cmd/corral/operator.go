package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
)

// errOldAgent is returned for an operator request the agent's admin
// protocol version does not define.
var errOldAgent = errors.New("the agent's admin protocol is too old for this request; upgrade the agent")

// requestV2 is request for an opcode of admin version 2: an agent that
// does not define it gives errOldAgent.
func requestV2(ctx context.Context, dataDir string, op uint16, body []byte) ([]byte, error) {
	b, err := requestBody(ctx, dataDir, op, body)
	if pe := (*proto.Error)(nil); errors.As(err, &pe) && pe.Code == proto.CodeOpcode {
		return nil, fmt.Errorf("%s: %w", admin.Ops().Name(op), errOldAgent)
	}
	return b, err
}

// quorumLine says plainly whether the node's cluster has quorum, as
// corosync-quorumtool does, and why not.
func quorumLine(q admin.QuorumInfo) string {
	switch {
	case !q.Member:
		return "Quorate: no (this node is not a member of the view)"
	case q.Quorate:
		return fmt.Sprintf("Quorate: yes (%d of %d voters reachable, need %d)", q.Reachable, q.Voters, q.Need())
	}
	return fmt.Sprintf("Quorate: no (%d of %d voters reachable, need %d)", q.Reachable, q.Voters, q.Need())
}

// QuorumJSON is the quorum as the self row of `members --json` carries it.
// It is exported so that encoding/json can fill the embedded pointer when
// the output is read back.
type QuorumJSON struct {
	Quorate   bool   `json:"quorate"`
	Voters    uint32 `json:"voters"`
	Reachable uint32 `json:"voters_reachable"`
	Need      uint32 `json:"quorum_need"`
}

func quorumOf(q admin.QuorumInfo) *QuorumJSON {
	return &QuorumJSON{Quorate: q.Quorate, Voters: q.Voters, Reachable: q.Reachable, Need: q.Need()}
}

func operatorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "operator", Short: "Inspect and repair the cluster's consensus"}
	raft := &cobra.Command{Use: "raft", Short: "The cluster log's raft configuration"}
	raft.AddCommand(listPeersCmd())
	cmd.AddCommand(raft)
	return cmd
}

// raftPeerJSON is the JSON form of a raft peer; its keys are a stable
// interface. The raft id is there for machines; people go by node ids.
type raftPeerJSON struct {
	ID     uint64 `json:"id"` // node id, 0 if unknown
	Name   string `json:"name"`
	Role   string `json:"role"` // voter or learner
	Leader bool   `json:"leader"`
	Self   bool   `json:"self"`
	RaftID string `json:"raft_id"` // hex
}

func listPeersCmd() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list-peers",
		Short: "List the cluster log's raft voters and learners by node, which one leads, the term and the applied index",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			b, err := requestV2(ctx, dataDir, admin.OpRaftPeers, nil)
			if err != nil {
				return err
			}
			p, err := admin.ParseRaftPeers(b)
			if err != nil {
				return err
			}
			rows := make([]raftPeerJSON, 0, len(p.Peers))
			for _, m := range p.Peers {
				r := raftPeerJSON{ID: m.Node, Name: m.Name, Role: "learner", Leader: m.Leader, Self: m.Self, RaftID: fmt.Sprintf("%016x", m.RaftID)}
				if m.Voter {
					r.Role = "voter"
				}
				rows = append(rows, r)
			}
			if asJSON {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(struct {
					Leader  uint64         `json:"leader"`
					Term    uint64         `json:"term"`
					Commit  uint64         `json:"commit"`
					Applied uint64         `json:"applied"`
					Peers   []raftPeerJSON `json:"peers"`
				}{p.Leader, p.Term, p.Commit, p.Applied, rows})
			}
			leader := "none known"
			if p.Leader != 0 {
				leader = fmt.Sprintf("node %d", p.Leader)
			}
			fmt.Printf("leader %s, term %d, commit %d, applied %d\n", leader, p.Term, p.Commit, p.Applied)
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "NODE\tNAME\tROLE\tLEADER")
			for _, r := range rows {
				node, name, lead := fmt.Sprint(r.ID), r.Name, "-"
				if r.ID == 0 {
					// Never a raw raft id here: it means nothing to people.
					node = "?"
				}
				if name == "" {
					name = "(not in the view)"
				}
				if r.Self {
					name += " (this node)"
				}
				if r.Leader {
					lead = "leader"
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", node, name, r.Role, lead)
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", ".", "data directory of the agent to ask")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// removeCmd is `corral members remove NODE`, and, named force-leave, the
// same at the top level (as Consul's).
func removeCmd(use string) *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   use + " NODE",
		Short: "Have the leader take NODE (an id or a name) out of the view, dead or alive; a live node joins again as a new life",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			b, err := request(ctx, dataDir, admin.OpView)
			if err != nil {
				return err
			}
			view, err := admin.ParseViewInfo(b)
			if err != nil {
				return err
			}
			m, err := findMember(view, args[0])
			if err != nil {
				return err
			}
			if _, err := requestV2(ctx, dataDir, admin.OpRemove, admin.AppendRemoveRequest(nil, admin.RemoveRequest{Node: m.ID})); err != nil {
				return fmt.Errorf("remove node %d (%s): %w", m.ID, m.Name, err)
			}
			fmt.Printf("removed node %d (%s) from the view\n", m.ID, m.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", ".", "data directory of an agent of the cluster")
	return cmd
}

// findMember finds the view's member with id or name arg.
func findMember(v admin.ViewInfo, arg string) (admin.ViewMember, error) {
	id, err := strconv.ParseUint(arg, 10, 64)
	for _, m := range v.Members {
		if err == nil && m.ID == id || err != nil && m.Name == arg {
			return m, nil
		}
	}
	return admin.ViewMember{}, fmt.Errorf("node %q is not in view %d", arg, v.Instance)
}
