package agent

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/mesh"
)

// reloadState is what Reload has applied since New.
type reloadState struct {
	mu    sync.Mutex // guards peers
	peers []string   // the configured peers, as last loaded
}

// reloadable are the settings Reload applies; the agent's owner applies
// log-level (it owns the logger). Every other setting needs a restart.
var reloadable = map[string]bool{"peers": true, "log-level": true}

// Reload applies what of cfg can change while the agent runs (SIGHUP):
// peers added to the list are dialed at once. A peer dropped from the list
// keeps its link until the agent restarts: the node is a member, and
// leaving is corral leave's job. Settings that differ from the running
// ones and need a restart are logged once, by name. Called as Run starts,
// Reload waits for the peer links' part to run, until ctx ends.
func (a *Agent) Reload(ctx context.Context, cfg Config) error {
	if cfg.ID == 0 {
		cfg.ID = a.cfg.ID // the one kept in the data dir
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	a.reloaded.mu.Lock()
	defer a.reloaded.mu.Unlock()
	old := a.reloaded.peers
	if old == nil {
		old = a.cfg.Peers
	}
	var added, dropped []string
	for _, p := range cfg.Peers {
		if slices.Contains(old, p) {
			continue
		}
		if err := a.addPeer(ctx, p); err != nil {
			return fmt.Errorf("agent: reload: peer %s: %w", p, err)
		}
		added = append(added, p)
	}
	for _, p := range old {
		if !slices.Contains(cfg.Peers, p) {
			dropped = append(dropped, p)
		}
	}
	a.reloaded.peers = slices.Clone(cfg.Peers)
	if a.reloaded.peers == nil {
		a.reloaded.peers = []string{}
	}
	a.log.Info("configuration reloaded", "peers", strings.Join(cfg.Peers, ","), "peers_added", strings.Join(added, ","))
	if len(dropped) > 0 {
		a.log.Warn("peers dropped from the configuration keep their links until the agent restarts; use corral leave on a node to take it out", "peers", strings.Join(dropped, ","))
	}
	if changed := needRestart(a.cfg, cfg); len(changed) > 0 {
		a.log.Warn("changed settings take effect only after a restart", "settings", strings.Join(changed, ","))
	}
	return nil
}

// addPeer adds a peer to the mesh, waiting for it to run: a SIGHUP may
// come while Run is starting its parts.
func (a *Agent) addPeer(ctx context.Context, addr string) error {
	for {
		err := a.mesh.AddPeer(addr)
		if !errors.Is(err, mesh.ErrNotRunning) {
			return err
		}
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// needRestart names the settings, by their flag names, that differ
// between the running configuration and cfg and cannot be reloaded.
func needRestart(running, cfg Config) []string {
	var out []string
	r, c := reflect.ValueOf(running), reflect.ValueOf(cfg)
	for i := range r.NumField() {
		name := r.Type().Field(i).Tag.Get("toml")
		if name == "" || reloadable[name] {
			continue
		}
		if !reflect.DeepEqual(r.Field(i).Interface(), c.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	return out
}
