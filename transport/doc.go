// Package transport is one corral link: a connection between two agents
// (TLS 1.3 from the standard library, authenticated by the cluster key) or
// between a local tool and its agent (a unix socket, authenticated by file
// permissions), carrying proto frames.
//
// A link starts with a handshake. The connecting side sends HELLO; the
// accepting side checks the cluster name, the proof of the cluster key and
// the versions and answers with its own HELLO or with REJECT and closes.
// The connecting side checks the answer the same way. The proof is an
// HMAC-SHA256 under the cluster key over the hello and a value exported
// from the TLS session (RFC 8446 section 7.5), so it cannot be replayed on
// another connection or reflected back by a man in the middle.
//
// After the handshake a link runs three goroutines: a reader that feeds the
// proto receive state machine and hands frames to the owner's Handler, a
// writer that gathers queued frames into vectored writes (at most
// MaxIOVec buffers per write, small frames packed into shared recycled
// slabs), and a heartbeat that sends PING every interval and ends the link
// when nothing was heard for the timeout. Only time in which this process
// ran counts towards the timeout (internal/stall): a process that was
// starved or stopped gives its peers a fresh timeout when it resumes. Any
// malformed frame ends only that link, with a typed *proto.Error.
//
// A peer link of version 4 carries a session (session.go): the stream of
// sequenced frames to one peer, which outlives the connection. With a
// Sessions store in the Config, every sequenced frame stays in a replay
// buffer (bounded by QueueBytes) until the peer ACKs it; a new link to
// the peer exchanges SESSION and either resumes (both resend what the
// other lacks, in order, nothing twice) or starts fresh. The owner
// decides how long a session may wait (Session.Expire).
package transport
