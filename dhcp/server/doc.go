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
// # Failover
//
// Servers on the cluster module, one per node, name each other in
// Config.Cluster (node id and owner addresses of every peer) and follow
// the local agent's membership views (SetView; corral dhcp serve feeds
// them). A view is decided by the cluster log, so every server sees the
// same sequence of views. In a view, a record whose SIP is a live peer's
// is that peer's; a record whose SIP is a departed peer's is the share
// of the live peer at index (address mod live peers) in node id order:
// that server offers it, ACKs its REQUESTs, and extends its client's
// binding at once when the client rebinds (or reboots) after its own
// server died, so the client keeps its address. Records are not
// rewritten to move them: the view moves them, so a returning peer owns
// all its records again when its server sees the view with it (a share
// back of every address not leased meanwhile; the leases granted in its
// absence stay valid, and their clients rebind to it). A server whose
// own node is not in the view takes nothing over.
//
// Every lease is still a signed write committed on a majority before
// its ACK, so two servers with different views (one sees the new view a
// little later) can at worst race for one address, and the signature
// turns that into a collision: one client gets it. A node cut off from
// the majority may still offer from its replica (reads=local) but
// cannot commit, so it cannot ACK: the split-brain of two active/active
// servers leasing one address cannot happen.
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
// With Config.ICMPProbe (in.dhcpd's ICMP_VERIFY) a free or expired
// address is pinged before its first OFFER (probe.go): an answer means a
// host squats on it, so the record is marked UNUSABLE (a write with its
// signature; the client id stays as it was), counted (Stats.ProbeHits,
// corral_dhcp_probe_hits_total), logged, and the next candidate is
// probed, up to four for one DISCOVER. The probe holds its worker for at
// most Config.ICMPTimeout; at most 32 are in flight (a DISCOVER that
// finds no slot within the timeout is offered unprobed), an address that
// stayed quiet is not pinged again for 10 s, and workers probing one
// address share one echo. The client's binding and its live offer are
// never probed. The socket is an unprivileged ping socket where
// net.ipv4.ping_group_range admits the process's group, else a raw one
// (root or CAP_NET_RAW).
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
// # The dhcptab
//
// Reload (SIGHUP for corral dhcp serve) rereads the dhcptab and flushes
// the offer caches. With Config.RescanInterval (in.dhcpd -t) Run also
// rereads it every interval (rescan.go): when the records differ from
// those the table was built from, a new table is swapped in and that is
// logged; an unchanged dhcptab logs nothing. A rescan keeps the offers:
// they hold records, and options are built at each reply.
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
