package kernel

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/corralhq/corral/sharedaddr/ctl"
)

var (
	// ErrUnsupported is returned where the data path cannot run (not Linux).
	ErrUnsupported = errors.New("kernel: shared-address data path unsupported on this system")
	// ErrPlan is returned for a plan that cannot be installed as given.
	ErrPlan = errors.New("kernel: invalid plan")
)

// Names and numbers of the state corral installs; nothing else on the
// host uses them.
const (
	TableName = "corral_sa" // nftables table, family ip
	RulePref  = 90          // fwmark rules
	LocalPref = 100         // where an owner moves the local rule
	TableBase = 0x5a00      // route table of the node with mark index i: TableBase+i
	MarkBase  = 0x5a000000  // packet mark of mark index i: MarkBase+i
	RTProto   = 0xc5        // protocol of corral's rules and routes
	HashSeed  = 0x636f7272  // jhash seed, fixed: every owner must hash alike
	addrLabel = ":sa"       // appended to the interface name
)

// Protocols a Service can name.
const (
	TCP uint8 = 6
	UDP uint8 = 17
)

// Plan is what one node's stack must hold for all its shared addresses.
type Plan struct {
	// Self is this node's id; buckets naming it are delivered locally.
	Self uint64
	// Nodes are the next hops on the shared segment of every node that
	// a table names, Self included.
	Nodes []Node
	// Addrs are the shared addresses, each at most once.
	Addrs []Addr
}

// Node is one node's next hop on the shared segment.
type Node struct {
	ID uint64
	IP netip.Addr // its address on the shared interface's subnet
	// MAC is informational for now: the kernel resolves IP by ARP.
	MAC net.HardwareAddr `json:",omitempty"`
}

// Addr is one shared address as this node must hold it.
type Addr struct {
	VIP    netip.Addr
	Policy ctl.Policy
	// Owner: this node holds VIP on the shared interface, answers ARP
	// for it and dispatches its flows by Services.
	Owner bool
	// Serve: this node accepts flows to VIP (VIP/32 on lo unless Owner).
	// A node holding a Slice holds the address too, to originate from it.
	Serve bool
	// Services are the dispatch tables. Every node should hold them, owner
	// or not: only the owner's are used, and a node holding them becomes
	// owner by a small change (see Dataplane.Apply).
	Services []Service `json:",omitempty"`
	// Exceptions send single flows to a node whatever their bucket.
	Exceptions []Exception `json:",omitempty"`
	// Slices are the client side (issue 13 item 4): the owner sends
	// packets to VIP whose destination port is in a node's slice of the
	// source ports to that node, where the flow it originated lives.
	Slices []Slice `json:",omitempty"`
	// Ident is this node's part of its block of the address's IP ident
	// space (its ctl.Ident lease): a datagram it sends from VIP that may
	// be fragmented takes its IP id from it (issue 13 item 6). Zero: the
	// kernel's own ids.
	Ident Ident `json:",omitzero"`
	// Affinity is the affinity timeout of a Sticky or StickyWild
	// address: a client that the owner steered to a node keeps going to
	// it, whatever its bucket says, while it sends within Affinity (see
	// the package doc). Zero, or a Weighted address: the table alone.
	// Millisecond resolution, as nftables keeps it.
	Affinity time.Duration `json:",omitzero"`
}

// MaxAffinity is the longest affinity timeout a plan may carry: the
// u32 milliseconds of the address's configuration (ctl).
const MaxAffinity = (1<<32 - 1) * time.Millisecond

// affine reports whether the address's flows keep their node by
// affinity entries.
func (a *Addr) affine() bool {
	return a.Policy != ctl.Weighted && a.Affinity >= time.Millisecond
}

// groups returns the port groups of the address's services, as indices
// into Services: services with equal tables, in the order of their first
// service. ctl gives the ports of a Sticky address whose listeners and
// weights are equal the same table, and that is what makes them a port
// group; a StickyWild address's tables (one a protocol) group alike.
func (a *Addr) groups() [][]int {
	var gs [][]int
	for j, s := range a.Services {
		k := slices.IndexFunc(gs, func(g []int) bool { return slices.Equal(a.Services[g[0]].Table, s.Table) })
		if k < 0 {
			gs = append(gs, []int{j})
		} else {
			gs[k] = append(gs[k], j)
		}
	}
	return gs
}

// Ident is a range of IP ids: Base … Base+Len-1.
type Ident struct {
	Base uint16
	Len  uint32 // 0: none; at most 65536-Base
}

// Slice is a range of the address's source ports leased to a node.
type Slice struct {
	Proto       uint8 // TCP or UDP
	First, Last uint16
	Node        uint64
}

// holds reports whether node self must hold the address.
func (a *Addr) holds(self uint64) bool {
	return a.Owner || a.Serve || slices.ContainsFunc(a.Slices, func(s Slice) bool { return s.Node == self })
}

// Service is the dispatch table of flows to one port of an address.
type Service struct {
	Proto uint8  // TCP or UDP
	Port  uint16 // 0: every port of Proto (StickyWild)
	// Table maps each bucket to a node (ctl.Build); M = len(Table).
	Table []uint64
}

// Affinity is one client's affinity entry on the owner
// (Dataplane.Affinities).
type Affinity struct {
	Client netip.Addr
	Node   uint64
	Left   time.Duration // until the entry expires, unless the client sends
	// Services name the entry's port group (Proto and Port; no tables).
	Services []Service
}

// Exception sends the flows from Client to Node.
type Exception struct {
	Client netip.AddrPort
	Node   uint64
	// Proto and Port name the flow's service (0: not said). The map
	// keys exceptions by client alone; an affine address seeds the
	// affinity map of the service's port group from them.
	Proto uint8  `json:",omitzero"`
	Port  uint16 `json:",omitzero"`
}

// marks gives each node other than Self its mark index, 1.., in the
// order of node ids; Self gets 0, which means local delivery.
func (p *Plan) marks() map[uint64]uint32 {
	ids := make([]uint64, 0, len(p.Nodes))
	for _, n := range p.Nodes {
		if n.ID != p.Self {
			ids = append(ids, n.ID)
		}
	}
	slices.Sort(ids)
	m := map[uint64]uint32{p.Self: 0}
	for i, id := range ids {
		m[id] = uint32(i + 1)
	}
	return m
}

// owns reports whether the node owns any address.
func (p *Plan) owns() bool {
	return slices.ContainsFunc(p.Addrs, func(a Addr) bool { return a.Owner })
}

// Validate reports the first reason the plan cannot be installed.
func (p *Plan) Validate() error {
	nodes := map[uint64]bool{}
	for _, n := range p.Nodes {
		if nodes[n.ID] {
			return fmt.Errorf("%w: node %d listed twice", ErrPlan, n.ID)
		}
		nodes[n.ID] = true
		if n.ID != p.Self && !n.IP.Is4() {
			return fmt.Errorf("%w: node %d: next hop %v is not IPv4", ErrPlan, n.ID, n.IP)
		}
	}
	if len(nodes) > 250 {
		return fmt.Errorf("%w: %d nodes, at most 250", ErrPlan, len(nodes))
	}
	known := func(id uint64) bool { return id == p.Self || nodes[id] }
	vips := map[netip.Addr]bool{}
	for _, a := range p.Addrs {
		if !a.VIP.Is4() {
			return fmt.Errorf("%w: %v: only IPv4 addresses", ErrPlan, a.VIP)
		}
		if vips[a.VIP] {
			return fmt.Errorf("%w: %v listed twice", ErrPlan, a.VIP)
		}
		vips[a.VIP] = true
		if a.Policy < ctl.Weighted || a.Policy > ctl.StickyWild {
			return fmt.Errorf("%w: %v: policy %d", ErrPlan, a.VIP, a.Policy)
		}
		seen := map[[2]uint16]bool{}
		for _, s := range a.Services {
			if s.Proto != TCP && s.Proto != UDP {
				return fmt.Errorf("%w: %v: protocol %d", ErrPlan, a.VIP, s.Proto)
			}
			if k := [2]uint16{uint16(s.Proto), s.Port}; seen[k] {
				return fmt.Errorf("%w: %v: service %d/%d twice", ErrPlan, a.VIP, s.Proto, s.Port)
			} else {
				seen[k] = true
			}
			if len(s.Table) == 0 {
				return fmt.Errorf("%w: %v: service %d/%d has an empty table", ErrPlan, a.VIP, s.Proto, s.Port)
			}
			for _, n := range s.Table {
				if !known(n) {
					return fmt.Errorf("%w: %v: table names node %d, which has no next hop", ErrPlan, a.VIP, n)
				}
			}
		}
		for i, s := range a.Slices {
			if (s.Proto != TCP && s.Proto != UDP) || s.First == 0 || s.First > s.Last || !known(s.Node) {
				return fmt.Errorf("%w: %v: slice %d/%d-%d → %d", ErrPlan, a.VIP, s.Proto, s.First, s.Last, s.Node)
			}
			for _, o := range a.Slices[:i] {
				if o.Proto == s.Proto && o.First <= s.Last && s.First <= o.Last {
					return fmt.Errorf("%w: %v: slices %d/%d-%d and %d-%d overlap", ErrPlan, a.VIP, s.Proto, o.First, o.Last, s.First, s.Last)
				}
			}
		}
		for _, e := range a.Exceptions {
			if !e.Client.Addr().Is4() || !known(e.Node) {
				return fmt.Errorf("%w: %v: exception %v → %d", ErrPlan, a.VIP, e.Client, e.Node)
			}
		}
		if a.Affinity < 0 || a.Affinity > MaxAffinity {
			return fmt.Errorf("%w: %v: affinity timeout %v", ErrPlan, a.VIP, a.Affinity)
		}
		if a.Ident.Len > 65536-uint32(a.Ident.Base) || (a.Ident.Len == 0 && a.Ident.Base != 0) {
			return fmt.Errorf("%w: %v: ident block %d+%d", ErrPlan, a.VIP, a.Ident.Base, a.Ident.Len)
		}
	}
	return nil
}

// fingerprints name the plan's nft content: its tables (everything but
// the roles and the ident blocks), and its roles (which addresses the
// node owns and the ident block of each address, with the tables they
// belong to). Apply skips what the table already carries.
func (p *Plan) fingerprints() (tables, roles string) {
	q := *p
	q.Addrs = slices.Clone(p.Addrs)
	type ident struct {
		VIP netip.Addr
		Ident
	}
	var r struct {
		Owned  []netip.Addr
		Idents []ident
	}
	for i := range q.Addrs {
		if q.Addrs[i].Owner {
			r.Owned = append(r.Owned, q.Addrs[i].VIP)
		}
		if q.Addrs[i].Ident.Len > 0 {
			r.Idents = append(r.Idents, ident{q.Addrs[i].VIP, q.Addrs[i].Ident})
		}
		q.Addrs[i].Owner, q.Addrs[i].Serve, q.Addrs[i].Ident = false, false, Ident{}
	}
	// "/4": tables built before the ident chain (2), the snat chain (3)
	// or the raw output chain (4) existed are rebuilt.
	tables = digest("corral-tables/4:", q)
	return tables, digest("corral-roles:"+tables+":", r)
}

func digest(prefix string, v any) string {
	b, _ := json.Marshal(v) // plain structs: cannot fail
	h := sha256.Sum256(b)
	return prefix + hex.EncodeToString(h[:16])
}

// Bucket returns the bucket, of m, that the kernel's dispatch puts a flow
// from client in under policy: nft's jhash (include/linux/jhash.h) with
// HashSeed over the registers the rule loads — the 4 address bytes, and
// for Weighted the 2 port bytes big endian and 2 zero bytes — scaled to m
// as nft_hash does (reciprocal_scale).
func Bucket(policy ctl.Policy, client netip.AddrPort, m int) int {
	var key [8]byte
	a := client.Addr().As4()
	copy(key[:4], a[:])
	n := 4
	if policy == ctl.Weighted {
		binary.BigEndian.PutUint16(key[4:], client.Port())
		n = 8
	}
	h := jhash(key[:n], HashSeed)
	return int(uint64(h) * uint64(m) >> 32)
}

// jhash is the kernel's jhash() (Bob Jenkins' lookup3), words read in the
// CPU's order; the data path runs on little-endian machines.
func jhash(k []byte, initval uint32) uint32 {
	a := 0xdeadbeef + uint32(len(k)) + initval
	b, c := a, a
	for len(k) > 12 {
		a += binary.LittleEndian.Uint32(k)
		b += binary.LittleEndian.Uint32(k[4:])
		c += binary.LittleEndian.Uint32(k[8:])
		a, b, c = jmix(a, b, c)
		k = k[12:]
	}
	if len(k) == 0 {
		return c
	}
	var tail [12]byte
	copy(tail[:], k)
	a += binary.LittleEndian.Uint32(tail[0:])
	b += binary.LittleEndian.Uint32(tail[4:])
	c += binary.LittleEndian.Uint32(tail[8:])
	return jfinal(a, b, c)
}

func jmix(a, b, c uint32) (uint32, uint32, uint32) {
	a -= c
	a ^= bits.RotateLeft32(c, 4)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 6)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 8)
	b += a
	a -= c
	a ^= bits.RotateLeft32(c, 16)
	c += b
	b -= a
	b ^= bits.RotateLeft32(a, 19)
	a += c
	c -= b
	c ^= bits.RotateLeft32(b, 4)
	b += a
	return a, b, c
}

func jfinal(a, b, c uint32) uint32 {
	c ^= b
	c -= bits.RotateLeft32(b, 14)
	a ^= c
	a -= bits.RotateLeft32(c, 11)
	b ^= a
	b -= bits.RotateLeft32(a, 25)
	c ^= b
	c -= bits.RotateLeft32(b, 16)
	a ^= c
	a -= bits.RotateLeft32(c, 4)
	b ^= a
	b -= bits.RotateLeft32(a, 14)
	c ^= b
	c -= bits.RotateLeft32(b, 24)
	return c
}
