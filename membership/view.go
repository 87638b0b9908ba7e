package membership

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/corralhq/corral/proto"
)

// Member is a node of a view.
type Member struct {
	ID          uint64
	Incarnation uint64 // which life of the node id (see Command)
	Name        string
	Addr        string
	BornOn      uint64 // instance of the view in which it joined
	Voter       bool
}

// View is the agreed membership: the same instance means the same members
// on every node.
type View struct {
	Instance uint64
	Members  []Member // in age order: (BornOn, ID)
}

// HasLife reports whether id is a member in the given incarnation.
func (v *View) HasLife(id, incarnation uint64) bool {
	m, ok := v.Member(id)
	return ok && m.Incarnation == incarnation
}

// Has reports whether id is a member.
func (v *View) Has(id uint64) bool { return v.index(id) >= 0 }

// Member returns the member with id.
func (v *View) Member(id uint64) (Member, bool) {
	if i := v.index(id); i >= 0 {
		return v.Members[i], true
	}
	return Member{}, false
}

func (v *View) index(id uint64) int {
	return slices.IndexFunc(v.Members, func(m Member) bool { return m.ID == id })
}

// Voters returns the ids of the voting members.
func (v *View) Voters() []uint64 {
	var ids []uint64
	for _, m := range v.Members {
		if m.Voter {
			ids = append(ids, m.ID)
		}
	}
	return ids
}

// Clone returns a deep copy, safe to hand to another goroutine.
func (v View) Clone() View {
	v.Members = slices.Clone(v.Members)
	return v
}

// Change is what applying one command (or restoring a snapshot) did.
type Change struct {
	Index    uint64 // the entry applied; for a restore, the view's instance
	View     View   // the view after it
	Joined   []Member
	Left     []Member
	Promoted []Member // PROMOTE: same members, one more voter; no NEWVIEW
	Cause    Cause    // LEAVE: why the Left members went
	// ClusterID is set when the entry named the cluster (or the restored
	// snapshot has an id).
	ClusterID ClusterID
	Restored  bool // the view came from a snapshot; Joined and Left are the difference
	// ConfMismatch reports that raft's configuration after the entry is not
	// the view's voters and learners. CheckConf prevents it; a cluster whose
	// log was written before the check may show it, and the driver logs it.
	ConfMismatch bool
}

// LifeEvent is what a change means to one life of the local node.
type LifeEvent uint8

// Life events.
const (
	LifeNone    LifeEvent = iota
	LifeJoined            // this life became a member
	LifeLeft              // this life left gracefully (corral leave)
	LifeRemoved           // this life was removed: failed, removed, or gone from a restored view
)

func (l LifeEvent) String() string {
	return [...]string{"none", "joined", "left", "removed"}[l]
}

// Life reports what ch means for life inc of node self. Only the removal
// of the current life is an eviction; an earlier life's removal, replayed
// after the node joined again, is history (LifeNone).
func (ch Change) Life(self, inc uint64) LifeEvent {
	for _, m := range ch.Left {
		if m.ID == self && m.Incarnation == inc {
			if ch.Cause == CauseGraceful {
				return LifeLeft
			}
			return LifeRemoved
		}
	}
	for _, m := range ch.Joined {
		if m.ID == self && m.Incarnation == inc {
			return LifeJoined
		}
	}
	return LifeNone
}

// Apply applies a committed command at log index. A command that changes
// nothing — a JOIN of a member (in any incarnation: the leader removes an
// earlier life first), a LEAVE of a non-member or of an earlier life —
// returns ok=false,
// and the view keeps its instance; every node judges alike since the
// decision depends only on the view and the command.
func (v *View) Apply(index uint64, c Command) (ch Change, ok bool) {
	if index <= v.Instance {
		panic(fmt.Sprintf("membership: entry %d applied to view %d", index, v.Instance))
	}
	switch c.Op {
	case OpJoin:
		if v.Has(c.ID) {
			return Change{}, false
		}
		m := Member{ID: c.ID, Incarnation: c.Incarnation, Name: c.Name, Addr: c.Addr, BornOn: index, Voter: c.Voter}
		v.Members = append(v.Members, m) // born last: already in age order
		ch.Joined = []Member{m}
	case OpLeave:
		i := v.index(c.ID)
		if i < 0 || c.Incarnation != 0 && v.Members[i].Incarnation != c.Incarnation {
			return Change{}, false // not a member, or a removal of an earlier life
		}
		ch.Left = []Member{v.Members[i]}
		v.Members = slices.Delete(v.Members, i, i+1)
		ch.Cause = c.Cause
	case OpPromote:
		i := v.index(c.ID)
		if i >= 0 && !v.Members[i].Voter && (c.Incarnation == 0 || v.Members[i].Incarnation == c.Incarnation) {
			v.Members[i].Voter = true
		}
		return Change{}, false // same members: no new view
	default:
		return Change{}, false
	}
	v.Instance = index
	ch.View = v.Clone()
	return ch, true
}

// Specification constants: view encoding (SPEC.md, "View").
const (
	viewVersion = 1
	maxMembers  = 4096
)

// Marshal encodes v for snapshots.
func (v *View) Marshal() []byte {
	b := []byte{viewVersion}
	b = binary.LittleEndian.AppendUint64(b, v.Instance)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(v.Members)))
	for _, m := range v.Members {
		var flags byte
		if m.Voter {
			flags = 1
		}
		b = binary.LittleEndian.AppendUint64(b, m.ID)
		b = binary.LittleEndian.AppendUint64(b, m.Incarnation)
		b = binary.LittleEndian.AppendUint64(b, m.BornOn)
		b = append(b, flags)
		b = proto.AppendString16(b, m.Name)
		b = proto.AppendString16(b, m.Addr)
	}
	return b
}

// ParseView decodes a view written by Marshal.
func ParseView(b []byte) (View, error) {
	r := proto.NewReader(b, "membership view")
	var v View
	if ver := r.U8("version"); ver != viewVersion {
		r.Fail(proto.CodeVersion, "view version %d, this node knows %d", ver, viewVersion)
	}
	v.Instance = r.U64("instance")
	n := int(r.U32("count"))
	if n > maxMembers || n*29 > r.Len() {
		r.Fail(proto.CodeField, "member count %d does not fit", n)
		return v, r.Err()
	}
	for i := 0; i < n; i++ {
		m := Member{ID: r.U64("id"), Incarnation: r.U64("incarnation"), BornOn: r.U64("born-on")}
		flags := r.U8("flags")
		m.Voter = flags&1 != 0
		m.Name = r.String16(MaxNameLen, "name")
		m.Addr = r.String16(MaxAddrLen, "addr")
		if flags&^1 != 0 || m.ID == 0 || m.BornOn > v.Instance {
			r.Fail(proto.CodeField, "member %d: flags %#02x id %d born-on %d in view %d", i, flags, m.ID, m.BornOn, v.Instance)
		}
		v.Members = append(v.Members, m)
	}
	return v, r.Err()
}
