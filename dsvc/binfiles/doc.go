// Package binfiles is the dsvc "binfiles" module: every container is one
// bbolt file in the location directory, "binfiles1_dhcptab" and
// "binfiles1_10_0_0_0" (the internal name with dots as underscores, as
// Solaris's SUNWbinfiles1_10_0_0_0). FORMAT.md is the disk format.
//
// Network records are keyed by client IP, so a lookup by CIP is one
// B+tree descent; a client-id index (cid → the CIPs holding it) serves
// lookups by CID; any other query scans. Add, Modify, Delete and Import
// each run in one bbolt transaction, so a crash leaves the old or the new
// state, never a mix, and the index always agrees with the records.
//
// # Synchronization: SynchLockService, a file open per operation
//
// bbolt takes flock on its file at Open: exclusive for a read-write open,
// shared for a read-only one, and holds it until Close. A handle that kept
// its file open would therefore shut every other process out of the
// container for the handle's lifetime (bbolt's wait polls every 50 ms and
// ignores contexts), so SynchNone with a long-lived open is wrong across
// processes. Instead the module asks for the lock service and opens the
// file for each operation, inside the framework's container lock: a write
// opens read-write, commits one transaction and closes; lookups open
// read-only. The framework's lock gives what flock cannot: writer
// preference, NonBlock as ErrBusy at once, and waits that honour the
// context. Because both locks are taken in the same mode, bbolt's flock is
// then never contended; it stays as a second guard against a caller that
// bypasses the framework. Within one process, concurrent lookups share one
// read-only open (closed when the last ends, so the shared flock is not
// kept) and writes pass one at a time, so goroutines never meet on flock.
// The cost is an open and mmap per operation (the figures are in the
// benchmarks); the gain is that any number of processes on one host can
// use a location, and a process killed at any point holds nothing.
//
// Creating a container builds it under a temporary name and links it into
// place (failing if the name exists), so a torn create leaves only a
// ".binfiles1_….tmp-*" file, which List ignores. List and create remove
// such files once not written for a minute: a live create finishes its
// file within about a second, so only a dead one's is that old. Removing
// unlinks.
//
// Errors: a file that bbolt or the record decoder rejects is ErrInternal
// (a bbolt panic on a corrupt page is recovered into it); ENOSPC, EDQUOT
// and the Configure'd "maxsize=<bytes>" are ErrNoResources; permission is
// ErrAccess; a missing container ErrNoTable.
package binfiles
