package event

import (
	"fmt"
	"strings"
)

// Specification constants: the event descriptor layout of seed §4.1.
const (
	// ClassShift is OC_EV_CLASS_SHIFT: the class sits in the upper bits.
	ClassShift = 22
	// EventShift is the seed's OC_EV_EVENT_SHIFT. Despite its name it is
	// the width of the class field (32-22); nothing is shifted by it.
	EventShift = 10
	// EventMask is OC_EV_EVENT_MASK, the lower 22 bits holding the event.
	EventMask = 1<<ClassShift - 1
)

// Class is an event class (oc_ev_class_t), the upper 10 bits of a Descriptor.
type Class uint32

// Event classes (seed §4.1). The seed's example enum spells the membership
// class OC_EV_MS_CLASS; that is a typo for OC_EV_MEMB_CLASS.
const (
	ClassComm  Class = 1 // OC_EV_COMM_CLASS: connectivity events
	ClassMemb  Class = 2 // OC_EV_MEMB_CLASS: membership events
	ClassGroup Class = 3 // OC_EV_GROUP_CLASS: group messaging events

	numClasses = 3
)

// Valid reports whether c is one of the three classes of the seed.
func (c Class) Valid() bool { return c >= ClassComm && c <= ClassGroup }

var classNames = [numClasses + 1][2]string{
	ClassComm:  {"COMM", "OC_EV_COMM_CLASS"},
	ClassMemb:  {"MEMB", "OC_EV_MEMB_CLASS"},
	ClassGroup: {"GROUP", "OC_EV_GROUP_CLASS"},
}

// String returns "COMM", "MEMB" or "GROUP", or "Class(n)" for others.
func (c Class) String() string {
	if !c.Valid() {
		return fmt.Sprintf("Class(%d)", uint32(c))
	}
	return classNames[c][0]
}

// CName returns the seed's C name, e.g. "OC_EV_MEMB_CLASS".
func (c Class) CName() string {
	if !c.Valid() {
		return ""
	}
	return classNames[c][1]
}

// ParseClass parses a name given by String or CName, ignoring case.
func ParseClass(s string) (Class, error) {
	for c := ClassComm; c <= ClassGroup; c++ {
		if strings.EqualFold(s, classNames[c][0]) || strings.EqualFold(s, classNames[c][1]) {
			return c, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrBadClass, s)
}

// Descriptor is an event descriptor (oc_ed_t): unique across all classes,
// class in the upper 10 bits, event in the lower 22.
type Descriptor uint32

// MakeDescriptor is OC_EV_SET_CLASS. Like the C macro it truncates: the
// event to 22 bits and the class to the 10 bits left of it.
func MakeDescriptor(c Class, event uint32) Descriptor {
	return Descriptor(uint32(c)<<ClassShift | event&EventMask)
}

// Class is OC_EV_GET_CLASS.
func (d Descriptor) Class() Class { return Class(uint32(d) >> ClassShift) }

// Event is OC_EV_GET_EVENT: the event number within its class.
func (d Descriptor) Event() uint32 { return uint32(d) & EventMask }

// Connectivity events. The seed lists them only in prose (§2.1,
// "Connectivity Events"); the names are corral's, one per line of that list,
// with the CS prefix of the seed's my_cs_events example.
const (
	CSInvalid         = Descriptor(ClassComm<<ClassShift | iota) // OC_EV_CS_INVALID
	CSInterfaceAdded                                             // (local) comm interface added
	CSInterfaceFailed                                            // (local) comm interface failed
	CSNodeEligible                                               // node(s) added to cluster eligibility
	CSNodeIneligible                                             // node(s) removed from cluster eligibility
	CSP2PEstablished                                             // p2p connection established with new node
	CSP2PLost                                                    // p2p connection lost
)

// Membership events: the seed's example enum oc_ms_event_t (§4.1), same
// order and values. MSEvicted is corral's, appended so that the seed's
// values do not move.
const (
	MSInvalid   = Descriptor(ClassMemb<<ClassShift | iota) // OC_EV_MS_INVALID
	MSNewView                                              // agreement to include and/or drop node(s)
	MSSuspect                                              // membership uncertain due to communication loss
	MSRecovered                                            // communication regained after transient uncertainty
	MSShutdown                                             // the service is shutting down
	MSEvicted                                              // corral: new membership does not include the local node
)

// Group messaging events, from the prose of §2.1 ("join, leave,
// {broad,multi,uni}cast received, reply received"); names are corral's,
// with the GS prefix of the seed's my_gs_events example.
const (
	GSInvalid   = Descriptor(ClassGroup<<ClassShift | iota) // OC_EV_GS_INVALID
	GSJoin                                                  // a member joined the group
	GSLeave                                                 // a member left the group
	GSBroadcast                                             // broadcast received
	GSMulticast                                             // multicast received
	GSUnicast                                               // unicast received
	GSReply                                                 // reply received
)

// descNames lists every named descriptor: short name (String) and C name.
// A fixed table, never mutated.
var descNames = []struct {
	d           Descriptor
	name, cname string
}{
	{CSInvalid, "CS_INVALID", "OC_EV_CS_INVALID"},
	{CSInterfaceAdded, "INTERFACE_ADDED", "OC_EV_CS_INTERFACE_ADDED"},
	{CSInterfaceFailed, "INTERFACE_FAILED", "OC_EV_CS_INTERFACE_FAILED"},
	{CSNodeEligible, "NODE_ELIGIBLE", "OC_EV_CS_NODE_ELIGIBLE"},
	{CSNodeIneligible, "NODE_INELIGIBLE", "OC_EV_CS_NODE_INELIGIBLE"},
	{CSP2PEstablished, "P2P_ESTABLISHED", "OC_EV_CS_P2P_ESTABLISHED"},
	{CSP2PLost, "P2P_LOST", "OC_EV_CS_P2P_LOST"},
	{MSInvalid, "MS_INVALID", "OC_EV_MS_INVALID"},
	{MSNewView, "NEWVIEW", "OC_EV_MS_NEWVIEW"},
	{MSSuspect, "SUSPECT", "OC_EV_MS_SUSPECT"},
	{MSRecovered, "RECOVERED", "OC_EV_MS_RECOVERED"},
	{MSShutdown, "SHUTDOWN", "OC_EV_MS_SHUTDOWN"},
	{MSEvicted, "EVICTED", "OC_EV_MS_EVICTED"},
	{GSInvalid, "GS_INVALID", "OC_EV_GS_INVALID"},
	{GSJoin, "JOIN", "OC_EV_GS_JOIN"},
	{GSLeave, "LEAVE", "OC_EV_GS_LEAVE"},
	{GSBroadcast, "BROADCAST", "OC_EV_GS_BROADCAST"},
	{GSMulticast, "MULTICAST", "OC_EV_GS_MULTICAST"},
	{GSUnicast, "UNICAST", "OC_EV_GS_UNICAST"},
	{GSReply, "REPLY", "OC_EV_GS_REPLY"},
}

func lookup(d Descriptor) int {
	for i := range descNames {
		if descNames[i].d == d {
			return i
		}
	}
	return -1
}

// Valid reports whether d names an event that can be published: a known
// event of a known class, not one of the INVALID (zero) events.
func (d Descriptor) Valid() bool { return d.Event() != 0 && lookup(d) >= 0 }

// String returns the seed's event name, e.g. "NEWVIEW". The zero events,
// whose name is the same in every class, keep their class prefix
// ("MS_INVALID"). Unknown descriptors print as "Descriptor(0x00800009)".
func (d Descriptor) String() string {
	if i := lookup(d); i >= 0 {
		return descNames[i].name
	}
	return fmt.Sprintf("Descriptor(%#08x)", uint32(d))
}

// CName returns the C enumerator name, e.g. "OC_EV_MS_NEWVIEW", or "" for
// an unknown descriptor.
func (d Descriptor) CName() string {
	if i := lookup(d); i >= 0 {
		return descNames[i].cname
	}
	return ""
}

// ParseDescriptor parses a name given by String or CName, ignoring case.
// It also accepts the INVALID names, which Publish refuses.
func ParseDescriptor(s string) (Descriptor, error) {
	for _, n := range descNames {
		if strings.EqualFold(s, n.name) || strings.EqualFold(s, n.cname) {
			return n.d, nil
		}
	}
	return 0, fmt.Errorf("%w: %q", ErrBadEvent, s)
}
