package logkey

import (
	"context"
	"log/slog"
)

// Attribute keys.
const (
	Subsystem = "subsystem" // the component: "cluster", "clusterlog.raft", ...
	Node      = "node"      // this node's name
	NodeID    = "node_id"   // this node's id, decimal
	RaftID    = "raft_id"   // a raft member id, hex as raft prints ids (%x)
	Peer      = "peer"      // the name of the node at the other end of a link
	PeerID    = "peer_id"   // its id, decimal
	Proto     = "proto"     // the sub-protocol of a link
	Err       = "err"       // an error's text
)

// WithSubsystem returns l with the subsystem attribute set to name. A
// subsystem set before, by WithSubsystem or by l.With(Subsystem, …) on a
// logger WithSubsystem returned, is replaced rather than repeated: a line
// carries exactly one subsystem, the innermost component's.
func WithSubsystem(l *slog.Logger, name string) *slog.Logger {
	h := l.Handler()
	if s, ok := h.(*subHandler); ok {
		h = s.inner
	}
	return slog.New(&subHandler{inner: h, sub: name})
}

// subHandler holds the subsystem apart from the other attributes, so it
// can be replaced, and adds it to each record as its first attribute.
type subHandler struct {
	inner slog.Handler // without the subsystem
	sub   string
}

func (h *subHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *subHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	out.AddAttrs(slog.String(Subsystem, h.sub))
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != Subsystem {
			out.AddAttrs(a)
		}
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h *subHandler) WithAttrs(as []slog.Attr) slog.Handler {
	sub := h.sub
	keep := make([]slog.Attr, 0, len(as))
	for _, a := range as {
		if a.Key == Subsystem {
			sub = a.Value.String()
			continue
		}
		keep = append(keep, a)
	}
	return &subHandler{inner: h.inner.WithAttrs(keep), sub: sub}
}

// WithGroup fixes the subsystem: attributes after it belong to the group,
// and the subsystem is not one of them.
func (h *subHandler) WithGroup(name string) slog.Handler {
	return h.inner.WithAttrs([]slog.Attr{slog.String(Subsystem, h.sub)}).WithGroup(name)
}
