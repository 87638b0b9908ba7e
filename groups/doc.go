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
// # The service
//
// Service is the agent's part: it serves the client protocol's group
// range (proto/client/SPEC.md, "Group messaging"). A link's first JOIN or
// SEND opens its member session (OPEN, with the peer's pid from
// SO_PEERCRED); every request becomes a command queued for the next
// batch, and is answered when its batch has applied on this node — after
// the entry is committed on a majority's disks. The batcher keeps up to
// Config.Pipeline batches in flight; while they are, the next one grows
// (group commit), so a burst of sends costs a few log entries. Batches
// carry the agent's run and their number, and the machine applies them
// only in order, so every client's commands apply in the order it sent
// them even when a lost proposal is overtaken and proposed again; a
// retried proposal keeps its request id, which the log applies once.
//
// Flow control: each link may have Config.Window sends (WindowBytes
// bytes) in flight, and all links together TotalBytes; beyond that a send
// is refused with CodeTryAgain, never queued, and the Go client's Send
// waits for a reply instead. A message over MaxEntryPayload is split into
// PART commands and a final SEND that assembles them, each in an entry of
// at most about 1 MiB; a session closed half-way delivers nothing of it.
//
// Delivery: the machine names each event's recipients (event.Group.To);
// LinkFilter, installed by the agent in the event stream, passes a link
// the group events of its member, so the per-client queue, its bound and
// the resume after a reconnect are the event stream's (a member too slow
// for its queue is disconnected as behind, attaches again with its token
// within Config.Grace, and resumes after its last seq; one that resumes
// after events the stream no longer holds is closed with reason behind,
// by Gap). A link that ends while its process lives keeps its session for
// Grace; one whose process is gone closes it at once (process down). The
// first batch of every run is a RESET, which closes what the agent's
// previous run left.
package groups
