package sharedaddr

import (
	"errors"
	"net/netip"
	"strconv"
)

// StackID names one IP stack: one Linux network namespace. It is the
// inode number of the namespace's nsfs file (/proc/PID/ns/net, or a file
// under /run/netns bound to it), which the kernel keeps unique for as long
// as the namespace exists and which every process in the namespace sees
// alike. Seed: netstackid_t.
type StackID uint64

// AllStacks asks a walk for every stack it can reach. Seed: a negative
// stack_id given to cl_tcp_walk_list.
const AllStacks StackID = ^StackID(0)

// Proto is an IP protocol number, as in the IP header.
type Proto uint8

// The protocols the hooks are called with.
const (
	ProtoIP  Proto = 0  // IPPROTO_IP: IsClusterWide and IPIdent for any datagram
	ProtoTCP Proto = 6  // IPPROTO_TCP
	ProtoUDP Proto = 17 // IPPROTO_UDP
	ProtoESP Proto = 50 // IPPROTO_ESP: the SPI hooks
	ProtoAH  Proto = 51 // IPPROTO_AH: the SPI hooks
)

func (p Proto) String() string {
	switch p {
	case ProtoIP:
		return "ip"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoESP:
		return "esp"
	case ProtoAH:
		return "ah"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// Args is the extensible last argument of every hook (seed: void *args,
// "to accommodate all other possible parameters"). The seed's callers pass
// NULL; here a caller may pass nil, and an implementation must treat nil
// as the zero Args. Fields are only ever appended, each documented with
// the hooks that fill it, so an implementation built against an older Args
// keeps working: a field it does not know is a field it ignores.
type Args struct {
	// TimeWait is set on Disconnect when this end closed first, so the
	// kernel keeps the 4-tuple in TIME_WAIT (60 s on Linux) after the
	// hook: the flow's packets may still arrive and the cluster should
	// keep steering them here until a walk no longer reports the tuple.
	// Solaris calls cl_inet_disconnect after TIME_WAIT instead; user space
	// cannot see that moment, so the hook comes at close with this flag.
	TimeWait bool
}

// Hooks is the cluster's side of a shared address, called by this
// package where the Solaris TCP/IP stack calls the seed's cl_inet_*
// vectors (doc.go has the map). Every method takes the stack first and
// *Args last, as the seed's signatures do. The address family is folded
// into netip: an IPv4 address is a 4-byte netip.Addr, IPv6 a 16-byte one.
//
// A nil Hooks means not clustered, as the seed's NULL vectors do: the
// wrappers then behave exactly as package net and call nothing.
//
// The wrappers call the event hooks (Listen, Bind, Connect, ...) only for
// an address IsClusterWide accepts, or for an unspecified address a
// listener or a UDP socket is bound to (it receives for every local
// address, the shared ones included, as INADDR_ANY does for
// cl_inet_listen). Methods may be called from many goroutines at once.
type Hooks interface {
	// IsClusterWide reports whether laddr is a shared address of stack s.
	// Seed: cl_inet_isclusterwide.
	IsClusterWide(s StackID, p Proto, laddr netip.Addr, a *Args) bool
	// IPIdent returns the IP identification for a datagram from the
	// shared address laddr to faddr, unique in the cluster. Seed:
	// cl_inet_ipident (the kernel stores the low 16 bits).
	IPIdent(s StackID, p Proto, laddr, faddr netip.Addr, a *Args) uint32
	// GetSPI fills buf with a candidate SPI, unique in the cluster. Seed:
	// cl_inet_getspi, which replaces random_get_pseudo_bytes.
	GetSPI(s StackID, p Proto, buf []byte, a *Args)
	// CheckSPI returns an error wrapping ErrSPIInUse when spi may not be
	// added on this node. Seed: cl_inet_checkspi returning -1.
	CheckSPI(s StackID, p Proto, spi uint32, a *Args) error
	// DeleteSPI frees spi. Seed: cl_inet_deletespi.
	DeleteSPI(s StackID, p Proto, spi uint32, a *Args)
	// IdleSA reports an inbound packet on an idle SA (src to dst), so the
	// cluster can move the SA here. Seed: cl_inet_idlesa.
	IdleSA(s StackID, p Proto, spi uint32, src, dst netip.Addr, a *Args)
	// Listen: a TCP socket listens on laddr (the address may be
	// unspecified). Seed: cl_inet_listen.
	Listen(s StackID, p Proto, laddr netip.AddrPort, a *Args)
	// Unlisten: that listener closed. Seed: cl_inet_unlisten.
	Unlisten(s StackID, p Proto, laddr netip.AddrPort, a *Args)
	// Bind: a UDP socket is bound to laddr. Seed: cl_inet_bind (Solaris
	// calls it for UDP only; TCP has Listen).
	Bind(s StackID, p Proto, laddr netip.AddrPort, a *Args)
	// Unbind: that socket closed. Seed: cl_inet_unbind.
	Unbind(s StackID, p Proto, laddr netip.AddrPort, a *Args)
	// Connect registers a flow from a shared address: outgoing after the
	// source port is chosen and before the SYN (or the first UDP datagram
	// to a new destination), incoming when an accepted connection is
	// handed to the application. A non-nil error vetoes it: the dial
	// fails with ErrRefused and no SYN is sent, an incoming connection is
	// closed, a UDP datagram is not sent. Seed: cl_inet_connect2.
	Connect(s StackID, p Proto, isOutgoing bool, laddr, faddr netip.AddrPort, a *Args) error
	// Disconnect: a TCP flow Connect accepted is gone (called once per
	// accepted Connect). Seed: cl_inet_disconnect.
	Disconnect(s StackID, p Proto, laddr, faddr netip.AddrPort, a *Args)
}

// PortChooser is implemented by Hooks that lease slices of the source
// ports of a shared address to nodes (issue 13 item 4). The seed has no
// such hook: Solaris picks the ephemeral port and cl_inet_connect2 may
// only veto it. An outgoing connection from a shared address asks
// SourcePort for a port before binding; try counts from 0 and grows by one
// each time the chosen port was already bound on this node. A zero port
// lets the kernel choose. Hooks without this method get the kernel's
// choice, which Connect may still refuse.
type PortChooser interface {
	SourcePort(s StackID, p Proto, laddr netip.Addr, faddr netip.AddrPort, try int, a *Args) (uint16, error)
}

// Errors callers branch on.
var (
	// ErrRefused: the Connect hook vetoed a flow. The hook's own error is
	// wrapped next to it.
	ErrRefused = errors.New("sharedaddr: refused by the cluster")
	// ErrSPIInUse: CheckSPI refused an SPI.
	ErrSPIInUse = errors.New("sharedaddr: SPI in use in the cluster")
	// ErrNoSourcePort: every source port the PortChooser offered was
	// already bound on this node.
	ErrNoSourcePort = errors.New("sharedaddr: no free source port in the node's slice")
	// ErrMalformed: a sock_diag message does not follow SPEC.md.
	ErrMalformed = errors.New("sharedaddr: malformed sock_diag message")
	// ErrStack: the network namespace of a stack cannot be opened or
	// entered.
	ErrStack = errors.New("sharedaddr: stack unavailable")
	// ErrUnsupported: the walk or the namespaces need Linux.
	ErrUnsupported = errors.New("sharedaddr: not supported on this platform")
)
