// Package spi hands out, on one node, the values of the per-node blocks
// that ctl leases through the cluster log and that need no round trip
// once leased (issue 13 item 6): IPsec SPIs from the node's SPI blocks of
// a stack, and IP ident values for user-space senders from the node's
// ident block of a shared address.
//
// An SPI is unique in the cluster because each block of a stack's SPI
// space is leased to one node at a time (ctl refuses a second lease, and
// a node's blocks go back only by a RELEASE or a view without it, both
// log entries): Get picks at random inside the node's own blocks, never
// one it has handed out and not freed, never 0–255 (reserved; ctl's
// blocks start at 2^24 anyway). Check is the seed's checkspi for an SPI
// chosen by someone else: refused if outside the node's blocks or in
// use. Delete frees. IdleSA is reported to a callback with the node
// whose block the SPI is in, the SA's active node, to which the caller
// sends it. The in-use sets are the node's, in memory: the SAs that use
// them live in the kernel's SA database and go with the node.
//
// This machine's kernel has no ESP, no AH and no PF_KEY: nothing here is
// wired to an SA database, and the package is tested as allocator logic
// over a real ctl.Machine, its snapshot and its replay. On a kernel with
// ESP a block plugs into XFRM_MSG_ALLOCSPI's min and max.
//
// IP ident: the kernel's rule (sharedaddr/kernel, Addr.Ident) numbers the
// node's fragmentable datagrams from one part of its ident block;
// SplitIdent gives the rest to IPIdent, a counter for senders that build
// their own IP headers and fragments, so the two never meet.
package spi
