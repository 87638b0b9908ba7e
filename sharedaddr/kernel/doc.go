// Package kernel is the data path of shared addresses at kernel speed
// (issue 13 items 3, 4 and 5): it makes one node's network stack
// hold what a Plan says — the address, the nftables dispatch, the policy
// routes — and sends the gratuitous ARPs of a new owner. Nothing of it is
// on the data path in user space.
//
// The owner of an address holds it on the shared interface and answers
// ARP for it. A new flow's key (Weighted: source address and port; Sticky
// and StickyWild: source address) is hashed by nftables' jhash into the
// dispatch table's buckets; the bucket's node gives a packet mark, and an
// "ip rule fwmark" sends the packet to that node's route table, whose one
// route is "default via NODE dev IF onlink": the kernel forwards it with
// the node's MAC as destination and the destination address kept (direct
// routing). The owner's own share carries no mark and is delivered
// locally. Packets to an owned address skip conntrack (notrack), so the
// owner holds no per-flow state and a new owner with the same plan
// steers every flow as the old one did; flows whose bucket moved are kept
// on their node by exact-match exceptions (the walk's, issue 13 item 3).
//
// Every node holds the dispatch maps of every address, owned or not, as
// the replicated state gives them; only the owner's nft rules jump to
// them. Becoming owner is then a small nft batch (the set of owned
// addresses and the jumps), the fwmark rules and routes, and the address:
// about 20 ms with a 65537-bucket table in the tests, against 0.3–0.6 s
// for installing such a table from nothing.
//
// Every serving node holds the address as /32 on lo, with arp_ignore=1 and
// arp_announce=2 on the shared interface, so it never answers ARP for it
// and its ARP requests never carry it; it replies to the client directly
// from the address (direct return).
//
// The local rule. A packet to an address the owner holds would match the
// kernel's "lookup local" rule at priority 0 before any fwmark rule, and be
// delivered locally. The netns tests settled the choice between moving
// that rule and a proxy-ARP owner: the owner moves it, to LocalPref, behind
// its fwmark rules at RulePref (the rule is added at the new priority
// before the old one is removed, so there is no instant without it). A
// proxy-ARP owner would not hold the address, and then could neither serve
// its own share nor reply from it. Drop, and any Apply of a plan where the
// node owns nothing, put the rule back at priority 0.
//
// The bucket function is the kernel's: nftables' jhash with HashSeed over
// the key as the registers hold it (Bucket reproduces it in Go, and the
// tests check the two agree on every connection they make). It is not
// ctl.Bucket's FNV hash, which user space uses; what the two must share is
// the table: bucket → node for the same M, from ctl.Build.
//
// Ownership of state. Everything lives in the nft table "corral_sa"
// (family ip), rules at RulePref and LocalPref with protocol RTProto,
// route tables TableBase+i, and addresses labelled IF:sa and lo:sa; Apply
// finds the stale ones by those marks and removes them, so an Apply after a
// crash takes over what the crashed process left. The sysctls Apply sets
// (ip_forward on an owner; send_redirects=0, arp_ignore=1, arp_announce=2)
// are left as they are by Drop: they are harmless without the address.
//
// The client side (issue 13 item 4): a node leasing a slice of the
// address's source ports holds the address on lo and originates from it;
// the owner sends a packet to the address whose destination port is in a
// slice to the slice's node, ahead of the dispatch, so replies to a node's
// own flows reach it. A plan's slices never hold a port the address
// serves: ctl cuts a leased block around its service ports (its holes),
// and the plan carries the pieces as slices of their own, so a service on
// a port inside a block (1500, 8080) is dispatched, not sent to one node.
//
// Unmodified applications. An application that binds the address
// without the library (VIP:0, or a fixed port) sends from a port the
// owner routes to another node, or dispatches. So every node leasing a
// slice source-NATs the flows it originates from the address: the table's
// nat postrouting chain "snat" maps a new flow's source port outside the
// node's slices into its widest slice of the protocol ("ip saddr VIP th
// sport != SLICE snat to VIP:FIRST-LAST"), with conntrack keeping the
// mapping and undoing it on the replies; a flow already in a slice keeps
// its port (sharedaddr.Dial's). Conntrack and notrack: a nat chain sees
// only a flow's first packet, and an untracked packet none. The flows in
// to a service port stay out of conntrack on every node, both ways: the
// raw prerouting chain untracks the packets to a port a table names
// ("ip daddr VIP th dport PORT notrack") on a node that does not own the
// address, and the raw output chain "rawout" the packets from it ("ip
// saddr VIP th sport PORT notrack") on every node; so serving a flow
// costs a node no conntrack state or lookups, and the replies never
// reach a snat rule. The price: a flow a node originates from a served
// port is taken for a reply and not mapped. A served port inside one of
// the node's own slices stays tracked (a reply to one of its flows may
// come to it), and so do the flows of StickyWild's every-port tables,
// which no port tells from the node's own: on a node that does not own
// the address they are tracked, and their replies are replies to
// conntrack. The owner keeps its dispatch untracked — forwarding stays
// stateless, and a new owner needs no state — so its replies to flows
// it serves itself on a StickyWild address start flows as conntrack sees
// them; so the TCP rule takes only flows that start with a bare SYN (a
// reply starts with SYN-ACK, which conntrack finds invalid, or an ACK it
// picks up mid-stream and binds to no mapping), and the UDP rule leaves
// out the source ports the address serves (a Service's port). An owner of
// an address that serves every UDP port (StickyWild) cannot tell its UDP
// replies from its own flows and maps no UDP. The owner's raw chain
// leaves tracked the packets to the address whose destination port is in
// its own slices — the replies to its own flows, which conntrack must
// see to undo the mapping — ahead of the notrack of everything else. A
// mapped flow is node-local state: it ends with the node, as a flow
// would, and survives an owner failover as the slices' routing does.
// Conntrack runs in a namespace only while a rule needs it: the snat
// rules turn it on on every node leasing a slice, and removing a
// namespace's last one stops it, and with it the mapping of the flows
// held (the tests saw them reset); a rebuild of the table replaces the
// rules in one transaction and keeps it on. What the owner forwards
// stays untracked.
// The kernel picks the mapped port among those free in conntrack, not
// among sockets: a sharedaddr.Dial socket bound to a port a mapped flow
// holds, towards the same destination, collides with it.
//
// IP ident (issue 13 item 6): nodes sending from one address would take
// IP ids from their own uncoordinated counters, and a receiver merges the
// fragments of two nodes' datagrams with one id into one (or drops both).
// A plan's Addr.Ident is the node's block of the address's id space (its
// ctl.Ident lease); the table's output chain "ident" rewrites, before
// fragmentation, the id of every whole datagram from the address without
// DF ("ip saddr VIP ip frag-off & 0x7fff == 0 ip id set numgen inc mod
// LEN offset BASE", the header checksum fixed), so its fragments share an
// id no other node uses. The chain belongs to the roles, like the owned
// set: a changed block is a small batch, and restarts numgen's counter
// at BASE. Drop removes it with the table.
//
// Affinity (issue 13 item 3). Sticky by hash alone holds while the table
// does: a weight change or a new listener moves buckets, and their
// clients at once. An Addr.Affinity of at least 1 ms on a Sticky or
// StickyWild address keeps a client on its node while it keeps sending:
// each port group (the address's services with equal tables, which ctl
// gives the ports whose listeners and weights are equal; StickyWild's one
// table per protocol, so all its ports) has a dynamic nft map "fK_G",
// client address → mark, with the timeout. Ahead of each service's bucket
// rule, a rule looks the client up there, sets the entry's mark, and
// restarts its timeout ("update @fK_G { ip saddr : mark }", which keeps an
// existing entry's mark); a client without an entry is steered by its
// bucket and gets an entry for the node it went to. So it is consulted
// before the jhash and refreshed by every packet, established flows'
// included: a flow whose bucket moved stays on its node while its client
// is active, exception or not. The plain bucket rule stays last, for a
// client the full map (affSize) has no room for.
//
// Entries live on the owner only (only its chains jump to the maps), and
// die with it; so an owner seeds its maps from the exceptions, the flows
// the serving nodes reported they hold (their walk) whose bucket is
// another node: each exception's client gets an entry for the
// exception's node, in the map of the exception's service's port group,
// with the full timeout, unless it has one. A node that becomes owner (a
// failover, or its own process restarted: it starts fenced, owning
// nothing) seeds in the batch that takes the address, when no packet
// reaches its maps yet; an owner seeds the exceptions new in a plan in a
// batch after it. So a client with a live flow whose bucket moved keeps
// its node for its new flows across an owner change, as it did on the
// old owner. A client with live flows only on its bucket's node needs no
// seed: the table sends it there, and its next packet makes its entry.
// Not carried: an idle client (no live flow) whose entry was on the old
// owner — it follows the table; UDP flows, and flows of nodes that have
// not walked yet (no exception). Entries the maps hold survive a restart
// of the owner's process when the nft table is not rebuilt (the marks
// follow the plan's nodes, not the process).
//
// A change of the tables' shape rebuilds the nft table, maps included.
// A change of only the nodes buckets and exceptions name (a weight
// change, a drain) patches the maps instead: the batch that refills the
// roles deletes and re-adds just the elements that moved (a 65537-bucket
// table with a sixth of it moved: 0.1–0.23 s, against 0.39–0.47 s for
// the rebuild, in the tests), and leaves the affinity maps as they are —
// unless an affine address's table gains or loses a node, which
// rebuilds. A rebuild reads the affinity entries first and puts back
// those whose node is still in the new group's table, with the time they
// had left (at most the new timeout) and the node's new mark (marks are
// renumbered when the plan's nodes change). An entry whose node left the table (it stopped
// listening, was drained to weight 0, or left) is dropped: its client's
// next flow follows the new table at once. Entries made between the read
// and the commit are lost, and a rebuild after a restart carries none
// (the old plan, which names the marks, is kept in memory only): their
// clients follow the table and the seeds, as above. Dataplane.Affinities
// lists the entries.
//
// Not yet: IPv6, next hops given by MAC alone, ICMP errors about mapped
// flows (they reach the owner), and UDP source NAT on the owner of a
// StickyWild address.
package kernel
