// Package sharedaddr is corral's side of a shared address: one IP used by
// every node of the cluster, for the services they serve and for the
// connections they make. It holds the seed's TCP/IP hooks for clustering
// (PSARC 1997/314 as revised for RFE 6717519) as a Go interface, Hooks;
// the walk of the live TCP connections a stack exports to the cluster,
// WalkTCP (the seed's cl_tcp_walk_list); and Listen, Dial and
// ListenPacket, shaped like package net's, which call the hooks where the
// Solaris stack calls them. The control plane in the cluster log, the
// kernel data path and failover (issue 13 items 2 to 7) build on it and
// live elsewhere.
//
// # Stacks
//
// A stack is one IP stack, which on Linux is one network namespace: a
// Stack is opened from the namespace's nsfs file (Open) or is the
// process's own (Current), and its StackID is that file's inode, the same
// for every process in the namespace. Every hook takes the StackID first
// and an extensible *Args last, as the seed's signatures do (its
// netstackid_t and void *args); the address family is folded into
// net/netip. Sockets a Stack opens are created on a thread that has
// joined its namespace and stay there, so addresses must be literal IPs:
// a name lookup would run on other threads, outside it.
//
// # Where the hooks are called
//
// A nil Hooks means not clustered, as the seed's NULL vectors do: every
// wrapper is then plain package net and nothing is called. Otherwise:
//
//	Solaris call site                  here
//	tcp_do_listen → cl_inet_listen     Stack.Listen, once the socket listens
//	ipcl_conn_unlisten → unlisten      the listener's Close
//	tcp_input_listener → connect2(in)  Accept, before it returns the conn; a
//	                                   refusal closes it and Accept goes on
//	tcp_do_connect → connect2(out)     Dial, after binding the source port and
//	                                   before connect(2): refusal = ErrRefused,
//	                                   no SYN sent
//	tcp_closei_local → disconnect      the conn's Close (or a failed connect
//	                                   after Connect), once; Args.TimeWait
//	                                   says the tuple lingers in TIME_WAIT
//	udp_do_bind → cl_inet_bind         ListenPacket
//	udp_do_close → cl_inet_unbind      the packet conn's Close
//	udp_do_connect → connect2(out)     Dial("udp", ...)
//	udp_output_newdst → connect2(out)  WriteTo a destination not yet
//	                                   registered by this socket
//	ip_output → isclusterwide/ipident  not called here: the IP ident of
//	                                   fragmentable datagrams is set in the
//	                                   kernel data path (item 6); IPIdent,
//	                                   for senders that build their own
//	                                   headers, is sharedaddr/spi's
//	sadb → getspi/checkspi/...         not called here: this kernel has no
//	                                   ESP; sharedaddr/spi implements them
//	                                   over the node's SPI blocks
//	cl_tcp_walk_list                   Stack.WalkTCP and WalkTCP, called by the
//	                                   cluster, not a hook
//
// The event hooks are called only for a socket bound to a shared address
// (IsClusterWide says which) or, for Listen and Bind, to the unspecified
// address, which receives for the shared ones too; a socket on any other
// address calls nothing. An outgoing flow from a shared address takes its
// source port from the hooks when they implement PortChooser (the node's
// slice of the address's ports, item 4), else from the kernel; either way
// Connect sees the whole 4-tuple before the first packet leaves.
//
// # The walk
//
// WalkTCP reads the stack's TCP sockets from the kernel through sock_diag
// (NETLINK_SOCK_DIAG, inet_diag dumps for IPv4 and IPv6, every state:
// listeners, established and TIME_WAIT sockets included, as Solaris's
// walk of the classifier includes TIME_WAIT). The messages are decoded by
// explicit code; SPEC.md has the byte tables, and testdata/diag holds
// captured datagrams as golden vectors.
//
// # Applications that do not use this package
//
// A process that opens plain sockets on a shared address calls no hook.
// It is covered by observation instead, a later item of issue 13: the
// agent polls sock_diag for listening sockets (the walk above sees every
// socket of the namespace, whoever opened it) and follows conntrack's
// NEW and DESTROY events for its flows, and feeds the same Hooks from
// them. Until then such an application is served only by nodes whose
// listeners the cluster learns some other way.
package sharedaddr
