package membership

import (
	"encoding/binary"
	"fmt"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/rsm"
)

// LegacyState is DATA-DIR/state as the agent wrote it before the machine
// kept the view in the log's own transaction (layout in SPEC.md, "Legacy
// state file"): the view as of Applied, and this node's incarnation.
type LegacyState struct {
	Applied     uint64
	Incarnation uint64
	View        View
}

// Specification constants: the legacy state file (SPEC.md).
const (
	LegacyStateFile        = "state"    // in the data directory
	legacyMagic     uint32 = 0x41545343 // "CSTA"
	legacyVersion          = 1
	legacyHeader           = 4 + 1 + 3 + 4 // magic, version, reserved, CRC32C
)

// MarshalLegacyState encodes s in the legacy layout (for tests and tools).
func MarshalLegacyState(s LegacyState) []byte {
	b := binary.LittleEndian.AppendUint32(nil, legacyMagic)
	b = append(b, legacyVersion, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, 0) // CRC, below
	b = binary.LittleEndian.AppendUint64(b, s.Applied)
	b = binary.LittleEndian.AppendUint64(b, s.Incarnation)
	b = append(b, s.View.Marshal()...)
	binary.LittleEndian.PutUint32(b[8:], proto.CRC32C(b[legacyHeader:]))
	return b
}

// ParseLegacyState decodes the contents of DATA-DIR/state. Every error
// wraps ErrLegacyState; the caller must not start on a file it refuses,
// so nothing is lost.
func ParseLegacyState(b []byte) (LegacyState, error) {
	var s LegacyState
	if len(b) < legacyHeader+16 {
		return s, fmt.Errorf("%w: %d bytes, too short", ErrLegacyState, len(b))
	}
	if m := binary.LittleEndian.Uint32(b); m != legacyMagic {
		return s, fmt.Errorf("%w: bad magic %#08x", ErrLegacyState, m)
	}
	if b[4] != legacyVersion {
		return s, fmt.Errorf("%w: version %d, this node knows %d", ErrLegacyState, b[4], legacyVersion)
	}
	if b[5]|b[6]|b[7] != 0 {
		return s, fmt.Errorf("%w: reserved bytes are not zero", ErrLegacyState)
	}
	if got, want := binary.LittleEndian.Uint32(b[8:]), proto.CRC32C(b[legacyHeader:]); got != want {
		return s, fmt.Errorf("%w: CRC %#08x, computed %#08x", ErrLegacyState, got, want)
	}
	s.Applied = binary.LittleEndian.Uint64(b[legacyHeader:])
	s.Incarnation = binary.LittleEndian.Uint64(b[legacyHeader+8:])
	v, err := ParseView(b[legacyHeader+16:])
	if err != nil {
		return s, fmt.Errorf("%w: %w", ErrLegacyState, err)
	}
	if s.Incarnation == 0 || v.Instance > s.Applied {
		return s, fmt.Errorf("%w: incarnation %d, view %d after applied %d", ErrLegacyState, s.Incarnation, v.Instance, s.Applied)
	}
	s.View = v
	return s, nil
}

// ImportLegacy puts a legacy state's view into the machine, once: the
// machine's state becomes the view as of s.Applied, and entries at or
// below s.Applied that the log delivers again are skipped by Apply and
// accepted by CheckConf, as the agent that wrote the file did. It returns
// s.Incarnation, which is local and not kept by the machine, and whether it
// imported: a machine that already holds state (the import committed and
// the file was not yet removed, say) keeps it, and the call only reports
// the incarnation. The legacy file knows no tombstones and no cluster id;
// the controller proposes an id, and lives removed from now on are kept.
func (m *Machine) ImportLegacy(tx rsm.Tx, s LegacyState) (incarnation uint64, imported bool, err error) {
	if tx.Get(keyView) != nil || tx.Get(keyFloor) != nil {
		return s.Incarnation, false, nil
	}
	if err := tx.Put(keyView, s.View.Marshal()); err != nil {
		return 0, false, err
	}
	if err := tx.Put(keyFloor, binary.LittleEndian.AppendUint64(nil, s.Applied)); err != nil {
		return 0, false, err
	}
	return s.Incarnation, true, m.publish(tx)
}
