// Package agent is the wiring of the daemon that runs on every node. It
// reads the configuration, builds the parts — the mesh of peer links
// (mesh), this node's life on the cluster log (cluster), the event stream
// (eventstream), the interface watch (netmon), the metrics server (obs),
// the services (service) — hands each its dependencies, and owns the unix
// sockets in the data directory that serve the admin protocol (admin.sock,
// mode 0600) and the client protocol (client.sock, mode 0660), dispatching
// their opcodes by range to the agent's own admin handler and to the
// services that serve them.
//
// Run starts the parts in order and stops them in the reverse order: at
// shutdown the clients get SHUTDOWN and what was published before it, then
// the local sockets close, then the services, the mesh (GOODBYE on every
// link), the cluster log and the interface watch. A part that fails (the
// log cannot be written) stops the agent and Run returns its error, so the
// process exits non-zero.
//
// With --shared-iface the agent also drives the shared addresses' kernel
// data path (sharedaddr.go): it makes the stack hold this node's part of
// the shared-address state (sharedaddr/kernel), announces an address it
// takes over, and fences — drops what it owns — when it loses contact with
// a quorum, before the majority's heartbeat timeout ends. A table change
// resets no held flow: every node reports, through the log, the flows it
// holds whose bucket moved (addrsvc's exceptions), and the owner keeps
// applying an address's old tables until every member of the view has
// reported for the new table generation, or for at most a second; then it
// applies the new tables and the exceptions in one Apply. A takeover is not
// held back. Non-owners follow the state as it is (their tables are
// standby). Off by default: nothing is installed and no root is needed.
//
// The policy — who joins, who is removed, eviction and rejoin — is not
// here: it is membership's controller, driven by cluster.
package agent
