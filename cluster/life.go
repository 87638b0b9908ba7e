package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/internal/durable"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/rsm"
)

// Specification constants: the data directory's files (LIFE.md).
const (
	LogFile  = "log.db" // the cluster log and every machine's state
	LifeFile = "life"   // this life's incarnation
)

// ErrLife is wrapped by every error about a bad life file.
var ErrLife = errors.New("cluster: bad life file")

// life is one copy of the log: an incarnation and what runs on it. It is
// made by openLife and ended by close; between the two only the driver
// replaces it.
type life struct {
	inc    uint64
	store  *clusterlog.Storage
	node   *clusterlog.Node
	mux    *rsm.Mux
	member *memberMachine
	// replayed is the highest cluster-wide event an earlier life published:
	// entries this life applies up to it are not told again.
	replayed uint64

	closeOnce sync.Once
}

// memberMachine is the membership machine, keeping what its applied
// changes mean locally: the applier hands them on once the transaction
// they were applied in has committed, and the driver takes them then.
type memberMachine struct {
	*membership.Machine

	mu       sync.Mutex          // guards the fields below
	pending  []membership.Change // applied, not yet committed
	restored uint64              // index of a snapshot restored, not yet committed
	ready    []membership.Change // committed, not yet taken by the driver
}

func (m *memberMachine) Apply(tx rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	res, ch, err := m.ApplyChange(tx, e)
	if err == nil && ch.Index != 0 {
		m.mu.Lock()
		m.pending = append(m.pending, ch)
		m.mu.Unlock()
	}
	return res, err
}

func (m *memberMachine) Restore(tx rsm.Tx, r io.Reader) error {
	ch, err := m.RestoreChange(tx, r)
	if err == nil {
		m.mu.Lock()
		m.pending = append(m.pending, ch)
		m.mu.Unlock()
	}
	return err
}

func (m *memberMachine) restoredAt(index uint64) {
	m.mu.Lock()
	m.restored = index
	m.mu.Unlock()
}

// commit moves the changes applied so far to the driver's list and
// returns them, and the index of a snapshot restored, if any.
func (m *memberMachine) commit() ([]membership.Change, uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	chs, restored := m.pending, m.restored
	m.pending, m.restored = nil, 0
	m.ready = append(m.ready, chs...)
	return chs, restored
}

// take returns and forgets the committed changes.
func (m *memberMachine) take() []membership.Change {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.ready
	m.ready = nil
	return p
}

// readLife returns the incarnation recorded in dir; ok is false when there
// is none.
func readLife(dir string) (inc uint64, ok bool, err error) {
	b, err := os.ReadFile(filepath.Join(dir, LifeFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("cluster: %w", err)
	}
	inc, err = parseLife(b)
	return inc, err == nil, err
}

// parseLife parses the life file: the incarnation in lower-case hex and a
// newline (LIFE.md).
func parseLife(b []byte) (uint64, error) {
	s, found := strings.CutSuffix(string(b), "\n")
	if !found || len(s) == 0 || len(s) > 16 || strings.ToLower(s) != s || s[0] == '0' {
		return 0, fmt.Errorf("%w: want up to 16 lower-case hex digits without leading zeros and a newline, have %q", ErrLife, b)
	}
	inc, err := strconv.ParseUint(s, 16, 64)
	if err != nil || inc == 0 {
		return 0, fmt.Errorf("%w: %q is not a non-zero incarnation", ErrLife, s)
	}
	return inc, nil
}

func formatLife(inc uint64) []byte { return []byte(strconv.FormatUint(inc, 16) + "\n") }

// writeLife records inc atomically and durably: a file in the same
// directory, fsynced, renamed over the old one, and the directory fsynced.
func writeLife(dir string, inc uint64) error {
	path := filepath.Join(dir, LifeFile)
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("cluster: write life: %w", err)
	}
	_, err = f.Write(formatLife(inc))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = durable.SyncDir(dir)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("cluster: write life: %w", err)
	}
	return nil
}

// newIncarnation draws a random incarnation, never 0.
func newIncarnation() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, fmt.Errorf("cluster: incarnation: %w", err)
	}
	return binary.LittleEndian.Uint64(b[:])>>1 | 1, nil
}
