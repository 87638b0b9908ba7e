package agent

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/datadir"
)

// nextRouteSeqno reads this node's routing seqno of its last life from the
// data directory and durably writes the next one, which it returns
// (agent/ROUTESEQNO.md). A node's adverts are ordered by seqno modulo
// 2^16; one that starts at a random seqno each time can, after a few
// restarts, have adverts of three lives in flight that compare in a cycle,
// which feasibility cannot order. Only a data directory without the file
// (the first start) takes a random one.
func nextRouteSeqno(dir string) (uint16, error) {
	path := datadir.RouteSeqnoFile(dir)
	var next uint16
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		last, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 16)
		if perr != nil {
			return 0, fmt.Errorf("%w: %s does not hold a routing seqno (0..65535)", ErrConfig, path)
		}
		next = uint16(last) + 1
	case errors.Is(err, os.ErrNotExist):
		var r [2]byte
		rand.Read(r[:])
		next = binary.LittleEndian.Uint16(r[:])
	default:
		return 0, fmt.Errorf("agent: %w", err)
	}
	if err := saveRouteSeqno(dir, next); err != nil {
		return 0, err
	}
	return next, nil
}

// saveRouteSeqno records seqno durably: the router raised it (a seqno
// request), and a restart must start above it.
func saveRouteSeqno(dir string, seqno uint16) error {
	if err := writeSynced(datadir.RouteSeqnoFile(dir), strconv.FormatUint(uint64(seqno), 10)+"\n"); err != nil {
		return fmt.Errorf("agent: save routing seqno: %w", err)
	}
	return nil
}
