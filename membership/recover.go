package membership

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/corralhq/corral/rsm"
)

// ErrNotInOwnView is returned by ForceAlone when the node's life is not in
// the view its log holds: it has nothing to restart the cluster from.
var ErrNotInOwnView = errors.New("membership: this life is not in the view of its log")

// ForceAlone rewrites the state in tx for disaster recovery (corral agent
// --force-new-cluster): the view becomes member self, in life inc, alone
// and a voter, at instance index (the log index the cluster restarts
// from), and every other member's life gets a tombstone at index, so that
// one that comes back is answered REMOVED and joins again with a new life.
// The cluster id is kept. It returns the view before and after.
func ForceAlone(tx rsm.Tx, self, inc, index uint64) (before, after View, err error) {
	before, err = storedView(tx)
	if err != nil {
		return before, after, err
	}
	me, ok := before.Member(self)
	if !ok || me.Incarnation != inc {
		return before, after, fmt.Errorf("%w: node %d life %#x, view %d", ErrNotInOwnView, self, inc, before.Instance)
	}
	if index < before.Instance {
		return before, after, fmt.Errorf("membership: recovery index %d is below view %d", index, before.Instance)
	}
	for _, m := range before.Members {
		if m.ID == self {
			continue
		}
		if err := tx.Put(tombKey(Life{m.ID, m.Incarnation}), binary.LittleEndian.AppendUint64(nil, index)); err != nil {
			return before, after, err
		}
	}
	me.Voter = true
	after = View{Instance: index, Members: []Member{me}}
	if err := tx.Put(keyView, after.Marshal()); err != nil {
		return before, after, err
	}
	return before, after, nil
}
