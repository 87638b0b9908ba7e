package client

import (
	"context"
	"fmt"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
)

// This file is the client's part in the agent's node-wide dispatch
// (client protocol version 3, proto/client/SPEC.md "Node-wide
// dispatch"): on a v3 link it tells the agent which classes its service
// has callbacks for, at which priority (CALLBACKS), and reports each event
// the agent flagged once the service completed it (DONE), in event order.
// The service's Hooks drive it; a reporter goroutine sends the frames, so
// the hooks, which run under the service's lock, never block.

// published is an event handed to the service (or dropped as one it had),
// waiting for its completion to be reported.
type published struct {
	l       *transport.Link
	msgID   uint64 // the link's SUBSCRIBE, which DONE carries
	seq     uint64
	desc    events.Descriptor
	awaited bool // flagged EventAwaitDone: the agent waits for its DONE
	done    bool // the service completed it
	outside bool // never entered the service (refused or dropped)
}

// startReports installs the service hooks and starts the reporter.
func (c *Client) startReports() {
	c.kick = make(chan struct{}, 1)
	c.sentCB = make(map[*transport.Link]wire.Callbacks)
	c.svc.SetHooks(events.Hooks{OnComplete: c.completed, OnInterest: func(events.Interest) { c.poke() }})
	c.reports.Add(1)
	go c.reporter()
}

func (c *Client) poke() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// callbacks returns what CALLBACKS says for the service's interest: the
// classes subscribed that go to the service, each at the smallest
// priority of its callbacks. Group events that go to Deliveries are not
// the service's to complete.
func (c *Client) callbacks() wire.Callbacks {
	in := c.svc.Interest()
	var cb wire.Callbacks
	for cl := events.ClassComm; cl <= events.ClassGroup; cl++ {
		if !in.Has[cl] || !c.mask.Has(cl) || (cl == events.ClassGroup && c.deliveries != nil) {
			continue
		}
		cb.Classes |= wire.MaskOf(cl)
		cb.Prio[cl] = uint8(in.Prio[cl])
	}
	return cb
}

// sendCallbacks tells a v3 link the service's callbacks, if they changed
// since it was last told (or it never was).
func (c *Client) sendCallbacks(ctx context.Context, l *transport.Link) error {
	if l.Peer().Version < 3 {
		return nil
	}
	cb := c.callbacks()
	c.fmu.Lock()
	old, told := c.sentCB[l]
	c.fmu.Unlock()
	if told && old == cb {
		return nil
	}
	body, err := wire.AppendCallbacks(nil, &cb)
	if err != nil {
		return err
	}
	if _, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: wire.OpCallbacks}, Body: body}); err != nil {
		return fmt.Errorf("client: agent refused CALLBACKS: %w", err)
	}
	c.fmu.Lock()
	c.sentCB[l] = cb
	c.fmu.Unlock()
	c.log.Debug("told the agent the callbacks", "classes", fmt.Sprint(cb.Classes.Classes()), "prio", cb.Prio)
	return nil
}

// pushPublished records an event about to enter the service.
func (c *Client) pushPublished(p published) {
	c.fmu.Lock()
	c.fifo = append(c.fifo, p)
	if p.awaited {
		c.fwait++
	}
	c.fmu.Unlock()
}

// refused completes the event last pushed, which the service refused.
func (c *Client) refused() {
	c.fmu.Lock()
	if n := len(c.fifo); n > 0 {
		c.fifo[n-1].done, c.fifo[n-1].outside = true, true
	}
	report := c.settleLocked()
	c.fmu.Unlock()
	if report {
		c.poke()
	}
}

// report queues an event complete already (a duplicate dropped), after
// those before it.
func (c *Client) report(p published) {
	if !p.awaited {
		return
	}
	p.done, p.outside = true, true
	c.pushPublished(p)
	c.poke()
}

// completed is the service's OnComplete hook, with the service's lock
// held: the oldest event in the service not yet complete is.
func (c *Client) completed(ev events.Event) {
	c.fmu.Lock()
	// fifo[:fnext] is done, so the scan starts there; it passes each
	// entry once, as the events complete (amortised O(1) a call).
	for ; c.fnext < len(c.fifo); c.fnext++ {
		if p := &c.fifo[c.fnext]; !p.done && !p.outside {
			if p.seq != ev.Seq || p.desc != ev.Desc {
				c.log.Warn("the service completed an event the client did not give it; is another producer publishing into it?", "event", ev.String(), "expected_seq", p.seq)
			}
			p.done = true
			c.fnext++
			break
		}
	}
	report := c.settleLocked()
	c.fmu.Unlock()
	if report {
		c.poke()
	}
}

// settleLocked drops the entries when all are done and none awaits a DONE
// (the common case: the service completes each event as it is
// published), so the reporter need not run; it says whether the reporter
// has work.
func (c *Client) settleLocked() bool {
	for c.fnext < len(c.fifo) && c.fifo[c.fnext].done {
		c.fnext++
	}
	if c.fwait > 0 {
		return true
	}
	if c.fnext == len(c.fifo) {
		clear(c.fifo) // the links they hold
		c.fifo, c.fnext = c.fifo[:0], 0
	}
	return false
}

// reporter sends DONE for the flagged events the service completed, in
// event order, and CALLBACKS when the service's callbacks change. It
// runs until Close.
func (c *Client) reporter() {
	defer c.reports.Done()
	for {
		select {
		case <-c.kick:
		case <-c.ctx.Done():
			return
		}
		c.fmu.Lock()
		n := 0
		for n < len(c.fifo) && c.fifo[n].done {
			n++
		}
		var ready []published
		for _, p := range c.fifo[:n] {
			if p.awaited {
				ready = append(ready, p)
			}
		}
		c.fwait -= len(ready)
		c.fifo = append(c.fifo[:0], c.fifo[n:]...)
		clear(c.fifo[len(c.fifo) : len(c.fifo)+n])
		c.fnext = max(c.fnext-n, 0)
		c.fmu.Unlock()
		for _, p := range ready {
			body, err := wire.AppendDone(nil, &wire.Done{Seq: p.seq, Desc: p.desc})
			if err != nil {
				continue // not a descriptor the agent sent
			}
			f := proto.Frame{Header: proto.Header{Opcode: wire.OpDone, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: p.msgID}, Body: body}
			// A link that ended takes no DONE: its successor resumes.
			_ = p.l.Send(c.ctx, &f)
		}
		c.mu.Lock()
		l := c.link
		c.mu.Unlock()
		if l != nil {
			if err := c.sendCallbacks(c.ctx, l); err != nil && c.ctx.Err() == nil {
				c.log.Warn("cannot tell the agent the callbacks", "err", err.Error())
			}
		}
	}
}
