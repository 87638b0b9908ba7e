package addrsvc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/service"
	"github.com/corralhq/corral/sharedaddr/ctl"
)

// Errors of the service. A refusal of the machine is a *RefusedError,
// which matches (errors.Is) the sentinel of its code.
var (
	ErrMalformed = errors.New("addrsvc: malformed command")
	ErrBadField  = errors.New("addrsvc: bad field")
	ErrExists    = errors.New("addrsvc: address exists")
	ErrNoAddr    = errors.New("addrsvc: no such address")
	ErrNoNode    = errors.New("addrsvc: node not in the view")
	ErrExhausted = errors.New("addrsvc: every block is leased")
	ErrNotHeld   = errors.New("addrsvc: not held")
	ErrDuplicate = errors.New("addrsvc: duplicate listener")
	ErrStale     = errors.New("addrsvc: not the table generation of the address")
	ErrFull      = errors.New("addrsvc: too many exceptions")
	ErrRefused   = errors.New("addrsvc: refused") // a code this build does not know
	ErrReply     = errors.New("addrsvc: bad reply from the machine")
	ErrStopped   = errors.New("addrsvc: service stopped")
)

// RefusedError is a command the machine refused: the same on every node.
type RefusedError struct {
	Op   ctl.Op
	Code ctl.Code
	Text string // the machine's reason
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("addrsvc: %v refused (%v): %s", e.Op, e.Code, e.Text)
}

// Unwrap returns the sentinel of the code.
func (e *RefusedError) Unwrap() error {
	switch e.Code {
	case ctl.Malformed:
		return ErrMalformed
	case ctl.BadField:
		return ErrBadField
	case ctl.Exists:
		return ErrExists
	case ctl.NoAddr:
		return ErrNoAddr
	case ctl.NoNode:
		return ErrNoNode
	case ctl.Exhausted:
		return ErrExhausted
	case ctl.NotHeld:
		return ErrNotHeld
	case ctl.Duplicate:
		return ErrDuplicate
	case ctl.Stale:
		return ErrStale
	case ctl.Full:
		return ErrFull
	}
	return ErrRefused
}

// Config tunes the service. Zero fields take the defaults below.
type Config struct {
	// Stack is the agent's own stack (its network namespace's nsfs
	// inode): what a request naming stack 0 means.
	Stack uint64
	// TableSize is the machine's (ctl.Options); every node the same.
	TableSize int
	// Attempt bounds one proposal; one not applied by then is proposed
	// again under the same request id when the proposer has them.
	Attempt time.Duration
	// Walk, if set, lists the TCP sockets of Stack: the service then
	// takes the sockets listening on a shared address for this node's
	// listeners (observeListeners), every Observe (0: DefaultObserve;
	// negative: never).
	Walk    Walker
	Observe time.Duration
	// Recheck is how often the service walks again for the addresses it
	// holds exceptions of (keepExceptions; 0: DefaultRecheck; negative:
	// no exceptions at all). It needs Walk.
	Recheck time.Duration
	// Bucket is the bucket function of the kernel data path for IPv4
	// addresses (kernel.Bucket), which decides which flows moved when a
	// table changes; nil: ctl.Bucket, the user-space one. IPv6 addresses
	// use ctl.Bucket.
	Bucket func(p ctl.Policy, client netip.AddrPort, m int) int
	// BackoffMin and BackoffMax bound the wait before a lease that failed
	// is proposed again; it doubles from Min up to Max, with jitter.
	BackoffMin, BackoffMax time.Duration
}

// Defaults of Config.
const (
	DefaultAttempt    = 3 * time.Second
	DefaultBackoffMin = 200 * time.Millisecond
	DefaultBackoffMax = 10 * time.Second
)

// requestProposer is rsm.NodeProposer's deduplicated proposal.
type requestProposer interface {
	NextRequest() uint64
	ProposeRequest(ctx context.Context, id rsm.ID, request uint64, cmd []byte) (uint64, []byte, error)
}

// Service is one agent's shared-address service.
type Service struct {
	cfg  Config
	self uint64
	log  *slog.Logger
	prop rsm.Proposer
	m    *observed
	met  *metrics

	mu      sync.Mutex // guards ctx, stopped; wg.Go only under it
	ctx     context.Context
	stopped bool
	wg      sync.WaitGroup // admin requests being served
}

var (
	_ service.Service    = (*Service)(nil)
	_ service.Replicated = (*Service)(nil)
)

// New returns the service of node d.Self, proposing through d.Cluster.
func New(d service.Deps, cfg Config) (*Service, error) {
	if cfg.Attempt <= 0 {
		cfg.Attempt = DefaultAttempt
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		cfg.BackoffMax = max(DefaultBackoffMax, cfg.BackoffMin)
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, self: d.Self, log: d.Log, prop: d.Cluster,
		m: newObserved(ctl.NewMachine(d.Log, ctl.Options{TableSize: cfg.TableSize}))}
	s.met = newMetrics(s)
	if d.Metrics != nil {
		if err := d.Metrics.Register(s.met); err != nil {
			return nil, fmt.Errorf("addrsvc: %w", err)
		}
	}
	return s, nil
}

// Name implements service.Service.
func (s *Service) Name() string { return "sharedaddr" }

// Machine implements service.Replicated: the shared-address machine.
func (s *Service) Machine() rsm.Machine { return s.m }

// Source returns the state and its changes, for the data path.
func (s *Service) Source() Source { return s.m }

// Stack returns the stack a request's stack 0 means.
func (s *Service) Stack() uint64 { return s.cfg.Stack }

// Run implements service.Service: it keeps this node's leases and, with
// Config.Walk, its listeners until ctx is done, then waits for the admin
// requests being served.
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	var wg sync.WaitGroup
	wg.Go(func() { s.observeListeners(ctx) })
	wg.Go(func() { s.keepExceptions(ctx) })
	s.keepLeases(ctx)
	wg.Wait()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Propose proposes c and returns the machine's reply once it is applied
// on this node; a refusal is a *RefusedError. Without a leader, each
// attempt of Config.Attempt is proposed again (under the same request id,
// so it applies once) until ctx is done.
func (s *Service) Propose(ctx context.Context, c ctl.Cmd) (ctl.Reply, error) {
	cmd := ctl.AppendCmd(nil, c)
	rp, dedupe := s.prop.(requestProposer)
	var req uint64
	if dedupe {
		req = rp.NextRequest()
	}
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.cfg.Attempt)
		var out []byte
		var err error
		if dedupe {
			_, out, err = rp.ProposeRequest(actx, rsm.SharedAddr, req, cmd)
		} else {
			_, out, err = s.prop.Propose(actx, rsm.SharedAddr, cmd)
		}
		cancel()
		if err == nil {
			r, err := ctl.ParseReply(out)
			if err != nil {
				return ctl.Reply{}, fmt.Errorf("%w: %w", ErrReply, err)
			}
			if r.Code != ctl.OK {
				return r, &RefusedError{Op: c.Op, Code: r.Code, Text: r.Text}
			}
			return r, nil
		}
		// Only a command that cannot have applied twice is retried: with
		// a request id, after an attempt that timed out or found no
		// leader.
		if ctx.Err() != nil || !dedupe || !retryable(err) {
			return ctl.Reply{}, fmt.Errorf("addrsvc: %v: %w", c.Op, err)
		}
		if attempt == 1 || attempt%10 == 0 {
			s.log.Info("shared-address command not applied yet; proposing it again", "op", c.Op.String(), "attempt", attempt, "err", err.Error())
		}
		t := time.NewTimer(min(time.Duration(attempt)*20*time.Millisecond, 500*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctl.Reply{}, fmt.Errorf("addrsvc: %v: %w", c.Op, err)
		case <-t.C:
		}
	}
}

func retryable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, clusterlog.ErrProposalDropped) ||
		errors.Is(err, clusterlog.ErrNoLeader) || errors.Is(err, clusterlog.ErrNotLeader) || errors.Is(err, rsm.ErrNoNode)
}

// Add adds (or with replace, reconfigures) an address.
func (s *Service) Add(ctx context.Context, a ctl.Addr, p ctl.Policy, affinity time.Duration, ws []ctl.Weight, replace bool) error {
	_, err := s.Propose(ctx, ctl.Cmd{Op: ctl.OpAdd, Addr: a, Policy: p, Affinity: affinity, Weights: ws, Replace: replace})
	return err
}

// Del deletes an address with its listeners and leases.
func (s *Service) Del(ctx context.Context, a ctl.Addr) error {
	_, err := s.Propose(ctx, ctl.Cmd{Op: ctl.OpDel, Addr: a})
	return err
}

// Listen records that this node listens on proto/port of the address.
func (s *Service) Listen(ctx context.Context, a ctl.Addr, proto uint8, port uint16) error {
	_, err := s.Propose(ctx, ctl.Cmd{Op: ctl.OpListen, Addr: a, Node: s.self, Proto: proto, Port: port})
	return err
}

// Unlisten removes this node's listener.
func (s *Service) Unlisten(ctx context.Context, a ctl.Addr, proto uint8, port uint16) error {
	_, err := s.Propose(ctx, ctl.Cmd{Op: ctl.OpUnlisten, Addr: a, Node: s.self, Proto: proto, Port: port})
	return err
}

// Lease leases a block of the kind for this node (a.IP unset for SPI).
func (s *Service) Lease(ctx context.Context, k ctl.Kind, a ctl.Addr, proto uint8) (ctl.Reply, error) {
	return s.Propose(ctx, ctl.Cmd{Op: ctl.OpLease, Kind: k, Addr: a, Node: s.self, Proto: proto})
}

// Release gives back block index of the kind.
func (s *Service) Release(ctx context.Context, k ctl.Kind, a ctl.Addr, proto uint8, index uint16) error {
	_, err := s.Propose(ctx, ctl.Cmd{Op: ctl.OpRelease, Kind: k, Addr: a, Node: s.self, Proto: proto, Index: index})
	return err
}

// want is one lease this node keeps: a kind of block of an address (for
// SPI, of a stack).
type want struct {
	kind  ctl.Kind
	addr  ctl.Addr // Stack only for SPI
	proto uint8
}

// backoff is the wait before a want that failed is proposed again.
type backoff struct {
	next  time.Time
	delay time.Duration
}

// keepLeases proposes, one at a time, the leases this node lacks and
// releases those it holds in excess, after every change of the state and
// when a backoff ends, until ctx is done.
func (s *Service) keepLeases(ctx context.Context) {
	changes, stop := s.m.Watch()
	defer stop()
	failed := map[want]*backoff{}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		wait := s.reconcile(ctx, failed)
		if ctx.Err() != nil {
			return
		}
		if wait > 0 {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return
		case <-changes:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// reconcile makes one pass; it returns when the next pass is due for a
// backoff (0: none, wait for a change).
func (s *Service) reconcile(ctx context.Context, failed map[want]*backoff) time.Duration {
	st := s.m.State()
	if !st.InView(s.self) {
		clear(failed)
		return 0
	}
	held := map[want][]uint16{}
	for _, a := range st.Addrs {
		for _, l := range a.Leases {
			if l.Node == s.self {
				w := want{kind: l.Kind, addr: a.Addr, proto: l.Proto}
				held[w] = append(held[w], l.Index)
			}
		}
	}
	for _, l := range st.SPI {
		if l.Node == s.self {
			w := want{kind: ctl.SPI, addr: ctl.Addr{Stack: l.Stack}}
			held[w] = append(held[w], l.Index)
		}
	}
	var wants []want
	stacks := map[uint64]bool{}
	for _, a := range st.Addrs {
		wants = append(wants, want{ctl.Slice, a.Addr, ctl.TCP}, want{ctl.Slice, a.Addr, ctl.UDP}, want{ctl.Ident, a.Addr, 0})
		if !stacks[a.Addr.Stack] {
			stacks[a.Addr.Stack] = true
			wants = append(wants, want{kind: ctl.SPI, addr: ctl.Addr{Stack: a.Addr.Stack}})
		}
	}
	now := time.Now()
	var next time.Duration
	due := func(w want) bool {
		b := failed[w]
		if b == nil || !now.Before(b.next) {
			return true
		}
		if d := b.next.Sub(now); next == 0 || d < next {
			next = d
		}
		return false
	}
	fail := func(w want, err error) {
		b := failed[w]
		if b == nil {
			b = &backoff{delay: s.cfg.BackoffMin}
			failed[w] = b
		} else {
			b.delay = min(2*b.delay, s.cfg.BackoffMax)
		}
		d := b.delay/2 + rand.N(b.delay/2+1)
		b.next = time.Now().Add(d)
		if next == 0 || d < next {
			next = d
		}
		s.log.Warn("shared-address lease not obtained; trying again later", "kind", w.kind.String(), "addr", w.addr.String(),
			"proto", w.proto, "retry_in", d.String(), "err", err.Error())
	}
	for _, w := range wants {
		if ctx.Err() != nil {
			return 0
		}
		idx := held[w]
		delete(held, w)
		switch {
		case len(idx) == 0 && due(w):
			// Bounded, so a log without a leader makes a backoff, not a
			// pass that never ends.
			lctx, cancel := context.WithTimeout(ctx, 2*s.cfg.Attempt)
			_, err := s.Lease(lctx, w.kind, w.addr, w.proto)
			cancel()
			if err != nil {
				fail(w, err)
				continue
			}
			delete(failed, w)
		case len(idx) > 1:
			// A lease proposed twice (a retry without a request id)
			// left two: the lowest stays.
			for _, i := range idx[1:] {
				if err := s.Release(ctx, w.kind, w.addr, w.proto, i); err != nil && !errors.Is(err, ErrNotHeld) {
					s.log.Warn("shared-address lease not released", "kind", w.kind.String(), "index", i, "err", err.Error())
				}
			}
		}
	}
	// What is left is held but not wanted: SPI blocks of stacks with no
	// address (the machine releases an address's own with it).
	for w, idx := range held {
		if w.kind != ctl.SPI {
			continue
		}
		for _, i := range idx {
			if err := s.Release(ctx, w.kind, w.addr, w.proto, i); err != nil && !errors.Is(err, ErrNotHeld) {
				s.log.Warn("SPI block not released", "stack", w.addr.Stack, "index", i, "err", err.Error())
			}
		}
	}
	for w := range failed {
		if !wantsHas(wants, w) {
			delete(failed, w)
		}
	}
	return next
}

func wantsHas(ws []want, w want) bool {
	for _, x := range ws {
		if x == w {
			return true
		}
	}
	return false
}
