// Package cluster runs this node's life on the cluster log.
//
// A life is one copy of the log: an incarnation (a random id, which is also
// the node's raft id), the log file, the raft node, the rsm Mux and the
// membership machine on it. A node that is evicted — removed from the view
// while it still runs, or told by a member that the view no longer holds
// it — drops its log, starts a new life with a new incarnation and joins
// again; raft never mistakes the new, empty life for the old one.
//
// The membership policy is membership.Controller, a deterministic core; the
// driver here feeds it (link states from the mesh, the view and raft status
// after each commit, peers' JOIN/LEAVE requests, NOTMEMBER notices, a tick)
// and carries out its actions without blocking its loop: proposals, replies
// and relays run in goroutines the Cluster owns and waits for.
//
// Ordering rules:
//
//  1. A committed entry's effects (the machines' state) commit in the same
//     bbolt transaction as the applied index; its events are published only
//     after that transaction is durable, with Seq = the event's position in
//     the log (events.SeqOf(index, place in the entry)).
//  2. Entries a new life replays that the previous life already published
//     are not published again; a restored snapshot publishes no events for
//     the entries it covers and tells the event stream to skip them.
//  3. Peer frames are handled on the link's reader goroutine, which never
//     waits: raft messages go to a bounded queue (a full queue drops them;
//     raft retransmits), requests to the driver.
//  4. Shutdown: Run returns after the driver, the stepper and every
//     goroutine it started have ended, and the raft node is stopped and the
//     log closed; an eviction never starts a new life after Run returned.
//
// snapchunk.go splits a raft message too large for one peer frame into
// RAFTCHUNK pieces (proto/peer/SPEC.md) and joins them again on the
// receiving side, without I/O: the caller sends and receives the frames.
package cluster
