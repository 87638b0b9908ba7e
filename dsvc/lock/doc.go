// Package lock is the data-service synchronization service (seed 001,
// "Synchronizing Access to File-System-Based Containers"): per container,
// many lookups at once (a shared lock) and one add, modify or delete at a
// time (an exclusive lock), across goroutines and processes on one host,
// for the modules whose Synch is dsvc.SynchLockService. A *Service is the
// dsvc.Locker the framework is given.
//
// # Kernel locks, not a daemon
//
// Solaris runs dsvclockd, started on demand, reached over doors, and ties a
// lock to the door it hands out so a dead client's lock is released. This
// package uses Linux open-file-description locks (fcntl F_OFD_SETLK) on one
// lock file per container instead, because the kernel already does what the
// daemon was for: it releases every lock of a process that dies (kill -9
// included), it works between processes and between goroutines (each Lock
// opens its own file description, and OFD locks conflict between
// descriptions, not between processes), and there is no daemon to start,
// find, watch, restart or idle out and no request protocol to version. The
// cost is a few system calls per lock (see the benchmarks).
//
// The seed's idle rule (the daemon exits after 15 idle minutes) has nothing
// to apply to: there is no process to exit. Its other half, dsvclockd's
// reaper of idle containers, is Reap: it removes lock files nobody holds
// and no writer used for a given time, safely against concurrent Locks.
// Lock files are empty but for one marker byte, so leaving them is cheap;
// the default directory is on /run (tmpfs), which boot empties.
//
// # Writer preference
//
// fcntl locks do not prefer writers: a new shared lock is granted while a
// writer waits. So each lock file has two one-byte ranges: the data range,
// shared by readers and exclusive by a writer, and a turnstile. A writer
// takes the turnstile exclusive first and keeps it until it unlocks; a
// reader that got the data range and sees the turnstile held lets go and
// waits until it is free. So a reader arriving behind a queued writer
// waits, and a stream of readers cannot starve a writer: once the writer
// holds the turnstile only the readers already inside stand before it.
// Writers queue on the turnstile. Among waiters there is no FIFO order:
// neither the kernel (it wakes every waiter of a released lock to race for
// it) nor the polling below keeps one; dsvclockd's FIFO is not reproduced.
//
// # Waiting
//
// A blocked F_OFD_SETLKW cannot be cancelled (Go restarts it after
// signals), so a waiting Lock polls the non-waiting F_OFD_SETLK with a
// jittered back-off from Options.PollMin to PollMax (default 50µs to 2ms)
// and returns ctx's error as soon as ctx is done, holding nothing: a
// cancelled waiter closes its file, which drops the turnstile it may hold.
// An Unlock through the same Service wakes its waiters for that file at
// once (a channel per lock file, closed by the Unlock): goroutines of one
// process, as a DHCP server's workers on binfiles are, take the lock when
// it is released instead of up to PollMax later; only a holder in another
// process is found by polling.
// NonBlock never waits: dsvc.ErrBusy where a lock would wait (a writer
// holds or waits; for a writer also readers inside).
//
// # Errors
//
// dsvc.ErrBusy (nonblock), dsvc.ErrSynch (a second Unlock, or an
// unexpected fcntl failure), dsvc.ErrNoLockMgr (the lock directory cannot
// be created, used or locked in), dsvc.ErrAccess (a lock file we may not
// open read-write: files are 0600, so all users of a directory must be the
// same user, as dsvclockd admitted only root), dsvc.ErrNoResources (out
// of file descriptors).
//
// # Crashed writers
//
// A writer sets the marker byte while it holds the lock and clears it on
// Unlock. The next writer that finds it set logs, as dsvclockd did, that a
// process exited while writing and its write may or may not have
// succeeded; modules are crash-atomic on their own.
//
// The lock file names and byte ranges are a protocol between every corral
// process on a host: SPEC.md.
package lock
