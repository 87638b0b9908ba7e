package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/logkey"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/sharedaddr/addrsvc"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/kernel"
	"github.com/corralhq/corral/sharedaddr/spi"
)

// The data path's timings. The quorum check runs this often besides the
// wake-ups of link events: fencing must not wait for a state change, and
// the check is a view load and a route lookup per member.
const (
	fenceCheck     = 20 * time.Millisecond
	applyBackoff   = 100 * time.Millisecond
	applyBackoffMx = 5 * time.Second
	dropTimeout    = 2 * time.Second
	// reportTimeout bounds how long an owner keeps an address's old
	// tables after a table change while waiting for every member to
	// report the flows whose bucket moved (addrsvc's exceptions).
	reportTimeout = time.Second
)

// dataPath keeps the kernel data path of the agent's own stack equal to
// what the shared-address state says of this node (issue 13 items 3 and
// 5): on every change of the state it builds this node's kernel.Plan and
// applies it, and announces the addresses it newly owns. It fences: while
// this node is not in contact with a quorum of voters it owns nothing —
// the addresses are dropped at once, before the majority's detection
// timeout removes this node from the view and another becomes owner.
type dataPath struct {
	self    uint64
	stack   uint64 // the agent's stack: only its addresses are held here
	iface   string
	src     addrsvc.Source
	quorate func() bool
	// caughtUp reports whether the log has a leader this node hears from
	// and this node has applied what it knows committed: its state is
	// current, and it may take the owner role the state gives it.
	caughtUp func() bool
	// members gives the view's members, whose peer address's host is
	// their next hop on the shared segment.
	members func() []membership.Member
	log     *slog.Logger
	kick    chan struct{} // buffered 1: a link event, look at quorum now
	// open is kernel.Open; a test may replace it.
	open func(path, ifname string, log *slog.Logger) (dataplane, error)
}

// dataplane is what dataPath uses of *kernel.Dataplane.
type dataplane interface {
	Apply(ctx context.Context, p kernel.Plan) error
	Drop(ctx context.Context) error
	Announce(ctx context.Context, vip netip.Addr) error
	Close() error
}

func openKernel(path, ifname string, log *slog.Logger) (dataplane, error) {
	d, err := kernel.Open(path, ifname, log)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// poke asks the loop to look at quorum contact now (a link changed).
func (p *dataPath) poke() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// run drives the data path until ctx ends, then drops everything it
// installed: a stopped agent fences no more, so it must not keep an
// address. Errors are logged and retried with backoff; it never fails.
func (p *dataPath) run(ctx context.Context) error {
	changes, stop := p.src.Watch()
	defer stop()
	var dp dataplane
	wait := applyBackoff
	for dp == nil {
		var err error
		if dp, err = p.open("", p.iface, p.log); err == nil {
			break
		}
		p.log.Error("shared addresses: cannot open the data path; retrying", "iface", p.iface, "err", err.Error(), "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, applyBackoffMx)
	}
	defer dp.Close()

	var announcing sync.WaitGroup // announcements; run waits for them
	defer announcing.Wait()
	// actx ends the announcements of the present owner term: a fence
	// must not be followed by a late gratuitous ARP.
	actx, endTerm := context.WithCancel(ctx)
	defer func() { endTerm() }()

	var (
		// fenced: the node owns nothing. It starts so, as after a
		// fence: its state may be stale (a restart, a return from a
		// partition during which it was removed) until it is caught up.
		fenced  = true
		owned   = map[netip.Addr]bool{} // owned in the last applied plan
		last    *kernel.Plan            // the last plan applied
		dirty   = true                  // the state or contact changed since the last Apply
		retryAt time.Time               // after a failed Apply
		failed  = 0
		lastErr string
		// applied is the table generation of each address in the last
		// applied plan; held, since when a newer one is held back.
		applied   = map[netip.Addr]uint64{}
		held      = map[netip.Addr]heldGen{}
		holdUntil time.Time
	)
	tick := time.NewTicker(fenceCheck)
	defer tick.Stop()
	for {
		if !fenced && !p.quorate() {
			fenced, dirty = true, true
			endTerm()
			if len(owned) > 0 {
				start := time.Now()
				err := dp.Drop(ctx)
				p.log.Warn("shared addresses: lost contact with a quorum; dropped the owned addresses", "addrs", len(owned), "took", time.Since(start), "err", errString(err))
			}
			owned, last = map[netip.Addr]bool{}, nil
		} else if fenced && p.quorate() && p.caughtUp() {
			fenced, dirty = false, true
			actx, endTerm = context.WithCancel(ctx)
			p.log.Info("shared addresses: in contact with a quorum and caught up; owner roles taken as the state says")
		}
		now := time.Now()
		if dirty && !now.Before(retryAt) && !now.Before(holdUntil) {
			st := p.src.State()
			plan, skipped := buildPlan(p.self, p.stack, st, nodeIPs(p.members()), fenced)
			for _, s := range skipped {
				p.log.Warn("shared addresses: a node has no IPv4 next hop; its share is left out", "what", s)
			}
			hold, until, late := gate(st, p.stack, owned, applied, held, now, reportTimeout)
			for _, l := range late {
				p.log.Warn("shared addresses: not every member reported its moved flows in time; applying the new table", "what", l)
			}
			if hold {
				// The old tables stay until the reports are in (a
				// change wakes the loop) or until the timeout.
				holdUntil = until
				goto wait
			}
			// apply installs a plan and announces what it newly owns.
			apply := func(plan kernel.Plan) error {
				if err := dp.Apply(ctx, plan); err != nil {
					return err
				}
				now := map[netip.Addr]bool{}
				for _, a := range plan.Addrs {
					if !a.Owner {
						continue
					}
					now[a.VIP] = true
					if !owned[a.VIP] {
						p.log.Info("shared addresses: now owner", "addr", a.VIP)
						announcing.Add(1)
						go func(ctx context.Context, vip netip.Addr) {
							defer announcing.Done()
							if err := dp.Announce(ctx, vip); err != nil && ctx.Err() == nil {
								p.log.Error("shared addresses: gratuitous ARP failed", "addr", vip, "err", err.Error())
							}
						}(actx, a.VIP)
					}
				}
				owned, last = now, &plan
				return nil
			}
			// A takeover comes with a new table (the old owner's share
			// is gone), and installing a table takes a large part of a
			// second: the address is taken with the table already held,
			// and the new one follows.
			var err error
			if step, ok := takeoverStep(last, plan, owned); ok {
				err = apply(step)
			}
			if err == nil {
				err = apply(plan)
			}
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				failed++
				wait := min(applyBackoff<<min(failed-1, 6), applyBackoffMx)
				retryAt = time.Now().Add(wait)
				if e := err.Error(); e != lastErr || failed%10 == 1 {
					p.log.Error("shared addresses: apply failed; retrying", "err", e, "attempt", failed, "retry_in", wait)
					lastErr = e
				}
			} else {
				if failed > 0 {
					p.log.Info("shared addresses: apply succeeded after failures", "attempts", failed)
				}
				failed, lastErr, dirty = 0, "", false
				applied = gens(st, p.stack)
			}
		}
	wait:
		var retry <-chan time.Time
		if dirty {
			retry = time.After(time.Until(later(retryAt, holdUntil)))
		}
		select {
		case <-ctx.Done():
		case <-changes:
			dirty, holdUntil = true, time.Time{}
		case <-p.kick:
		case <-tick.C:
		case <-retry:
		}
		if ctx.Err() != nil {
			break
		}
	}
	endTerm()
	announcing.Wait()
	dctx, cancel := context.WithTimeout(context.Background(), dropTimeout)
	defer cancel()
	if err := dp.Drop(dctx); err != nil {
		p.log.Error("shared addresses: drop at stop failed", "err", err.Error())
	}
	return nil
}

// heldGen is a table generation an owner holds back, and since when.
type heldGen struct {
	gen   uint64
	since time.Time
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// gens returns the table generation of every address of stack in st.
func gens(st *addrsvc.State, stack uint64) map[netip.Addr]uint64 {
	out := map[netip.Addr]uint64{}
	for _, a := range st.Addrs {
		if a.Addr.Stack == stack && a.Addr.IP.Is4() {
			out[a.Addr.IP] = a.Gen
		}
	}
	return out
}

// gate decides whether an owner holds back the plan of state st (issue
// 13 item 3: a table change resets no held flow). For an address this
// node owns in the last applied plan (owned) whose table generation there
// (applied) is older than st's, the new tables must wait until every
// member of the view has reported its walk for the new generation — the
// exceptions of the flows whose bucket moved come with those reports —
// or until timeout after the new generation was first held (held keeps
// when, per address). A takeover is never held: the address is not owned
// yet, and its step keeps the tables the stack holds. hold says to apply
// nothing now; until is when to look again at the latest; late names the
// addresses whose timeout passed without every report.
func gate(st *addrsvc.State, stack uint64, owned map[netip.Addr]bool, applied map[netip.Addr]uint64, held map[netip.Addr]heldGen,
	now time.Time, timeout time.Duration) (hold bool, until time.Time, late []string) {
	for _, a := range st.Addrs {
		vip := a.Addr.IP
		if a.Addr.Stack != stack || !vip.Is4() {
			continue
		}
		ag, ok := applied[vip]
		if !owned[vip] || !ok || ag == a.Gen {
			delete(held, vip)
			continue
		}
		var missing []uint64
		for _, m := range st.Members {
			if !a.Reported(m) {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 {
			delete(held, vip)
			continue
		}
		h, ok := held[vip]
		if !ok || h.gen != a.Gen {
			h = heldGen{gen: a.Gen, since: now}
			held[vip] = h
		}
		if end := h.since.Add(timeout); now.Before(end) {
			if !hold || end.Before(until) {
				until = end
			}
			hold = true
			continue
		}
		late = append(late, fmt.Sprintf("%v generation %d: no report from %v", a.Addr, a.Gen, missing))
	}
	return hold, until, late
}

// takeoverStep is the first step of applying next after last where next
// makes this node owner of addresses it does not own: last as it was
// applied, taking those addresses. The stack holds its tables already, so
// it installs in milliseconds, where next's (a new table, slices without
// the old owner's) may take a large part of a second. It reports false
// when no step is needed.
func takeoverStep(last *kernel.Plan, next kernel.Plan, owned map[netip.Addr]bool) (kernel.Plan, bool) {
	if last == nil {
		return kernel.Plan{}, false
	}
	step := *last
	step.Addrs = slices.Clone(last.Addrs)
	changed := false
	for i, a := range step.Addrs {
		j := slices.IndexFunc(next.Addrs, func(b kernel.Addr) bool { return b.VIP == a.VIP })
		if j >= 0 && next.Addrs[j].Owner && !owned[a.VIP] && len(a.Services) > 0 {
			step.Addrs[i].Owner = true
			changed = true
		}
	}
	return step, changed
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// nodeIPs maps each member to the host of its peer address: its next hop
// on the shared segment. Members whose address is a name are left out.
func nodeIPs(ms []membership.Member) map[uint64]netip.Addr {
	out := map[uint64]netip.Addr{}
	for _, m := range ms {
		host, _, err := net.SplitHostPort(m.Addr)
		if err != nil {
			continue
		}
		if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().Is4() {
			out[m.ID] = ip.Unmap()
		}
	}
	return out
}

// errNoHop marks a node of the state that has no next hop.
var errNoHop = errors.New("agent: no next hop")

// buildPlan is this node's plan for the state: deterministic, from the
// state, the next hops and whether the node is fenced (then it owns
// nothing). It returns, as text, the shares it had to leave out because
// their node has no next hop.
func buildPlan(self, stack uint64, st *addrsvc.State, ips map[uint64]netip.Addr, fenced bool) (kernel.Plan, []string) {
	p := kernel.Plan{Self: self}
	var skipped []string
	named := map[uint64]bool{self: true}
	hop := func(n uint64) error {
		if n == self {
			return nil
		}
		if _, ok := ips[n]; !ok {
			return errNoHop
		}
		named[n] = true
		return nil
	}
	for _, a := range st.Addrs {
		if a.Addr.Stack != stack || !a.Addr.IP.Is4() {
			continue
		}
		ka := kernel.Addr{
			VIP:      a.Addr.IP,
			Policy:   a.Policy,
			Owner:    a.Owner == self && !fenced,
			Serve:    slices.ContainsFunc(a.Listeners, func(l ctl.Listener) bool { return l.Node == self }),
			Affinity: a.Affinity,
		}
		for _, t := range a.Tables {
			ok := true
			for _, n := range t.Buckets {
				if hop(n) != nil {
					ok = false
					skipped = append(skipped, a.Addr.String()+": table of node "+strconv.FormatUint(n, 10))
					break
				}
			}
			if ok {
				ka.Services = append(ka.Services, kernel.Service{Proto: t.Proto, Port: t.Port, Table: t.Buckets})
			}
		}
		// One exception per client: the kernel keys them so. A node
		// without a next hop loses its exceptions, as its share.
		clients := map[netip.AddrPort]bool{}
		for _, e := range a.Exceptions {
			if !e.Client.Addr().Is4() || clients[e.Client] {
				continue
			}
			if hop(e.Node) != nil {
				skipped = append(skipped, a.Addr.String()+": exception of node "+strconv.FormatUint(e.Node, 10))
				continue
			}
			clients[e.Client] = true
			ka.Exceptions = append(ka.Exceptions, kernel.Exception{Client: e.Client, Node: e.Node, Proto: e.Proto, Port: e.Port})
		}
		for _, l := range a.Leases {
			if l.Kind == ctl.Ident && l.Node == self && l.First <= l.Last && l.Last <= 0xffff {
				// The kernel rule numbers from the lower part; the top
				// eighth is IPIdent's, for senders that build headers.
				k, _ := spi.SplitIdent(spi.Block{First: l.First, Last: l.Last})
				ka.Ident = kernel.Ident{Base: uint16(k.First), Len: k.Len()}
				continue
			}
			if l.Kind != ctl.Slice || l.First == 0 || l.Last > 0xffff {
				continue
			}
			if hop(l.Node) != nil {
				skipped = append(skipped, a.Addr.String()+": slice of node "+strconv.FormatUint(l.Node, 10))
				continue
			}
			// The service ports in the block are not the slice's
			// (ctl's holes): the owner dispatches them.
			for _, r := range l.Ports() {
				ka.Slices = append(ka.Slices, kernel.Slice{Proto: l.Proto, First: r.First, Last: r.Last, Node: l.Node})
			}
		}
		p.Addrs = append(p.Addrs, ka)
	}
	for _, id := range slices.Sorted(maps.Keys(named)) {
		n := kernel.Node{ID: id}
		if ip, ok := ips[id]; ok {
			n.IP = ip
		}
		p.Nodes = append(p.Nodes, n)
	}
	return p, skipped
}

// newDataPath is the data path of the agent's own stack over sa's state.
func (a *Agent) newDataPath(sa *addrsvc.Service) *dataPath {
	return &dataPath{
		self:    a.cfg.ID,
		stack:   sa.Stack(),
		iface:   a.cfg.SharedIface,
		src:     sa.Source(),
		quorate: a.inContact,
		caughtUp: func() bool {
			st := a.cluster.Status()
			return st.QuorumContact && st.Leader != 0 && st.Applied >= st.Commit
		},
		members: func() []membership.Member { return a.cluster.View().Members },
		log:     logkey.WithSubsystem(a.log, "sharedaddr/kernel"),
		kick:    make(chan struct{}, 1),
		open:    openKernel,
	}
}

// inContact is the data path's judgement of quorum contact: the
// cluster's (membership.Contact: voters reached by link or route), but a
// voter whose direct link has been silent for four fifths of the
// heartbeat timeout no longer counts. An owner cut off must drop its
// addresses before the majority's timeout ends and another node takes
// them over (research notes §5.5: 400 ms against 500 ms), not when its
// own timeout ends at the same moment.
func (a *Agent) inContact() bool {
	if !a.cluster.Quorum().Quorate() {
		return false
	}
	v := a.cluster.View()
	cutoff := time.Now().Add(-a.cfg.DeadAfter * 4 / 5)
	voters, reach := 0, 0
	for _, m := range v.Members {
		if !m.Voter {
			continue
		}
		voters++
		if m.ID != a.cfg.ID {
			if !a.mesh.Reachable(m.ID) {
				continue
			}
			if l := a.mesh.Link(m.ID); l != nil && l.LastRecv().Before(cutoff) {
				continue
			}
		}
		reach++
	}
	return 2*reach > voters
}
