package agent

import (
	"fmt"
	"strings"
)

// forceNewCluster carries out --force-new-cluster before the log opens:
// this node alone becomes the cluster, from its own log.
func (a *Agent) forceNewCluster() error {
	rec, err := a.cluster.ForceNewCluster()
	if err != nil {
		return err
	}
	var gone []string
	for _, m := range rec.Removed {
		gone = append(gone, fmt.Sprintf("%d (%s)", m.ID, m.Name))
	}
	a.log.Warn("disaster recovery: this node is now a cluster of one; start the other nodes on empty data dirs, or let them rejoin as new lives, and drop --force-new-cluster",
		"index", rec.Index, "dropped_entries", rec.Dropped, "removed", strings.Join(gone, ", "))
	return nil
}
