// Package netlab builds test hosts in Linux network namespaces, so that
// multi-node tests can cut links and partition the network between agents
// that run as separate processes, without touching the machine's own
// network.
//
// New(t, n) makes n hosts and one switch. Every namespace of a lab carries
// the lab's name, "crl" followed by a random id, so labs of concurrent test
// runs never collide. Host i (1..n) is the namespace NAME-hI with one
// interface, eth0, holding Addr(i) = 10.251.0.i/24, and lo up; the other end
// of its veth, vI, sits in the switch namespace NAME-sw, enslaved to a
// bridge. Nothing of a lab lives in the root namespace, and its addresses
// exist only inside its own namespaces, so two labs may both use 10.251.0.1.
//
// Processes run in a host with Command(i, ...), a wrapper around
// "ip netns exec". A test can also hold sockets in a host itself: Listen(i,
// ...) and Dial(ctx, i, ...) open them from a thread that visits the host's
// namespace. Faults are made at the switch:
//
//   - Partition(groups...) moves each group's ports to a bridge of its
//     own (br1, br2, ...); hosts named in no group stay together on br0.
//     Hosts on different bridges cannot reach each other, while their
//     links stay up: it is a partition, not a link failure.
//   - Heal puts every port back on br0.
//   - Cut(i) sets host i's switch port down: host i sees its carrier go and
//     reaches nobody. Restore(i) sets it up again. Cut and Partition are
//     independent; Heal does not Restore and Restore does not Heal.
//
// # Graph labs
//
// NewGraph(t, n, edges), Line(t, n) (1-2-...-n) and Ring(t, n) make hosts
// that reach only their neighbours, with routing alone: the hosts share the
// switch as above, but Addr(i) sits on host i's lo as a /32 (the node
// address agents bind), each edge has a /30 of 10.252.0.0/16 on its two
// hosts' eth0 (EdgeAddr(a, b) is a's end), and each host has a route to
// each neighbour's node address through the edge, no default route, and
// forwarding off. A connection to a non-neighbour fails at once with
// "network is unreachable".
//
//   - CutEdge(a, b) cuts one edge silently: both hosts route the other's
//     node address to an on-link next hop whose static neighbour entry
//     names a MAC nobody has. Packets are lost on the wire, no carrier
//     changes, nothing answers: an established TCP connection stalls with
//     no error at either end (writes are buffered, reads wait) and a new
//     one times out. RestoreEdge(a, b) puts the routes back and the stalled
//     connection resumes at its next retransmission. (A blackhole or
//     unreachable route also stalls an established connection without an
//     error, but a new connect fails at once, with EINVAL or
//     EHOSTUNREACH, so the cut would not be silent.)
//   - ResetEdge(a, b) aborts every TCP connection between a and b at both
//     ends at once, with SOCK_DESTROY ("ss -K", needs the kernel's
//     CONFIG_INET_DIAG_DESTROY); it returns how many sockets it closed.
//     It does not cut the edge: CutEdge then ResetEdge is a cut with
//     resets.
//   - Partition and Heal work as above: an edge between hosts on different
//     bridges is cut silently, edges within a group carry on. Cut(i) takes
//     every edge of host i down at once (its routes stay, marked linkdown):
//     connections stall, dials time out, until Restore(i).
//
// New and NewGraph skip the test, with a message that says why, when it
// does not run as root, when the ip command (iproute2) is missing, or when
// the kernel refuses to create a network namespace. They register, before
// creating anything, a cleanup that kills by pid every process still inside
// the lab's namespaces (never the test process itself) and deletes the
// namespaces, so a failed or aborted test leaves nothing behind. The
// methods report failures with t.Fatalf and so must be called from the
// test's goroutine; Listen and Dial return errors instead.
package netlab
