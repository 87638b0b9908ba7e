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
// Send and Call address a node id: over the direct link when there is
// one, else routed. The links need not form a full mesh. Every mesh runs
// the routing core (package mesh/route, Babel's loop-free distance vector)
// over its links: a link's coming up gives the neighbour the whole table
// (ROUTES), changes follow, a starving node asks for a newer seqno
// (SEQNO_REQ); the costs are Config.LinkCost. A frame for a node without a
// direct link leaves on the route's next hop with Source and Target set;
// every mesh relays such frames by its own routes, its hop count going
// down on each hop, and answers a request it cannot relay (no route, hops
// run out) toward its source, so the caller fails at once. A routed
// request's reply is routed back (transport.Link.Reply swaps Source and
// Target) and matched to its Call by msg id. Handlers learn a routed
// frame's sender from From, not from the link. Reachable and
// Reachability say how each node is reached; RouteStats counts routes,
// changes, relayed frames and drops. A new link and the router hear of
// each other before the link's reader starts, and a link that replaces
// another has the router drop and retake it, so both ends send their
// table again and no advert lost with the old link is missed (there is
// no periodic refresh).
//
// Open starts a streaming transaction (txn.go) and HandleTx serves
// incoming ones: both ends and every relay keep it in a mesh/tx table,
// which pins it to the path its CREATE took, and a link lost on that
// path ends it with exactly one LINKFAIL at each end. Unless it comes
// back: a lost link whose session can resume (transport sessions)
// suspends the transactions pinned to it for Config.ResumeWindow
// (resume.go), their frames kept in the session's replay buffer; a
// resume within the window goes on with nothing lost or repeated, a
// fresh session or the window's end is the LINKFAIL.
package mesh
