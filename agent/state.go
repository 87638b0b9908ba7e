package agent

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/proto"
)

// nodeState is what the agent keeps of the cluster log's effects: the view
// as of Applied, and this node's incarnation. It is written, fsynced, before
// Apply returns, so an entry the log redelivers after a crash is recognised
// by its index and applied once. The layout is in STATE.md.
type nodeState struct {
	Applied     uint64
	Incarnation uint64
	View        membership.View
}

// Specification constants: the state file (STATE.md).
const (
	stateMagic   uint32 = 0x41545343 // "CSTA"
	stateVersion        = 1
	stateFile           = "state"
	stateHeader         = 4 + 1 + 3 + 4 // magic, version, reserved, CRC32C
)

// ErrState is wrapped by every error about a bad state file.
var ErrState = errors.New("agent: bad state file")

func (s *nodeState) marshal() []byte {
	b := binary.LittleEndian.AppendUint32(nil, stateMagic)
	b = append(b, stateVersion, 0, 0, 0)
	b = binary.LittleEndian.AppendUint32(b, 0) // CRC, below
	b = binary.LittleEndian.AppendUint64(b, s.Applied)
	b = binary.LittleEndian.AppendUint64(b, s.Incarnation)
	b = append(b, s.View.Marshal()...)
	binary.LittleEndian.PutUint32(b[8:], proto.CRC32C(b[stateHeader:]))
	return b
}

func parseState(b []byte) (nodeState, error) {
	var s nodeState
	if len(b) < stateHeader+16 {
		return s, fmt.Errorf("%w: %d bytes, too short", ErrState, len(b))
	}
	if m := binary.LittleEndian.Uint32(b); m != stateMagic {
		return s, fmt.Errorf("%w: bad magic %#08x", ErrState, m)
	}
	if b[4] != stateVersion {
		return s, fmt.Errorf("%w: version %d, this agent knows %d", ErrState, b[4], stateVersion)
	}
	if b[5]|b[6]|b[7] != 0 {
		return s, fmt.Errorf("%w: reserved bytes are not zero", ErrState)
	}
	if got, want := binary.LittleEndian.Uint32(b[8:]), proto.CRC32C(b[stateHeader:]); got != want {
		return s, fmt.Errorf("%w: CRC %#08x, computed %#08x", ErrState, got, want)
	}
	s.Applied = binary.LittleEndian.Uint64(b[stateHeader:])
	s.Incarnation = binary.LittleEndian.Uint64(b[stateHeader+8:])
	v, err := membership.ParseView(b[stateHeader+16:])
	if err != nil {
		return s, fmt.Errorf("%w: %w", ErrState, err)
	}
	if s.Incarnation == 0 || v.Instance > s.Applied {
		return s, fmt.Errorf("%w: incarnation %d, view %d after applied %d", ErrState, s.Incarnation, v.Instance, s.Applied)
	}
	s.View = v
	return s, nil
}

// readState loads the state file of dir; ok is false if there is none.
func readState(dir string) (s nodeState, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if errors.Is(err, os.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return s, false, fmt.Errorf("agent: %w", err)
	}
	s, err = parseState(b)
	return s, err == nil, err
}

// writeState replaces the state file atomically: a crash leaves the old
// file or the new one, never a mix.
func writeState(dir string, s *nodeState) error {
	path := filepath.Join(dir, stateFile)
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("agent: write state: %w", err)
	}
	if _, err := f.Write(s.marshal()); err != nil {
		f.Close()
		return fmt.Errorf("agent: write state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("agent: write state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("agent: write state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("agent: write state: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("agent: write state: %w", err)
	}
	defer d.Close()
	return d.Sync()
}

// newIncarnation draws the number of a new life of this node.
func newIncarnation() (uint64, error) {
	var buf [8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return 0, fmt.Errorf("agent: incarnation: %w", err)
	}
	return binary.LittleEndian.Uint64(buf[:]) | 1, nil
}
