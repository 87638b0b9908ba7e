package addrsvc

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/transport"
)

// adminTimeout bounds an ADDR_ADD or ADDR_DEL: long enough for a leader
// election, short enough for a tool's patience.
const adminTimeout = 10 * time.Second

// AdminOps implements service.AdminServer: ADDR_ADD … ADDR_LIST.
func (s *Service) AdminOps() (lo, hi uint16) { return admin.OpAddrAdd, admin.OpAddrList }

// AdminHandler implements service.AdminServer.
func (s *Service) AdminHandler() transport.Handler { return s.handleAdmin }

// handleAdmin runs on the link's reader: a LIST is answered here from the
// applied state; an ADD or DEL waits for the log on a goroutine of the
// service's.
func (s *Service) handleAdmin(l *transport.Link, f *proto.Frame) error {
	name := admin.Ops().Name(f.Opcode)
	if f.Flags&proto.FlagReply != 0 {
		return proto.Errorf(proto.CodeState, "admin %s reply sent to the agent", name)
	}
	var c ctl.Cmd
	switch f.Opcode {
	case admin.OpAddrList:
		if len(f.Body) != 0 {
			return l.Abort(context.Background(), f, proto.Errorf(proto.CodeField, "%s request takes no body", name))
		}
		// The layout is the request's version's: an older tool reads the
		// rows without generations and exceptions.
		return l.Reply(context.Background(), f, admin.AppendAddrListAt(nil, f.Version, s.Rows()))
	case admin.OpAddrAdd:
		a, err := admin.ParseAddrAdd(f.Body)
		if err != nil {
			return l.Abort(context.Background(), f, err)
		}
		c = ctl.Cmd{Op: ctl.OpAdd, Addr: s.addr(a.Stack, a), Policy: ctl.Policy(a.Policy), Replace: a.Replace,
			Affinity: time.Duration(a.Affinity) * time.Millisecond}
		for _, w := range a.Weights {
			c.Weights = append(c.Weights, ctl.Weight{Node: w.Node, Weight: w.Weight})
		}
	case admin.OpAddrDel:
		d, err := admin.ParseAddrDel(f.Body)
		if err != nil {
			return l.Abort(context.Background(), f, err)
		}
		c = ctl.Cmd{Op: ctl.OpDel, Addr: ctl.Addr{Stack: s.stackOf(d.Stack), IP: d.IP}}
	default:
		return l.Abort(context.Background(), f, proto.Errorf(proto.CodeOpcode, "no handler for %s", name))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.ctx == nil {
		return l.Abort(context.Background(), f, proto.Errorf(proto.CodeShutdown, "agent shutting down"))
	}
	ctx, req := s.ctx, proto.Frame{Header: f.Header}
	s.wg.Go(func() {
		ctx, cancel := context.WithTimeout(ctx, adminTimeout)
		// The tool's going away ends the wait (the entry may still apply).
		var watch sync.WaitGroup
		watch.Go(func() {
			select {
			case <-l.Done():
				cancel()
			case <-ctx.Done():
			}
		})
		_, err := s.Propose(ctx, c)
		cancel()
		watch.Wait()
		if err != nil {
			l.Abort(context.Background(), &req, adminError(err))
			return
		}
		l.Reply(context.Background(), &req, nil)
	})
	return nil
}

func (s *Service) stackOf(stack uint64) uint64 {
	if stack == 0 {
		return s.cfg.Stack
	}
	return stack
}

func (s *Service) addr(stack uint64, a admin.AddrAdd) ctl.Addr {
	return ctl.Addr{Stack: s.stackOf(stack), IP: a.IP}
}

// adminError is the Status of a failed ADD or DEL (SPEC.md of
// proto/admin): a refusal names its code first.
func adminError(err error) error {
	var re *RefusedError
	if errors.As(err, &re) {
		code := proto.CodeState
		if re.Code == ctl.Malformed || re.Code == ctl.BadField {
			code = proto.CodeField
		}
		return proto.Errorf(code, "%v: %s", re.Code, re.Text)
	}
	return proto.Errorf(proto.CodeState, "%s", err.Error())
}

// listBudget bounds the exceptions one ADDR_LIST reply lists, so that it
// stays well below the frame limit (proto.DefaultMaxPayload); the counts
// stay exact.
const listBudget = 4 << 20 / 30

// Rows returns the state as ADDR_LIST rows: each address with its
// generation and exception count, and its first exceptions
// (admin.MaxAddrExceptions, fewer once the reply's budget is spent).
func (s *Service) Rows() []admin.AddrRow {
	st := s.m.State()
	rows := make([]admin.AddrRow, 0, len(st.Addrs))
	budget := listBudget
	for _, a := range st.Addrs {
		if len(rows) == admin.MaxAddrs {
			break
		}
		r := admin.AddrRow{Stack: a.Addr.Stack, IP: a.Addr.IP, Policy: uint8(a.Policy),
			Affinity: uint32(min(a.Affinity/time.Millisecond, 1<<32-1)), Owner: a.Owner,
			Gen: a.Gen, ExceptionCount: uint32(len(a.Exceptions))}
		for _, e := range a.Exceptions[:min(len(a.Exceptions), admin.MaxAddrExceptions, budget)] {
			r.Exceptions = append(r.Exceptions, admin.AddrException{Client: e.Client, Proto: e.Proto, Port: e.Port, Node: e.Node})
		}
		budget -= len(r.Exceptions)
		for _, w := range a.Weights {
			r.Weights = append(r.Weights, admin.AddrWeight{Node: w.Node, Weight: w.Weight})
		}
		for _, l := range a.Listeners {
			r.Listeners = append(r.Listeners, admin.AddrListener{Node: l.Node, Proto: l.Proto, Port: l.Port})
		}
		lease := func(l ctl.Lease) admin.AddrLease {
			return admin.AddrLease{Node: l.Node, Kind: uint8(l.Kind), Proto: l.Proto, Index: l.Index, First: l.First, Last: l.Last}
		}
		for _, l := range a.Leases {
			r.Leases = append(r.Leases, lease(l))
		}
		for _, l := range st.SPI {
			if l.Stack == a.Addr.Stack {
				r.Leases = append(r.Leases, lease(l))
			}
		}
		for _, t := range a.Tables {
			at := admin.AddrTable{Proto: t.Proto, Port: t.Port, Buckets: uint32(len(t.Buckets))}
			for _, sh := range t.Shares() {
				at.Shares = append(at.Shares, admin.AddrShare{Node: sh.Node, Buckets: uint32(sh.Buckets)})
			}
			r.Tables = append(r.Tables, at)
		}
		rows = append(rows, r)
	}
	return rows
}
