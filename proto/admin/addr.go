package admin

import (
	"encoding/binary"
	"net/netip"

	"github.com/corralhq/corral/proto"
)

// Shared addresses (since version 4): ADDR_ADD, ADDR_DEL, ADDR_LIST, the
// requests of `corral addr`. The values of policies, lease kinds and
// protocols are those of the shared-address machine (sharedaddr/ctl); the
// decoders check their ranges, the machine checks the rest.

// Policies of an address (sharedaddr/ctl.Policy).
const (
	PolicyWeighted   uint8 = 1
	PolicySticky     uint8 = 2
	PolicyStickyWild uint8 = 3
)

// Lease kinds (sharedaddr/ctl.Kind).
const (
	LeaseSlice uint8 = 1
	LeaseIdent uint8 = 2
	LeaseSPI   uint8 = 3
)

// Limits of the shared-address messages.
const (
	MaxAddrs       = 4096 // rows of an ADDR_LIST reply
	MaxAddrWeights = 1024 // weights of one address (sharedaddr/ctl.MaxWeights)
	// MaxAddrExceptions is the most exceptions one ADDR_LIST row lists
	// (since version 6); the row's count says how many there are.
	MaxAddrExceptions = 1024
	maxAddrItems      = 0xFFFF
)

// AddrExceptionsVersion is the first admin version whose ADDR_LIST rows
// carry the table generation and the exceptions.
const AddrExceptionsVersion uint8 = 6

const addrAddReplace = 1 // ADDR_ADD flags bit 0

// AddrWeight is one node's weight.
type AddrWeight struct {
	Node   uint64
	Weight uint32
}

// AddrAdd is the body of an ADDR_ADD request. Stack 0 is the agent's own
// stack (network namespace).
type AddrAdd struct {
	Stack    uint64
	IP       netip.Addr // IPv4 is carried v4-mapped and decoded as IPv4
	Policy   uint8      // PolicyWeighted … PolicyStickyWild
	Replace  bool       // replace the configuration of an existing address
	Affinity uint32     // affinity timeout in milliseconds, 0 = none
	Weights  []AddrWeight
}

// AddrDel is the body of an ADDR_DEL request.
type AddrDel struct {
	Stack uint64
	IP    netip.Addr
}

// AddrListener is a node listening on a port of an address.
type AddrListener struct {
	Node  uint64
	Proto uint8 // 6 TCP, 17 UDP
	Port  uint16
}

// AddrLease is one leased block: [First, Last] of its kind's space.
type AddrLease struct {
	Node        uint64
	Kind        uint8 // LeaseSlice, LeaseIdent, LeaseSPI
	Proto       uint8 // slices: 6 or 17; else 0
	Index       uint16
	First, Last uint32
}

// AddrShare is the buckets one node holds in a dispatch table.
type AddrShare struct {
	Node    uint64
	Buckets uint32
}

// AddrTable is one dispatch table of an address: for flows to Port (0 for
// a sticky-wild table, which serves every port of Proto), Buckets buckets
// shared among the nodes as Shares says.
type AddrTable struct {
	Proto   uint8
	Port    uint16
	Buckets uint32
	Shares  []AddrShare
}

// AddrException is one flow of an address kept on a node other than its
// bucket's: the client's address and port, the protocol and the shared
// address's port, and the node that holds it.
type AddrException struct {
	Client netip.AddrPort // IPv4 carried v4-mapped, decoded as IPv4
	Proto  uint8          // 6 TCP, 17 UDP
	Port   uint16
	Node   uint64
}

// AddrRow is one address of an ADDR_LIST reply, as the answering agent
// has applied it.
type AddrRow struct {
	Stack     uint64
	IP        netip.Addr
	Policy    uint8
	Affinity  uint32 // ms
	Owner     uint64 // 0: no view
	Weights   []AddrWeight
	Listeners []AddrListener
	Leases    []AddrLease // slices and ident blocks of the address, SPI blocks of its stack
	Tables    []AddrTable
	// Since version 6 (zero before): the table generation, how many
	// exceptions the address has, and at most MaxAddrExceptions of them.
	Gen            uint64
	ExceptionCount uint32
	Exceptions     []AddrException
}

func appendIP(dst []byte, ip netip.Addr) []byte {
	b := ip.As16()
	if !ip.IsValid() {
		b = [16]byte{}
	}
	return append(dst, b[:]...)
}

func readIP(r *proto.Reader, field string) netip.Addr {
	b := r.Bytes(16, field)
	if b == nil {
		return netip.Addr{}
	}
	ip := netip.AddrFrom16([16]byte(b)).Unmap()
	if ip.IsUnspecified() {
		r.Fail(proto.CodeField, "%s is unspecified", field)
	}
	return ip
}

func appendWeights(dst []byte, ws []AddrWeight) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint16(dst, uint16(len(ws)))
	for _, w := range ws {
		dst = le.AppendUint32(le.AppendUint64(dst, w.Node), w.Weight)
	}
	return dst
}

// readWeights reads a weight list: sorted by node, no duplicates, no
// node 0, at most MaxAddrWeights.
func readWeights(r *proto.Reader) []AddrWeight {
	n := int(r.U16("weight count"))
	if n > MaxAddrWeights || n*12 > r.Len() {
		r.Fail(proto.CodeField, "weight count %d does not fit %d bytes (limit %d)", n, r.Len(), MaxAddrWeights)
		return nil
	}
	var ws []AddrWeight
	if n > 0 {
		ws = make([]AddrWeight, n)
	}
	for i := range ws {
		ws[i] = AddrWeight{Node: r.U64("weight node"), Weight: r.U32("weight")}
		switch {
		case ws[i].Node == 0:
			r.Fail(proto.CodeField, "weight %d: node id 0", i)
		case i > 0 && ws[i].Node <= ws[i-1].Node:
			r.Fail(proto.CodeField, "weight %d: nodes not in increasing order", i)
		}
	}
	return ws
}

// AppendAddrAdd appends the body of an ADDR_ADD request.
func AppendAddrAdd(dst []byte, a *AddrAdd) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, a.Stack)
	dst = appendIP(dst, a.IP)
	var flags byte
	if a.Replace {
		flags |= addrAddReplace
	}
	dst = append(dst, a.Policy, flags, 0, 0)
	dst = le.AppendUint32(dst, a.Affinity)
	return appendWeights(dst, a.Weights)
}

// ParseAddrAdd decodes an ADDR_ADD request.
func ParseAddrAdd(b []byte) (AddrAdd, error) {
	r := proto.NewReader(b, "ADDR_ADD request")
	var a AddrAdd
	a.Stack = r.U64("stack")
	a.IP = readIP(r, "ip")
	a.Policy = r.U8("policy")
	flags := r.U8("flags")
	r.Zero(2, "reserved")
	a.Affinity = r.U32("affinity")
	// A read after a failure gives zeros, and Fail keeps the first
	// error: the checks need no guard (Err would also judge the rest of
	// the body trailing bytes).
	switch {
	case a.Policy < PolicyWeighted || a.Policy > PolicyStickyWild:
		r.Fail(proto.CodeField, "unknown policy %d", a.Policy)
	case flags&^addrAddReplace != 0:
		r.Fail(proto.CodeField, "unknown flags %#02x", flags)
	}
	a.Replace = flags&addrAddReplace != 0
	a.Weights = readWeights(r)
	return a, r.Err()
}

// AppendAddrDel appends the body of an ADDR_DEL request.
func AppendAddrDel(dst []byte, d AddrDel) []byte {
	return appendIP(binary.LittleEndian.AppendUint64(dst, d.Stack), d.IP)
}

// ParseAddrDel decodes an ADDR_DEL request.
func ParseAddrDel(b []byte) (AddrDel, error) {
	r := proto.NewReader(b, "ADDR_DEL request")
	d := AddrDel{Stack: r.U64("stack")}
	d.IP = readIP(r, "ip")
	return d, r.Err()
}

// Fixed sizes of ADDR_LIST's parts, with their counts: the least bytes a
// row or item takes, checked against the body before allocating.
const (
	addrRowMin   = 8 + 16 + 1 + 3 + 4 + 8 + 2 + 2 + 2 + 2
	listenerSize = 8 + 1 + 1 + 2
	leaseSize    = 8 + 1 + 1 + 2 + 4 + 4
	tableMin     = 1 + 1 + 2 + 4 + 2
	shareSize    = 8 + 4
	// Since version 6: generation, exception count, listed count; an
	// exception.
	rowExceptMin  = 8 + 4 + 2
	exceptionSize = 16 + 2 + 1 + 1 + 2 + 8
)

// AppendAddrList appends the body of an ADDR_LIST reply in the layout of
// versions 4 and 5 (AppendAddrListAt).
func AppendAddrList(dst []byte, rows []AddrRow) []byte { return AppendAddrListAt(dst, 4, rows) }

// AppendAddrListAt appends the body of an ADDR_LIST reply in the layout
// of admin version v: from AddrExceptionsVersion on, each row ends with
// its generation and exceptions; before, they are left out.
func AppendAddrListAt(dst []byte, v uint8, rows []AddrRow) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, uint32(len(rows)))
	for i := range rows {
		a := &rows[i]
		dst = le.AppendUint64(dst, a.Stack)
		dst = appendIP(dst, a.IP)
		dst = append(dst, a.Policy, 0, 0, 0)
		dst = le.AppendUint32(dst, a.Affinity)
		dst = le.AppendUint64(dst, a.Owner)
		dst = appendWeights(dst, a.Weights)
		dst = le.AppendUint16(dst, uint16(len(a.Listeners)))
		for _, l := range a.Listeners {
			dst = le.AppendUint64(dst, l.Node)
			dst = append(dst, l.Proto, 0)
			dst = le.AppendUint16(dst, l.Port)
		}
		dst = le.AppendUint16(dst, uint16(len(a.Leases)))
		for _, l := range a.Leases {
			dst = le.AppendUint64(dst, l.Node)
			dst = append(dst, l.Kind, l.Proto)
			dst = le.AppendUint16(dst, l.Index)
			dst = le.AppendUint32(dst, l.First)
			dst = le.AppendUint32(dst, l.Last)
		}
		dst = le.AppendUint16(dst, uint16(len(a.Tables)))
		for _, t := range a.Tables {
			dst = append(dst, t.Proto, 0)
			dst = le.AppendUint16(dst, t.Port)
			dst = le.AppendUint32(dst, t.Buckets)
			dst = le.AppendUint16(dst, uint16(len(t.Shares)))
			for _, s := range t.Shares {
				dst = le.AppendUint32(le.AppendUint64(dst, s.Node), s.Buckets)
			}
		}
		if v >= AddrExceptionsVersion {
			dst = le.AppendUint64(dst, a.Gen)
			dst = le.AppendUint32(dst, a.ExceptionCount)
			dst = le.AppendUint16(dst, uint16(len(a.Exceptions)))
			for _, e := range a.Exceptions {
				dst = appendIP(dst, e.Client.Addr())
				dst = le.AppendUint16(dst, e.Client.Port())
				dst = append(dst, e.Proto, 0)
				dst = le.AppendUint16(dst, e.Port)
				dst = le.AppendUint64(dst, e.Node)
			}
		}
	}
	return dst
}

// count reads a u16 count of items of at least size bytes each and
// checks it against the rest of the body; false when it does not fit.
func count(r *proto.Reader, size int, field string) (int, bool) {
	n := int(r.U16(field))
	if n*size > r.Len() {
		r.Fail(proto.CodeField, "%s %d does not fit the %d bytes left", field, n, r.Len())
		return 0, false
	}
	return n, true
}

// ParseAddrList decodes an ADDR_LIST reply in the layout of versions 4
// and 5 (ParseAddrListAt).
func ParseAddrList(b []byte) ([]AddrRow, error) { return ParseAddrListAt(b, 4) }

// ParseAddrListAt decodes an ADDR_LIST reply in the layout of admin
// version v (the reply frame's).
func ParseAddrListAt(b []byte, v uint8) ([]AddrRow, error) {
	r := proto.NewReader(b, "ADDR_LIST reply")
	n := uint64(r.U32("count"))
	rowMin := uint64(addrRowMin)
	if v >= AddrExceptionsVersion {
		rowMin += rowExceptMin
	}
	if n > MaxAddrs || n*rowMin > uint64(r.Len()) {
		r.Fail(proto.CodeField, "address count %d does not fit a body of %d bytes (limit %d)", n, len(b), MaxAddrs)
		return nil, r.Err()
	}
	rows := make([]AddrRow, n)
	for i := range rows {
		a := &rows[i]
		a.Stack = r.U64("stack")
		a.IP = readIP(r, "ip")
		a.Policy = r.U8("policy")
		r.Zero(3, "reserved")
		a.Affinity = r.U32("affinity")
		a.Owner = r.U64("owner")
		if a.Policy < PolicyWeighted || a.Policy > PolicyStickyWild {
			r.Fail(proto.CodeField, "address %d: unknown policy %d", i, a.Policy)
		}
		a.Weights = readWeights(r)
		if k, ok := count(r, listenerSize, "listener count"); ok {
			a.Listeners = make([]AddrListener, k)
			for j := range a.Listeners {
				l := &a.Listeners[j]
				l.Node = r.U64("listener node")
				l.Proto = r.U8("listener proto")
				r.Zero(1, "reserved")
				l.Port = r.U16("listener port")
				if l.Node == 0 || (l.Proto != 6 && l.Proto != 17) || l.Port == 0 {
					r.Fail(proto.CodeField, "address %d listener %d: node %d proto %d port %d", i, j, l.Node, l.Proto, l.Port)
				}
			}
		}
		if k, ok := count(r, leaseSize, "lease count"); ok {
			a.Leases = make([]AddrLease, k)
			for j := range a.Leases {
				l := &a.Leases[j]
				l.Node = r.U64("lease node")
				l.Kind = r.U8("lease kind")
				l.Proto = r.U8("lease proto")
				l.Index = r.U16("lease index")
				l.First = r.U32("lease first")
				l.Last = r.U32("lease last")
				if l.Node == 0 || l.Kind < LeaseSlice || l.Kind > LeaseSPI || l.First > l.Last {
					r.Fail(proto.CodeField, "address %d lease %d: node %d kind %d range %d-%d", i, j, l.Node, l.Kind, l.First, l.Last)
				}
			}
		}
		if k, ok := count(r, tableMin, "table count"); ok {
			a.Tables = make([]AddrTable, k)
			for j := range a.Tables {
				t := &a.Tables[j]
				t.Proto = r.U8("table proto")
				r.Zero(1, "reserved")
				t.Port = r.U16("table port")
				t.Buckets = r.U32("table buckets")
				if s, ok := count(r, shareSize, "share count"); ok {
					t.Shares = make([]AddrShare, s)
					var sum uint64
					for x := range t.Shares {
						t.Shares[x] = AddrShare{Node: r.U64("share node"), Buckets: r.U32("share buckets")}
						sum += uint64(t.Shares[x].Buckets)
					}
					if sum != uint64(t.Buckets) {
						r.Fail(proto.CodeField, "address %d table %d: shares sum to %d of %d buckets", i, j, sum, t.Buckets)
					}
				}
			}
		}
		if v >= AddrExceptionsVersion {
			readExceptions(r, i, a)
		}
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return rows, nil
}

// readExceptions reads a row's generation and exceptions (version 6).
func readExceptions(r *proto.Reader, i int, a *AddrRow) {
	a.Gen = r.U64("generation")
	a.ExceptionCount = r.U32("exception count")
	k, ok := count(r, exceptionSize, "listed exception count")
	switch {
	case !ok:
		return
	case k > MaxAddrExceptions || uint32(k) > a.ExceptionCount:
		r.Fail(proto.CodeField, "address %d: %d exceptions listed of %d (limit %d)", i, k, a.ExceptionCount, MaxAddrExceptions)
		return
	}
	if k > 0 {
		a.Exceptions = make([]AddrException, k)
	}
	for j := range a.Exceptions {
		e := &a.Exceptions[j]
		ip := readIP(r, "exception client ip")
		e.Client = netip.AddrPortFrom(ip, r.U16("exception client port"))
		e.Proto = r.U8("exception proto")
		r.Zero(1, "reserved")
		e.Port = r.U16("exception port")
		e.Node = r.U64("exception node")
		if e.Node == 0 || (e.Proto != 6 && e.Proto != 17) || e.Port == 0 {
			r.Fail(proto.CodeField, "address %d exception %d: node %d proto %d port %d", i, j, e.Node, e.Proto, e.Port)
		}
	}
}
