package cluster

import (
	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/membership"
)

// Quorum is this node's judgement of its cluster's quorum: the view's
// voters it reaches, itself included, against the majority they need. It
// is the count membership.Contact makes for SUSPECT and RECOVERED.
type Quorum struct {
	Member    bool // this life is in the view; a node outside it has no quorum
	Voters    int  // voters in the view
	Reachable int  // of them, this node and those it has a link to
}

// Need is the number of voters a quorum takes: a majority.
func (q Quorum) Need() int { return q.Voters/2 + 1 }

// Quorate reports whether this node is in the view and reaches a majority
// of its voters.
func (q Quorum) Quorate() bool { return q.Member && q.Voters > 0 && q.Reachable >= q.Need() }

// Quorum returns this node's judgement of quorum now.
func (c *Cluster) Quorum() Quorum {
	l := c.cur.Load()
	v := l.member.View()
	return quorumOf(&v, c.cfg.Self, l.inc, func(id uint64) bool { return c.cfg.Mesh.Link(id) != nil })
}

func quorumOf(v *membership.View, self, inc uint64, up func(uint64) bool) Quorum {
	q := Quorum{Member: v.HasLife(self, inc)}
	for _, m := range v.Members {
		if !m.Voter {
			continue
		}
		q.Voters++
		if m.ID == self || up(m.ID) {
			q.Reachable++
		}
	}
	return q
}

// RaftPeer is one member of raft's configuration, named by the node that
// has it: raft ids are incarnations, which mean nothing to people.
type RaftPeer struct {
	RaftID uint64
	Node   uint64 // 0 if neither the view nor a message names its node
	Name   string // from the view; empty if it is not in the view
	Voter  bool   // else a learner
	Leader bool
	Self   bool
}

// RaftPeers returns the raft node's status and its configuration, voters
// first, each in raft id order.
func (c *Cluster) RaftPeers() (clusterlog.Status, []RaftPeer) {
	l := c.cur.Load()
	st := l.node.Status()
	v := l.member.State().View
	peer := func(id uint64, voter bool) RaftPeer {
		p := RaftPeer{RaftID: id, Voter: voter, Leader: id == st.Leader, Self: id == l.inc}
		for _, m := range v.Members {
			if m.Incarnation == id {
				p.Node, p.Name = m.ID, m.Name
				return p
			}
		}
		if p.Self {
			p.Node, p.Name = c.cfg.Self, c.cfg.Name
			return p
		}
		c.mu.Lock()
		p.Node = c.routes[id]
		c.mu.Unlock()
		return p
	}
	var out []RaftPeer
	for _, id := range st.Voters {
		out = append(out, peer(id, true))
	}
	for _, id := range st.Learners {
		out = append(out, peer(id, false))
	}
	return st, out
}
