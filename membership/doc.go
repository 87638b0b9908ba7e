// Package membership is corral's membership: the commands the cluster log
// carries to change the view, the replicated machine that applies them
// (Machine), the deterministic policy that decides which to propose
// (Controller), and the local judgement of quorum contact (Contact). It
// does no I/O and reads no clock: a driver (package cluster) feeds it
// committed entries, link states and the time, and carries out what it
// returns. Byte layouts are in SPEC.md beside this file.
//
// # Views, lives and incarnations
//
// A view is identified by its instance, the log index of the entry that
// made it, so it is the same on every node. Each member carries born-on,
// the instance in which it joined; (born-on, id) is the age order.
//
// A node id lives several lives. A life starts when the node opens an
// empty log and draws a random incarnation; it ends when the node is
// removed (it failed, was evicted, or an administrator removed it) or
// leaves. Raft knows each life as a node of its own: the raft id is the
// incarnation, so an empty new life is never mistaken for the old one
// whose log it lost. The incarnation is local to the node and not part of
// the machine's state; the driver passes it in.
//
// Once removed, a life never comes back: the machine keeps a tombstone of
// every removed (id, incarnation), refuses in CheckConf a JOIN that names
// one (so raft applies it as a no-op and raft's voters stay the view's),
// and the controller answers such a JOIN REFUSED instead of proposing it.
// A node that finds its own life removed starts a new one.
//
// # The machine
//
// JOIN, LEAVE and PROMOTE ride on raft configuration changes
// (Command.Raft says which), SET-CLUSTER-ID on an ordinary entry.
// CheckConf and Apply follow one rule (check), so a change raft applies is
// exactly a change the view applies. Apply returns the NEWVIEW event;
// ApplyChange also returns the Change, which the driver reads after the
// entry's transaction commits (Change.Life: joined, left, removed).
//
// # The controller
//
// Controller.Step(Input) []Action runs on one goroutine; Input holds the
// time, this node's id and life, the machine's State, the raft status,
// the links, when each member's life was applied here, the requests and
// notices that arrived, and the outcome of the proposal in flight. The
// rules, in the order a Step applies them:
//
//   - Life. A life seen in the view and then gone, or tombstoned, is
//     evicted (ActEvicted: tell EVICTED, drop the log, new incarnation,
//     join again) unless the node is leaving, when it has left (ActLeft).
//     A NOTMEMBER from a node whose view is newer than this member's own
//     is an eviction too: this node may be cut off from the log.
//   - Requests (JOIN/LEAVE from peers). A follower relays a direct one to
//     the leader it has a link to (once: a relayed request is answered,
//     not relayed again) or answers NOTLEADER. The leader answers what
//     needs no change at once (a member's JOIN: OK; a removed life's
//     JOIN: REFUSED; a non-member's LEAVE: OK) and holds the rest; the
//     same change asked again joins the one held.
//   - Leader, one proposal at a time (the driver reports its Outcome):
//     found the view with its own JOIN; remove the oldest failed member;
//     its own graceful LEAVE; the next held request (a new life of a
//     member: LEAVE of the old life first, then the JOIN; a JOIN is a
//     voter while the voters are fewer than MaxVoters, else a learner);
//     promote the oldest linked learner while voters are fewer than
//     MaxVoters; name the cluster (SET-CLUSTER-ID with the Input's random
//     candidate) if it has no id. Losing the lead answers the held
//     requests NOTLEADER.
//   - Failed: a member's link has been down for RemoveAfter, where down
//     counts from: for a node never linked, the later of LeaderSince and
//     when its current life was applied here, plus HeartbeatTimeout (a
//     joining node, or a whole-cluster restart, gets time to link); for a
//     link that ended as a duplicate, its end plus HeartbeatTimeout (the
//     replacement is on its way); for a link down before the current life
//     was applied, that time plus HeartbeatTimeout (the link was the
//     earlier life's).
//   - Asking: a node outside the view sends its JOIN to the leader, a
//     leaving member its LEAVE, every AskEvery until it happens. Not
//     knowing the leader, it asks the linked peers in turn, by id: a peer
//     that is itself outside the view (restarted at the same time) cannot
//     help, and asking only it would never end.
//   - NOTMEMBER: a member tells each linked node outside the view, at once
//     for a new view and every NotMemberEvery while it stays out.
//
// The golden scripts in testdata/controller show each rule.
package membership
