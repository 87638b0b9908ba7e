package replicated

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/corralhq/corral/dsvc"
)

// Op is a command's operation (SPEC.md, "Commands").
type Op uint8

// Specification constants: command ops.
const (
	OpMkLoc  Op = 1 // make a location
	OpCreate Op = 2 // create a container
	OpRemove Op = 3 // remove a container and its records
	OpAdd    Op = 4 // add one record with signature NewSig(Gen)
	OpModify Op = 5 // replace DT[0]/DN[0] (with its signature) by DT[1]/DN[1]
	OpDelete Op = 6 // delete one record (signature 0: unconditionally)
	OpImport Op = 7 // store records with their signatures, replacing same keys
)

var opNames = [...]string{OpMkLoc: "MKLOC", OpCreate: "CREATE", OpRemove: "REMOVE", OpAdd: "ADD",
	OpModify: "MODIFY", OpDelete: "DELETE", OpImport: "IMPORT"}

func (o Op) String() string {
	if o >= 1 && int(o) < len(opNames) {
		return opNames[o]
	}
	return fmt.Sprintf("op %d", uint8(o))
}

// Specification constants: versions and limits (SPEC.md).
const (
	CommandVersion = 1
	MaxLocation    = 1024  // bytes of a location name
	MaxContainer   = 255   // bytes of a container name
	MaxValue       = 65536 // bytes of a dhcptab record's value
	MaxImport      = 65536 // records of one IMPORT
	MaxMessage     = 1024  // bytes of a reply's message

	headerLen   = 6
	prefixNone  = 0xFF // bits of a reply's prefix when there is none
	maxDTRecord = 2 + 2 + dsvc.MaxKeyLen + 4 + MaxValue + 8
)

// ErrCommand is matched (errors.Is) by every *CommandError of a command;
// ErrReply by those of a reply.
var (
	ErrCommand = errors.New("replicated: bad command")
	ErrReply   = errors.New("replicated: bad reply")
)

// CommandError is a command or reply that does not parse or cannot be
// encoded; Offset is the byte where decoding stopped (-1 when encoding).
type CommandError struct {
	Reply  bool // a reply, not a command
	Offset int
	Reason string
}

func (e *CommandError) Error() string {
	what := "command"
	if e.Reply {
		what = "reply"
	}
	if e.Offset < 0 {
		return fmt.Sprintf("replicated: %s: %s", what, e.Reason)
	}
	return fmt.Sprintf("replicated: %s: offset %d: %s", what, e.Offset, e.Reason)
}

func (e *CommandError) Unwrap() error {
	if e.Reply {
		return ErrReply
	}
	return ErrCommand
}

// Command is one write to the machine. Which fields an op uses:
//
//	MKLOC   Loc
//	CREATE  Loc, Kind, Container; Prefix for a network (its IPv4 network)
//	REMOVE  Loc, Kind, Container
//	ADD     Loc, Kind, Container, Gen, one record
//	MODIFY  Loc, Kind, Container, two records: the original, the new
//	DELETE  Loc, Kind, Container, one record
//	IMPORT  Loc, Kind, Container, Gen, 1..MaxImport records
//
// Records are in DT for a dhcptab container, DN for a network. Gen is the
// signature generation the proposer drew (dsvc.NewSig), so every node
// computes the same signature.
type Command struct {
	Op        Op
	Loc       string
	Kind      dsvc.Kind
	Container string
	Prefix    netip.Prefix
	Gen       uint16
	DT        []dsvc.DTRecord
	DN        []dsvc.DNRecord
}

func encErr(format string, args ...any) error {
	return &CommandError{Offset: -1, Reason: fmt.Sprintf(format, args...)}
}

// records returns how many records op carries (-1: 1..MaxImport).
func records(op Op) int {
	switch op {
	case OpAdd, OpDelete:
		return 1
	case OpModify:
		return 2
	case OpImport:
		return -1
	}
	return 0
}

// AppendCommand appends c's encoding (SPEC.md) to b. It refuses what the
// format cannot carry (lengths over the limits, wrong record counts, a
// non-IPv4 address); it does not judge content, which Apply does.
func AppendCommand(b []byte, c *Command) ([]byte, error) {
	if c.Op < OpMkLoc || c.Op > OpImport {
		return b, encErr("unknown op %d", c.Op)
	}
	if c.Op == OpMkLoc {
		if c.Kind != 0 || c.Container != "" {
			return b, encErr("MKLOC with a kind or container")
		}
	} else if c.Kind != dsvc.DHCPTab && c.Kind != dsvc.Network {
		return b, encErr("%v of container kind %d", c.Op, c.Kind)
	}
	if c.Gen != 0 && c.Op != OpAdd && c.Op != OpImport {
		return b, encErr("%v with a generation", c.Op)
	}
	if len(c.Loc) > MaxLocation || len(c.Container) > MaxContainer {
		return b, encErr("location of %d bytes or container name of %d bytes", len(c.Loc), len(c.Container))
	}
	n := len(c.DT) + len(c.DN)
	want := records(c.Op)
	switch {
	case c.Kind == dsvc.DHCPTab && len(c.DN) > 0, c.Kind == dsvc.Network && len(c.DT) > 0, c.Kind == 0 && n > 0:
		return b, encErr("%v: records of the other kind", c.Op)
	case want >= 0 && n != want:
		return b, encErr("%v carries %d records, not %d", c.Op, want, n)
	case want < 0 && (n < 1 || n > MaxImport):
		return b, encErr("IMPORT of %d records (1..%d)", n, MaxImport)
	}
	le := binary.LittleEndian
	b = append(b, CommandVersion, byte(c.Op), byte(c.Kind), 0)
	b = le.AppendUint16(b, c.Gen)
	b = appendStr16(b, c.Loc)
	b = appendStr16(b, c.Container)
	if c.Op == OpCreate && c.Kind == dsvc.Network {
		if !c.Prefix.IsValid() || !c.Prefix.Addr().Is4() {
			return b, encErr("CREATE of a network needs an IPv4 prefix, not %v", c.Prefix)
		}
		a := c.Prefix.Addr().As4()
		b = append(append(b, a[:]...), byte(c.Prefix.Bits()))
	}
	if c.Op == OpImport {
		b = le.AppendUint32(b, uint32(n))
	}
	var err error
	for i := range c.DT {
		if b, err = appendDT(b, &c.DT[i]); err != nil {
			return b, err
		}
	}
	for i := range c.DN {
		if b, err = appendDN(b, &c.DN[i]); err != nil {
			return b, err
		}
	}
	return b, nil
}

func appendStr16(b []byte, s string) []byte {
	return append(binary.LittleEndian.AppendUint16(b, uint16(len(s))), s...)
}

// appendDT appends a dhcptab record: Type u8, reserved u8, Key str16,
// Value u32 length + bytes, Sig u64.
func appendDT(b []byte, r *dsvc.DTRecord) ([]byte, error) {
	if len(r.Key) > dsvc.MaxKeyLen || len(r.Value) > MaxValue {
		return b, encErr("dhcptab record with a key of %d bytes or a value of %d", len(r.Key), len(r.Value))
	}
	le := binary.LittleEndian
	b = append(b, byte(r.Type), 0)
	b = appendStr16(b, r.Key)
	b = le.AppendUint32(b, uint32(len(r.Value)))
	b = append(b, r.Value...)
	return le.AppendUint64(b, r.Sig), nil
}

// addr4 encodes an IPv4 address; the zero Addr (unset) is 0.0.0.0.
func addr4(a netip.Addr) ([4]byte, bool) {
	if !a.IsValid() {
		return [4]byte{}, true
	}
	if !a.Is4() {
		return [4]byte{}, false
	}
	return a.As4(), true
}

// appendDN appends a network record: Flags u8, CID length u8, CID, CIP 4,
// SIP 4, Lease u32, Macro str16, Comment str16, Sig u64.
func appendDN(b []byte, r *dsvc.DNRecord) ([]byte, error) {
	cip, ok1 := addr4(r.CIP)
	sip, ok2 := addr4(r.SIP)
	switch {
	case !ok1 || !ok2:
		return b, encErr("network record with a non-IPv4 address (%v, %v)", r.CIP, r.SIP)
	case len(r.CID) > dsvc.MaxCIDLen || len(r.Macro) > dsvc.MaxKeyLen || len(r.Comment) > dsvc.MaxCommentLen:
		return b, encErr("network record with a field over its limit")
	}
	le := binary.LittleEndian
	b = append(b, byte(r.Flags), byte(len(r.CID)))
	b = append(b, r.CID...)
	b = append(b, cip[:]...)
	b = append(b, sip[:]...)
	b = le.AppendUint32(b, r.Lease)
	b = appendStr16(b, r.Macro)
	b = appendStr16(b, r.Comment)
	return le.AppendUint64(b, r.Sig), nil
}

// dec reads little-endian fields; the first failure sticks.
type dec struct {
	b     []byte
	off   int
	err   *CommandError
	reply bool
}

func (d *dec) fail(format string, args ...any) {
	if d.err == nil {
		d.err = &CommandError{Reply: d.reply, Offset: d.off, Reason: fmt.Sprintf(format, args...)}
	}
}

func (d *dec) take(n int, field string) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail("truncated at %s (need %d bytes, have %d)", field, n, len(d.b)-d.off)
		return nil
	}
	v := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return v
}

func (d *dec) u8(field string) uint8 {
	if v := d.take(1, field); v != nil {
		return v[0]
	}
	return 0
}

func (d *dec) u16(field string) uint16 {
	if v := d.take(2, field); v != nil {
		return binary.LittleEndian.Uint16(v)
	}
	return 0
}

func (d *dec) u32(field string) uint32 {
	if v := d.take(4, field); v != nil {
		return binary.LittleEndian.Uint32(v)
	}
	return 0
}

func (d *dec) u64(field string) uint64 {
	if v := d.take(8, field); v != nil {
		return binary.LittleEndian.Uint64(v)
	}
	return 0
}

func (d *dec) str16(max int, field string) string {
	n := int(d.u16(field + " length"))
	if d.err == nil && n > max {
		d.fail("%s of %d bytes (at most %d)", field, n, max)
		return ""
	}
	return string(d.take(n, field))
}

func (d *dec) zero(field string) {
	if d.u8(field) != 0 {
		d.off--
		d.fail("reserved %s is not 0", field)
	}
}

func (d *dec) addr(field string) netip.Addr {
	if v := d.take(4, field); v != nil {
		return netip.AddrFrom4([4]byte(v))
	}
	return netip.Addr{}
}

// end returns the first error, or one for bytes after the last field.
func (d *dec) end() error {
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d bytes after the last field", len(d.b)-d.off)
	}
	if d.err == nil {
		return nil
	}
	return d.err
}

func (d *dec) dt() dsvc.DTRecord {
	var r dsvc.DTRecord
	r.Type = dsvc.DTType(d.u8("type"))
	d.zero("byte after the type")
	r.Key = d.str16(dsvc.MaxKeyLen, "key")
	n := d.u32("value length")
	if d.err == nil && n > MaxValue {
		d.fail("value of %d bytes (at most %d)", n, MaxValue)
	}
	r.Value = string(d.take(int(n), "value"))
	r.Sig = d.u64("signature")
	return r
}

func (d *dec) dn() dsvc.DNRecord {
	var r dsvc.DNRecord
	r.Flags = dsvc.DNFlags(d.u8("flags"))
	n := int(d.u8("client id length"))
	if d.err == nil && n > dsvc.MaxCIDLen {
		d.fail("client id of %d octets (at most %d)", n, dsvc.MaxCIDLen)
	}
	r.CID = bytes.Clone(d.take(n, "client id"))
	r.CIP = d.addr("client ip")
	r.SIP = d.addr("server ip")
	r.Lease = d.u32("lease")
	r.Macro = d.str16(dsvc.MaxKeyLen, "macro")
	r.Comment = d.str16(dsvc.MaxCommentLen, "comment")
	r.Sig = d.u64("signature")
	if r.CID == nil && d.err == nil {
		r.CID = []byte{}
	}
	return r
}

// ParseCommand decodes a command (SPEC.md). It refuses, with a
// *CommandError, what does not follow the format; the content (names,
// records, prefixes) is Apply's to judge. The result does not alias b.
func ParseCommand(b []byte) (Command, error) {
	d := &dec{b: b}
	var c Command
	if v := d.u8("version"); d.err == nil && v != CommandVersion {
		d.off--
		d.fail("version %d (this build reads %d)", v, CommandVersion)
	}
	c.Op = Op(d.u8("op"))
	if d.err == nil && (c.Op < OpMkLoc || c.Op > OpImport) {
		d.off--
		d.fail("unknown op %d", c.Op)
	}
	c.Kind = dsvc.Kind(d.u8("kind"))
	if d.err == nil {
		if c.Op == OpMkLoc && c.Kind != 0 || c.Op != OpMkLoc && c.Kind != dsvc.DHCPTab && c.Kind != dsvc.Network {
			d.off--
			d.fail("%v of container kind %d", c.Op, c.Kind)
		}
	}
	d.zero("header byte 3")
	c.Gen = d.u16("generation")
	if d.err == nil && c.Gen != 0 && c.Op != OpAdd && c.Op != OpImport {
		d.off -= 2
		d.fail("%v with generation %d (only ADD and IMPORT carry one)", c.Op, c.Gen)
	}
	c.Loc = d.str16(MaxLocation, "location")
	c.Container = d.str16(MaxContainer, "container")
	if d.err == nil && c.Op == OpMkLoc && c.Container != "" {
		d.fail("MKLOC with a container")
	}
	if c.Op == OpCreate && c.Kind == dsvc.Network {
		a := d.addr("network")
		if bits := d.u8("prefix length"); d.err == nil {
			if bits > 32 {
				d.off--
				d.fail("prefix length %d", bits)
			}
			c.Prefix = netip.PrefixFrom(a, int(bits))
		}
	}
	n := records(c.Op)
	if n < 0 {
		count := d.u32("record count")
		if d.err == nil && (count < 1 || count > MaxImport) {
			d.off -= 4
			d.fail("IMPORT of %d records (1..%d)", count, MaxImport)
		}
		n = int(count)
	}
	if d.err != nil {
		return Command{}, d.err
	}
	if c.Kind == dsvc.DHCPTab && n > 0 {
		c.DT = make([]dsvc.DTRecord, 0, min(n, len(b)/14))
		for i := 0; i < n && d.err == nil; i++ {
			c.DT = append(c.DT, d.dt())
		}
	} else if n > 0 {
		c.DN = make([]dsvc.DNRecord, 0, min(n, len(b)/32))
		for i := 0; i < n && d.err == nil; i++ {
			c.DN = append(c.DN, d.dn())
		}
	}
	if err := d.end(); err != nil {
		return Command{}, err
	}
	return c, nil
}

// Reply is a command's result (rsm.Result.Reply): the code (0 success),
// the record's new signature (ADD, MODIFY), the network (CREATE of a
// network) and why a command was refused.
type Reply struct {
	Code    dsvc.Code
	Sig     uint64
	Prefix  netip.Prefix // invalid when there is none
	Message string       // ≤ MaxMessage bytes; empty on success
}

// Err returns nil for success, else the reply as a *dsvc.Error (Detail:
// the message); the caller sets Op and Container.
func (r *Reply) Err() error {
	if r.Code == dsvc.CodeSuccess {
		return nil
	}
	return &dsvc.Error{Code: r.Code, Detail: r.Message}
}

// AppendReply appends r's encoding: code u8, sig u64, prefix (4 bytes +
// u8 bits, 0xFF none), message str16. A longer message is cut at
// MaxMessage bytes; a prefix that is not IPv4 is none.
func AppendReply(b []byte, r *Reply) []byte {
	b = append(b, byte(r.Code))
	b = binary.LittleEndian.AppendUint64(b, r.Sig)
	if r.Prefix.IsValid() && r.Prefix.Addr().Is4() {
		a := r.Prefix.Addr().As4()
		b = append(append(b, a[:]...), byte(r.Prefix.Bits()))
	} else {
		b = append(b, 0, 0, 0, 0, prefixNone)
	}
	return appendStr16(b, truncate(r.Message, MaxMessage))
}

// truncate cuts s to at most n bytes, at a UTF-8 boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n]
}

// ParseReply decodes a reply. It refuses (*CommandError, ErrReply) a code
// that is not a dsvc code, a success with a message, a prefix length over
// 32 (other than 0xFF, with address 0.0.0.0), truncation and trailing
// bytes.
func ParseReply(b []byte) (Reply, error) {
	d := &dec{b: b, reply: true}
	var r Reply
	r.Code = dsvc.Code(d.u8("code"))
	if d.err == nil && r.Code > dsvc.CodeTableExists {
		d.off--
		d.fail("code %d is not a dsvc code", r.Code)
	}
	r.Sig = d.u64("signature")
	a := d.addr("prefix address")
	bits := d.u8("prefix length")
	switch {
	case d.err != nil:
	case bits == prefixNone && a == netip.AddrFrom4([4]byte{}):
	case bits <= 32:
		r.Prefix = netip.PrefixFrom(a, int(bits))
	default:
		d.off--
		d.fail("prefix length %d", bits)
	}
	r.Message = d.str16(MaxMessage, "message")
	if d.err == nil && r.Code == dsvc.CodeSuccess && r.Message != "" {
		d.fail("a success with a message")
	}
	if err := d.end(); err != nil {
		return Reply{}, err
	}
	return r, nil
}
