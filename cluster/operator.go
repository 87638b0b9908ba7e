package cluster

import "github.com/corralhq/corral/membership"

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
