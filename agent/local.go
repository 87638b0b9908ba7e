package agent

import (
	"context"
	"net"
	"time"

	"github.com/corralhq/corral/internal/buildinfo"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/transport"
)

// acceptLocal serves the admin or client protocol on a unix socket; the
// HELLO's reason says which, and the link refuses a protocol the socket
// does not serve.
func (a *Agent) acceptLocal(ctx context.Context, ln net.Listener) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				a.log.Error("local listener failed", "socket", ln.Addr().String(), "err", err)
			}
			return
		}
		a.spawn(func() {
			l, err := transport.Accept(ctx, conn, a.localCfg)
			if err != nil {
				a.log.Warn("refused local connection", "socket", ln.Addr().String(), "err", err.Error())
				return
			}
			want := proto.ProtoClient
			if ln == a.adminLn {
				want = proto.ProtoAdmin
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
				l.Start(a.handleAdmin)
			} else {
				l.Start(a.clients.Handler())
			}
			<-l.Done()
			a.mu.Lock()
			delete(a.local, l)
			a.mu.Unlock()
		})
	}
}

// handleAdmin answers admin requests.
func (a *Agent) handleAdmin(l *transport.Link, f *proto.Frame) error {
	if f.Flags&proto.FlagReply != 0 {
		return proto.Errorf(proto.CodeState, "admin %s reply sent to the agent", admin.Ops().Name(f.Opcode))
	}
	reply := proto.Frame{Header: proto.Header{Opcode: f.Opcode, MsgID: f.MsgID, Flags: proto.FlagReply | proto.FlagCreate | proto.FlagDelete}}
	if f.Opcode == admin.OpJoin {
		j, err := admin.ParseJoinRequest(f.Body)
		if err == nil {
			err = a.addPeer(j.Addr)
		}
		if err != nil {
			st := proto.Status{Code: proto.CodeField, Text: err.Error()}
			reply.Flags |= proto.FlagAbort
			reply.Body = proto.AppendStatus(nil, &st)
		}
	} else if len(f.Body) != 0 {
		st := proto.Status{Code: proto.CodeField, Text: admin.Ops().Name(f.Opcode) + " request takes no body"}
		reply.Flags |= proto.FlagAbort
		reply.Body = proto.AppendStatus(nil, &st)
	} else {
		switch f.Opcode {
		case admin.OpVersion:
			reply.Body = admin.AppendVersionInfo(nil, &admin.VersionInfo{Binary: buildinfo.Version, Ranges: a.peerCfg.Ranges})
		case admin.OpMembers:
			self := admin.Member{ID: a.cfg.ID, Name: a.cfg.Name, Addr: a.ln.Addr().String(), State: admin.StateSelf, Since: a.start.UnixNano()}
			reply.Body = admin.AppendMembers(nil, a.nodes.members(self))
		case admin.OpView:
			reply.Body = admin.AppendViewInfo(nil, a.viewInfo())
		case admin.OpLeave:
			// Leaving waits for a commit: answer from another goroutine.
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				err := a.cluster.leave(ctx)
				if err != nil {
					st := proto.Status{Code: proto.CodeState, Text: err.Error()}
					reply.Flags |= proto.FlagAbort
					reply.Body = proto.AppendStatus(nil, &st)
				}
				l.Send(context.Background(), &reply)
				if err == nil {
					// The reply is queued ahead of the GOODBYE that
					// shutdown sends, so the tool hears it.
					a.stopOnce.Do(func() { close(a.stopReq) })
				}
			}()
			return nil
		default:
			st := proto.Status{Code: proto.CodeOpcode, Text: "no handler for " + admin.Ops().Name(f.Opcode)}
			reply.Flags |= proto.FlagAbort
			reply.Body = proto.AppendStatus(nil, &st)
		}
	}
	// A closed link is not an error of this request; the reader ends.
	l.Send(context.Background(), &reply)
	return nil
}

// viewInfo answers the admin VIEW request.
func (a *Agent) viewInfo() *admin.ViewInfo {
	v := a.cluster.currentView()
	vi := &admin.ViewInfo{Instance: v.Instance}
	if node := a.cluster.raft(); node != nil {
		st := node.Status()
		vi.Leader, vi.Term, vi.Applied = a.cluster.leaderNode(st), st.Term, st.Applied
	}
	for _, m := range v.Members {
		vi.Members = append(vi.Members, admin.ViewMember{ID: m.ID, BornOn: m.BornOn, Voter: m.Voter, Name: m.Name, Addr: m.Addr})
	}
	return vi
}
