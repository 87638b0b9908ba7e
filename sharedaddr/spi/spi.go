package spi

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"

	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/ctl"
)

var (
	// ErrNoBlock: the node holds no SPI block of the stack.
	ErrNoBlock = errors.New("spi: no SPI block of the stack leased to this node")
	// ErrNotOurs: the SPI is outside every block the node holds. Check
	// wraps it together with sharedaddr.ErrSPIInUse.
	ErrNotOurs = errors.New("spi: SPI outside this node's blocks")
	// ErrFull: no free SPI was found in the node's blocks.
	ErrFull = errors.New("spi: the node's SPI blocks are full")
)

// Reserved is the count of SPIs from 0 that are never handed out
// (RFC 4303: 1–255 reserved by IANA, 0 local).
const Reserved = 256

// tries bounds Get's random draws: with blocks of 2^24 a draw hits an
// SPI in use with a probability of (in use)/2^24.
const tries = 64

// Leases gives the SPI blocks leased in the cluster: *ctl.Machine.
type Leases interface {
	SPILeases() []ctl.Lease
}

// Allocator hands out the SPIs of one node. Its blocks are read from
// Leases on every call, so it follows the log without notification.
type Allocator struct {
	self   uint64
	leases Leases
	log    *slog.Logger

	mu    sync.Mutex // guards inUse and rnd
	inUse map[sharedaddr.StackID]map[uint32]struct{}
	rnd   *rand.Rand
}

// New returns the allocator of node self over leases. log may be nil.
func New(self uint64, leases Leases, log *slog.Logger) *Allocator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Allocator{self: self, leases: leases, log: log.With("subsystem", "sharedaddr/spi"),
		inUse: map[sharedaddr.StackID]map[uint32]struct{}{},
		rnd:   rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
}

// blocks returns the node's blocks of the stack.
func (a *Allocator) blocks(s sharedaddr.StackID) []ctl.Lease {
	var out []ctl.Lease
	for _, l := range a.leases.SPILeases() {
		if l.Kind == ctl.SPI && sharedaddr.StackID(l.Stack) == s && l.Node == a.self {
			out = append(out, l)
		}
	}
	return out
}

// Holder returns the node whose block of the stack spi is in.
func (a *Allocator) Holder(s sharedaddr.StackID, spi uint32) (node uint64, ok bool) {
	for _, l := range a.leases.SPILeases() {
		if l.Kind == ctl.SPI && sharedaddr.StackID(l.Stack) == s && l.First <= spi && spi <= l.Last {
			return l.Node, true
		}
	}
	return 0, false
}

// Get returns an SPI of the stack, random inside the node's blocks, not
// in use, and marks it in use until Delete.
func (a *Allocator) Get(s sharedaddr.StackID) (uint32, error) {
	bs := a.blocks(s)
	if len(bs) == 0 {
		return 0, fmt.Errorf("%w: stack %#x", ErrNoBlock, uint64(s))
	}
	var total uint64
	for _, b := range bs {
		total += uint64(b.Last-b.First) + 1
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	used := a.inUse[s]
	if used == nil {
		used = map[uint32]struct{}{}
		a.inUse[s] = used
	}
	for range tries {
		r := a.rnd.Uint64N(total)
		var spi uint32
		for _, b := range bs {
			if n := uint64(b.Last-b.First) + 1; r < n {
				spi = b.First + uint32(r)
				break
			} else {
				r -= n
			}
		}
		if _, taken := used[spi]; taken || spi < Reserved {
			continue
		}
		used[spi] = struct{}{}
		return spi, nil
	}
	return 0, fmt.Errorf("%w: stack %#x, %d in use", ErrFull, uint64(s), len(used))
}

// Check claims spi, chosen elsewhere, for an SA on this node (the seed's
// checkspi): an error wrapping sharedaddr.ErrSPIInUse if it is reserved,
// in another node's block or in none (and then ErrNotOurs too), or
// already in use here — an SPI Get returned is in use. On success spi is
// in use until Delete.
func (a *Allocator) Check(s sharedaddr.StackID, spi uint32) error {
	if spi < Reserved {
		return fmt.Errorf("%w: %w: %#x is reserved", sharedaddr.ErrSPIInUse, ErrNotOurs, spi)
	}
	ours := false
	for _, b := range a.blocks(s) {
		if b.First <= spi && spi <= b.Last {
			ours = true
			break
		}
	}
	if !ours {
		if n, ok := a.Holder(s, spi); ok {
			return fmt.Errorf("%w: %w: %#x is in node %d's block", sharedaddr.ErrSPIInUse, ErrNotOurs, spi, n)
		}
		return fmt.Errorf("%w: %w: %#x is in no leased block", sharedaddr.ErrSPIInUse, ErrNotOurs, spi)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	used := a.inUse[s]
	if used == nil {
		used = map[uint32]struct{}{}
		a.inUse[s] = used
	}
	if _, taken := used[spi]; taken {
		return fmt.Errorf("%w: %#x", sharedaddr.ErrSPIInUse, spi)
	}
	used[spi] = struct{}{}
	return nil
}

// Delete frees spi; freeing one not in use does nothing.
func (a *Allocator) Delete(s sharedaddr.StackID, spi uint32) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.inUse[s], spi)
}

// InUse returns how many SPIs of the stack are in use on the node.
func (a *Allocator) InUse(s sharedaddr.StackID) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.inUse[s])
}
