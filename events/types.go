package events

import "github.com/corralhq/corral/types/event"

// The event data types live in the leaf package types/event, so the wire
// codec and tools can use them without the dispatcher. These aliases keep
// them part of this package's API: events.Event and event.Event are one
// type.
type (
	// Event is one cluster event; see event.Event.
	Event = event.Event
	// Data is the class-specific part of an event; see event.Data.
	Data = event.Data
	// Node identifies a cluster node; see event.Node.
	Node = event.Node
	// Membership is the data of membership events; see event.Membership.
	Membership = event.Membership
	// Interface is a local communication interface; see event.Interface.
	Interface = event.Interface
	// Peer is a known node and its connection state; see event.Peer.
	Peer = event.Peer
	// Connectivity is the data of connectivity events; see event.Connectivity.
	Connectivity = event.Connectivity
	// Group is the data of group messaging events; see event.Group.
	Group = event.Group
	// GroupMember is one member of a group; see event.GroupMember.
	GroupMember = event.GroupMember
	// LeaveReason says why a member left a group; see event.LeaveReason.
	LeaveReason = event.LeaveReason
	// Class is an event class (oc_ev_class_t); see event.Class.
	Class = event.Class
	// Descriptor is an event descriptor (oc_ed_t); see event.Descriptor.
	Descriptor = event.Descriptor
)

// Specification constants: the event descriptor layout of seed §4.1.
const (
	ClassShift = event.ClassShift // OC_EV_CLASS_SHIFT
	EventShift = event.EventShift // OC_EV_EVENT_SHIFT
	EventMask  = event.EventMask  // OC_EV_EVENT_MASK
)

// Event classes (seed §4.1).
const (
	ClassComm  = event.ClassComm  // OC_EV_COMM_CLASS
	ClassMemb  = event.ClassMemb  // OC_EV_MEMB_CLASS
	ClassGroup = event.ClassGroup // OC_EV_GROUP_CLASS

	numClasses = int(ClassGroup)
)

// Connectivity events.
const (
	CSInvalid         = event.CSInvalid
	CSInterfaceAdded  = event.CSInterfaceAdded
	CSInterfaceFailed = event.CSInterfaceFailed
	CSNodeEligible    = event.CSNodeEligible
	CSNodeIneligible  = event.CSNodeIneligible
	CSP2PEstablished  = event.CSP2PEstablished
	CSP2PLost         = event.CSP2PLost
)

// Membership events.
const (
	MSInvalid   = event.MSInvalid
	MSNewView   = event.MSNewView
	MSSuspect   = event.MSSuspect
	MSRecovered = event.MSRecovered
	MSShutdown  = event.MSShutdown
	MSEvicted   = event.MSEvicted
)

// Group messaging events.
const (
	GSInvalid   = event.GSInvalid
	GSJoin      = event.GSJoin
	GSLeave     = event.GSLeave
	GSBroadcast = event.GSBroadcast
	GSMulticast = event.GSMulticast
	GSUnicast   = event.GSUnicast
	GSReply     = event.GSReply
)

// Leave reasons of a group LEAVE; see event.LeaveReason.
const (
	LeaveNone     = event.LeaveNone
	LeaveLeft     = event.LeaveLeft
	LeaveProcDown = event.LeaveProcDown
	LeaveNodeDown = event.LeaveNodeDown
	LeaveBehind   = event.LeaveBehind
)

// MakeDescriptor is OC_EV_SET_CLASS; see event.MakeDescriptor.
func MakeDescriptor(c Class, ev uint32) Descriptor { return event.MakeDescriptor(c, ev) }

// ParseClass parses a class name, ignoring case; see event.ParseClass.
func ParseClass(s string) (Class, error) { return event.ParseClass(s) }

// ParseDescriptor parses an event name, ignoring case; see
// event.ParseDescriptor. It also accepts the INVALID names, which Publish
// refuses.
func ParseDescriptor(s string) (Descriptor, error) { return event.ParseDescriptor(s) }
