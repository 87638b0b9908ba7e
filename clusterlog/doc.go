// Package clusterlog is corral's one totally ordered cluster log: a
// go.etcd.io/raft/v3 RawNode driven by one goroutine, with its entries kept
// durably in an append-only write-ahead log of segment files and its hard
// state, snapshot, applied index and application state in one bbolt file
// next to it (FORMAT.md). Every cluster-wide event is an entry of this log; every node
// applies the entries in the same order, and an entry's index is its
// cluster-wide sequence number.
//
// The package does no network I/O. A Node hands outgoing raft messages to a
// Sender and is told about incoming ones through Node.Step; the transport
// (TLS peer links in the agent, clusterlogtest in tests) sits in between.
//
// # The Ready cycle
//
// raft itself does no I/O: it hands out work as a raft.Ready and must be told
// when the work is done (Advance). Node owns the RawNode from a single
// goroutine, which repeats:
//
//  1. Collect. Wait for one event — a tick, a received message, a proposal,
//     a membership change, a transport report — then take every message and
//     proposal already queued behind it. Proposals become a single raft
//     message, so a burst of Propose calls costs one log append.
//  2. Persist. For the next Ready, append the new entries to the WAL (one
//     write, one fdatasync), then write the snapshot (if any) and the hard
//     state (term, vote, commit) in one bbolt transaction, which is fsynced
//     before it returns; a Ready of entries alone needs no bbolt commit. A snapshot received
//     from the leader is restored into the application (Applier.Restore)
//     in this same transaction.
//  3. Send. A follower or candidate hands Ready.Messages to the Sender only
//     now: its messages acknowledge state — a MsgAppResp says "these entries
//     are on my disk", a vote says "I have recorded this vote" — and sending
//     first could let a majority count an entry that a crash then loses.
//     The leader sends before step 2 instead (raft thesis §10.2.1; etcd
//     does the same), so its fsync and its followers' overlap: its messages
//     are appends and heartbeats, which acknowledge nothing; its term and
//     vote were made durable while it was a candidate; and raft counts the
//     leader's own copy of an entry only after Advance says it is stable,
//     so an entry commits only once a majority has it on disk (without the
//     leader, if its followers are faster).
//  4. Apply and 5. Record, in one second fsynced transaction: hand the
//     committed entries, in index order, to Applier.Apply, which writes its
//     state into the transaction's application key space (AppTx); apply
//     membership changes to raft as they come (after ConfChecker, if the
//     Applier has it, agreed); then write the applied index and the
//     configuration as of it, and every SnapshotEvery entries (or
//     SnapshotBytes of them) a snapshot
//     of the application (Applier.Snapshot, streamed) plus log compaction.
//     A hard state that only moved the commit index (raft's MustSync is
//     false) is written here rather than in step 2, since nothing sent
//     depends on it. Once it has committed, Applier.Committed is told the
//     applied index: effects outside the file happen only after this.
//  6. Answer and advance. Propose calls whose entries were applied return
//     their index and the Applier's reply; then Advance, and back to step 2
//     while raft has a Ready.
//  7. Snapshot on demand, if raft asked for one the stored snapshot cannot
//     serve and step 5 did not take it (below); then publish the Status.
//
// # Snapshots for new nodes
//
// A follower refuses a snapshot whose configuration does not include it,
// so the stored snapshot is useless to a node added after it was taken.
// While a Node runs, Storage.Snapshot (which raft calls on the loop
// goroutine, when a follower needs compacted entries) calls the stored
// snapshot stale when its configuration differs from the applied one, and
// then returns raft.ErrSnapshotTemporarilyUnavailable and signals the loop
// over a one-slot channel, without blocking (Storage's read lock is held,
// and raft may be inside the record transaction). The loop takes a fresh
// snapshot as of the applied index, compacting as configured: in step 5 of
// the same Ready if there is one, or else in step 7 in a transaction of its
// own. Requests coalesce, at most one snapshot is taken per turn of the
// loop, and the fresh one has the applied configuration, so raft's next
// attempt (the follower's next heartbeat response) gets it and no further
// request follows until the configuration changes again.
//
// A Ready with nothing to persist skips the first fsync, and one that neither
// applies anything nor moves the commit index skips the second: at most two
// fsyncs per Ready, however many proposals it carries. A Ready without a
// snapshot that both persists and applies does steps 2, 4 and 5 in one
// transaction, one fsync (a busy node's usual Ready: the new entries of
// one batch and the committed ones of the batch before): the entries
// applied are committed, on a majority's disks already, so applying them
// before the new entries are durable promises nothing early; a follower
// sends after that one commit, still never before its entries are on
// disk. BenchmarkPropose with 256 proposers: 0.017 fsyncs per proposal
// on the leader, from 0.024-0.035 with two transactions.
//
// # Exactly once, across restarts
//
// On start Node tells raft the recorded applied index, and raft never hands
// out an entry at or below it, so a restart replays nothing that was
// recorded as applied. An application that keeps its state in its AppTx
// sees every entry exactly once, with no dedupe of its own: its writes and
// the applied index are one transaction, so a crash keeps both or neither.
// (A file upgraded from format version 1 starts with an empty application
// key space; NewNode then restores the stored snapshot into it and the log
// after the snapshot is applied again. FORMAT.md, "Version history".)
//
// # Proposals
//
// Node.Propose returns once the entry is committed and applied on the node
// that proposed it. Entries carry a small envelope (proposer ID, the
// storage's open count, a sequence number; FORMAT.md) by which the proposer
// recognises its own entries. A proposal made where no leader is known fails
// at once with ErrProposalDropped; one forwarded to a leader that is then
// lost can vanish silently, so callers use a context deadline and retry.
// Node.ReadIndex returns an index after which local reads are linearizable.
//
// # Observability
//
// Node.Stats counts proposals, applied entries, restores, reads and the
// Storage's fsyncs; Storage.ObserveFsync reports each commit's latency.
//
// # Membership
//
// Node.ProposeConfChange (AddVoter, AddLearner, RemoveNode) runs on the
// leader only. Changes are applied one at a time (no joint consensus). The
// leader holds a change back until it has applied an entry of its own term
// and its previous change, the conditions under which raft accepts one
// instead of silently replacing it with an empty entry. Each node re-checks
// a committed change before applying it and skips one that would leave no
// voter, and one the Applier's ConfChecker refuses; both checks are
// deterministic, so every node skips the same ones, and raft is given a
// no-op change in place of a skipped one. A new
// node starts with an empty Storage and no Peers, is added as a learner,
// catches up (by snapshot if the log was compacted, taken for it if the
// stored one predates it), then is promoted.
//
// # Quorum contact
//
// Raft runs with PreVote and CheckQuorum: a node cut off with a minority
// cannot win an election or, when it returns, force one; a leader cut off
// from a majority steps down within an election timeout. Status.QuorumContact
// says whether this node is in touch with a quorum right now (see its
// definition). Nothing outside this package's tests reads it yet: the
// agent tells SUSPECT from RECOVERED by its own links to the voters
// (membership.Contact).
//
// # Transport contract
//
// Sender.Send is called on the node's goroutine and must not block for long;
// it may drop messages (raft retransmits) and should report drops through
// Node.ReportUnreachable, and a MsgSnap's fate through Node.ReportSnapshot.
// Node.Step queues a received message for the goroutine.
package clusterlog
