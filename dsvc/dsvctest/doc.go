// Package dsvctest is the data-service conformance suite: Run checks a
// module, through the dsvc framework, against the behaviour the Solaris
// modules and their test specifications define (status, list, open modes,
// a Solaris-style dhcptab and thousands of network records, the query
// matrix, duplicates, modify, delete, handle modes, non-blocking busy,
// signatures and the delete-and-recreate collision, validation, a
// multi-process stress with an exact end state, kill -9 of a writer,
// capacity, versions and upgrade, conversion, the error table). Every
// module's package has a conformance_test.go calling Run.
//
// Multi-process checks re-execute the test binary: Run, called in the
// child with the helper environment set, does the child's part instead of
// the suite, so a module's Setup is built the same way in both.
//
// LinModel, History and CheckLinearizable check a network container's
// histories of lookups, adds, modifies and deletes for linearizability
// with porcupine (outcomes may be unknown); LostWrites finds acknowledged
// writes missing at the end.
//
// MemLocker is an in-process dsvc.Locker for tests that do not need the
// cross-process lock service.
package dsvctest
