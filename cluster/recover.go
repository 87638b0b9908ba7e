package cluster

import (
	"fmt"
	"path/filepath"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/rsm"
)

// Recovery says what ForceNewCluster did, for the operator.
type Recovery struct {
	Index   uint64              // the log index the cluster restarts from
	Dropped uint64              // entries after it, discarded
	Before  membership.View     // the view before
	Removed []membership.Member // members taken out: they join again as new lives
}

// ForceNewCluster rewrites this node's log in the data dir so that it
// restarts as a cluster of one, itself, from its own log (corral agent
// --force-new-cluster): the way out when a quorum of voters is lost for
// good. The view becomes this node alone, a voter; raft's configuration
// becomes its raft id alone; entries after the applied index are dropped;
// the log starts from a snapshot with the new configuration, so nodes that
// join later never see the old members. The others' lives are tombstoned:
// one that comes back is told so and starts a new life. Call it after
// AddMachine, before Open, with no agent running on the data dir.
func (c *Cluster) ForceNewCluster() (Recovery, error) {
	if c.cur.Load() != nil {
		panic("cluster: ForceNewCluster after Open")
	}
	dir := c.cfg.DataDir
	inc, ok, err := readLife(dir)
	if err != nil {
		return Recovery{}, err
	}
	if !ok {
		return Recovery{}, fmt.Errorf("cluster: %s has no life file: no log to recover from", dir)
	}
	l := &life{inc: inc}
	if l.store, err = clusterlog.OpenStorage(filepath.Join(dir, LogFile), c.log); err != nil {
		return Recovery{}, fmt.Errorf("cluster: open the log: %w", err)
	}
	defer l.store.Close()
	if err := c.newMux(l); err != nil {
		return Recovery{}, err
	}
	var rec Recovery
	var after membership.View
	r, err := l.store.ForceNewCluster(inc, func(app *clusterlog.AppTx) error {
		applied, _ := l.store.Applied()
		tx, err := rsm.MachineTx(app, membershipID)
		if err != nil {
			return err
		}
		rec.Before, after, err = membership.ForceAlone(tx, c.cfg.Self, inc, applied)
		return err
	}, l.mux.Snapshot)
	if err != nil {
		return rec, fmt.Errorf("cluster: force a new cluster: %w", err)
	}
	rec.Index, rec.Dropped = r.Index, r.Dropped
	for _, m := range rec.Before.Members {
		if m.ID != c.cfg.Self {
			rec.Removed = append(rec.Removed, m)
		}
	}
	c.log.Warn("forced a new cluster of this node alone from its log",
		"index", r.Index, "dropped_entries", r.Dropped, "view_before", rec.Before.Instance, "members_before", len(rec.Before.Members), "view", after.Instance)
	return rec, nil
}
