package ctl

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
	"unicode/utf8"
)

// Version is the version of the command, reply and snapshot formats
// (SPEC.md, "Version history").
const Version = 1

// Errors of the decoders.
var (
	ErrShort   = errors.New("ctl: truncated")
	ErrVersion = errors.New("ctl: unknown version")
	ErrField   = errors.New("ctl: bad field")
)

// Op is a command's operation.
type Op uint8

// Ops (SPEC.md, "Commands").
const (
	OpAdd      Op = 1
	OpDel      Op = 2
	OpListen   Op = 3
	OpUnlisten Op = 4
	OpLease    Op = 5
	OpRelease  Op = 6
	OpExcept   Op = 7
	OpUnexcept Op = 8
)

func (o Op) String() string {
	switch o {
	case OpAdd:
		return "ADD"
	case OpDel:
		return "DEL"
	case OpListen:
		return "LISTEN"
	case OpUnlisten:
		return "UNLISTEN"
	case OpLease:
		return "LEASE"
	case OpRelease:
		return "RELEASE"
	case OpExcept:
		return "EXCEPT"
	case OpUnexcept:
		return "UNEXCEPT"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Policy is an address's load-balancing policy (Sun's LB_*).
type Policy uint8

// Policies.
const (
	// Weighted spreads flows by client address and port.
	Weighted Policy = 1
	// Sticky keeps a client address on one node for a port group: the
	// table's key is the client address only, so ports whose listener
	// sets (and weights) are the same map a client to the same node.
	Sticky Policy = 2
	// StickyWild keeps a client address on one node for every port of
	// the address: one table over the nodes listening on any port.
	StickyWild Policy = 3
)

func (p Policy) String() string {
	switch p {
	case Weighted:
		return "weighted"
	case Sticky:
		return "sticky"
	case StickyWild:
		return "sticky-wild"
	}
	return fmt.Sprintf("policy(%d)", uint8(p))
}

// ParsePolicy is the inverse of Policy.String.
func ParsePolicy(s string) (Policy, error) {
	for p := Weighted; p <= StickyWild; p++ {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: policy %q", ErrField, s)
}

// Kind is the space a lease is cut from.
type Kind uint8

// Lease kinds and their geometry (SPEC.md, "Blocks").
const (
	// Slice is a block of the address's source ports, per protocol:
	// slice i is ports SliceBase+i·SliceSize … +SliceSize-1.
	Slice Kind = 1
	// Ident is a block of the address's 16-bit IP ident space.
	Ident Kind = 2
	// SPI is a block of the stack's 32-bit SPI space (0–2^24-1, where
	// 0–255 are reserved, is never leased). A SPI lease names no address.
	SPI Kind = 3
)

// Block geometry.
const (
	SliceBase  = 1024
	SliceSize  = 1024
	Slices     = (65536 - SliceBase) / SliceSize // 63
	IdentSize  = 4096
	Idents     = 65536 / IdentSize // 16
	SPIBase    = 1 << 24
	SPISize    = 1 << 24
	SPIs       = 255
	MaxWeight  = 1 << 16
	MaxWeights = 1024 // weights in one ADD
)

func (k Kind) String() string {
	switch k {
	case Slice:
		return "slice"
	case Ident:
		return "ident"
	case SPI:
		return "spi"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// count is the number of blocks of the kind; 0 for an unknown kind.
func (k Kind) count() int {
	switch k {
	case Slice:
		return Slices
	case Ident:
		return Idents
	case SPI:
		return SPIs
	}
	return 0
}

// Range returns the first and last value of block i of the kind.
func (k Kind) Range(i uint16) (first, last uint32) {
	switch k {
	case Slice:
		first = SliceBase + uint32(i)*SliceSize
		return first, first + SliceSize - 1
	case Ident:
		first = uint32(i) * IdentSize
		return first, first + IdentSize - 1
	case SPI:
		first = SPIBase + uint32(i)*SPISize
		return first, first + (SPISize - 1)
	}
	return 0, 0
}

// Protocols of listeners and slices.
const (
	TCP uint8 = 6
	UDP uint8 = 17
)

// Addr names a shared address: the stack (network namespace) it lives in
// and the IP. An IPv4 address is carried as IPv4 (never v4-mapped).
type Addr struct {
	Stack uint64
	IP    netip.Addr
}

func (a Addr) String() string { return fmt.Sprintf("%v@%#x", a.IP, a.Stack) }

// Weight is one node's weight in an ADD.
type Weight struct {
	Node   uint64
	Weight uint32
}

// DefaultWeight is the weight of a listening node the address's weights
// do not name.
const DefaultWeight = 1

// Cmd is one command. Which fields an op uses is in SPEC.md.
type Cmd struct {
	Op   Op
	Addr Addr
	// ADD.
	Replace  bool // ADD of an existing address replaces its configuration
	Policy   Policy
	Affinity time.Duration // ms resolution, at most 2^32-1 ms; 0 = none
	Weights  []Weight      // sorted by node, no duplicates
	// LISTEN, UNLISTEN, LEASE, RELEASE.
	Node  uint64
	Proto uint8
	Port  uint16 // LISTEN, UNLISTEN
	Kind  Kind   // LEASE, RELEASE
	Index uint16 // RELEASE
	// EXCEPT, UNEXCEPT (and Node).
	Gen     uint64 // EXCEPT: the table generation the node's walk was for
	Partial bool   // EXCEPT: more flows follow; this one is not the report
	Flows   []Flow // sorted (CmpFlow), no duplicates; at most MaxExceptions
}

// Flow names one connection to a shared address by what the owner sees of
// it: the client's address and port, the protocol and the address's port.
type Flow struct {
	Client netip.AddrPort // IPv4 as IPv4 (never v4-mapped)
	Proto  uint8
	Port   uint16 // the shared address's (local) port
}

func (f Flow) String() string { return fmt.Sprintf("%d/%d<-%v", f.Proto, f.Port, f.Client) }

// CmpFlow orders flows as EXCEPT and UNEXCEPT carry them: by protocol,
// port, client address, client port.
func CmpFlow(a, b Flow) int {
	return cmp.Or(cmp.Compare(a.Proto, b.Proto), cmp.Compare(a.Port, b.Port),
		a.Client.Addr().Compare(b.Client.Addr()), cmp.Compare(a.Client.Port(), b.Client.Port()))
}

// MaxExceptions bounds the exceptions of one address, and so the flows
// of one command: the owner's kernel holds them all in one map.
const MaxExceptions = 65536

// flowSize is a flow's encoding: client IP 16, client port 2, proto 1,
// port 2.
const flowSize = 21

const (
	flagReplace = 1
	flagPartial = 1
)

// AppendCmd appends the encoding of c (SPEC.md, "Commands").
func AppendCmd(b []byte, c Cmd) []byte {
	le := binary.LittleEndian
	b = append(b, Version, byte(c.Op))
	switch c.Op {
	case OpAdd:
		b = appendAddr(b, c.Addr)
		var f byte
		if c.Replace {
			f |= flagReplace
		}
		b = append(b, f, byte(c.Policy))
		b = le.AppendUint32(b, affinityMS(c.Affinity))
		b = le.AppendUint16(b, uint16(len(c.Weights)))
		for _, w := range c.Weights {
			b = le.AppendUint32(le.AppendUint64(b, w.Node), w.Weight)
		}
	case OpDel:
		b = appendAddr(b, c.Addr)
	case OpListen, OpUnlisten:
		b = appendAddr(b, c.Addr)
		b = le.AppendUint64(b, c.Node)
		b = append(b, c.Proto)
		b = le.AppendUint16(b, c.Port)
	case OpLease, OpRelease:
		b = append(b, byte(c.Kind))
		b = appendAddr(b, c.Addr)
		b = le.AppendUint64(b, c.Node)
		b = append(b, c.Proto)
		if c.Op == OpRelease {
			b = le.AppendUint16(b, c.Index)
		}
	case OpExcept, OpUnexcept:
		b = appendAddr(b, c.Addr)
		b = le.AppendUint64(b, c.Node)
		if c.Op == OpExcept {
			b = le.AppendUint64(b, c.Gen)
			var f byte
			if c.Partial {
				f |= flagPartial
			}
			b = append(b, f)
		}
		b = le.AppendUint32(b, uint32(len(c.Flows)))
		for _, f := range c.Flows {
			b = appendFlow(b, f)
		}
	}
	return b
}

func appendFlow(b []byte, f Flow) []byte {
	ip := f.Client.Addr().As16()
	if !f.Client.Addr().IsValid() {
		ip = [16]byte{}
	}
	b = append(b, ip[:]...)
	b = binary.LittleEndian.AppendUint16(b, f.Client.Port())
	b = append(b, f.Proto)
	return binary.LittleEndian.AppendUint16(b, f.Port)
}

func (r *reader) flow() Flow {
	ip := r.ip()
	port := r.u16()
	return Flow{Client: netip.AddrPortFrom(ip, port), Proto: r.u8(), Port: r.u16()}
}

// affinityMS is d in whole milliseconds, saturated to the u32 field.
func affinityMS(d time.Duration) uint32 {
	return uint32(min(max(d/time.Millisecond, 0), math.MaxUint32))
}

func appendAddr(b []byte, a Addr) []byte {
	b = binary.LittleEndian.AppendUint64(b, a.Stack)
	ip := a.IP.As16()
	if !a.IP.IsValid() {
		ip = [16]byte{}
	}
	return append(b, ip[:]...)
}

// reader decodes little-endian fields; the first short read sticks.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = ErrShort
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() uint8   { return r.take(1)[0] }
func (r *reader) u16() uint16 { return binary.LittleEndian.Uint16(r.take(2)) }
func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.take(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.take(8)) }

// ip reads 16 bytes: a v4-mapped address is IPv4; all zeros is the zero
// Addr (allowed only where SPEC.md says).
func (r *reader) ip() netip.Addr {
	a := netip.AddrFrom16([16]byte(r.take(16)))
	if a == netip.IPv6Unspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

func (r *reader) addr() Addr { return Addr{Stack: r.u64(), IP: r.ip()} }

func (r *reader) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d bytes after the end", ErrField, len(r.b))
	}
	return r.err
}

// ParseCmd decodes a command. It checks the format only; whether the
// command may apply is the machine's to answer.
func ParseCmd(b []byte) (Cmd, error) {
	r := &reader{b: b}
	if v := r.u8(); r.err == nil && v != Version {
		return Cmd{}, fmt.Errorf("%w %d", ErrVersion, v)
	}
	c := Cmd{Op: Op(r.u8())}
	switch c.Op {
	case OpAdd:
		c.Addr = r.addr()
		f := r.u8()
		if f&^flagReplace != 0 {
			return Cmd{}, fmt.Errorf("%w: ADD flags %#x", ErrField, f)
		}
		c.Replace = f&flagReplace != 0
		c.Policy = Policy(r.u8())
		c.Affinity = time.Duration(r.u32()) * time.Millisecond
		n := int(r.u16())
		if r.err == nil && len(r.b) < 12*n {
			return Cmd{}, ErrShort
		}
		if n > 0 {
			c.Weights = make([]Weight, n)
		}
		for i := range c.Weights {
			c.Weights[i] = Weight{Node: r.u64(), Weight: r.u32()}
			if i > 0 && c.Weights[i].Node <= c.Weights[i-1].Node {
				return Cmd{}, fmt.Errorf("%w: weights not sorted by node", ErrField)
			}
		}
	case OpDel:
		c.Addr = r.addr()
	case OpListen, OpUnlisten:
		c.Addr = r.addr()
		c.Node = r.u64()
		c.Proto = r.u8()
		c.Port = r.u16()
	case OpLease, OpRelease:
		c.Kind = Kind(r.u8())
		c.Addr = r.addr()
		c.Node = r.u64()
		c.Proto = r.u8()
		if c.Op == OpRelease {
			c.Index = r.u16()
		}
	case OpExcept, OpUnexcept:
		c.Addr = r.addr()
		c.Node = r.u64()
		if c.Op == OpExcept {
			c.Gen = r.u64()
			f := r.u8()
			if r.err == nil && f&^flagPartial != 0 {
				return Cmd{}, fmt.Errorf("%w: EXCEPT flags %#x", ErrField, f)
			}
			c.Partial = f&flagPartial != 0
		}
		n := int(r.u32())
		switch {
		case r.err != nil:
		case n > MaxExceptions:
			return Cmd{}, fmt.Errorf("%w: %d flows, limit %d", ErrField, n, MaxExceptions)
		case len(r.b) < flowSize*n:
			return Cmd{}, ErrShort
		}
		if r.err == nil && n > 0 {
			c.Flows = make([]Flow, n)
		}
		for i := range c.Flows {
			c.Flows[i] = r.flow()
			if i > 0 && CmpFlow(c.Flows[i-1], c.Flows[i]) >= 0 {
				return Cmd{}, fmt.Errorf("%w: flows not sorted", ErrField)
			}
		}
	default:
		if r.err == nil {
			return Cmd{}, fmt.Errorf("%w: op %d", ErrField, c.Op)
		}
	}
	if err := r.end(); err != nil {
		return Cmd{}, err
	}
	return c, nil
}

// Code is a reply's outcome. Refusals are replies, the same on every
// node; Apply never fails for a bad command.
type Code uint8

// Codes (SPEC.md, "Replies").
const (
	OK        Code = 0
	Malformed Code = 1  // the command does not parse
	BadField  Code = 2  // a field holds a value the command does not allow
	Exists    Code = 3  // ADD of an address that exists, without Replace
	NoAddr    Code = 4  // no such address
	NoNode    Code = 5  // the node is not in the view
	Exhausted Code = 6  // every block of the space is leased
	NotHeld   Code = 7  // RELEASE of a block the node does not hold; UNLISTEN of no listener
	Duplicate Code = 8  // LISTEN of a listener that exists
	Stale     Code = 9  // EXCEPT for a table generation that is not the address's
	Full      Code = 10 // EXCEPT beyond MaxExceptions of the address
)

func (c Code) String() string {
	switch c {
	case OK:
		return "ok"
	case Malformed:
		return "malformed"
	case BadField:
		return "bad-field"
	case Exists:
		return "exists"
	case NoAddr:
		return "no-addr"
	case NoNode:
		return "no-node"
	case Exhausted:
		return "exhausted"
	case NotHeld:
		return "not-held"
	case Duplicate:
		return "duplicate"
	case Stale:
		return "stale"
	case Full:
		return "full"
	}
	return fmt.Sprintf("code(%d)", uint8(c))
}

// Reply is the machine's answer to one command. A LEASE that succeeds
// names its block: Index, and the First and Last value in it.
type Reply struct {
	Code        Code
	Index       uint16
	First, Last uint32
	Text        string // why, for a refusal; at most MaxText bytes of UTF-8
}

// MaxText bounds a reply's text.
const MaxText = 1024

// AppendReply appends the encoding of r (SPEC.md, "Replies").
func AppendReply(b []byte, r Reply) []byte {
	le := binary.LittleEndian
	t := r.Text
	if len(t) > MaxText {
		// Cut at a rune's start, so the text stays UTF-8.
		t = t[:MaxText]
		for len(t) > 0 && !utf8.RuneStart(r.Text[len(t)]) {
			t = t[:len(t)-1]
		}
	}
	b = append(b, Version, byte(r.Code))
	b = le.AppendUint16(b, r.Index)
	b = le.AppendUint32(b, r.First)
	b = le.AppendUint32(b, r.Last)
	b = le.AppendUint16(b, uint16(len(t)))
	return append(b, t...)
}

// ParseReply decodes a reply.
func ParseReply(b []byte) (Reply, error) {
	r := &reader{b: b}
	if v := r.u8(); r.err == nil && v != Version {
		return Reply{}, fmt.Errorf("%w %d", ErrVersion, v)
	}
	rep := Reply{Code: Code(r.u8()), Index: r.u16(), First: r.u32(), Last: r.u32()}
	n := int(r.u16())
	if r.err == nil && n > MaxText {
		return Reply{}, fmt.Errorf("%w: text of %d bytes", ErrField, n)
	}
	rep.Text = string(r.take(n))
	if err := r.end(); err != nil {
		return Reply{}, err
	}
	if !utf8.ValidString(rep.Text) {
		return Reply{}, fmt.Errorf("%w: text is not UTF-8", ErrField)
	}
	return rep, nil
}

// SortFlows sorts fs and removes duplicates, as EXCEPT and UNEXCEPT
// require.
func SortFlows(fs []Flow) []Flow {
	slices.SortFunc(fs, CmpFlow)
	return slices.Compact(fs)
}

// SortWeights sorts ws by node, as ADD requires.
func SortWeights(ws []Weight) {
	slices.SortFunc(ws, func(a, b Weight) int {
		switch {
		case a.Node < b.Node:
			return -1
		case a.Node > b.Node:
			return 1
		}
		return 0
	})
}
