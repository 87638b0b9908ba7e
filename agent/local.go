package agent

import (
	"context"
	"errors"
	"net"
	"sort"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/acceptloop"
	"github.com/corralhq/corral/internal/buildinfo"
	"github.com/corralhq/corral/internal/logkey"
	"github.com/corralhq/corral/mesh"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/transport"
)

// opMux is the opcode-range dispatch of a local protocol: each range has a
// factory that makes one handler per connection. It is filled by New and
// read-only after.
type opMux struct {
	routes []opRoute
}

type opRoute struct {
	lo, hi uint16
	make   func() transport.Handler
}

func (m *opMux) add(lo, hi uint16, mk func() transport.Handler) {
	for _, r := range m.routes {
		if lo <= r.hi && r.lo <= hi {
			panic("agent: overlapping opcode ranges")
		}
	}
	m.routes = append(m.routes, opRoute{lo, hi, mk})
}

// handler returns the dispatching handler for one connection.
func (m *opMux) handler(p proto.ProtoID) transport.Handler {
	hs := make([]transport.Handler, len(m.routes))
	for i, r := range m.routes {
		hs[i] = r.make()
	}
	return func(l *transport.Link, f *proto.Frame) error {
		for i, r := range m.routes {
			if f.Opcode >= r.lo && f.Opcode <= r.hi {
				return hs[i](l, f)
			}
		}
		return proto.Errorf(proto.CodeOpcode, "%s opcode %#04x has no handler", p, f.Opcode)
	}
}

// serveLocal serves the admin and client protocols on their unix sockets
// until ctx is done; then it closes every local link and returns once the
// goroutines serving them have ended.
func (a *Agent) serveLocal(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { a.acceptLocal(ctx, &wg, a.adminLn, proto.ProtoAdmin) })
	wg.Go(func() { a.acceptLocal(ctx, &wg, a.cliLn, proto.ProtoClient) })
	<-ctx.Done()
	a.adminLn.Close()
	a.cliLn.Close()
	var closing sync.WaitGroup
	a.mu.Lock()
	for l := range a.local {
		closing.Go(func() { l.Close(proto.CodeShutdown, "agent shutting down") })
	}
	a.mu.Unlock()
	closing.Wait()
	wg.Wait()
	a.leaves.Wait()
	return nil
}

// acceptLocal serves one unix socket; the HELLO's reason says which
// protocol a connection speaks, and a socket refuses the other one.
func (a *Agent) acceptLocal(ctx context.Context, wg *sync.WaitGroup, ln net.Listener, want proto.ProtoID) {
	acceptloop.Serve(ctx, ln, logkey.WithSubsystem(a.log, "local"), func(conn net.Conn) {
		wg.Go(func() {
			l, err := transport.Accept(ctx, conn, a.localCfg)
			if err != nil {
				a.log.Warn("refused local connection", "socket", ln.Addr().String(), "err", err.Error())
				return
			}
			if l.Peer().Proto != want {
				l.Close(proto.CodeState, "this socket serves the "+want.String()+" protocol")
				return
			}
			a.mu.Lock()
			a.local[l] = true
			a.mu.Unlock()
			if ctx.Err() != nil {
				l.Close(proto.CodeShutdown, "agent shutting down")
			} else if want == proto.ProtoAdmin {
				l.Start(a.adminOps.handler(want))
			} else {
				l.Start(a.clientOps.handler(want))
			}
			<-l.Done()
			a.mu.Lock()
			delete(a.local, l)
			a.mu.Unlock()
		})
	})
}

// handleAdmin answers the agent's own admin requests: version, members,
// routes, view, quorum, raft peers, join, leave and remove.
func (a *Agent) handleAdmin(l *transport.Link, f *proto.Frame) error {
	if f.Flags&proto.FlagReply != 0 {
		return proto.Errorf(proto.CodeState, "admin %s reply sent to the agent", admin.Ops().Name(f.Opcode))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	abort := func(code proto.Code, text string) error {
		// A closed link is not an error of this request; the reader ends.
		l.Abort(ctx, f, proto.Errorf(code, "%s", text))
		return nil
	}
	if f.Opcode == admin.OpJoin {
		return a.adminJoin(ctx, l, f)
	}
	if f.Opcode == admin.OpRemove {
		return a.adminRemove(ctx, l, f)
	}
	if f.Opcode == admin.OpMeshEcho {
		return a.adminMeshEcho(l, f)
	}
	if len(f.Body) != 0 {
		return abort(proto.CodeField, admin.Ops().Name(f.Opcode)+" request takes no body")
	}
	switch f.Opcode {
	case admin.OpVersion:
		l.Reply(ctx, f, admin.AppendVersionInfo(nil, &admin.VersionInfo{Binary: buildinfo.Version, Ranges: a.peerCfg.Ranges}))
	case admin.OpMembers:
		l.Reply(ctx, f, admin.AppendMembers(nil, a.members()))
	case admin.OpRoutes:
		l.Reply(ctx, f, admin.AppendRoutes(nil, a.routes()))
	case admin.OpView:
		l.Reply(ctx, f, admin.AppendViewInfo(nil, a.viewInfo()))
	case admin.OpQuorum:
		l.Reply(ctx, f, admin.AppendQuorumInfo(nil, a.quorumInfo()))
	case admin.OpRaftPeers:
		l.Reply(ctx, f, admin.AppendRaftPeers(nil, a.raftPeers()))
	case admin.OpLeave:
		// Leaving waits for a commit: answer from a goroutine the local
		// server waits for; the link's end ends it.
		req := proto.Frame{Header: f.Header}
		a.leaves.Go(func() {
			lctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			go func() {
				select {
				case <-l.Done():
					cancel()
				case <-lctx.Done():
				}
			}()
			if err := a.cluster.Leave(lctx); err != nil {
				l.Abort(context.Background(), &req, proto.Errorf(proto.CodeState, "%s", err.Error()))
				return
			}
			// The reply is queued ahead of the GOODBYE that shutdown
			// sends, so the tool hears it.
			l.Reply(context.Background(), &req, nil)
			a.stopOnce.Do(func() { close(a.stopReq) })
		})
	default:
		return abort(proto.CodeOpcode, "no handler for "+admin.Ops().Name(f.Opcode))
	}
	return nil
}

// members answers the admin MEMBERS request: this node, every node ever
// linked, and configured addresses no node has answered from yet.
func (a *Agent) members() []admin.Member {
	out := []admin.Member{{ID: a.cfg.ID, Name: a.cfg.Name, Addr: a.Addr().String(), State: admin.StateSelf, Since: a.start.UnixNano()}}
	for _, s := range a.mesh.States() {
		m := admin.Member{ID: s.ID, Name: s.Name, Addr: s.Addr, PeerVersion: s.Version, State: admin.StateDown, RTT: uint32(min(s.RTT.Microseconds(), 1<<32-1))}
		if !s.Since.IsZero() {
			m.Since = s.Since.UnixNano()
		}
		if s.Up {
			m.State = admin.StateUp
		}
		out = append(out, m)
	}
	sort.SliceStable(out[1:], func(i, j int) bool {
		x, y := out[1+i], out[1+j]
		if x.ID != y.ID {
			return x.ID < y.ID
		}
		return x.Addr < y.Addr
	})
	return out
}

// routes answers the admin ROUTES request: the mesh's reachability rows,
// at most admin.MaxRoutes of them (the lowest node ids).
func (a *Agent) routes() []admin.Route {
	rs := a.mesh.Reachability()
	out := make([]admin.Route, 0, min(len(rs), admin.MaxRoutes))
	for _, r := range rs {
		if r.ID == 0 || len(out) == admin.MaxRoutes {
			continue
		}
		x := admin.Route{ID: r.ID, NextHop: r.NextHop, Alt: r.Alt, Metric: r.Metric, Seqno: r.Seqno, Hops: r.Hops,
			Up: r.Up || r.Direct, Direct: r.Direct, RTT: uint32(min(max(r.RTT.Microseconds(), 0), 1<<32-1))}
		if r.Direct {
			x.NextHop = r.ID // the wire says so; the mesh does too
		}
		if !r.Since.IsZero() {
			x.Since = r.Since.UnixNano()
		}
		out = append(out, x)
	}
	return out
}

// viewInfo answers the admin VIEW request.
func (a *Agent) viewInfo() *admin.ViewInfo {
	v := a.cluster.View()
	st := a.cluster.Status()
	vi := &admin.ViewInfo{Instance: v.Instance, Leader: a.cluster.LeaderNode(), Term: st.Term, Applied: st.Applied}
	for _, m := range v.Members {
		vi.Members = append(vi.Members, admin.ViewMember{ID: m.ID, BornOn: m.BornOn, Voter: m.Voter, Name: m.Name, Addr: m.Addr})
	}
	return vi
}

// quorumInfo answers the admin QUORUM request.
func (a *Agent) quorumInfo() admin.QuorumInfo {
	q := a.cluster.Quorum()
	return admin.QuorumInfo{Member: q.Member, Quorate: q.Quorate(), Voters: uint32(q.Voters), Reachable: uint32(q.Reachable)}
}

// raftPeers answers the admin RAFT-PEERS request.
func (a *Agent) raftPeers() *admin.RaftPeers {
	st, ps := a.cluster.RaftPeers()
	out := &admin.RaftPeers{Leader: a.cluster.LeaderNode(), Term: st.Term, Commit: st.Commit, Applied: st.Applied}
	for _, p := range ps {
		out.Peers = append(out.Peers, admin.RaftPeer{Node: p.Node, RaftID: p.RaftID, Voter: p.Voter, Leader: p.Leader, Self: p.Self, Name: p.Name})
	}
	return out
}

// adminRemove answers the admin REMOVE request: this node asks the leader
// to take another node out of the view, and answers once it is committed.
func (a *Agent) adminRemove(ctx context.Context, l *transport.Link, f *proto.Frame) error {
	r, err := admin.ParseRemoveRequest(f.Body)
	if err == nil && r.Node == a.cfg.ID {
		err = proto.Errorf(proto.CodeState, "node %d is this node: a node does not remove itself; run corral leave on it instead", r.Node)
	}
	if err != nil {
		l.Abort(ctx, f, err)
		return nil
	}
	// Removing waits for a commit: answered from a goroutine the local
	// server waits for, as LEAVE is; the link's end ends it.
	req := proto.Frame{Header: f.Header}
	a.leaves.Go(func() {
		rctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		go func() {
			select {
			case <-l.Done():
				cancel()
			case <-rctx.Done():
			}
		}()
		if err := a.cluster.Remove(rctx, r.Node); err != nil {
			l.Abort(context.Background(), &req, proto.Errorf(proto.CodeState, "%s", err.Error()))
			return
		}
		l.Reply(context.Background(), &req, nil)
	})
	return nil
}

// joinWait is how long JOIN waits for a link to the address it names.
const joinWait = 5 * time.Second

// adminJoin answers the admin JOIN request once a link to the address is
// up, or with why none came up within joinWait: an address that does not
// answer is not kept, so it leaves no row down for ever.
func (a *Agent) adminJoin(ctx context.Context, l *transport.Link, f *proto.Frame) error {
	j, err := admin.ParseJoinRequest(f.Body)
	if err != nil {
		l.Abort(ctx, f, err)
		return nil
	}
	// Waiting for the link must not hold the link's reader.
	req := proto.Frame{Header: f.Header}
	a.leaves.Go(func() {
		jctx, cancel := context.WithTimeout(context.Background(), joinWait)
		defer cancel()
		go func() {
			select {
			case <-l.Done():
				cancel()
			case <-jctx.Done():
			}
		}()
		err := a.mesh.Join(jctx, j.Addr)
		var ue *mesh.UnreachableError
		switch {
		case errors.As(err, &ue):
			err = proto.Errorf(proto.CodeNoPeer, "cannot reach %s: %s; it was not added", j.Addr, ue.Why)
		case errors.Is(err, mesh.ErrBadPeer):
			err = proto.Errorf(proto.CodeField, "%v", err)
		}
		if err != nil {
			l.Abort(context.Background(), &req, err)
			return
		}
		l.Reply(context.Background(), &req, nil)
	})
	return nil
}
