package spi

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/ctl"
)

// Block is a range of values, First … Last.
type Block struct{ First, Last uint32 }

// Len is the number of values in the block; Block{1, 0} is empty.
func (b Block) Len() uint32 { return b.Last - b.First + 1 }

// SplitIdent cuts a node's ident block in two: the kernel rule's part
// (sharedaddr/kernel Addr.Ident), and the top eighth for IPIdent, whose
// user-space senders are rare. A block too small to cut is the
// kernel's, and user is empty.
func SplitIdent(b Block) (kernel, user Block) {
	n := b.Len() / 8
	if n == 0 {
		return b, Block{1, 0}
	}
	return Block{b.First, b.Last - n}, Block{b.Last - n + 1, b.Last}
}

// Addrs gives the shared addresses and their leases: *ctl.Machine.
type Addrs interface {
	Addrs() []ctl.AddrInfo
}

// Idle is an inbound packet on an idle SA (the seed's cl_inet_idlesa):
// Node is the node whose block the SPI is in, the SA's active node, to
// which the caller sends it; 0 when the SPI is in no leased block.
type Idle struct {
	Stack    sharedaddr.StackID
	Proto    sharedaddr.Proto
	SPI      uint32
	Src, Dst netip.Addr
	Node     uint64
}

// Hooks implements the SPI and IP ident methods of sharedaddr.Hooks for
// one node; a full Hooks embeds it. Its fields are set before use.
type Hooks struct {
	Self uint64
	SPI  *Allocator
	// Addrs gives the node's ident blocks. It is read on every IPIdent
	// (Addrs copies the machine's state): user-space senders of
	// fragmentable datagrams are rare.
	Addrs Addrs
	// OnIdle receives IdleSA reports; nil drops them.
	OnIdle func(Idle)

	mu sync.Mutex // guards next
	// next is the counter of each block IPIdent has used, by address and
	// block, so a new block starts a new counter.
	next map[identKey]uint32
}

type identKey struct {
	addr  ctl.Addr
	block Block
}

// identBlock returns the user part of the node's ident block of the
// address.
func (h *Hooks) identBlock(a ctl.Addr) (Block, bool) {
	for _, ai := range h.Addrs.Addrs() {
		if ai.Addr != a {
			continue
		}
		for _, l := range ai.Leases {
			if l.Kind == ctl.Ident && l.Node == h.Self {
				_, u := SplitIdent(Block{l.First, l.Last})
				return u, u.Len() > 0
			}
		}
	}
	return Block{}, false
}

// IPIdent returns the next id of the user part of the node's ident block
// of laddr (a counter mod its length plus its base), unique in the
// cluster: other nodes' blocks are theirs, and the kernel's rule numbers
// from the other part. 0 if the node holds no block of laddr: the sender
// then leaves the id to the kernel.
func (h *Hooks) IPIdent(s sharedaddr.StackID, p sharedaddr.Proto, laddr, faddr netip.Addr, a *sharedaddr.Args) uint32 {
	k := identKey{addr: ctl.Addr{Stack: uint64(s), IP: laddr.Unmap()}}
	b, ok := h.identBlock(k.addr)
	if !ok {
		return 0
	}
	k.block = b
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.next == nil {
		h.next = map[identKey]uint32{}
	}
	n := h.next[k]
	h.next[k] = (n + 1) % b.Len()
	return b.First + n
}

// GetSPI writes a fresh SPI of the stack into buf's first 4 bytes, big
// endian (network order); zeros, an SPI that is never valid, when the
// node has none to give.
func (h *Hooks) GetSPI(s sharedaddr.StackID, p sharedaddr.Proto, buf []byte, a *sharedaddr.Args) {
	if len(buf) < 4 {
		return
	}
	spi, err := h.SPI.Get(s)
	if err != nil {
		h.SPI.log.Warn("no SPI to give", "stack", uint64(s), "err", err)
		spi = 0
	}
	binary.BigEndian.PutUint32(buf, spi)
}

// CheckSPI is Allocator.Check.
func (h *Hooks) CheckSPI(s sharedaddr.StackID, p sharedaddr.Proto, spi uint32, a *sharedaddr.Args) error {
	return h.SPI.Check(s, spi)
}

// DeleteSPI is Allocator.Delete.
func (h *Hooks) DeleteSPI(s sharedaddr.StackID, p sharedaddr.Proto, spi uint32, a *sharedaddr.Args) {
	h.SPI.Delete(s, spi)
}

// IdleSA reports the packet to OnIdle with the SA's active node.
func (h *Hooks) IdleSA(s sharedaddr.StackID, p sharedaddr.Proto, spi uint32, src, dst netip.Addr, a *sharedaddr.Args) {
	if h.OnIdle == nil {
		return
	}
	node, _ := h.SPI.Holder(s, spi)
	h.OnIdle(Idle{Stack: s, Proto: p, SPI: spi, Src: src, Dst: dst, Node: node})
}
