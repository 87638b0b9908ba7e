package rsm

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/clusterlog"
)

// ErrNoNode is returned by a NodeProposer while there is no node.
var ErrNoNode = errors.New("rsm: no cluster log node")

// NodeProposer is the Proposer over a clusterlog.Node. The node is looked up
// on every call, so whoever owns the node (cluster/) can replace it (a new
// life after an eviction) under the same Proposer.
type NodeProposer struct {
	self uint64                  // the agent's node id: the envelopes' proposer
	node func() *clusterlog.Node // current node, or nil
	next atomic.Uint64           // last request id handed out
}

var _ Proposer = (*NodeProposer)(nil)

// NewProposer returns a Proposer that proposes to node(), as proposer self
// (the agent's node id, which stays when node() is replaced by a new life
// with another raft id, so that a request retried across lives is still
// deduplicated). Request ids start from the clock, so that a restarted
// process with the same node id keeps numbering upwards (DedupeWindow
// evicts the lowest ids).
func NewProposer(self uint64, node func() *clusterlog.Node) *NodeProposer {
	p := &NodeProposer{self: self, node: node}
	p.next.Store(uint64(time.Now().UnixNano()))
	return p
}

// NextRequest returns a new request id for ProposeRequest. A caller that
// retries a command after a timeout passes the same id again.
func (p *NodeProposer) NextRequest() uint64 { return p.next.Add(1) }

// Propose implements Proposer: it appends cmd for machine id, without
// deduplication, and waits until it is applied on this node.
func (p *NodeProposer) Propose(ctx context.Context, id ID, cmd []byte) (uint64, []byte, error) {
	return p.ProposeRequest(ctx, id, 0, cmd)
}

// ProposeRequest is Propose with a request id (0: none): however many times
// the same (node, request) is proposed, the machine applies it once, and
// every call that sees it applied gets the first Reply.
func (p *NodeProposer) ProposeRequest(ctx context.Context, id ID, request uint64, cmd []byte) (uint64, []byte, error) {
	if id == idEnd || id == idDedupe {
		return 0, nil, &EnvelopeError{fmt.Sprintf("machine id %d is reserved", id)}
	}
	if len(cmd) > MaxCommand {
		return 0, nil, &EnvelopeError{fmt.Sprintf("command of %d bytes exceeds %d", len(cmd), MaxCommand)}
	}
	n := p.node()
	if n == nil {
		return 0, nil, ErrNoNode
	}
	// Room for the log's envelope in front: the log takes this buffer
	// as it is, one copy of cmd in all.
	data := AppendEnvelope(make([]byte, clusterlog.ProposeHeadroom, clusterlog.ProposeHeadroom+EnvelopeHeaderLen+len(cmd)),
		Envelope{Machine: id, Proposer: p.self, Request: request, Cmd: cmd})
	return n.ProposeOwned(ctx, data)
}

// RequestHeadroom is how many bytes ProposeRequestOwned needs free in
// front of the command: the log's envelope and the machine's.
const RequestHeadroom = clusterlog.ProposeHeadroom + EnvelopeHeaderLen

// ProposeRequestOwned is ProposeRequest for the command in
// buf[RequestHeadroom:], without copying it: the log owns buf from the call
// on (both envelopes are written into the headroom, the command is kept as
// it is). The caller must not change buf again; reading the command, to
// propose it once more with ProposeRequest, is fine.
func (p *NodeProposer) ProposeRequestOwned(ctx context.Context, id ID, request uint64, buf []byte) (uint64, []byte, error) {
	if len(buf) < RequestHeadroom {
		return 0, nil, &EnvelopeError{fmt.Sprintf("%d bytes, less than the %d of headroom", len(buf), RequestHeadroom)}
	}
	if id == idEnd || id == idDedupe {
		return 0, nil, &EnvelopeError{fmt.Sprintf("machine id %d is reserved", id)}
	}
	if len(buf)-RequestHeadroom > MaxCommand {
		return 0, nil, &EnvelopeError{fmt.Sprintf("command of %d bytes exceeds %d", len(buf)-RequestHeadroom, MaxCommand)}
	}
	n := p.node()
	if n == nil {
		return 0, nil, ErrNoNode
	}
	// The header goes in place: buf's capacity holds it.
	AppendEnvelope(buf[:clusterlog.ProposeHeadroom], Envelope{Machine: id, Proposer: p.self, Request: request})
	return n.ProposeOwned(ctx, buf)
}

// ReadIndex implements Proposer: it asks the leader for its commit index
// and waits until this node has applied it.
func (p *NodeProposer) ReadIndex(ctx context.Context) (uint64, error) {
	n := p.node()
	if n == nil {
		return 0, ErrNoNode
	}
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := n.WaitFor(ctx, func(s clusterlog.Status) bool { return s.Applied >= idx }); err != nil {
		return 0, fmt.Errorf("rsm: read index %d: %w", idx, err)
	}
	return idx, nil
}
