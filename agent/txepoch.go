package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/internal/durable"
)

// txEpochLimit bounds the mesh's transaction epoch (mesh.Config.TxEpoch).
const txEpochLimit = 1 << 23

// nextTxEpoch reads the transaction epoch of the last start from the data
// directory and durably writes the next one, which it returns: the
// mesh's transaction msg ids carry it, so no two starts share a msg id.
// After 2^23-1 starts it wraps to 1.
func nextTxEpoch(dir string) (uint32, error) {
	path := datadir.TxEpochFile(dir)
	var last uint64
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		last, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
		if err != nil || last == 0 || last >= txEpochLimit {
			return 0, fmt.Errorf("%w: %s does not hold a transaction epoch", ErrConfig, path)
		}
	case !errors.Is(err, os.ErrNotExist):
		return 0, fmt.Errorf("agent: %w", err)
	}
	next := uint32(last%(txEpochLimit-1)) + 1
	// Written and synced before use: an epoch used and not recorded
	// would be used again by the next start.
	if err := writeSynced(path, strconv.FormatUint(uint64(next), 10)+"\n"); err != nil {
		return 0, fmt.Errorf("agent: save transaction epoch: %w", err)
	}
	return next, nil
}

// writeSynced replaces the file at path with content durably: a
// temporary file, fsync, rename, fsync of the directory.
func writeSynced(path, content string) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(content)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr == nil {
		werr = durable.SyncDir(filepath.Dir(path))
	}
	if werr != nil {
		os.Remove(tmp)
	}
	return werr
}

// onLinkFail is told how many open transactions a lost link ended here
// with LINKFAIL. The link's loss is published already (P2P lost, from
// onLink); the count goes to the log and corral_mesh_linkfails_total.
func (a *Agent) onLinkFail(peer uint64, n int) {
	a.log.Warn("lost link ended open transactions", "peer_id", peer, "transactions", n)
}
