package server

import (
	"sync/atomic"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// counters are the server's, updated atomically by every worker.
type counters struct {
	received    [16]atomic.Uint64 // by message type (0: BOOTP)
	sent        [16]atomic.Uint64
	parseErrors atomic.Uint64
	ignored     atomic.Uint64
	noNetwork   atomic.Uint64
	notOurs     atomic.Uint64
	noAddress   atomic.Uint64
	commits     atomic.Uint64
	collisions  atomic.Uint64
	lost        atomic.Uint64
	naks        atomic.Uint64
	declines    atomic.Uint64
	releases    atomic.Uint64
	storeErrors atomic.Uint64
	sendErrors  atomic.Uint64
	duplicates  atomic.Uint64

	probes       atomic.Uint64
	probeHits    atomic.Uint64
	probeCached  atomic.Uint64
	probeSkipped atomic.Uint64
	probeErrors  atomic.Uint64
}

// Stats are the server's counters since New.
type Stats struct {
	Received    map[string]uint64 // by message type ("BOOTP" for no option 53)
	Sent        map[string]uint64
	ParseErrors uint64 // dhcpv4.FromBytes refused the packet
	Ignored     uint64 // not a request, no usable client id, or a type the server does not answer
	NoNetwork   uint64 // no configured network for giaddr or the interface
	NotOurs     uint64 // left to the server that owns the binding
	NoAddress   uint64 // a DISCOVER or BOOTP request with no free address
	Commits     uint64 // leases written
	Collisions  uint64 // ErrCollision on a write (then reread)
	Lost        uint64 // commits given up: another client took the address
	NAKs        uint64
	Declines    uint64
	Releases    uint64
	StoreErrors uint64
	SendErrors  uint64
	Duplicates  uint64 // copies of a broadcast on sockets other than the first, not answered

	// The ICMP probe (Config.ICMPProbe).
	Probes       uint64 // echo requests sent
	ProbeHits    uint64 // addresses that answered: marked UNUSABLE, another offered
	ProbeCached  uint64 // probes spared: the address was quiet a moment ago
	ProbeSkipped uint64 // offered unprobed: every probe slot was busy for the timeout
	ProbeErrors  uint64 // echoes that could not be sent (no route, ...): offered as quiet
}

func typeName(i int) string {
	if i == 0 {
		return "BOOTP"
	}
	return dhcpv4.MessageType(i).String()
}

// Stats returns the counters.
func (s *Server) Stats() Stats {
	c := &s.ctr
	st := Stats{
		Received: map[string]uint64{}, Sent: map[string]uint64{},
		ParseErrors: c.parseErrors.Load(), Ignored: c.ignored.Load(), NoNetwork: c.noNetwork.Load(),
		NotOurs: c.notOurs.Load(), NoAddress: c.noAddress.Load(), Commits: c.commits.Load(),
		Collisions: c.collisions.Load(), Lost: c.lost.Load(), NAKs: c.naks.Load(),
		Declines: c.declines.Load(), Releases: c.releases.Load(), StoreErrors: c.storeErrors.Load(),
		SendErrors: c.sendErrors.Load(), Duplicates: c.duplicates.Load(),
		Probes: c.probes.Load(), ProbeHits: c.probeHits.Load(), ProbeCached: c.probeCached.Load(),
		ProbeSkipped: c.probeSkipped.Load(), ProbeErrors: c.probeErrors.Load(),
	}
	for i := range c.received {
		if v := c.received[i].Load(); v > 0 {
			st.Received[typeName(i)] = v
		}
		if v := c.sent[i].Load(); v > 0 {
			st.Sent[typeName(i)] = v
		}
	}
	return st
}
