package membership

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/corralhq/corral/proto/peer"
)

// Specification constants: controller timing (doc.go).
const (
	// NotMemberEvery is how often a node outside the view is told so again
	// while it stays linked: a notice can be lost with a link that is
	// replaced.
	NotMemberEvery = time.Second
	// AskEvery is how often a node outside the view asks again to be added
	// (or, leaving, to be removed).
	AskEvery = time.Second
	// maxQueued bounds the peer requests a leader holds while a change is in
	// flight; beyond it a request is answered at once and asked again.
	maxQueued = 64
)

// ControllerConfig is the policy's fixed configuration.
type ControllerConfig struct {
	// HeartbeatTimeout is the grace a node gets to link to the leader after
	// its life was learned or the leader took over, and the grace a link
	// that ended as a duplicate gets before its node counts as down.
	HeartbeatTimeout time.Duration
	// RemoveAfter is how long a member's link stays down before the leader
	// removes it.
	RemoveAfter time.Duration
	// MaxVoters caps the voting members; later nodes join as non-voters and
	// are promoted when a voter goes.
	MaxVoters int
}

// RaftStatus is what the controller needs of the raft node.
type RaftStatus struct {
	Leader      bool      // this node leads
	LeaderID    uint64    // node id of the leader; 0 if none is known
	LeaderSince time.Time // when this node last became leader (Leader only)
}

// LinkState is the state of this node's link to one peer. A peer missing
// from Input.Links, or with a zero DownSince while down, was never linked.
type LinkState struct {
	Up        bool
	DownSince time.Time // when the last link ended
	Duplicate bool      // the last link ended as a duplicate: another is on its way
}

// Request is a JOIN or LEAVE a peer sent this node.
type Request struct {
	Ref    uint64 // the driver's handle: the Reply or Relay action names it
	From   uint64 // the node at the other end of the link it came on
	Source uint64 // frame Source: the node it was relayed for, 0 if direct
	Join   bool   // its opcode was JOIN (else LEAVE)
	Cmd    Command
}

// Notice is a NOTMEMBER received: node From's view Instance leaves this
// node out.
type Notice struct {
	From     uint64
	Instance uint64
}

// Outcome is what became of the proposal numbered Seq.
type Outcome struct {
	Seq       uint64
	Index     uint64 // the entry it committed at; 0 if it failed
	Err       string // why it failed; empty if it committed
	NotLeader bool   // it failed because this node does not lead
}

// Input is everything one Step decides from. The controller keeps no clock
// and reads nothing else.
type Input struct {
	Now         time.Time
	Self        uint64 // this node's id
	Incarnation uint64 // this node's current life (local, not replicated)
	Name, Addr  string // this node's name and peer address, for its JOIN
	Leaving     bool   // corral leave was asked
	// State is the membership machine's (Machine.State); nil is empty.
	State *State
	Raft  RaftStatus
	Links map[uint64]LinkState
	// Joined is when each member's current life was applied here (its JOIN
	// applied locally); a link down before then was an earlier life's.
	Joined map[uint64]time.Time
	// Requests and Notices arrived since the last Step.
	Requests []Request
	Notices  []Notice
	// Removed reports that a peer answered this life's own JOIN with
	// ResultRemoved: the cluster removed this incarnation, though this
	// node, cut off meanwhile, never applied it.
	Removed bool
	// Outcome reports the proposal in flight, once.
	Outcome *Outcome
	// ClusterIDCandidate is a fresh random 64-bit id, the form HELLO
	// carries; the leader proposes it when the cluster has none. Zero
	// proposes nothing.
	ClusterIDCandidate ClusterID
}

// ActionKind says what an Action asks the driver to do.
type ActionKind uint8

// Actions.
const (
	// ActPropose: propose Cmd (with Cmd.Raft's configuration change, or as
	// an ordinary entry if it has none) and report the Outcome with Seq.
	ActPropose ActionKind = iota + 1
	// ActReply: answer request Ref with Reply.
	ActReply
	// ActRelay: send request Ref's Cmd to node To (the leader) with Source
	// set to Cmd.ID, and answer Ref with what comes back (NOTLEADER if
	// nothing does).
	ActRelay
	// ActRequest: send this node's own Cmd (JOIN or LEAVE) to node To.
	ActRequest
	// ActNotMember: send NOTMEMBER with Instance to node To.
	ActNotMember
	// ActEvicted: this node's life is no longer a member: tell EVICTED,
	// drop the log, start a new life (new incarnation) and join again.
	ActEvicted
	// ActLeft: this node's graceful leave is done.
	ActLeft
)

// Action is one thing the driver does for the controller. The driver
// executes actions without blocking the Step loop and reports proposals'
// outcomes back in a later Input.
type Action struct {
	Kind     ActionKind
	Seq      uint64 // ActPropose
	Cmd      Command
	To       uint64
	Ref      uint64
	Reply    peer.MemberReply
	Instance uint64 // ActNotMember
	Why      string // ActEvicted
}

func (a Action) String() string {
	switch a.Kind {
	case ActPropose:
		typ, id := a.Cmd.Raft()
		if typ == RaftNone {
			return fmt.Sprintf("propose #%d %s", a.Seq, a.Cmd)
		}
		return fmt.Sprintf("propose #%d %s (%s %#x)", a.Seq, a.Cmd, typ, id)
	case ActReply:
		r := a.Reply
		switch r.Result {
		case peer.ResultOK:
			return fmt.Sprintf("reply ref=%d OK instance=%d", a.Ref, r.Instance)
		case peer.ResultNotLeader:
			return fmt.Sprintf("reply ref=%d NOTLEADER leader=%d", a.Ref, r.Leader)
		case peer.ResultRemoved:
			return fmt.Sprintf("reply ref=%d REMOVED %q", a.Ref, r.Text)
		}
		return fmt.Sprintf("reply ref=%d REFUSED %q", a.Ref, r.Text)
	case ActRelay:
		return fmt.Sprintf("relay ref=%d to=%d %s", a.Ref, a.To, a.Cmd)
	case ActRequest:
		return fmt.Sprintf("request to=%d %s", a.To, a.Cmd)
	case ActNotMember:
		return fmt.Sprintf("notmember to=%d instance=%d", a.To, a.Instance)
	case ActEvicted:
		return "evicted: " + a.Why
	case ActLeft:
		return "left"
	}
	return fmt.Sprintf("action(%d)", a.Kind)
}

// Controller is the membership policy of one node: a deterministic state
// machine with no goroutines, clock or I/O (doc.go teaches its rules). The
// driver calls Step from one goroutine.
type Controller struct {
	cfg ControllerConfig

	// Everything below belongs to one life (inc) and is reset for a new one.
	inc      uint64
	seq      uint64            // numbers proposals
	inflight *flight           // the one proposal in flight, nil if none
	queue    []*held           // peer requests the leader acts on in turn
	told     map[uint64]notice // NOTMEMBER sent, per node
	askedAt  time.Time         // this node's last JOIN or LEAVE request
	asks     uint64            // requests sent not knowing the leader: picks the next peer
	member   bool              // this life was seen in the view
	evicted  bool              // ActEvicted given for this life
	left     bool              // ActLeft given for this life
}

type flight struct {
	seq   uint64
	cmd   Command
	req   *held // the request it serves, nil for the leader's own
	final bool  // the request is answered when it commits (else decided again)
}

// held is a peer request waiting on the leader, with every Ref that asked
// for the same change meanwhile.
type held struct {
	cmd  Command
	refs []uint64
}

type notice struct {
	instance uint64
	at       time.Time
}

// NewController returns a controller with cfg.
func NewController(cfg ControllerConfig) *Controller {
	return &Controller{cfg: cfg, told: make(map[uint64]notice)}
}

// InFlight reports the proposal in flight, if any.
func (c *Controller) InFlight() (seq uint64, cmd Command, ok bool) {
	if c.inflight == nil {
		return 0, Command{}, false
	}
	return c.inflight.seq, c.inflight.cmd, true
}

// Step decides what to do now. Its result depends only on in and on what
// earlier Steps saw.
func (c *Controller) Step(in Input) []Action {
	if in.Incarnation != c.inc {
		*c = Controller{cfg: c.cfg, inc: in.Incarnation, told: make(map[uint64]notice), seq: c.seq}
	}
	s := in.State
	if s == nil {
		s = &State{}
	}
	v := &s.View
	var out []Action
	emit := func(a Action) { out = append(out, a) }

	if o := in.Outcome; o != nil && c.inflight != nil && o.Seq == c.inflight.seq {
		c.done(in, o, emit)
	}

	// This life: member, evicted, or gone after a leave.
	member := v.HasLife(in.Self, in.Incarnation)
	gone := s.Removed(in.Self, in.Incarnation) || in.Removed || c.member && !member
	c.member = c.member || member
	switch {
	case gone && in.Leaving, in.Leaving && !member && !c.member:
		if !c.left {
			c.left = true
			emit(Action{Kind: ActLeft})
		}
	case gone && !c.evicted:
		c.evicted = true
		emit(Action{Kind: ActEvicted, Why: fmt.Sprintf("view %d no longer has incarnation %#x", v.Instance, in.Incarnation)})
	}
	for _, n := range in.Notices {
		if member && !in.Leaving && !c.evicted && v.Instance < n.Instance {
			c.evicted = true
			emit(Action{Kind: ActEvicted, Why: fmt.Sprintf("node %d's view %d does not include this node", n.From, n.Instance)})
		}
	}
	if c.evicted || c.left {
		for _, r := range in.Requests {
			emit(reply(r.Ref, peer.MemberReply{Result: peer.ResultNotLeader, Leader: in.Raft.LeaderID}))
		}
		c.flush(in, emit)
		return out
	}

	if !in.Raft.Leader {
		c.flush(in, emit) // a new leader decides them; the askers ask again
	}
	for _, r := range in.Requests {
		c.request(in, s, r, emit)
	}
	if in.Raft.Leader && c.inflight == nil {
		c.lead(in, s, member, emit)
	}
	if !in.Raft.Leader {
		c.ask(in, member, emit)
	}
	if member {
		c.tellNonMembers(in, v, emit)
	}
	return out
}

func reply(ref uint64, r peer.MemberReply) Action { return Action{Kind: ActReply, Ref: ref, Reply: r} }

// done takes the outcome of the proposal in flight.
func (c *Controller) done(in Input, o *Outcome, emit func(Action)) {
	f := c.inflight
	c.inflight = nil
	if f.req == nil {
		return
	}
	switch {
	case o.Err == "" && !f.final:
		c.queue = append([]*held{f.req}, c.queue...) // decided again on the new view
	case o.Err == "":
		for _, ref := range f.req.refs {
			emit(reply(ref, peer.MemberReply{Result: peer.ResultOK, Instance: o.Index}))
		}
	case o.NotLeader:
		for _, ref := range f.req.refs {
			emit(reply(ref, peer.MemberReply{Result: peer.ResultNotLeader, Leader: in.Raft.LeaderID}))
		}
	default:
		for _, ref := range f.req.refs {
			emit(reply(ref, peer.MemberReply{Result: peer.ResultRefused, Text: o.Err}))
		}
	}
}

// flush answers every held request NOTLEADER.
func (c *Controller) flush(in Input, emit func(Action)) {
	for _, h := range c.queue {
		for _, ref := range h.refs {
			emit(reply(ref, peer.MemberReply{Result: peer.ResultNotLeader, Leader: in.Raft.LeaderID}))
		}
	}
	c.queue = nil
}

// request validates a peer's request, then relays it (follower), answers it
// or holds it (leader).
func (c *Controller) request(in Input, s *State, r Request, emit func(Action)) {
	refuse := func(format string, args ...any) {
		emit(reply(r.Ref, peer.MemberReply{Result: peer.ResultRefused, Text: fmt.Sprintf(format, args...)}))
	}
	cmd := r.Cmd
	switch {
	case r.Source == 0 && cmd.ID != r.From:
		refuse("node %d cannot ask for node %d", r.From, cmd.ID)
		return
	case r.Source != 0 && (r.Source != cmd.ID || !s.View.Has(r.From)):
		refuse("node %d may not relay for node %d", r.From, r.Source)
		return
	case r.Join != (cmd.Op == OpJoin) || cmd.Op != OpJoin && cmd.Op != OpLeave:
		refuse("command does not match the opcode")
		return
	}
	if !in.Raft.Leader {
		// Relay once, to the leader: the asking node may have no link to
		// it. A relayed request reaching a node that lost the lead is
		// answered, not relayed again.
		if l := in.Raft.LeaderID; r.Source == 0 && l != 0 && l != in.Self && in.Links[l].Up {
			emit(Action{Kind: ActRelay, Ref: r.Ref, To: l, Cmd: cmd})
			return
		}
		emit(reply(r.Ref, peer.MemberReply{Result: peer.ResultNotLeader, Leader: in.Raft.LeaderID}))
		return
	}
	if a, ok := answer(s, cmd); ok {
		emit(reply(r.Ref, a))
		return
	}
	if f := c.inflight; f != nil && f.req != nil && same(f.req.cmd, cmd) {
		f.req.refs = append(f.req.refs, r.Ref)
		return
	}
	for _, h := range c.queue {
		if same(h.cmd, cmd) {
			h.refs = append(h.refs, r.Ref)
			return
		}
	}
	if len(c.queue) >= maxQueued {
		refuse("the leader is busy; ask again")
		return
	}
	c.queue = append(c.queue, &held{cmd: cmd, refs: []uint64{r.Ref}})
}

func same(a, b Command) bool {
	return a.Op == b.Op && a.ID == b.ID && a.Incarnation == b.Incarnation
}

// answer returns the reply to a request that needs no proposal.
func answer(s *State, cmd Command) (peer.MemberReply, bool) {
	v := &s.View
	switch cmd.Op {
	case OpJoin:
		if s.Removed(cmd.ID, cmd.Incarnation) {
			// F1: that life was removed; only a new one may join.
			return peer.MemberReply{Result: peer.ResultRemoved, Text: fmt.Sprintf("incarnation %#x of node %d was removed; join with a new one", cmd.Incarnation, cmd.ID)}, true
		}
		if v.HasLife(cmd.ID, cmd.Incarnation) {
			return peer.MemberReply{Result: peer.ResultOK, Instance: v.Instance}, true
		}
	case OpLeave:
		m, ok := v.Member(cmd.ID)
		if !ok || cmd.Incarnation != 0 && m.Incarnation != cmd.Incarnation {
			return peer.MemberReply{Result: peer.ResultOK, Instance: v.Instance}, true // already out
		}
	}
	return peer.MemberReply{}, false
}

// lead is the leader's policy, one proposal at a time: found the view,
// remove failed members, leave, act on held requests, promote, name the
// cluster.
func (c *Controller) lead(in Input, s *State, member bool, emit func(Action)) {
	v := &s.View
	propose := func(cmd Command, req *held, final bool) {
		c.seq++
		c.inflight = &flight{seq: c.seq, cmd: cmd, req: req, final: final}
		emit(Action{Kind: ActPropose, Seq: c.seq, Cmd: cmd})
	}
	if !member {
		if !in.Leaving && !s.Removed(in.Self, in.Incarnation) {
			// The founder puts itself in the first view.
			propose(c.self(in, true), nil, false)
		}
		return
	}
	if m, ok := c.failed(in, v); ok {
		propose(Command{Op: OpLeave, Cause: CauseFailed, ID: m.ID, Incarnation: m.Incarnation}, nil, false)
		return
	}
	if in.Leaving {
		propose(Command{Op: OpLeave, Cause: CauseGraceful, ID: in.Self, Incarnation: in.Incarnation}, nil, false)
		return
	}
	for len(c.queue) > 0 {
		h := c.queue[0]
		c.queue = c.queue[1:]
		cmd := h.cmd
		if a, ok := answer(s, cmd); ok {
			for _, ref := range h.refs {
				emit(reply(ref, a))
			}
			continue
		}
		old, _ := v.Member(cmd.ID)
		switch {
		case cmd.Op == OpJoin && v.Has(cmd.ID) && in.Links[cmd.ID].Up && old.Addr != cmd.Addr:
			// Another life at another address while the member's link
			// is up: a second node started with an id in use, not the
			// member back without its log. Taking it in would evict the
			// live member.
			text := fmt.Sprintf("node id %d is in use by the member at %s (incarnation %#x, linked); refusing the node at %s (incarnation %#x): give it another --id",
				cmd.ID, old.Addr, old.Incarnation, cmd.Addr, cmd.Incarnation)
			for _, ref := range h.refs {
				emit(reply(ref, peer.MemberReply{Result: peer.ResultRefused, Text: text}))
			}
			continue
		case cmd.Op == OpLeave:
			cmd.Incarnation = old.Incarnation // raft needs the life to remove
			propose(cmd, h, true)
		case v.Has(cmd.ID):
			// A new life of a member (it lost its log: same address, or
			// its old life's link is down): remove the old one first, so
			// raft does not take the empty node for the old one.
			propose(Command{Op: OpLeave, Cause: CauseRemoved, ID: cmd.ID, Incarnation: old.Incarnation}, h, false)
		default:
			cmd.Voter = len(v.Voters()) < c.cfg.MaxVoters
			propose(cmd, h, true)
		}
		return
	}
	if len(v.Voters()) < c.cfg.MaxVoters {
		// Keep the voters at their number: the oldest reachable non-voter.
		for _, m := range v.Members {
			if !m.Voter && in.Links[m.ID].Up {
				propose(Command{Op: OpPromote, ID: m.ID, Incarnation: m.Incarnation, Voter: true}, nil, false)
				return
			}
		}
	}
	if s.ClusterID.IsZero() && !in.ClusterIDCandidate.IsZero() {
		propose(Command{Op: OpSetClusterID, ID: in.Self, Cluster: in.ClusterIDCandidate}, nil, false)
	}
}

func (c *Controller) self(in Input, voter bool) Command {
	return Command{Op: OpJoin, ID: in.Self, Incarnation: in.Incarnation, Name: in.Name, Addr: in.Addr, Voter: voter}
}

// failed returns the oldest member the leader should remove: one whose
// link has been down for RemoveAfter, counting the graces.
func (c *Controller) failed(in Input, v *View) (Member, bool) {
	hb := c.cfg.HeartbeatTimeout
	for _, m := range v.Members {
		if m.ID == in.Self {
			continue
		}
		l, linked := in.Links[m.ID]
		if l.Up {
			continue
		}
		joined := in.Joined[m.ID]
		var down time.Time
		if !linked || l.DownSince.IsZero() {
			// Never linked: a heartbeat timeout to link, from when this
			// leader learned of the life or took over, whichever is later
			// (F2: not from the leadership alone).
			down = later(in.Raft.LeaderSince, joined).Add(hb)
		} else {
			down = l.DownSince
			if l.Duplicate {
				down = down.Add(hb) // its replacement is on its way
			}
			if down.Before(joined) {
				down = joined.Add(hb) // the link that went down was an earlier life's
			}
		}
		if in.Now.Sub(down) >= c.cfg.RemoveAfter {
			return m, true
		}
	}
	return Member{}, false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ask sends this node's JOIN (outside the view) or LEAVE (leaving) to the
// leader, or, not knowing it, to the linked peers in turn (by id).
func (c *Controller) ask(in Input, member bool, emit func(Action)) {
	var cmd Command
	switch {
	case !member && !in.Leaving:
		cmd = c.self(in, true)
	case member && in.Leaving:
		cmd = Command{Op: OpLeave, Cause: CauseGraceful, ID: in.Self, Incarnation: in.Incarnation}
	default:
		return
	}
	if !c.askedAt.IsZero() && in.Now.Sub(c.askedAt) < AskEvery {
		return
	}
	to := in.Raft.LeaderID
	if to == 0 || to == in.Self || !in.Links[to].Up {
		// Not knowing the leader, ask the linked peers in turn: one that
		// is itself outside the view (a node restarting at the same time)
		// cannot help, and asking it alone would never end.
		var up []uint64
		for _, id := range slices.Sorted(maps.Keys(in.Links)) {
			if id != in.Self && in.Links[id].Up {
				up = append(up, id)
			}
		}
		if len(up) == 0 {
			return
		}
		to = up[c.asks%uint64(len(up))]
		c.asks++
	}
	c.askedAt = in.Now
	emit(Action{Kind: ActRequest, To: to, Cmd: cmd})
}

// tellNonMembers sends NOTMEMBER to each linked node outside the view: at
// once for a new view, and again every NotMemberEvery while it stays out.
func (c *Controller) tellNonMembers(in Input, v *View, emit func(Action)) {
	for _, id := range slices.Sorted(maps.Keys(in.Links)) {
		if id == in.Self || !in.Links[id].Up || v.Has(id) {
			continue
		}
		if last, ok := c.told[id]; ok && last.instance == v.Instance && in.Now.Sub(last.at) < NotMemberEvery {
			continue
		}
		c.told[id] = notice{v.Instance, in.Now}
		emit(Action{Kind: ActNotMember, To: id, Instance: v.Instance})
	}
	for id := range c.told {
		if v.Has(id) {
			delete(c.told, id) // a member again: a later exit is told at once
		}
	}
}
