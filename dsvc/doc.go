// Package dsvc is corral's data-service framework (seed 001, the Solaris
// DHCP data-service architecture): an application opens a container by its
// administrative name ("dhcptab", or a network such as "10.0.0.0") on a
// module and a location, and reads and writes records through it; the
// framework validates every record and query, maps the administrative name
// to the module's versioned internal name ("<module><version>_<name>"),
// takes the per-container synchronization the module asks for, and returns
// one typed error per DSVC_* code.
//
// # Layers
//
//   - The framework (this package: Open, Handle, List, Remove, Status,
//     MkLocation, Convert, Upgrade) is what applications call; it is the
//     Solaris "framework configuration layer".
//   - A Module is the Service Provider Layer: a value with one method per
//     SPL function, registered in a Registry the caller builds (there is no
//     init-time global). Each module declares its container version and
//     whether it needs the synchronization service (Synch).
//   - The synchronization service (package dsvc/lock) gives the modules that
//     ask for it many lookups at once and one add, modify or delete at a
//     time per container, across goroutines and processes on one host.
//
// # Names
//
// Admin names are "dhcptab" and a dotted network, with its prefix length
// when the container is created ("10.0.0.0/24"; Linux has no netmasks
// database) and optionally without it afterwards when the module stores it
// (DNPrefixer). The framework maps them to "<module><version>_dhcptab" and
// "<module><version>_10.0.0.0"; a Datastore with an empty Module uses
// DefaultModule ("files"), and Version CurrentVersion the newest registered.
//
// # Signatures
//
// Every record carries an update signature: a 16-bit random generation in
// the high bits and a 48-bit counter starting at 1 (seed 001, "Avoiding
// Update Collisions"). Add gives a record a new signature; Modify and Delete
// must present the stored one, or fail with ErrCollision and change nothing;
// Delete with signature 0 is unconditional. The new signature is written back
// into the caller's record.
package dsvc
