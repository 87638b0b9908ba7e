package event

import "fmt"

// GroupMember is one member of a group: one process connection on one node.
type GroupMember struct {
	Node   uint64 // node id
	Member uint64 // member id, unique cluster-wide, never reused
	Pid    uint32 // the member process (0 if unknown)
	Name   string // optional member name, ≤ 255 bytes
	BornOn uint64 // Seq of its JOIN to this group (relative age: smaller is older); 0 outside a group
}

// LeaveReason says why a member left a group.
type LeaveReason uint8

// Leave reasons; the numbers are on the wire.
const (
	LeaveNone     LeaveReason = 0
	LeaveLeft     LeaveReason = 1 // the member left
	LeaveProcDown LeaveReason = 2 // its connection ended (process exit, kill -9, agent restart)
	LeaveNodeDown LeaveReason = 3 // its node left the view
	LeaveBehind   LeaveReason = 4 // it fell behind and did not resume in time
)

func (r LeaveReason) String() string {
	switch r {
	case LeaveNone:
		return "none"
	case LeaveLeft:
		return "left"
	case LeaveProcDown:
		return "process down"
	case LeaveNodeDown:
		return "node down"
	case LeaveBehind:
		return "behind"
	}
	return fmt.Sprintf("LeaveReason(%d)", uint8(r))
}
