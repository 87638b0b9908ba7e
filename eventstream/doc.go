// Package eventstream is the node's stream of cluster events for local
// subscribers: every event published gets a position; a bounded history
// lets a subscriber that reconnects resume after the last cluster-wide
// Seq it delivered; a subscriber that falls too far behind is closed
// rather than waited for.
//
// The rules, in order:
//
//  1. Cluster-wide events (Seq != 0) are published with strictly
//     increasing Seq, the event's position in the cluster log (the entry's
//     index times 2^20 plus the event's place in the entry).
//     This package is where exactly-once holds for the stream: a Seq not
//     above the latest is refused (logged, dropped, ErrStaleSeq).
//  2. A stream starts at a floor, the log's applied index at start: the
//     events up to it were published by an earlier run (or replaced by a
//     snapshot, Skip) and are not in this history. Floor then rises as
//     events leave the history.
//  3. A subscriber that resumes after a Seq below the floor is told so
//     (Reply.Gap): events it missed are either sent or reported, never
//     silently lost.
//  4. Local-only events (Seq 0) reach only the subscribers present when
//     they are published; they are never resent.
//
// A subscriber that says which classes it has callbacks for, and at which
// priority (SetCallbacks, the client's CALLBACKS of protocol version 3),
// is gated: the node-wide dispatch (dispatch.go) hands it those events
// one at a time across all gated subscribers, band by priority band,
// waiting for each one's Done, and closes one that misses
// Limits.CallbackTimeout. Ungated subscribers never wait for it.
//
// The cluster publishes a commit's events with PublishBatch: one lock and
// one pass over the subscribers per batch, as Publish one by one would
// hand them out (events the dispatch has to await still go one at a
// time). Bodies are encoded once and cut from shared chunks.
//
// Subscribers are Sinks (a client link through Server, or a fake) with a
// Filter. Server speaks the client protocol's SUBSCRIBE, EVENT and
// queries on transport links (proto/client/SPEC.md, "Cluster events").
package eventstream
