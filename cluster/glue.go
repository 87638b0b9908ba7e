package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/rsm"
)

const membershipID = rsm.Membership

// newMux builds life l's Mux with the membership machine and the services'
// machines, and loads the membership state the log holds.
func (c *Cluster) newMux(l *life) error {
	l.member = &memberMachine{Machine: membership.NewMachine()}
	l.mux = rsm.NewBatchMux(func(evs []events.Event) { c.publishCommitted(l, evs) }, c.log)
	if err := l.mux.Register(l.member); err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	for _, m := range c.cfg.Machines {
		if err := l.mux.Register(m); err != nil {
			return fmt.Errorf("cluster: %w", err)
		}
	}
	return l.store.Update(func(b *clusterlog.Batch) error {
		tx, err := rsm.MachineTx(b.App(), membershipID)
		if err != nil {
			return err
		}
		if err := l.member.Load(tx); err != nil {
			return err
		}
		// The services' machines mirror their state too; the same machine
		// serves every life, so each life loads it from its own log.
		for _, m := range c.cfg.Machines {
			ld, ok := m.(rsm.Loader)
			if !ok {
				continue
			}
			tx, err := rsm.MachineTx(b.App(), m.ID())
			if err != nil {
				return err
			}
			if err := ld.Load(tx); err != nil {
				return fmt.Errorf("cluster: load machine %d: %w", m.ID(), err)
			}
		}
		return nil
	})
}

// importLegacy moves an old agent's state file into the log, once: the view
// goes into the membership machine as of the file's applied index, the
// incarnation into the life file; then the state file goes.
func (c *Cluster) importLegacy(l *life, s membership.LegacyState) error {
	err := l.store.Update(func(b *clusterlog.Batch) error {
		tx, err := rsm.MachineTx(b.App(), membershipID)
		if err != nil {
			return err
		}
		_, _, err = l.member.ImportLegacy(tx, s)
		return err
	})
	if err != nil {
		return fmt.Errorf("cluster: import the state file: %w", err)
	}
	if err := writeLife(c.cfg.DataDir, s.Incarnation); err != nil {
		return err
	}
	path := filepath.Join(c.cfg.DataDir, membership.LegacyStateFile)
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("cluster: remove the imported state file: %w", err)
	}
	c.log.Info("imported the state file of an earlier version", "applied", s.Applied, "view", s.View.Instance, "incarnation", fmt.Sprintf("%x", s.Incarnation))
	return nil
}

// lastSeq is the highest Seq an event of log entry index can have: every
// event of the entries up to index is at or below it.
func lastSeq(index uint64) uint64 { return events.SeqOf(index, 1<<events.SeqShift-1) }

// publishCommitted publishes the events of durably applied entries, in
// log order, but those an earlier life of this node published already.
func (c *Cluster) publishCommitted(l *life, evs []events.Event) {
	// The machines' events all have a Seq, increasing: the published
	// ones are a prefix.
	i := 0
	for i < len(evs) && evs[i].Seq <= l.replayed {
		i++
	}
	evs = evs[i:]
	if len(evs) == 0 {
		return
	}
	if b, ok := c.cfg.Events.(BatchEvents); ok {
		b.PublishBatch(evs)
		return
	}
	for _, ev := range evs {
		c.cfg.Events.Publish(ev)
	}
}

// applier is life l's clusterlog.Applier: the Mux, plus what the node does
// locally once entries are durable.
type applier struct {
	c *Cluster
	l *life
}

var (
	_ clusterlog.Applier     = applier{}
	_ clusterlog.ConfChecker = applier{}
)

func (a applier) Apply(tx *clusterlog.AppTx, e clusterlog.Entry) ([]byte, error) {
	return a.l.mux.Apply(tx, e)
}

func (a applier) CheckConfChange(tx *clusterlog.AppTx, e clusterlog.Entry) error {
	return a.l.mux.CheckConfChange(tx, e)
}

func (a applier) Snapshot(tx *clusterlog.AppTx, w io.Writer) error { return a.l.mux.Snapshot(tx, w) }

func (a applier) Restore(tx *clusterlog.AppTx, s clusterlog.SnapshotMeta, r io.Reader) error {
	if err := a.l.mux.Restore(tx, s, r); err != nil {
		return err
	}
	a.l.member.restoredAt(s.Index)
	return nil
}

// Committed publishes, in log order: the skip of a restored snapshot, the
// machines' events, then the local events of the membership changes.
func (a applier) Committed(applied uint64) {
	c, l := a.c, a.l
	chs, restored := l.member.commit()
	if last := lastSeq(restored); last > l.replayed {
		c.cfg.Events.Skip(last)
	}
	l.mux.Committed(applied)
	for _, ch := range chs {
		if ch.Index <= events.SeqIndex(l.replayed) || ch.Restored {
			continue
		}
		c.publishEligibility(ch)
	}
	c.wake()
}

// publishEligibility publishes NODE_ELIGIBLE or NODE_INELIGIBLE for the
// nodes a membership change added or removed.
func (c *Cluster) publishEligibility(ch membership.Change) {
	for _, x := range []struct {
		desc  events.Descriptor
		nodes []membership.Member
	}{{events.CSNodeEligible, ch.Joined}, {events.CSNodeIneligible, ch.Left}} {
		if len(x.nodes) == 0 {
			continue
		}
		cs := c.cfg.Connectivity(&ch.View)
		cs.Nodes = membership.EventNodes(x.nodes)
		c.cfg.Events.Publish(events.Event{Desc: x.desc, Data: &cs})
	}
}

// proposeOn proposes cmd for machine id on life l's node.
func (c *Cluster) proposeOn(ctx context.Context, l *life, id rsm.ID, cmd []byte) (uint64, []byte, error) {
	return rsm.NewProposer(c.cfg.Self, func() *clusterlog.Node { return l.node }).Propose(ctx, id, cmd)
}
