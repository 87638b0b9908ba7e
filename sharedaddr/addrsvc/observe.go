package addrsvc

import (
	"context"
	"errors"
	"time"

	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/ctl"
)

// DefaultObserve is how often the service walks the agent's stack for
// listeners when Config.Observe is 0.
const DefaultObserve = time.Second

// Walker lists the TCP sockets of the agent's stack (sharedaddr.Stack's
// WalkTCP).
type Walker func(ctx context.Context, fn func(sharedaddr.TCPInfo) bool) error

type listenKey struct {
	addr ctl.Addr
	port uint16
}

// observeListeners is the observation that covers applications which do
// not use sharedaddr.Listen (issue 13 item 1): every period it walks the
// agent's stack and makes this node's TCP listeners in the log match the
// sockets listening on a shared address of that stack — LISTEN for a new
// one, UNLISTEN for one gone. A socket listening on the wildcard address
// is not taken for a listener of every shared address (the agent's own
// sockets would be); UDP and other stacks are left to the hooks.
func (s *Service) observeListeners(ctx context.Context) {
	if s.cfg.Walk == nil || s.cfg.Observe < 0 {
		return
	}
	period := s.cfg.Observe
	if period == 0 {
		period = DefaultObserve
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		s.observeOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) observeOnce(ctx context.Context) {
	st := s.m.State()
	if !st.InView(s.self) {
		return
	}
	shared := map[ctl.Addr]bool{}
	have := map[listenKey]bool{}
	for _, a := range st.Addrs {
		if a.Addr.Stack != s.cfg.Stack {
			continue
		}
		shared[a.Addr] = true
		for _, l := range a.Listeners {
			if l.Node == s.self && l.Proto == ctl.TCP {
				have[listenKey{l.Addr, l.Port}] = true
			}
		}
	}
	if len(shared) == 0 {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, s.cfg.Attempt)
	defer cancel()
	seen := map[listenKey]bool{}
	err := s.cfg.Walk(wctx, func(ti sharedaddr.TCPInfo) bool {
		if ti.State == sharedaddr.StateListen {
			a := ctl.Addr{Stack: s.cfg.Stack, IP: ti.Local.Addr().Unmap()}
			if shared[a] {
				seen[listenKey{a, ti.Local.Port()}] = true
			}
		}
		return true
	})
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("shared addresses: walking the stack for listeners failed", "err", err.Error())
		}
		return
	}
	for k := range seen {
		if have[k] {
			continue
		}
		if err := s.Listen(wctx, k.addr, ctl.TCP, k.port); err != nil && !errors.Is(err, ErrDuplicate) {
			s.log.Warn("shared addresses: LISTEN not applied", "addr", k.addr.String(), "port", k.port, "err", err.Error())
		}
	}
	for k := range have {
		if seen[k] {
			continue
		}
		if err := s.Unlisten(wctx, k.addr, ctl.TCP, k.port); err != nil && !errors.Is(err, ErrNotHeld) {
			s.log.Warn("shared addresses: UNLISTEN not applied", "addr", k.addr.String(), "port", k.port, "err", err.Error())
		}
	}
}
