package main

import (
	"context"
	"errors"
	"fmt"

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

// quorumJSON is the quorum as the self row of `members --json` carries it.
type quorumJSON struct {
	Quorate   bool   `json:"quorate"`
	Voters    uint32 `json:"voters"`
	Reachable uint32 `json:"voters_reachable"`
	Need      uint32 `json:"quorum_need"`
}

func quorumOf(q admin.QuorumInfo) *quorumJSON {
	return &quorumJSON{Quorate: q.Quorate, Voters: q.Voters, Reachable: q.Reachable, Need: q.Need()}
}
