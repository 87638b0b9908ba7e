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
	s.queueBytes += len(p.cmd.Payload)
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
	s.queueBytes -= bytes
	return batch
}

// batcher proposes the queued commands, one batch at a time: the next
// batch is proposed once the previous one has applied here, so the
// commands of every client apply in the order they were sent, and while a
// batch is in flight the next one grows (group commit).
func (s *Service) batcher(ctx context.Context) {
	var buf []byte
	cmds := make([]Cmd, 0, 64)
	for {
		batch := s.take()
		if batch == nil {
			select {
			case <-s.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		cmds = cmds[:0]
		for _, p := range batch {
			cmds = append(cmds, p.cmd)
		}
		var err error
		buf, err = AppendBatch(buf[:0], s.deps.Self, cmds)
		clear(cmds) // drop payload references
		if err != nil {
			// The handlers validate what they queue; this is a bug.
			s.log.Error("cannot encode a batch", "commands", len(batch), "err", err.Error())
			finish(batch, nil, proto.Errorf(proto.CodeField, "%s", err.Error()))
			continue
		}
		results, err := s.propose(ctx, buf)
		if err == nil && len(results) != len(batch) {
			err = fmt.Errorf("groups: %d results for a batch of %d commands", len(results), len(batch))
		}
		if err != nil {
			s.log.Warn("batch failed", "commands", len(batch), "err", err.Error())
			finish(batch, nil, err)
			continue
		}
		s.met.batches.Inc()
		s.met.batchCommands.Add(float64(len(batch)))
		finish(batch, results, nil)
	}
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

// propose appends the batch to the log under one request id, proposing it
// again after each Attempt without an answer (or a dropped proposal)
// until it is applied or ctx ends.
func (s *Service) propose(ctx context.Context, batch []byte) ([]CmdResult, error) {
	req := s.prop.NextRequest()
	start := time.Now()
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.cfg.Attempt)
		_, reply, err := s.prop.ProposeRequest(actx, rsm.Groups, req, batch)
		cancel()
		switch {
		case err == nil:
			s.met.batchLatency.Observe(time.Since(start).Seconds())
			return ParseResults(reply)
		case ctx.Err() != nil:
			return nil, proto.Errorf(proto.CodeShutdown, "agent shutting down")
		case errors.Is(err, clusterlog.ErrRejected):
			return nil, proto.Errorf(proto.CodeField, "the log refused the batch: %s", err.Error())
		}
		// No leader, a lost proposal, a new life: the same request again.
		if attempt == 1 || attempt%10 == 0 {
			s.log.Info("group batch not applied yet; proposing it again", "attempt", attempt, "err", err.Error())
		}
		select {
		case <-time.After(s.retryWait(attempt)):
		case <-ctx.Done():
			return nil, proto.Errorf(proto.CodeShutdown, "agent shutting down")
		}
	}
}

func (s *Service) retryWait(attempt int) time.Duration {
	return min(time.Duration(attempt)*20*time.Millisecond, 500*time.Millisecond)
}

// failQueued answers every queued command with err (at shutdown).
func (s *Service) failQueued(err error) {
	s.mu.Lock()
	q := s.queue
	s.queue, s.queueBytes = nil, 0
	s.mu.Unlock()
	finish(q, nil, err)
}
