// Package route is the mesh's routing core: a deterministic distance-vector
// router with Babel's loop-freedom rules (RFC 8966), adapted to corral's
// links, which are reliable, ordered and heartbeated.
//
// A Router does no I/O and has no goroutines, clock or randomness. It is
// told what happened — a link came up, changed cost or went down (LinkUp,
// LinkCost, LinkDown), a neighbour's message arrived (Step), a unit of
// logical time passed (Tick) — and hands out what to do in the style of
// etcd raft: Ready returns the messages to send, one per neighbour, the
// route changes since the last Advance and this node's seqno if it changed;
// the caller persists the seqno, sends the messages in order on the named
// links (a Message becomes one ROUTES frame per 1024 updates, then one
// SEQNO_REQ frame per request; see proto/peer), applies the changes, then
// calls Advance. No
// input may be given between Ready and Advance. Every output is sorted, so
// the same inputs give the same outputs byte for byte.
//
// The rules, and why they keep the next-hop graph acyclic at every instant
// (not only once converged):
//
//   - Metric is the sum of link costs (each ≥ 1), saturating at Inf, which
//     means unreachable; an advert with metric Inf is a retraction.
//   - Every origin numbers its adverts with a 16-bit sequence number,
//     compared modulo 2^16 (RFC 8966 §3.2.1).
//   - Before sending a finite advert (seqno, metric) for an origin, a node
//     records its feasibility distance FD for that origin: set it if there
//     is none or the seqno is newer, lower it if the seqno is equal and the
//     metric smaller (§3.7.3). FD never increases.
//   - A route learned from a neighbour is feasible when its seqno is newer
//     than FD's, or equal with an advertised metric below FD's (§3.5.1).
//     Only feasible routes are selected: lowest metric, ties to the lowest
//     next-hop id, and with Hysteresis h > 0 the current route is kept while
//     it is within h of the best. Along any chain of selected next hops FD
//     therefore strictly decreases, so the chain cannot close.
//   - A node that has routes for an origin but none feasible is starving: it
//     asks the next node towards the origin for a newer seqno (a seqno
//     request, forwarded hop by hop with a hop count, duplicates suppressed,
//     retried on ticks with doubling intervals, three tries, then again
//     after a pause while it still starves). The origin
//     raises its seqno to the one requested, once, and its fresh advert is
//     feasible everywhere. The caller persists Ready.Seqno when it changed. A
//     node also asks when an unfeasible route is better than its selected
//     one by more than the hysteresis, or when its selected next hop sends
//     an unfeasible update (§3.8.2.2): with no periodic updates nothing else
//     would refresh the seqno, and the node would keep the worse route.
//   - Links are reliable, so there are no periodic updates and no route
//     expiry: a new link gets the full table, after that only changes are
//     sent; a neighbour's routes die with its link. Where that fails the
//     caller says so: a link replaced by another to the same neighbour
//     (LinkReset) keeps its routes and exchanges full tables again, a
//     route the neighbour does not repeat within ResetTicks going; a
//     message that could not be sent on a live link is sent again as the
//     routes stand now (Resend), retractions included. A route is not
//     advertised to its own next hop (split horizon; a retraction is sent
//     instead if the neighbour had a finite advert from us).
//   - Besides the selected route the router keeps the best other feasible
//     next hop (Alternate): it is feasible by definition, so a dead link
//     switches to it immediately, without waiting for any message.
//   - A route with MaxHops hops or more is neither accepted nor advertised.
//     This guards the frame hop limit; loops are broken by feasibility, never
//     by counting.
//
// Feasibility distances outlive routes (SourceGCTicks) so that a node which
// lost a route cannot accept an old, worse one from a neighbour that still
// routes through it.
//
// Seqno order is modular, so not transitive across half the range: an
// origin whose adverts of three lives, at seqnos far apart, are still in
// the network can have them compare in a cycle, which no feasibility
// condition orders. A node must therefore start above its last life's
// seqno (the agent persists it: agent/ROUTESEQNO.md); a random start is
// for a node with no record, once.
package route
