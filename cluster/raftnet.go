package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	gproto "google.golang.org/protobuf/proto"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/mesh"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/transport"
)

// Raft messages larger than this go as RAFTCHUNK pieces (snapshots); the
// others, bounded by raft's MaxSizePerMsg, go in one RAFT frame.
const (
	chunkAbove = 4 << 20
	chunkSize  = peer.MaxChunkSize
	// snapTimeout bounds sending one snapshot.
	snapTimeout = 5 * time.Minute
)

// stepMsg is a received raft message waiting for the stepper.
type stepMsg struct {
	from uint64
	m    *raftpb.Message
}

// sender implements clusterlog.Sender for one life over the mesh. It runs
// on the raft loop and never blocks: a message that cannot be queued at
// once is dropped and raft told; a snapshot goes from a goroutine of its
// own.
type sender struct {
	c *Cluster
	l *life
	// buf is the marshalling buffer, reused from message to message: the
	// transport copies a frame's body before Mesh.Send returns. Only the
	// raft loop touches it.
	buf []byte
}

// queueWait bounds how long Send waits for room in a peer's send queue
// before it drops a message (raft sends it again).
const queueWait = time.Millisecond

func (s *sender) Send(msgs []*raftpb.Message) {
	c := s.c
	for _, m := range msgs {
		to := c.nodeOf(m.GetTo())
		body, err := marshalOpts.MarshalAppend(s.buf[:0], m)
		if err == nil {
			s.buf = body[:0]
		}
		if err == nil && to == 0 {
			err = mesh.ErrNoRoute
		}
		if err == nil && (m.GetType() == raftpb.MsgSnap || len(body) > chunkAbove) {
			// Sent from a goroutine: not the shared buffer.
			s.sendLarge(to, m, bytes.Clone(body))
			continue
		}
		if err == nil {
			f := proto.Frame{Header: proto.Header{Opcode: peer.OpRaft, Flags: proto.FlagCreate | proto.FlagDelete}, Body: body}
			// Each message its own wait: one deadline shared by a call's
			// messages dropped the later ones (raft then probes, and
			// batches less).
			ctx, cancel := context.WithTimeout(context.Background(), queueWait)
			err = c.cfg.Mesh.Send(ctx, to, &f)
			cancel()
		}
		if err != nil {
			s.l.node.ReportUnreachable(m.GetTo())
			if m.GetType() == raftpb.MsgSnap {
				s.l.node.ReportSnapshot(m.GetTo(), false)
			}
		}
	}
	if cap(s.buf) > maxSendBuf {
		// One big message must not pin its buffer for the life.
		s.buf = nil
	}
}

// maxSendBuf is the largest marshalling buffer a sender keeps.
const maxSendBuf = 2 << 20

var marshalOpts = gproto.MarshalOptions{}

// sendLarge sends one message in RAFTCHUNK pieces from a goroutine, and
// reports a snapshot's fate to raft.
func (s *sender) sendLarge(to uint64, m *raftpb.Message, body []byte) {
	c := s.c
	if !c.running.Load() {
		s.l.node.ReportSnapshot(m.GetTo(), false)
		return
	}
	var idb [8]byte
	rand.Read(idb[:])
	id := binary.LittleEndian.Uint64(idb[:])
	raftTo, snap := m.GetTo(), m.GetType() == raftpb.MsgSnap
	c.wg.Go(func() {
		ctx, cancel := context.WithTimeout(c.untilStop, snapTimeout)
		defer cancel()
		var err error
		for _, ch := range SplitMessage(id, body, chunkSize) {
			f := proto.Frame{Header: proto.Header{Opcode: peer.OpRaftChunk, Flags: proto.FlagCreate | proto.FlagDelete}, Body: peer.AppendSnapChunk(nil, &ch)}
			if err = c.cfg.Mesh.Send(ctx, to, &f); err != nil {
				break
			}
		}
		if err != nil {
			c.log.Warn("sending a large raft message failed", "to", to, "bytes", len(body), "err", err)
			s.l.node.ReportUnreachable(raftTo)
		} else {
			c.log.Info("sent a large raft message", "to", to, "bytes", len(body), "snapshot", snap)
		}
		if snap {
			s.l.node.ReportSnapshot(raftTo, err == nil)
		}
	})
}

// nodeOf maps a raft id (an incarnation) to the node id that has it: from
// the view, or else from where its messages came from (a joining node
// answers the leader before its view names anyone).
func (c *Cluster) nodeOf(raftID uint64) uint64 {
	v := c.cur.Load().member.State().View
	for _, m := range v.Members {
		if m.Incarnation == raftID {
			return m.ID
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.routes[raftID]
}

// Register serves the peer opcodes of the cluster log and of membership on
// m. It must be called before m runs.
func (c *Cluster) Register(m *mesh.Mesh) {
	m.Handle(peer.OpRaft, peer.OpRaftChunk, c.onRaft)
	m.Handle(peer.OpJoin, peer.OpNotMember, c.onMember)
}

// onRaft receives RAFT and RAFTCHUNK frames, on the link's reader.
func (c *Cluster) onRaft(l *transport.Link, f *proto.Frame) error {
	from := mesh.From(l, f)
	body := f.Body
	if f.Opcode == peer.OpRaftChunk {
		ch, err := peer.ParseSnapChunk(f.Body)
		if err != nil {
			return err
		}
		whole, err := c.asm.Add(from, ch)
		if err != nil {
			// A broken piece loses only that message; raft sends it again.
			c.log.Warn("dropping a chunked raft message", "from", from, "err", err)
			return nil
		}
		if whole == nil {
			return nil
		}
		body = whole
	}
	m := new(raftpb.Message)
	if err := gproto.Unmarshal(body, m); err != nil {
		return &proto.Error{Code: proto.CodeField, Detail: "RAFT: bad raft message", Err: err}
	}
	if m.GetTo() != c.cur.Load().inc {
		return nil // for an earlier life of this node: stale
	}
	if m.GetFrom() != 0 {
		c.mu.Lock()
		c.routes[m.GetFrom()] = from
		c.mu.Unlock()
	}
	select {
	case c.stepc <- stepMsg{from: from, m: m}:
	default:
		// The raft loop is behind (a slow disk): drop rather than stall
		// the link; raft retransmits.
	}
	return nil
}

// stepper steps received messages into the current life's node. It may
// wait on the raft loop; the link readers never do.
func (c *Cluster) stepper(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case sm := <-c.stepc:
			l := c.cur.Load()
			if sm.m.GetTo() != l.inc {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			err := l.node.Step(sctx, sm.m)
			cancel()
			if err != nil && !errors.Is(err, clusterlog.ErrStopped) && ctx.Err() == nil {
				c.log.Debug("raft step", "from", sm.from, "err", err)
			}
		}
	}
}

// relayedFor is the node a JOIN or LEAVE is relayed for, 0 if it is the
// sender's own. On a link the relay names it in Source; a routed frame's
// Source is its sender, so the command's node, when another, says it.
func relayedFor(f *proto.Frame, from uint64, cmd membership.Command) uint64 {
	if !mesh.Routed(f) {
		return f.Source
	}
	if cmd.ID != from {
		return cmd.ID
	}
	return 0
}

// request is a peer's JOIN or LEAVE awaiting the driver's answer.
type request struct {
	link *transport.Link
	req  proto.Frame // header only; the command is in the driver's Request
	// local, if set, takes the answer instead of link: a request this node
	// made of its own controller (Remove).
	local chan peer.MemberReply
}

// reqReply is what a relay brought back for request ref.
type reqReply struct {
	ref   uint64
	reply peer.MemberReply
}

// onMember receives JOIN and LEAVE requests and NOTMEMBER notices, on the
// link's reader; replies to this node's own requests are taken by Call.
func (c *Cluster) onMember(l *transport.Link, f *proto.Frame) error {
	from := mesh.From(l, f)
	switch f.Opcode {
	case peer.OpNotMember:
		n, err := peer.ParseNotMember(f.Body)
		if err != nil {
			return err
		}
		select {
		case c.notices <- membership.Notice{From: from, Instance: n.Instance}:
			c.wake()
		default:
		}
		return nil
	}
	if f.Flags&proto.FlagReply != 0 {
		return nil // a reply nobody waits for any more
	}
	cmd, err := membership.ParseCommand(f.Body)
	if err != nil {
		r := peer.MemberReply{Result: peer.ResultRefused, Text: err.Error()}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		return l.Reply(ctx, f, peer.AppendMemberReply(nil, &r))
	}
	c.mu.Lock()
	c.nextID++
	ref := c.nextID
	c.refs[ref] = &request{link: l, req: proto.Frame{Header: f.Header}}
	c.mu.Unlock()
	select {
	case c.requests <- membership.Request{Ref: ref, From: from, Source: relayedFor(f, from, cmd), Join: f.Opcode == peer.OpJoin, Cmd: cmd}:
		c.wake()
	default:
		c.answer(ref, peer.MemberReply{Result: peer.ResultRefused, Text: "the node is busy; ask again"})
	}
	return nil
}

// answer sends the reply to request ref, once.
func (c *Cluster) answer(ref uint64, r peer.MemberReply) {
	c.mu.Lock()
	rq := c.refs[ref]
	delete(c.refs, ref)
	c.mu.Unlock()
	if rq == nil {
		return
	}
	if rq.local != nil {
		rq.local <- r // buffered for the one answer
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	rq.link.Reply(ctx, &rq.req, peer.AppendMemberReply(nil, &r))
}
