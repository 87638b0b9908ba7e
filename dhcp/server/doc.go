// Package server is corral's DHCPv4 server (RFC 2131/2132) on the data
// service: in.dhcpd's rules over dsvc network containers and a dhcptab,
// answering through the dhcp/netio socket layer.
//
// # Owners and several servers
//
// Every network record names in its SIP the server that owns it, the one
// that may allocate it. A Server allocates only records whose SIP is one
// of its owner addresses (Config.Owners); several servers share one
// datastore, each with its own owners. Every write presents the
// signature of the record as read, so two servers (or two workers) racing
// for one address get one success and one dsvc.ErrCollision: the loser
// rereads and gives up or tries again; no address is ever held by two
// clients.
//
// # The exchange
//
//   - DISCOVER: the client's live offer again; else its binding in the
//     network (any owner: another server's MANUAL or unexpired binding
//     is left to that server, which answers); else the address it asks
//     for if free; else a free or expired dynamic record of ours from a
//     per-network candidate list filled by one store scan at a time. The
//     address is reserved in the network's offer cache (by client id and
//     by address, Config.OfferTTL); nothing is written.
//   - REQUEST, selecting (server identifier present): another server's id
//     drops our offer, silently; ours commits the offered address with the
//     offer's signature (rereading after a collision) and ACKs only after
//     ModifyDN returned, so the lease is durable before the client uses it.
//   - REQUEST, init-reboot (no server id, no ciaddr): NAK for an address
//     off the network, a wrong address, an unusable one or an expired
//     lease; silent with no binding (a server not sharing this store may
//     know the client) or one owned by another server; else the lease is
//     extended.
//   - REQUEST, renewing or rebinding (ciaddr): the binding of client id
//     and ciaddr is extended; another server's binding only once the
//     client's secs reach Config.SecondaryServerTimeout, to give the owner
//     time to answer first.
//   - DECLINE marks the record UNUSABLE (keeping its client id); RELEASE
//     frees it (client id 00, lease 0) unless MANUAL; INFORM is ACKed with
//     the options and no address.
//   - BOOTP (no option 53): the client's BOOTP binding, else a free
//     BOOTP-only record of ours, bound permanently at once.
//
// Leases: PERMANENT records get an infinite lease; else the macros'
// LeaseTim (Config.DefaultLease without one), or the client's shorter
// request with LeaseNeg. T1 is 50 % and T2 87.5 % of the lease unless the
// macros set T1Time/T2Time. Options come from the dhcptab (package
// dhcptab: class, network, the record's macro, client id), the parameter
// request list first within the client's maximum message size.
//
// Replies go as RFC 2131 §4.1 says: to giaddr:67 when relayed, else to
// ciaddr:68 when the client has an address, else broadcast out of the
// ingress interface; a NAK is broadcast unless relayed.
//
// # Concurrency
//
// There is no global lock on the hot path: the netio workers run Handle
// concurrently; each network has its own offer cache under its own mutex
// (held only for map operations, never across a store call), the option
// table is immutable and swapped by Reload, counters are atomic. A worker
// blocks only on its own store calls, so the worker count is what keeps
// the store busy: unset, it follows the module (DefaultWorkers): 256 for
// one that orders writes itself, as the cluster module's log does, whose
// commit many waiting writes share; 2 for files and binfiles, whose file
// lock serializes every call. The kernel copies a broadcast to
// every SO_REUSEPORT socket: only socket 0's copy is answered.
//
// A request belongs to giaddr's network when relayed, else to ciaddr's
// when that is a served network (a relayed client renews straight to the
// server), else to its ingress interface's. Broadcasting clients are
// heard only on a wildcard listen address.
package server
