package groups

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/rsm"
)

// pending is one command waiting for its batch. done runs on the
// batcher's goroutine once the batch has applied on this node (or failed);
// it must not block.
type pending struct {
	cmd  Cmd
	done func(CmdResult, error)
}

// enqueueLocked appends p to the queue and wakes the batcher.
func (s *Service) enqueueLocked(p *pending) {
	s.queue = append(s.queue, p)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// take removes the next batch from the queue: at most BatchCmds commands
// and BatchBytes of payload (at least one command).
func (s *Service) take() []*pending {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, bytes := 0, 0
	for n < len(s.queue) && n < s.cfg.BatchCmds {
		b := len(s.queue[n].cmd.Payload)
		if n > 0 && bytes+b > s.cfg.BatchBytes {
			break
		}
		bytes += b
		n++
	}
	if n == 0 {
		return nil
	}
	batch := make([]*pending, n)
	copy(batch, s.queue)
	clear(s.queue[:n])
	s.queue = s.queue[n:]
	if len(s.queue) == 0 {
		s.queue = nil // let the backing array go
	}
	return batch
}

// batcher proposes the queued commands as batches, up to Pipeline of
// them in flight, numbered in order; while they are in flight the next
// one grows (group commit). The machine applies this run's batches only
// in their order, so the commands of every client apply in the order it
// sent them even when a lost proposal is overtaken and proposed again.
func (s *Service) batcher(ctx context.Context) {
	slots := make(chan struct{}, s.cfg.Pipeline)
	cmds := make([]Cmd, 0, 64)
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		batch := s.take()
		for batch == nil {
			select {
			case <-s.wake:
				batch = s.take()
			case <-ctx.Done():
				return
			}
		}
		cmds = cmds[:0]
		size := 32 // the batch header
		for _, p := range batch {
			cmds = append(cmds, p.cmd)
			// A command's fixed fields are at most 64 bytes.
			size += 64 + len(p.cmd.Name) + len(p.cmd.Group) + len(p.cmd.Payload)
		}
		s.nextN++
		h := Header{Node: s.deps.Self, Run: s.run, N: s.nextN}
		// Headroom for the envelopes: an owned proposal copies nothing.
		buf, err := AppendBatch(make([]byte, rsm.RequestHeadroom, rsm.RequestHeadroom+size), h, cmds)
		clear(cmds) // drop payload references
		if err != nil {
			// The handlers validate what they queue: a bug. The number is
			// still used, by an empty batch, so that the next ones apply.
			s.log.Error("cannot encode a batch", "commands", len(batch), "err", err.Error())
			finish(batch, nil, proto.Errorf(proto.CodeField, "%s", err.Error()))
			buf, batch = append(make([]byte, rsm.RequestHeadroom), mustEmpty(h)...), nil
		}
		s.wg.Go(func() {
			defer func() { <-slots }()
			s.proposeBatch(ctx, h, buf, batch)
		})
	}
}

// mustEmpty is the batch of no commands that holds place h in the order.
func mustEmpty(h Header) []byte {
	b, err := AppendBatch(nil, h, nil)
	if err != nil {
		panic(err) // an empty batch always encodes
	}
	return b
}

func finish(batch []*pending, results []CmdResult, err error) {
	for i, p := range batch {
		if err != nil {
			p.done(CmdResult{}, err)
		} else {
			p.done(results[i], nil)
		}
	}
}

// proposeBatch appends one batch to the log and answers its commands. An
// attempt without an answer within Attempt (a proposal dropped by a lost
// leader) is proposed again under the same request id, which the log
// applies once; a batch the machine refuses as out of order (it overtook a
// lost one) is proposed again under a new one, since it had no effect.
//
// full is the batch after rsm.RequestHeadroom free bytes. The first attempt
// hands it to the log without a copy when the proposer can take it; later
// ones propose a copy of the batch (the log may hold the first).
func (s *Service) proposeBatch(ctx context.Context, h Header, full []byte, batch []*pending) {
	buf := full[rsm.RequestHeadroom:]
	req := s.prop.NextRequest()
	start := time.Now()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.cfg.Attempt)
		var reply []byte
		var err error
		if op, ok := s.prop.(ownedProposer); ok && full != nil {
			_, reply, err = op.ProposeRequestOwned(actx, rsm.Groups, req, full)
			full = nil
		} else {
			_, reply, err = s.prop.ProposeRequest(actx, rsm.Groups, req, buf)
		}
		cancel()
		if err == nil {
			results, refused, perr := ParseReply(reply)
			switch {
			case perr != nil:
				err = perr
			case refused != nil && refused.Status == ResultOutOfOrder:
				// Overtook a batch not applied yet: the same again, later,
				// under a new request id (the refusal is what the log
				// remembers for this one).
				req = s.prop.NextRequest()
				if !sleepCtx(ctx, s.retryWait(attempt)/4) {
					finish(batch, nil, proto.Errorf(proto.CodeShutdown, "agent shutting down"))
					return
				}
				continue
			case refused != nil:
				// Applied already, by an attempt whose answer was lost.
				s.log.Warn("group batch refused", "n", h.N, "err", refused.Text)
				finish(batch, nil, proto.Errorf(refused.Status, "%s", refused.Text))
				return
			case len(results) != len(batch):
				err = fmt.Errorf("groups: %d results for a batch of %d commands", len(results), len(batch))
			default:
				s.met.batchLatency.Observe(time.Since(start).Seconds())
				s.met.batches.Inc()
				s.met.batchCommands.Add(float64(len(batch)))
				finish(batch, results, nil)
				return
			}
			s.log.Error("bad answer to a group batch", "n", h.N, "err", err.Error())
			finish(batch, nil, proto.Errorf(proto.CodeField, "%s", err.Error()))
			return
		}
		switch {
		case ctx.Err() != nil:
			finish(batch, nil, proto.Errorf(proto.CodeShutdown, "agent shutting down"))
			return
		case errors.Is(err, rsm.ErrRequestExpired):
			// The log forgot the request id while the batch was retried;
			// its batch number still keeps it from applying twice (the
			// machine refuses a batch applied already): the same batch
			// again under a new id.
			req = s.prop.NextRequest()
			continue
		case errors.Is(err, clusterlog.ErrRejected):
			// Cannot happen for a batch this agent encoded; keep the place
			// in the order with an empty batch so the next ones apply.
			s.log.Error("the log refused a group batch", "n", h.N, "err", err.Error())
			finish(batch, nil, proto.Errorf(proto.CodeField, "the log refused the batch: %s", err.Error()))
			buf, batch, req, full = mustEmpty(h), nil, s.prop.NextRequest(), nil
			continue
		}
		// No leader, a lost proposal, a new life: the same request again.
		if attempt == 1 || attempt%10 == 0 {
			s.log.Info("group batch not applied yet; proposing it again", "n", h.N, "attempt", attempt, "err", err.Error())
		}
		if !sleepCtx(ctx, s.retryWait(attempt)) {
			finish(batch, nil, proto.Errorf(proto.CodeShutdown, "agent shutting down"))
			return
		}
	}
}

// ownedProposer is a proposer that takes a batch without copying it
// (rsm.NodeProposer).
type ownedProposer interface {
	ProposeRequestOwned(ctx context.Context, id rsm.ID, request uint64, buf []byte) (uint64, []byte, error)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Service) retryWait(attempt int) time.Duration {
	return min(time.Duration(attempt)*20*time.Millisecond, 500*time.Millisecond)
}

// failQueued answers every queued command with err (at shutdown).
func (s *Service) failQueued(err error) {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	finish(q, nil, err)
}
