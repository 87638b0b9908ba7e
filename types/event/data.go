package event

import (
	"fmt"
	"net/netip"
)

// Event is one cluster event as callbacks receive it and producers publish
// it. The seed passes (descriptor, size, data); Seq is corral's.
type Event struct {
	// Seq is the event's cluster-wide sequence number: the index of the
	// Raft log entry it was applied from, the same on every node, so a
	// callback can tell events apart and dedupe across restarts. Zero marks
	// a local-only event (e.g. INTERFACE_FAILED) that has no place in the
	// cluster-wide order. Non-zero Seqs strictly increase; gaps are normal.
	Seq uint64
	// Desc says which event this is; its class selects the callback.
	Desc Descriptor
	// Data is the class-specific payload: *Connectivity, *Membership or
	// *Group matching Desc.Class(), or nil. It is shared by every callback
	// of the event: treat it as read-only. It stays valid until
	// CallbackDone (seed §3.2) and, being garbage-collected, after it too.
	Data Data
}

func (e Event) String() string { return fmt.Sprintf("%v seq=%d", e.Desc, e.Seq) }

// Membership returns e.Data as *Membership, or nil.
func (e Event) Membership() *Membership { m, _ := e.Data.(*Membership); return m }

// Connectivity returns e.Data as *Connectivity, or nil.
func (e Event) Connectivity() *Connectivity { c, _ := e.Data.(*Connectivity); return c }

// Group returns e.Data as *Group, or nil.
func (e Event) Group() *Group { g, _ := e.Data.(*Group); return g }

// Data is the class-specific part of an event. Only this package's types
// implement it, so a type switch over them is exhaustive.
type Data interface {
	// Class is the event class whose events carry this data.
	Class() Class
	eventData()
}

// Node identifies a cluster node.
type Node struct {
	ID   uint64         // cluster-wide node ID, never reused
	Name string         // node (host) name
	Addr netip.AddrPort // the node's agent address; zero if unknown
	// BornOn is the view Instance in which the node became a member: the
	// seed's "indication of relative age", smaller is older. Zero outside
	// membership events.
	BornOn uint64
}

// Membership is the data of membership events (oc_ev_membership_t): the
// consensus view the event is about. NEWVIEW carries the new view, SUSPECT
// and RECOVERED the view in force, EVICTED the view that left the local node
// out, SHUTDOWN the last view or nil.
type Membership struct {
	// Instance numbers the view; it grows with every NEWVIEW, the same on
	// every member.
	Instance uint64
	// Members is the consensus list of members, oldest first (BornOn, then
	// ID).
	Members []Node
	// Joined are the Members that were not in the previous view.
	Joined []Node
	// Left are the nodes of the previous view that are not in this one.
	Left []Node
}

// Member returns the member with the given ID.
func (m *Membership) Member(id uint64) (Node, bool) {
	for _, n := range m.Members {
		if n.ID == id {
			return n, true
		}
	}
	return Node{}, false
}

// Interface is a local communication interface and its health.
type Interface struct {
	Name string       // e.g. "eth0"
	Addr netip.Prefix // address used for cluster traffic
	Up   bool         // usable for cluster traffic
}

// Peer is a known node and its current connection state.
type Peer struct {
	Node      Node
	Eligible  bool // may be a member of the cluster
	Connected bool // a point-to-point link to it is up
}

// Connectivity is the data of connectivity events. The seed requires "list of
// known interfaces and health" and "list of known nodes and current
// connection state"; both come with every event, after the change, so a
// callback needs no second query that could race with the next event.
type Connectivity struct {
	// Interface is the subject of INTERFACE_ADDED and INTERFACE_FAILED.
	Interface Interface
	// Nodes are the subjects of NODE_ELIGIBLE and NODE_INELIGIBLE (one or
	// more) and of P2P_ESTABLISHED and P2P_LOST (exactly one).
	Nodes []Node
	// Interfaces lists every known local interface.
	Interfaces []Interface
	// Peers lists every known node.
	Peers []Peer
}

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

// Leave reasons. The values travel on the wire (proto/client): do not
// renumber them.
const (
	LeaveNone     LeaveReason = 0
	LeaveLeft     LeaveReason = 1 // the member left
	LeaveProcDown LeaveReason = 2 // its connection ended (process exit, kill -9, agent restart)
	LeaveNodeDown LeaveReason = 3 // its node left the view
	LeaveBehind   LeaveReason = 4 // it fell behind and did not resume in time
)

var leaveNames = [...]string{LeaveNone: "none", LeaveLeft: "left", LeaveProcDown: "process down", LeaveNodeDown: "node down", LeaveBehind: "behind"}

// Valid reports whether r is one of the defined reasons (LeaveNone included).
func (r LeaveReason) Valid() bool { return int(r) < len(leaveNames) }

func (r LeaveReason) String() string {
	if r.Valid() {
		return leaveNames[r]
	}
	return fmt.Sprintf("reason %d", uint8(r))
}

// Group is the data of group messaging events: JOIN and LEAVE change a
// group's membership, BROADCAST, MULTICAST, UNICAST and REPLY carry a
// message.
type Group struct {
	Name    string        // the group (BROADCAST: the sender's label, may be empty)
	From    GroupMember   // JOIN/LEAVE: the member that joined or left; messages: the sender
	Reason  LeaveReason   // LEAVE only
	Members []GroupMember // JOIN/LEAVE: the group after the change, oldest first (BornOn, Member)
	Target  uint64        // UNICAST, REPLY: the member addressed
	MsgID   uint64        // the sender's own id for the message (opaque to corral)
	ReplyTo uint64        // REPLY: the Seq of the message answered
	Payload []byte
	// To are the member ids the event is delivered to, sorted ascending: the agent's
	// filter reads it. Not on the wire. Ignored for BROADCAST (every group-class subscriber).
	To []uint64
}

// Class implements Data.
func (*Connectivity) Class() Class { return ClassComm }

// Class implements Data.
func (*Membership) Class() Class { return ClassMemb }

// Class implements Data.
func (*Group) Class() Class { return ClassGroup }

func (*Connectivity) eventData() {}
func (*Membership) eventData()   {}
func (*Group) eventData()        {}
