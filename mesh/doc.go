// Package mesh keeps this node's links to its peers and carries peer frames
// to a node by its id.
//
// A Mesh owns the peer listener, one dialer per configured address (with
// backoff), and the table of nodes with their live link. Between two nodes
// exactly one link is kept: when both dial at once, both ends keep the link
// opened by the node with the smaller id, and a newer link from the same
// initiator replaces an older one (which is likely dead).
//
// Received frames are dispatched by opcode range to the handlers registered
// with Handle before Run. Handlers run on the link's reader goroutine: they
// must not block, and in particular never wait on a disk write or on a lock
// held across one, since a reader that stalls stops seeing heartbeats and
// the link is declared dead.
//
// Send and Call address a node id: on the direct link, or routed hop by
// hop (routing.go) as one-shots that relays forward without state.
//
// Open starts a streaming transaction (txn.go) and HandleTx serves
// incoming ones: both ends and every relay keep it in a mesh/tx table,
// which pins it to the path its CREATE took, and a link lost on that
// path ends it with exactly one LINKFAIL at each end.
package mesh
