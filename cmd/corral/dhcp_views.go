package main

// corral dhcp serve follows the local agent's membership views, so that a
// server with [cluster] peers takes over a share of a departed peer's
// addresses (dhcp/server takeover.go).

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/dhcp/server"
	"github.com/corralhq/corral/events"
)

// followViews feeds s the agent's views until ctx ends: the view in
// force when it connects, then every NEWVIEW. EVICTED and SHUTDOWN clear
// the view (the server keeps to its own addresses until the next one);
// so does losing the agent, whose views may then be stale. The client
// reconnects by itself; after a gap in the events it reads the view
// again.
func followViews(ctx context.Context, path string, s *server.Server, log *slog.Logger) error {
	svc := events.New(events.Options{Logger: log})
	defer svc.Close()
	h, err := svc.Register()
	if err != nil {
		return err
	}
	apply := func(m *events.Membership) {
		ids := make([]uint64, len(m.Members))
		for i, n := range m.Members {
			ids[i] = n.ID
		}
		s.SetView(m.Instance, ids)
	}
	onView := func(ev events.Event, ck events.Cookie) {
		defer events.CallbackDone(ck)
		switch ev.Desc {
		case events.MSNewView, events.MSRecovered:
			if m := ev.Membership(); m != nil {
				apply(m)
			}
		case events.MSEvicted, events.MSShutdown:
			s.ClearView()
		}
	}
	if err := h.SetCallback(events.PriorityMed, events.ClassMemb, onView); err != nil {
		return err
	}
	ready, err := h.ActivateChan()
	if err != nil {
		return err
	}
	reread := make(chan struct{}, 1)
	poke := func() {
		select {
		case reread <- struct{}{}:
		default:
		}
	}
	opts := client.Options{Service: svc, Classes: []events.Class{events.ClassMemb}, Name: "corral-dhcp", Logger: log,
		OnGap:        func(client.Gap) { poke() },
		OnDisconnect: func(error) { s.ClearView(); poke() },
	}
	c, err := dialAgent(ctx, path, opts, log)
	if err != nil || c == nil {
		return err
	}
	defer c.Close()
	poke()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ready:
			h.HandleEvent()
		case <-reread:
			m, err := c.Membership(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				log.Warn("reading the view", "err", err)
				continue // the next connection or event pokes again
			}
			apply(m)
		}
	}
}

// startViews runs followViews for a server with [cluster] peers; the
// returned function waits for it to end.
func startViews(ctx context.Context, cfg server.Config, s *server.Server, log *slog.Logger) (func(), error) {
	if len(cfg.Cluster.Peers) == 0 {
		return func() {}, nil
	}
	path := cfg.AgentPath()
	if path == "" {
		return nil, fmt.Errorf("%w: [cluster] peers need the agent: set cluster.agent or the datastore's data-dir=", server.ErrConfig)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := followViews(ctx, path, s, log.With("subsystem", "dhcp/views")); err != nil {
			log.Error("following the agent's views", "err", err)
		}
	}()
	return func() { <-done }, nil
}
