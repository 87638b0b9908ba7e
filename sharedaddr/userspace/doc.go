// Package userspace is the user-space fallback of shared addresses (issue
// 13 item 7): a TCP proxy on the owner for hosts where the agent lacks
// CAP_NET_ADMIN and so cannot install the kernel path (sharedaddr/kernel),
// and the baseline the kernel path is measured against.
//
// A Proxy accepts on the shared address and port, picks the serving node
// by the same dispatch table and bucket function as the kernel path
// (kernel.Bucket over a ctl.Build table; ctl.Bucket for IPv6 clients,
// which the kernel path does not serve), dials the node's own address,
// writes a PROXY protocol v2 header naming the client and the shared
// address, and copies both ways with splice: (*net.TCPConn).ReadFrom
// between two TCP connections uses splice(2) on Linux (net/splice_linux.go),
// so the payload stays in the kernel. Each direction ends with a
// half-close of the other side; an error either way aborts both. Each
// connection costs two goroutines, both ended before Serve returns.
//
// A Listener on the serving node reads the header and gives the
// application conns whose RemoteAddr is the client's real address, as on
// the kernel path. nginx and HAProxy read the same header
// ("listen ... proxy_protocol", "accept-proxy").
//
// Off by default: the agent starts a Proxy per TCP port of each address
// it owns only with --shared-userspace, and drains it (Drain: the port
// closes, the relayed connections finish) when it loses the address.
// Against the kernel path it puts every byte through the owner, and its
// connections die with the proxy (a new owner cannot take them over).
//
// The header's wire format, its errors and its version history are in
// SPEC.md; the decoder (Parse, ReadHeader) takes outside input and is
// fuzzed (FuzzParse).
package userspace
