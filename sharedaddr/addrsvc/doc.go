// Package addrsvc is the agent's shared-address service: the part of
// every agent that writes the shared-address machine (sharedaddr/ctl)
// through the cluster log and hands its state to the data path.
//
// It does four things. It proposes the machine's commands (ADD, DEL,
// LISTEN, UNLISTEN, LEASE, RELEASE) and returns the machine's reply, a
// refusal as a *RefusedError that matches the sentinel of its code
// (ErrExists, ErrBadField, …). It keeps, on every node in the view, this
// node's leases for every address in the committed state — one source-port
// slice per protocol (TCP, UDP), one IP-ident block, and one SPI block per
// stack — proposing a missing one, one proposal at a time, with a backoff
// per lease after a failure, so a refusing or leaderless log is never
// flooded; the machine itself releases a node's leases when it leaves the
// view and an address's when the address is deleted, and the service
// releases its SPI block of a stack with no address left. It gives the
// data path (sharedaddr/kernel, which it does not import) a Source: a
// deterministic State — every address with its owner, listeners, leases
// and dispatch tables — and a change notification after every applied
// entry that changes it. And, given a Walker of the agent's own stack,
// it observes the sockets listening on a shared address there (for
// applications that do not use sharedaddr.Listen) and makes this node's
// TCP listeners in the log match them; and it keeps this node's
// exceptions (ctl's EXCEPT, UNEXCEPT): when an applied entry gives an
// address a new table generation, it walks its connections to the
// address (established and TIME_WAIT) and proposes, tagged with the
// generation, the flows whose bucket in the new tables (Config.Bucket:
// the kernel's) is another node — an empty EXCEPT too, so the owner
// knows this node has reported — and, every Recheck while it holds
// exceptions, withdraws those of flows that are gone. State exposes the
// exceptions and, per address, the generation each node reported for.
//
// The admin opcodes ADDR_ADD, ADDR_DEL and ADDR_LIST (proto/admin,
// SPEC.md) are served here, for `corral addr`.
package addrsvc
