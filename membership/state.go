package membership

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Life is one life of a node id: the pair that raft and the view know a
// member by.
type Life struct {
	ID          uint64
	Incarnation uint64
}

// Tombstone records that a life was removed, and by which entry: that life
// is never a member again.
type Tombstone struct {
	Life
	RemovedAt uint64 // log index of the LEAVE that removed it
}

// State is the membership machine's state as of one applied entry. A State
// handed out by Machine.State is immutable: it is replaced, never changed,
// so any goroutine may read it without a lock. Do not modify its View's
// Members; Clone the view to change it.
type State struct {
	View      View
	ClusterID ClusterID
	removed   map[Life]uint64 // tombstones: life → index of its LEAVE
}

// Removed reports whether life inc of node id was removed: a JOIN of it is
// refused, and the controller never proposes one.
func (s *State) Removed(id, inc uint64) bool {
	if s == nil {
		return false
	}
	_, ok := s.removed[Life{id, inc}]
	return ok
}

// Tombstones returns the removed lives in (id, incarnation) order.
func (s *State) Tombstones() []Tombstone {
	if s == nil {
		return nil
	}
	out := make([]Tombstone, 0, len(s.removed))
	for _, l := range slices.SortedFunc(maps.Keys(s.removed), cmpLife) {
		out = append(out, Tombstone{l, s.removed[l]})
	}
	return out
}

func cmpLife(a, b Life) int {
	if a.ID != b.ID {
		return cmpU64(a.ID, b.ID)
	}
	return cmpU64(a.Incarnation, b.Incarnation)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster %s view %d:", s.ClusterID, s.View.Instance)
	for _, m := range s.View.Members {
		role := "learner"
		if m.Voter {
			role = "voter"
		}
		fmt.Fprintf(&b, " %d/%#x(%s,born %d)", m.ID, m.Incarnation, role, m.BornOn)
	}
	if ts := s.Tombstones(); len(ts) > 0 {
		b.WriteString(" removed:")
		for _, t := range ts {
			fmt.Fprintf(&b, " %d/%#x@%d", t.ID, t.Incarnation, t.RemovedAt)
		}
	}
	return b.String()
}

// Specification constants: snapshot layout (SPEC.md, "Snapshot").
const (
	snapshotVersion = 1
	maxViewBytes    = 4 << 20 // far above maxMembers full members
	maxTombstones   = 1 << 24
	tombstoneSize   = 24
)

// writeSnapshot writes s in the snapshot layout.
func writeSnapshot(w io.Writer, view View, cluster ClusterID, tombs func(fn func(Tombstone) error) error, count int) error {
	vb := view.Marshal()
	hdr := make([]byte, 0, 1+8+4)
	hdr = append(hdr, snapshotVersion)
	hdr = binary.LittleEndian.AppendUint64(hdr, uint64(cluster))
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(vb)))
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("membership: write snapshot: %w", err)
	}
	if _, err := w.Write(vb); err != nil {
		return fmt.Errorf("membership: write snapshot: %w", err)
	}
	if _, err := w.Write(binary.LittleEndian.AppendUint32(nil, uint32(count))); err != nil {
		return fmt.Errorf("membership: write snapshot: %w", err)
	}
	n := 0
	var buf [tombstoneSize]byte
	err := tombs(func(t Tombstone) error {
		n++
		binary.LittleEndian.PutUint64(buf[0:], t.ID)
		binary.LittleEndian.PutUint64(buf[8:], t.Incarnation)
		binary.LittleEndian.PutUint64(buf[16:], t.RemovedAt)
		if _, err := w.Write(buf[:]); err != nil {
			return fmt.Errorf("membership: write snapshot: %w", err)
		}
		return nil
	})
	if err == nil && n != count {
		err = fmt.Errorf("membership: write snapshot: %d tombstones counted, %d written", count, n)
	}
	return err
}

// readSnapshot decodes a snapshot, calling tomb for each tombstone in
// order; it checks that nothing follows the last one.
func readSnapshot(r io.Reader, tomb func(Tombstone) error) (View, ClusterID, error) {
	br := bufio.NewReader(r)
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrSnapshot, fmt.Sprintf(format, args...))
	}
	full := func(b []byte, what string) error {
		if _, err := io.ReadFull(br, b); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return bad("truncated at %s", what)
			}
			return fmt.Errorf("membership: read snapshot: %w", err)
		}
		return nil
	}
	var cluster ClusterID
	var hdr [1 + 8 + 4]byte
	if err := full(hdr[:], "header"); err != nil {
		return View{}, cluster, err
	}
	if hdr[0] != snapshotVersion {
		return View{}, cluster, bad("version %d, this node knows %d", hdr[0], snapshotVersion)
	}
	cluster = ClusterID(binary.LittleEndian.Uint64(hdr[1:9]))
	n := binary.LittleEndian.Uint32(hdr[9:])
	if n > maxViewBytes {
		return View{}, cluster, bad("view of %d bytes", n)
	}
	vb := make([]byte, n)
	if err := full(vb, "view"); err != nil {
		return View{}, cluster, err
	}
	view, err := ParseView(vb)
	if err != nil {
		return View{}, cluster, fmt.Errorf("%w: %w", ErrSnapshot, err)
	}
	var cb [4]byte
	if err := full(cb[:], "tombstone count"); err != nil {
		return View{}, cluster, err
	}
	count := binary.LittleEndian.Uint32(cb[:])
	if count > maxTombstones {
		return View{}, cluster, bad("%d tombstones", count)
	}
	var prev Life
	var tb [tombstoneSize]byte
	for i := range count {
		if err := full(tb[:], fmt.Sprintf("tombstone %d", i)); err != nil {
			return View{}, cluster, err
		}
		t := Tombstone{Life{binary.LittleEndian.Uint64(tb[0:]), binary.LittleEndian.Uint64(tb[8:])}, binary.LittleEndian.Uint64(tb[16:])}
		switch {
		case t.ID == 0 || t.Incarnation == 0 || t.RemovedAt == 0 || t.RemovedAt > view.Instance:
			return View{}, cluster, bad("tombstone %d: id %d incarnation %d removed at %d", i, t.ID, t.Incarnation, t.RemovedAt)
		case i > 0 && cmpLife(prev, t.Life) >= 0:
			return View{}, cluster, bad("tombstone %d out of order", i)
		case view.HasLife(t.ID, t.Incarnation):
			return View{}, cluster, bad("tombstone %d is a member", i)
		}
		prev = t.Life
		if err := tomb(t); err != nil {
			return View{}, cluster, err
		}
	}
	if _, err := br.ReadByte(); err == nil {
		return View{}, cluster, bad("bytes after the last tombstone")
	} else if !errors.Is(err, io.EOF) {
		return View{}, cluster, fmt.Errorf("membership: read snapshot: %w", err)
	}
	return view, cluster, nil
}
