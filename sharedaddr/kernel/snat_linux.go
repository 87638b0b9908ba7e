package kernel

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The client side of unmodified applications (see the package doc): the
// chain "snat" maps the source port of a flow this node originates from
// an address, outside its slice, into its slice; the raw chains keep
// the flows a node serves out of conntrack, and let the owner's
// conntrack see the replies to its own flows, which it needs to undo
// that mapping.
var (
	rawCh    = &nftables.Chain{Name: "raw", Table: table}
	rawOutCh = &nftables.Chain{Name: "rawout", Table: table}
	snatCh   = &nftables.Chain{Name: "snat", Table: table}
)

// ownSlices returns the slices of a the node self leases, of proto.
func ownSlices(a *Addr, self uint64, proto uint8) []Slice {
	var own []Slice
	for _, s := range a.Slices {
		if s.Node == self && s.Proto == proto {
			own = append(own, s)
		}
	}
	return own
}

// servedPorts are the ports of a's services of proto whose flows stay
// out of conntrack on this node: every port a table names, but a port
// in one of the node's own slices (a reply to a flow it originated may
// come to it) and StickyWild's every-port table (its flows cannot be
// told from the node's own by port).
func servedPorts(a *Addr, self uint64, proto uint8) []uint16 {
	own := ownSlices(a, self, proto)
	var ports []uint16
	for _, s := range a.Services {
		if s.Proto != proto || s.Port == 0 || slices.ContainsFunc(own, func(sl Slice) bool { return sl.First <= s.Port && s.Port <= sl.Last }) {
			continue
		}
		ports = append(ports, s.Port)
	}
	return ports
}

// servedRule is "ip daddr VIP th dport PORT notrack" (to) or "ip saddr
// VIP th sport PORT notrack" (!to).
func servedRule(vip netip.Addr, proto uint8, port uint16, to bool) []expr.Any {
	v := vip.As4()
	addr, th := uint32(12), uint32(0) // saddr, sport
	if to {
		addr, th = 16, 2 // daddr, dport
	}
	return append(append([]expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: addr, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v[:]},
	}, l4(proto)...),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: th, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Notrack{},
	)
}

// rawOutRules are the raw output chain's: a packet from an address's
// served port (servedPorts) is a reply to a flow in, which no snat rule
// may map, and stays out of conntrack, as the flow's packets in do.
func rawOutRules(p Plan) [][]expr.Any {
	var rs [][]expr.Any
	for i := range p.Addrs {
		a := &p.Addrs[i]
		for _, proto := range []uint8{TCP, UDP} {
			for _, port := range servedPorts(a, p.Self, proto) {
				rs = append(rs, servedRule(a.VIP, proto, port, false))
			}
		}
	}
	return rs
}

// rawRules are the raw prerouting chain's. On a node that does not own
// an address, a packet to a served port (servedPorts) belongs to a flow
// in and is untracked. On the owner, a packet to an address whose
// destination port is in one of the node's own slices is the reply to a
// flow the node originated, and stays tracked (its flow may be
// source-NATed); every other packet to an owned address is untracked, as
// the dispatch wants.
func rawRules(p Plan) [][]expr.Any {
	var rs [][]expr.Any
	for i := range p.Addrs {
		a := &p.Addrs[i]
		if !a.Owner {
			for _, proto := range []uint8{TCP, UDP} {
				for _, port := range servedPorts(a, p.Self, proto) {
					rs = append(rs, servedRule(a.VIP, proto, port, true))
				}
			}
			continue
		}
		v := a.VIP.As4()
		for _, proto := range []uint8{TCP, UDP} {
			for _, s := range ownSlices(a, p.Self, proto) {
				rs = append(rs, append(append([]expr.Any{
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v[:]},
				}, l4(proto)...),
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
					&expr.Range{Op: expr.CmpOpEq, Register: 1,
						FromData: binaryutil.BigEndian.PutUint16(s.First), ToData: binaryutil.BigEndian.PutUint16(s.Last)},
					&expr.Verdict{Kind: expr.VerdictReturn},
				))
			}
		}
	}
	return append(rs, []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: vipSet.Name, SetID: vipSet.ID},
		&expr.Notrack{},
	})
}

// snatRules are the nat postrouting chain's, for every address of which
// the node leases a slice, per protocol: "ip saddr VIP" and a source
// port in none of the node's slices of the protocol → "snat to
// VIP:FIRST-LAST" of its widest one. A nat chain sees only a flow's first
// packet, so a flow keeps its mapping, and a flow that came in (tracked
// on a serving node) is never matched: its packets out are replies.
//
// On the owner, flows in are untracked, and its replies to them that
// rawOutRules leave tracked (StickyWild's, a port in its own slice)
// start flows in conntrack's eyes. TCP is told apart by the first packet: only
// a flow that starts with a bare SYN is one the node originated (a reply
// starts with SYN-ACK, invalid to conntrack, or with an ACK it picks up
// mid-stream). UDP has no such mark: a datagram from a port the address
// serves (a UDP Service's port) is taken for a reply and left alone, and
// an owner of an address that serves every UDP port (StickyWild) maps no
// UDP at all.
func snatRules(p Plan) [][]expr.Any {
	var rs [][]expr.Any
	for i := range p.Addrs {
		a := &p.Addrs[i]
		v := a.VIP.As4()
		for _, proto := range []uint8{TCP, UDP} {
			own := ownSlices(a, p.Self, proto)
			if len(own) == 0 {
				continue
			}
			r := append([]expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v[:]},
			}, l4(proto)...)
			if proto == TCP {
				const syn, ack = 0x02, 0x10
				r = append(r,
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
					&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{syn | ack}, Xor: []byte{0}},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{syn}},
				)
			} else {
				var served []uint16
				for _, s := range a.Services {
					if s.Proto == UDP {
						served = append(served, s.Port)
					}
				}
				if a.Owner && slices.Contains(served, 0) {
					continue
				}
				r = append(r, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2})
				for _, port := range served {
					r = append(r, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)})
				}
			}
			if proto == TCP {
				r = append(r, &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2})
			}
			for _, s := range own {
				r = append(r, &expr.Range{Op: expr.CmpOpNeq, Register: 1,
					FromData: binaryutil.BigEndian.PutUint16(s.First), ToData: binaryutil.BigEndian.PutUint16(s.Last)})
			}
			rs = append(rs, append(r, snatTo(a.VIP, widest(own))...))
		}
	}
	return rs
}

// widest is the first of the longest slices: a slice is cut around the
// ports the address serves (ctl's holes), and the mapping takes the most
// ports it can.
func widest(own []Slice) Slice {
	w := own[0]
	for _, s := range own[1:] {
		if s.Last-s.First > w.Last-w.First {
			w = s
		}
	}
	return w
}

// snatTo is "snat to VIP:FIRST-LAST".
func snatTo(vip netip.Addr, s Slice) []expr.Any {
	v := vip.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: v[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(s.First)},
		&expr.Immediate{Register: 3, Data: binaryutil.BigEndian.PutUint16(s.Last)},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4,
			RegAddrMin: 1, RegAddrMax: 1, RegProtoMin: 2, RegProtoMax: 3, Specified: true},
	}
}
