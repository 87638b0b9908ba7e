// Package event holds the data types of corral's cluster events: the
// descriptor layout of the OCF Cluster Event Notification API (seed 002,
// §4.1) with its classes and named events, and the class-specific data
// (Membership, Connectivity, Group) an event carries.
//
// It is a leaf: it imports nothing from corral and does no I/O, so the wire
// codec (proto/client), the transport and tools can share exactly the types
// applications see without pulling in the dispatcher. Package events, the
// dispatcher, re-exports every name here; applications keep using events.
package event
