// Package rsm runs replicated state machines on the one cluster log.
//
// Every service whose state must be the same on every node (membership,
// groups, the replicated data service, shared addresses) is a Machine. A Mux
// implements clusterlog.Applier: it reads the machine id from each entry's
// command envelope (SPEC.md) and hands the entry to that machine, inside the
// bbolt transaction that also records the applied index, so a machine's
// state and the log's applied index never disagree, even across a crash.
// The events a machine returns are published only after that transaction
// has committed; their Seq is the event's position in the cluster log: the
// entry's index times 2^20 plus the event's place in the entry
// (events.SeqOf), the same on every node.
//
// A machine that must react to view changes (its members on a node that
// left) implements ViewObserver: the Mux calls it in the configuration-change
// entry that made the view, after the Membership machine, so its reaction
// has a place in the log like any command.
//
// Commands travel in an envelope (SPEC.md) with the machine id, the
// proposer's node id and an optional request id; the Mux applies a request
// id at most once per proposer (within DedupeWindow) and answers a retry
// with the first reply (Raft thesis §6.3). NodeProposer is the Proposer over
// a clusterlog.Node.
//
// Machines are deterministic: the same state and the same entry give the
// same new state and the same Result on every node. They do no I/O but
// through their Tx, read no clock and use no randomness.
package rsm
