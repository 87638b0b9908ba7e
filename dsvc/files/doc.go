// Package files is the files data-service module: every container is one
// text file, one record per line, in the Solaris SUNWfiles layout
// (FORMAT.md), so a file can be read, grepped and edited by hand. It is
// the default module (dsvc.DefaultModule).
//
// Every update reads the file, checks the signature, and replaces the file
// atomically: it writes <file>.new, fsyncs it, renames it over the file and
// fsyncs the directory, so a crash at any point leaves the old or the new
// file, never a torn one. The module asks for the synchronization service
// (dsvc.SynchLockService): the framework holds the container's lock around
// every operation, shared for lookups, exclusive for updates, across
// processes. A Module keeps the last version of each container file it
// read or wrote, parsed, and uses it again while the file at the path is
// the same file unchanged (device, inode, size, mtime and ctime, with the
// file held open so its inode number cannot be reused; cache.go): writers
// of other processes, and editors, replace the file by rename and so are
// seen at the next operation. Lookups by client IP then go through an
// index; other queries scan the parsed records. A changed file is read
// and parsed whole again, so the module suits up to a few thousand
// records per container, like SUNWfiles ("several hundred to a couple
// thousand clients").
//
// A network container's file records its network in a "# network
// 10.0.0.0/24" comment (Linux has no netmasks database), so the container
// can later be opened as "10.0.0.0". Container versions 1 and 2 exist;
// version 2 adds one header line and is there to exercise Upgrade.
package files
