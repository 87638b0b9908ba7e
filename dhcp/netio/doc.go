// Package netio is the DHCP server's socket layer, built for rate: it
// reads BOOTREQUESTs from several UDP sockets, drops malformed ones before
// any parse, and hands the rest to a bounded pool of handler goroutines.
//
// # Shape
//
// Listen opens Config.Sockets UDP sockets on one address with
// SO_REUSEPORT (the kernel spreads datagrams over them by flow hash),
// SO_BROADCAST, IP_PKTINFO and a large receive buffer (SO_RCVBUFFORCE
// when permitted, else SO_RCVBUF up to net.core.rmem_max). Serve starts
// one reader per socket, which reads up to Config.Batch datagrams per
// recvmmsg (golang.org/x/net/ipv4 ReadBatch) into pooled buffers, runs
// Check on each and puts what passes on one of two queues of
// Config.Queue packets; Config.Workers goroutines take packets off them
// and call the Handler. A full queue drops the packet and counts it
// (DropQueueFull): the reader never waits for a handler, so a slow
// handler costs drops, not a growing kernel backlog of stale requests.
// There is no goroutine and no allocation of a buffer per packet.
//
// Overload: DISCOVERs (and BOOTREQUESTs) start exchanges, the other
// requests finish them, so the others have their own queue, which the
// workers empty first, and a DISCOVER that waited over Config.MaxWait is
// dropped unhandled (DropStale). An overloaded server then spends its
// store calls on the REQUESTs of the OFFERs it made and on DISCOVERs it
// can still answer in time. With one FIFO queue, perfdhcp beyond the
// cluster module's capacity made every reply late (ACK delays over 1s),
// so most of the work went to exchanges the client had given up on, and
// DORA/s fell well below the capacity (bench/dhcp.sh, 3 nodes: about
// 3100 DORA/s offered 7000, 650 offered 10000).
//
// A handler answers through Reply.Send, on the socket the request came
// in on, with the ingress interface of the request (Packet.IfIndex) when
// the reply is a broadcast that must leave by that interface. It may keep
// the Reply and answer after returning (an ACK sent once the lease is
// durable) until Serve returns. Packet and its Data go back to the pool
// when the handler returns.
//
// Serve returns when its context ends, after every reader, worker and
// writer goroutine has ended; it closes the sockets. Stats has the
// counters, drops by DropReason.
//
// # Writes
//
// WriteGather (the default) copies each reply to a writer goroutine per
// socket that sends what has gathered with one sendmmsg; WriteDirect
// sends it from the handler with one sendmsg. BenchmarkServe (loopback,
// echo handler, 4 clients × 32 in flight, on 2 cores shared with other
// work, so noisy: medians of 4 runs of 40 000 requests, replies/s):
//
//	sockets batch   direct   gather
//	1       1       31.7k    41.8k
//	1       32      26.4k    26.0k
//	2       1       30.7k    49.8k
//	2       32      52.0k    60.4k
//
// Gathering never lost and usually won: handlers hand off a copy and go
// back to the queue, and one sendmmsg carries many replies. Two sockets
// with batched reads are the fastest here (one socket per core, readers
// on both); the default is a socket per CPU and batches of 32. Check
// costs 44 ns per DISCOVER (BenchmarkCheck) and allocates nothing.
//
// # Relays and perfdhcp
//
// A relay (and perfdhcp, which pretends to be one) sends from giaddr:67 to
// the server's unicast address; the reply goes to giaddr:67 (Packet.Src
// for perfdhcp). perfdhcp binds port 67 on its own address, so a server
// under test binds a specific address, not 0.0.0.0:67.
package netio
