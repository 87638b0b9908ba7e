// Package ctl is the control plane of shared addresses in the cluster log:
// the rsm machine (id rsm.SharedAddr) that holds, for every shared address,
// its configuration (stack, policy, weights, affinity timeout), the nodes
// that listen on its ports, and the per-node blocks leased from it — slices
// of its source ports, blocks of its IP ident space — and, per stack, the
// blocks of the IPsec SPI space. Everything comes from the log, so every
// node holds the same state and derives from it, without a round trip, the
// same owner of each address (Owner) and the same weighted consistent-hash
// dispatch table (Table, Maglev-style).
//
// It also holds, per address, a table generation that moves whenever a
// table of the address changes, and the exceptions of the flows whose
// bucket moved (EXCEPT, UNEXCEPT): each node reports, for a generation,
// the flows it holds whose bucket in the new tables is another node, so
// the owner keeps them where they are, and a new owner has them from the
// log without asking the nodes to walk again. The reports say which nodes
// have walked for the present generation.
//
// The machine is deterministic: a bad or refused command is answered in
// its reply with a typed Code, the same on every node, never by failing
// Apply. It follows the view through rsm.ViewObserver: the membership
// view of every NEWVIEW is kept in its state (owners are chosen from it),
// and the listeners and leases of nodes that left are released in the
// same entry. The byte layouts of the commands, the replies, the key space
// and the snapshot are in SPEC.md.
//
// The kernel data path that installs the table, the agent service and the
// CLI (issue 13 items 3 to 6) read this package; it touches no socket.
package ctl
