// Package netmon watches the local network interfaces that carry cluster
// traffic and tells when one appears, comes up, goes down or disappears.
//
// The watch polls (once a second): an interface counts as up when it is
// administratively up and has a carrier. Its events are the connectivity
// class's INTERFACE_ADDED and INTERFACE_FAILED; they are local, so they
// carry no cluster-wide sequence number.
package netmon
