package membership

// Signal is a local membership event decided by Contact.
type Signal uint8

// Signals.
const (
	SignalNone      Signal = iota
	SignalSuspect          // this node lost contact with a quorum of voters
	SignalRecovered        // contact regained and the view did not change meanwhile
)

// Contact judges whether this node is in contact with a quorum of the
// view's voters, from the state of its links. It is local: a node cut off
// with a minority learns so at once, before any view change can reach it.
type Contact struct {
	suspect bool
	at      uint64 // view instance when suspicion began
}

// Suspect reports whether the node currently suspects its membership.
func (c *Contact) Suspect() bool { return c.suspect }

// Update re-evaluates contact; up reports whether the link to a node is up.
// It returns SignalSuspect when contact is lost, SignalRecovered when it is
// regained with the view unchanged, and SignalNone otherwise (including a
// regain after a view change, which NEWVIEW already told).
func (c *Contact) Update(v *View, self uint64, up func(id uint64) bool) Signal {
	voters, reach := 0, 0
	for _, m := range v.Members {
		if !m.Voter {
			continue
		}
		voters++
		if m.ID == self || up(m.ID) {
			reach++
		}
	}
	// A node outside the view has no quorum to lose; EVICTED covers it.
	lost := voters > 0 && v.Has(self) && 2*reach <= voters
	switch {
	case lost && !c.suspect:
		c.suspect, c.at = true, v.Instance
		return SignalSuspect
	case !lost && c.suspect:
		c.suspect = false
		if v.Instance == c.at {
			return SignalRecovered
		}
	}
	return SignalNone
}
