package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/transport"
)

var (
	// ErrTryAgain is returned by TrySend while the window is full: wait
	// for a send to be answered, or use Send, which waits.
	ErrTryAgain = errors.New("client: send window full, try again")
	// ErrSessionLost is returned by a Member's methods after its session
	// ended: the agent restarted, or the client fell behind and did not
	// attach again in time. Join again for a new member.
	ErrSessionLost = errors.New("client: member session lost")
)

// defaultWindow is the window a client assumes until a JOIN reply tells
// the agent's (the agent's default).
const defaultWindow = 4096

// defaultWindowBytes is the payload the agent admits in flight per link
// by default.
const defaultWindowBytes = 16 << 20

// session is the client's member session at the agent: one member id for
// every group this client joins.
type session struct {
	member, token uint64
}

// SendResult is what the agent answers for a committed message.
type SendResult struct {
	// Seq is the message's position in the cluster log, the same on
	// every node; a REPLY to it names it.
	Seq uint64
	// Member is the sender's member id.
	Member uint64
	// Delivered is how many members the message was delivered to (for a
	// BROADCAST, 0: every subscriber of the group class).
	Delivered uint32
}

// Window is the agent's flow control of this client's sends.
type Window = wire.GroupWindow

// GroupInfo is one group of the cluster.
type GroupInfo = wire.GroupListItem

// Member is this client's membership of one group.
type Member struct {
	c      *Client
	group  string
	id     uint64
	joined uint64 // seq of the JOIN
}

// Group returns the member's group.
func (m *Member) Group() string { return m.group }

// ID returns the member id, the same in every group this client joins.
func (m *Member) ID() uint64 { return m.id }

// Joined returns the seq of the member's JOIN: its relative age.
func (m *Member) Joined() uint64 { return m.joined }

// groupLink returns the current link, which must speak version 2.
func (c *Client) groupLink(ctx context.Context) (*transport.Link, error) {
	l, err := c.waitLink(ctx)
	if err != nil {
		return nil, err
	}
	if l.Peer().Version < 2 {
		return nil, fmt.Errorf("client: the agent speaks client protocol v%d, group messaging needs v2", l.Peer().Version)
	}
	return l, nil
}

// callErr says what a failed group request means to the caller.
func (c *Client) callErr(ctx context.Context, op uint16, err error) error {
	switch {
	case c.ctx.Err() != nil:
		return ErrClosed
	case errors.Is(err, transport.ErrClosed):
		return fmt.Errorf("client: link to the agent lost during %s: %w", opName(op), err)
	case errors.Is(err, proto.ErrTryAgain):
		return ErrTryAgain
	case errors.Is(err, proto.ErrNoMember):
		return fmt.Errorf("%w: %w", ErrSessionLost, err)
	case ctx.Err() != nil:
		return err
	}
	return fmt.Errorf("client: agent refused %s: %w", opName(op), err)
}

// call sends one group request on the current link and waits for its
// answer. A link lost while the call waits is not waited out: the request
// is not sent twice, since the agent may have applied it.
func (c *Client) call(ctx context.Context, op uint16, body []byte) (*proto.Frame, error) {
	// After the sends started before it, as a request on the link would
	// be.
	if err := c.sendBarrier(ctx); err != nil {
		return nil, err
	}
	l, err := c.groupLink(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.ctx, cancel)()
	rep, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: op}, Body: body})
	if err != nil {
		return nil, c.callErr(ctx, op, err)
	}
	return rep, nil
}

// Join makes the client a member of group and returns once the JOIN is
// committed. Its JOIN event, with the member list, is delivered like every
// group event (the client must receive the group class).
func (c *Client) Join(ctx context.Context, group string) (*Member, error) {
	body, err := wire.AppendGroupJoin(nil, &wire.GroupJoin{Group: group, Name: c.opts.Name})
	if err != nil {
		return nil, fmt.Errorf("client: join %q: %w", group, err)
	}
	rep, err := c.call(ctx, wire.OpGroupJoin, body)
	if err != nil {
		return nil, err
	}
	jr, err := wire.ParseGroupJoinReply(rep.Body)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.session = &session{member: jr.Member, token: jr.Token}
	c.window = max(int(jr.Window), 1)
	c.windowBytes = max(int(jr.WindowBytes), 1)
	c.mu.Unlock()
	return &Member{c: c, group: group, id: jr.Member, joined: jr.Seq}, nil
}

// Leave takes the member out of its group once the LEAVE is committed.
func (m *Member) Leave(ctx context.Context) error {
	if err := m.valid(); err != nil {
		return err
	}
	body, err := wire.AppendGroupLeave(nil, &wire.GroupLeave{Group: m.group})
	if err != nil {
		return fmt.Errorf("client: leave %q: %w", m.group, err)
	}
	_, err = m.c.call(ctx, wire.OpGroupLeave, body)
	return err
}

func (m *Member) valid() error {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if m.c.session == nil || m.c.session.member != m.id {
		return ErrSessionLost
	}
	return nil
}

// Members returns the group's members, oldest first, as the agent's
// applied log has them.
func (m *Member) Members(ctx context.Context) ([]events.GroupMember, error) {
	return m.c.Members(ctx, m.group)
}

// Send multicasts payload to every member of the group (this one too),
// waiting while the window is full, and returns once it is committed.
func (m *Member) Send(ctx context.Context, payload []byte) (SendResult, error) {
	if err := m.valid(); err != nil {
		return SendResult{}, err
	}
	return m.c.send(ctx, &wire.GroupSend{Kind: wire.KindMulticast, Group: m.group, Payload: payload}, true)
}

// SendTo unicasts payload to one member of the group.
func (m *Member) SendTo(ctx context.Context, target uint64, payload []byte) (SendResult, error) {
	if err := m.valid(); err != nil {
		return SendResult{}, err
	}
	return m.c.send(ctx, &wire.GroupSend{Kind: wire.KindUnicast, Group: m.group, Target: target, Payload: payload}, true)
}

// Reply answers the message of event ev (a MULTICAST, UNICAST, BROADCAST
// or REPLY): it reaches ev's sender only.
func (m *Member) Reply(ctx context.Context, ev events.Event, payload []byte) (SendResult, error) {
	return m.c.Reply(ctx, ev, payload)
}

// Reply answers the message of ev; the client need not be a member of
// any group.
func (c *Client) Reply(ctx context.Context, ev events.Event, payload []byte) (SendResult, error) {
	g := ev.Group()
	if g == nil || ev.Seq == 0 {
		return SendResult{}, fmt.Errorf("client: reply to %v: not a group message", ev.Desc)
	}
	return c.send(ctx, &wire.GroupSend{Kind: wire.KindReply, Group: g.Name, Target: g.From.Member, ReplyTo: ev.Seq, Payload: payload}, true)
}

// SendGroup multicasts payload to group without joining it (open groups).
func (c *Client) SendGroup(ctx context.Context, group string, payload []byte) (SendResult, error) {
	return c.send(ctx, &wire.GroupSend{Kind: wire.KindMulticast, Group: group, Payload: payload}, true)
}

// Broadcast sends payload to every process of the cluster that receives
// the group class, whatever its groups; label names it (may be empty).
func (c *Client) Broadcast(ctx context.Context, label string, payload []byte) (SendResult, error) {
	return c.send(ctx, &wire.GroupSend{Kind: wire.KindBroadcast, Group: label, Payload: payload}, true)
}

// TrySend is SendGroup that does not wait for the window: it returns
// ErrTryAgain at once when the client's (or the agent's) window is full.
// It still waits for the message to be committed.
func (c *Client) TrySend(ctx context.Context, group string, payload []byte) (SendResult, error) {
	return c.send(ctx, &wire.GroupSend{Kind: wire.KindMulticast, Group: group, Payload: payload}, false)
}

// send takes a place in the window (waiting for one if wait), sends the
// request and waits for its answer. When the agent's window is full
// anyway (others send too), a waiting send tries again with backoff.
func (c *Client) send(ctx context.Context, req *wire.GroupSend, wait bool) (SendResult, error) {
	delay := time.Millisecond
	for {
		s, err := c.startSend(ctx, req, wait)
		if err != nil {
			return SendResult{}, err
		}
		r, err := s.Wait(ctx)
		if errors.Is(err, ErrTryAgain) && wait {
			c.waits.Add(1)
			if !sleep(ctx, delay) {
				return SendResult{}, ctx.Err()
			}
			delay = min(2*delay, 50*time.Millisecond)
			continue
		}
		return r, err
	}
}

// Sending is a group message sent and not answered yet.
type Sending struct {
	c        *Client
	size     int         // payload bytes, for the window
	released atomic.Bool // the window place was given back (by the first Wait to end)

	body  []byte        // the GROUP_SEND body, until the flusher takes it
	ready chan struct{} // closed once the flusher sent it (p or batch set) or failed (err set)
	p     *transport.Pending
	batch *sentBatch // the GROUP_SEND_BATCH that carried it, item idx
	idx   int
	err   error
}

// SendGroupAsync multicasts payload to group as SendGroup does, but
// returns once the request is queued for the link (after waiting for a
// place in the window): sends started one after the other are applied in
// the order they were started. Wait for the answer with Sending.Wait;
// every Sending must be waited for, or the window fills. The client keeps
// within its own link's window; if Wait returns ErrTryAgain, the agent's
// window for all its clients together was full and the message was not
// sent. payload may be reused once SendGroupAsync returns.
func (c *Client) SendGroupAsync(ctx context.Context, group string, payload []byte) (*Sending, error) {
	return c.startSend(ctx, &wire.GroupSend{Kind: wire.KindMulticast, Group: group, Payload: payload}, true)
}

func (c *Client) startSend(ctx context.Context, req *wire.GroupSend, wait bool) (*Sending, error) {
	body, err := wire.AppendGroupSend(nil, req)
	if err != nil {
		return nil, fmt.Errorf("client: send: %w", err)
	}
	size := len(req.Payload)
	if err := c.acquire(ctx, wait, size); err != nil {
		return nil, err
	}
	s := &Sending{c: c, size: size, body: body, ready: make(chan struct{})}
	c.enqueueSend(s)
	return s, nil
}

// Wait returns the agent's answer: once the message is committed, its seq.
func (s *Sending) Wait(ctx context.Context) (SendResult, error) {
	c := s.c
	defer s.release()
	// result waits on ctx and on Close itself: a context joining the two
	// for each message was three allocations and a lock on c.ctx.
	sr, err := s.result(ctx)
	if err != nil {
		if c.ctx.Err() != nil {
			return SendResult{}, ErrClosed
		}
		return SendResult{}, err
	}
	c.mu.Lock()
	if c.session == nil {
		// The first send opened the link's session (open groups).
		c.session = &session{member: sr.Member}
	}
	c.mu.Unlock()
	return SendResult{Seq: sr.Seq, Member: sr.Member, Delivered: sr.Delivered}, nil
}

// release gives s's window place back, once however many Waits end.
func (s *Sending) release() {
	if s.released.CompareAndSwap(false, true) {
		s.c.release(s.size)
	}
}

// acquire takes a place in the client's window.
func (c *Client) acquire(ctx context.Context, wait bool, size int) error {
	c.mu.Lock()
	for {
		if c.closed {
			c.mu.Unlock()
			return ErrClosed
		}
		if c.inflight < c.window && (c.inflight == 0 || c.inflightBytes+size <= c.windowBytes) {
			c.inflight++
			c.inflightBytes += size
			c.mu.Unlock()
			return nil
		}
		if !wait {
			c.mu.Unlock()
			c.waits.Add(1)
			return ErrTryAgain
		}
		ch := c.space
		c.spaceWanted = true
		c.mu.Unlock()
		c.waits.Add(1)
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.ctx.Done():
			return ErrClosed
		}
		c.mu.Lock()
	}
}

func (c *Client) release(size int) {
	c.mu.Lock()
	c.inflight--
	c.inflightBytes -= size
	if c.spaceWanted {
		// Only when a send waits: a channel for each message ended
		// was garbage for nothing.
		close(c.space)
		c.space, c.spaceWanted = make(chan struct{}), false
	}
	c.mu.Unlock()
}

// SendWaits returns how many times a send of this client waited for (or,
// with TrySend, was refused by) a full window.
func (c *Client) SendWaits() uint64 { return c.waits.Load() }

// Members returns the members of group, oldest first.
func (c *Client) Members(ctx context.Context, group string) ([]events.GroupMember, error) {
	body, err := wire.AppendGroupName(nil, &wire.GroupName{Group: group})
	if err != nil {
		return nil, fmt.Errorf("client: members of %q: %w", group, err)
	}
	rep, err := c.call(ctx, wire.OpGroupMembers, body)
	if err != nil {
		return nil, err
	}
	gm, err := wire.ParseGroupMembers(rep.Body)
	if err != nil {
		return nil, err
	}
	return gm.Members, nil
}

// Groups lists the groups of the cluster with their member counts.
func (c *Client) Groups(ctx context.Context) ([]GroupInfo, error) {
	rep, err := c.call(ctx, wire.OpGroupList, nil)
	if err != nil {
		return nil, err
	}
	gl, err := wire.ParseGroupList(rep.Body)
	if err != nil {
		return nil, err
	}
	return gl.Groups, nil
}

// Window asks the agent for this link's send window and what is in
// flight.
func (c *Client) Window(ctx context.Context) (Window, error) {
	rep, err := c.call(ctx, wire.OpGroupWindow, nil)
	if err != nil {
		return Window{}, err
	}
	return wire.ParseGroupWindow(rep.Body)
}

// attach re-adopts the client's member session on a new link l, before it
// subscribes; it reports false when the agent no longer has the session.
func (c *Client) attach(ctx context.Context, l *transport.Link, s session) error {
	rep, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: wire.OpGroupAttach},
		Body: wire.AppendGroupAttach(nil, &wire.GroupAttach{Member: s.member, Token: s.token})})
	if err != nil {
		return err
	}
	_, err = wire.ParseGroupAttachReply(rep.Body)
	return err
}

// MemberID returns the member id of the client's session, or 0 while it
// has none (before the first JOIN or SEND, or after the session was lost).
func (c *Client) MemberID() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.session == nil {
		return 0
	}
	return c.session.member
}
