// Package addrsvctest is an in-process cluster log for tests of the
// shared-address service and of what reads it (the data path): every
// command a live node proposes is applied, in one order, to the machine
// of every live node, as the rsm Mux applies a committed entry; views are
// committed by the test. No raft, no disk, no sockets.
package addrsvctest
