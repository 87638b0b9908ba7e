// Package groups is corral's group messaging machine: the rsm machine
// (id rsm.Groups) that applies batches of group commands from the cluster
// log — member sessions, joins and leaves, messages, transfers of large
// messages in parts — and turns them into GROUP events addressed to the
// members they are for (event.Group.To). Everything comes from the log, so
// every node sees the same members in the same order and every message at
// the same position: groups are ordered, durable and view-synchronous.
//
// The machine is deterministic: a bad command is answered in its result
// (ParseResults) the same way on every node, never by failing Apply. It
// keeps its state in its rsm.Tx and a mirror in memory for the queries
// (Members, Groups, Session), which any goroutine may call. The byte
// layouts of the batch, the results and the snapshot are in SPEC.md.
//
// The service that batches clients' commands, proposes them and filters
// the events to the member links is elsewhere; this package does no I/O.
package groups
