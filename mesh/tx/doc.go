// Package tx is the transaction and relay table of the mesh: the state a
// node keeps for every transaction it opened, answers or relays, and the
// rules that keep that state consistent along a path when links fail
// (proto/SPEC.md §2.7; the design is
// shared/research/mesh-routing-transactions.md §5.5–5.6).
//
// A Table is a deterministic core: no goroutines, no clock (tombstones
// age by Tick), no randomness, and every output is in a fixed order. The
// caller owns the links and feeds the table:
//
//   - Step(link, frame) for every routed frame received on a link
//     (Source and Target non-zero; link-local frames are not the table's);
//   - Open, Send, Close and Abort for the local application;
//   - LinkDown(link) when a link is gone for good (after its resume
//     window: the caller decides when);
//   - Tick at a fixed interval.
//
// After each call the caller takes Ready: frames to write on links (in
// order, per link) and deliveries to the local application. Advance
// releases them. Forwarded frames alias the frame given to Step until the
// caller writes them, and frames the table makes may share Ext and Body:
// both are read-only.
//
// Routing is an input: Config.Route names the first link toward a node.
// The table consults it only for a CREATE that is not stacked; every
// later frame of a transaction follows the links its CREATE took (path
// pinning, in-order delivery), so a better route affects only new
// transactions and a lost route aborts nothing whose path is still up.
//
// A transaction is keyed {initiator, msg id}; the table allocates its own
// msg ids as Config.Epoch<<40 | counter, so the caller must give each
// start of the node an epoch it never used before (a counter in the
// agent's state file), and a node never reuses a key.
package tx
