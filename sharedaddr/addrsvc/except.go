package addrsvc

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/ctl"
)

// DefaultRecheck is how often, when Config.Recheck is 0, the service
// walks again for an address it holds exceptions of, to withdraw those of
// flows that are gone.
const DefaultRecheck = 3 * time.Second

// exceptChunk bounds the flows of one EXCEPT or UNEXCEPT (21 bytes each):
// an entry stays well under the log's entry size.
const exceptChunk = 2048

// keepExceptions keeps this node's exceptions in the log (SPEC.md of ctl,
// "EXCEPT"): after every change of the state that gives an address of
// this node's stack a table generation this node has not reported for, it
// walks its connections to the address and proposes the flows whose
// bucket in the new tables is another node — also none, so the owner
// knows this node has walked. Every Recheck it walks again for the
// addresses it holds exceptions of (and once after every report, for a
// flow accepted while the owner still used the old tables), withdraws
// the exceptions of flows that are gone and adds those that moved.
func (s *Service) keepExceptions(ctx context.Context) {
	if s.cfg.Walk == nil || s.cfg.Recheck < 0 {
		return
	}
	period := s.cfg.Recheck
	if period == 0 {
		period = DefaultRecheck
	}
	changes, stop := s.m.Watch()
	defer stop()
	tick := time.NewTicker(period)
	defer tick.Stop()
	retry := time.NewTimer(0)
	defer retry.Stop()
	<-retry.C
	followUp := map[ctl.Addr]bool{}
	recheck := false
	for {
		if !s.exceptOnce(ctx, recheck, followUp) && ctx.Err() == nil {
			retry.Reset(s.cfg.BackoffMin)
		}
		recheck = false
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-retry.C:
		case <-tick.C:
			recheck = true
		}
	}
}

// exceptOnce makes one pass; false if a proposal failed and the pass is
// to be made again.
func (s *Service) exceptOnce(ctx context.Context, recheck bool, followUp map[ctl.Addr]bool) bool {
	st := s.m.State()
	if !st.InView(s.self) {
		clear(followUp)
		return true
	}
	var work []Addr
	for _, a := range st.Addrs {
		if a.Addr.Stack != s.cfg.Stack {
			continue
		}
		holds := slices.ContainsFunc(a.Exceptions, func(e ctl.Exception) bool { return e.Node == s.self })
		if !a.Reported(s.self) || (recheck && (holds || followUp[a.Addr])) {
			work = append(work, a)
		}
	}
	for a := range followUp {
		if _, ok := st.Addr(a); !ok {
			delete(followUp, a)
		}
	}
	if len(work) == 0 {
		return true
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Attempt)
	defer cancel()
	conns := map[netip.Addr][]sharedaddr.TCPInfo{}
	err := s.cfg.Walk(wctx, func(ti sharedaddr.TCPInfo) bool {
		if ti.State != sharedaddr.StateListen && ti.Remote.Addr().IsValid() {
			ip := ti.Local.Addr().Unmap()
			conns[ip] = append(conns[ip], ti)
		}
		return true
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("shared addresses: walking the stack for exceptions failed", "err", err.Error())
		}
		return false
	}
	ok := true
	for _, a := range work {
		held, moved := s.flowsOf(a, conns[a.Addr.IP])
		mine := map[ctl.Flow]bool{}
		for _, e := range a.Exceptions {
			if e.Node == s.self {
				mine[e.Flow] = true
			}
		}
		var add []ctl.Flow
		for _, f := range moved {
			if !mine[f] {
				add = append(add, f)
			}
		}
		if !a.Reported(s.self) || len(add) > 0 {
			err := s.except(wctx, a.Addr, a.Gen, add)
			switch {
			case errors.Is(err, ErrStale):
				// A newer generation is applied or on its way: the
				// change it makes brings another pass.
			case errors.Is(err, ErrFull):
				// Trying again would be refused again: the flows over
				// the bound are left to be reset, and the report is
				// made so the owner need not wait for it.
				s.log.Warn("shared addresses: too many exceptions; flows left out", "addr", a.Addr.String(), "flows", len(add), "err", err.Error())
				if !a.Reported(s.self) {
					if err := s.except(wctx, a.Addr, a.Gen, nil); err != nil && !errors.Is(err, ErrStale) {
						ok = false
					}
				}
			case err != nil:
				s.log.Warn("shared addresses: EXCEPT not applied", "addr", a.Addr.String(), "gen", a.Gen, "flows", len(add), "err", err.Error())
				ok = false
				continue
			default:
				if !a.Reported(s.self) {
					followUp[a.Addr] = true
				}
			}
		} else {
			delete(followUp, a.Addr)
		}
		var gone []ctl.Flow
		for f := range mine {
			if !held[f] {
				gone = append(gone, f)
			}
		}
		if len(gone) > 0 {
			if err := s.unexcept(wctx, a.Addr, ctl.SortFlows(gone)); err != nil {
				s.log.Warn("shared addresses: UNEXCEPT not applied", "addr", a.Addr.String(), "flows", len(gone), "err", err.Error())
				ok = false
			}
		}
	}
	return ok
}

// flowsOf returns the flows to a that this node holds (conns are its
// sockets with a's IP as local address), and those of them whose bucket
// in a's tables is another node (or no node: a port no one listens on
// any more), sorted. A socket counts if its local port is one a node
// listens on, or, with none, if it is outside every source-port slice of
// a: a connection this node originated from a (client side) is routed
// by its slice, never dispatched.
func (s *Service) flowsOf(a Addr, conns []sharedaddr.TCPInfo) (held map[ctl.Flow]bool, moved []ctl.Flow) {
	ports := map[uint16]bool{}
	for _, l := range a.Listeners {
		if l.Proto == ctl.TCP {
			ports[l.Port] = true
		}
	}
	bucket := ctl.Bucket
	if a.Addr.IP.Is4() && s.cfg.Bucket != nil {
		bucket = s.cfg.Bucket
	}
	held = map[ctl.Flow]bool{}
	for _, ti := range conns {
		port := ti.Local.Port()
		if !ports[port] && inSlice(a, port) {
			continue
		}
		f := ctl.Flow{Client: netip.AddrPortFrom(ti.Remote.Addr().Unmap(), ti.Remote.Port()), Proto: ctl.TCP, Port: port}
		if held[f] {
			continue
		}
		held[f] = true
		t := a.table(ctl.TCP, port)
		if len(t) == 0 || t[bucket(a.Policy, f.Client, len(t))] != s.self {
			moved = append(moved, f)
		}
	}
	return held, ctl.SortFlows(moved)
}

func inSlice(a Addr, port uint16) bool {
	for _, l := range a.Leases {
		if l.Kind == ctl.Slice && l.Proto == ctl.TCP && l.Has(uint32(port)) {
			return true
		}
	}
	return false
}

// except proposes the flows for generation gen, in chunks: all but the
// last partial, so the report comes with the last.
func (s *Service) except(ctx context.Context, a ctl.Addr, gen uint64, flows []ctl.Flow) error {
	for {
		n := min(len(flows), exceptChunk)
		c := ctl.Cmd{Op: ctl.OpExcept, Addr: a, Node: s.self, Gen: gen, Flows: flows[:n], Partial: n < len(flows)}
		if _, err := s.Propose(ctx, c); err != nil {
			return err
		}
		flows = flows[n:]
		if len(flows) == 0 {
			return nil
		}
	}
}

func (s *Service) unexcept(ctx context.Context, a ctl.Addr, flows []ctl.Flow) error {
	for len(flows) > 0 {
		n := min(len(flows), exceptChunk)
		if _, err := s.Propose(ctx, ctl.Cmd{Op: ctl.OpUnexcept, Addr: a, Node: s.self, Flows: flows[:n]}); err != nil {
			return err
		}
		flows = flows[n:]
	}
	return nil
}
