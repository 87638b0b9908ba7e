package client

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"

	"github.com/corralhq/corral/proto"
)

// This file holds the bodies of the data service (SPEC.md, "Data service
// (version 4)"), opcodes 0x0301–0x030B. Every request is a DSTarget and
// what its opcode adds; every reply a DSResult and, on success, what its
// opcode (and the request's kind) adds. The rules are those of events.go
// and groups.go: Append writes exactly what Parse reads back; an Append
// function refuses (and appends nothing) what Parse would refuse: a
// length or count over its limit with CodeTooLarge, any other rule with
// CodeField; Parse checks every count and length against its limit and
// the bytes present before it allocates, and fails with a *proto.Error
// of CodeField.
//
// The record types are this package's own, field for field those of
// package dsvc (which proto/client cannot import); the conversions live
// with the agent's service and the module.

// Specification constants: the Kind byte of a DSTarget (dsvc.Kind).
const (
	DSKindNone    uint8 = 0 // location operations: DS_STATUS, DS_MKLOC
	DSKindDHCPTab uint8 = 1 // the dhcptab container; records DSDTRecord
	DSKindNetwork uint8 = 2 // a network container; records DSDNRecord
)

// Specification constants: the Flags of DS_LOOKUP and DS_COUNT.
const (
	// DSLocal: answer from this agent's replica without a read index
	// (possibly stale, never waits for the leader).
	DSLocal uint8 = 0x01
	// DSPartial: the caller accepts a partial answer.
	DSPartial uint8 = 0x02

	dsLookupFlags = DSLocal | DSPartial
)

// Specification constants: the Flags of DS_OPEN, the bits of
// dsvc.OpenFlags.
const (
	DSOpenCreate   uint8 = 0x01
	DSOpenRead     uint8 = 0x02
	DSOpenWrite    uint8 = 0x04
	DSOpenNonBlock uint8 = 0x08

	dsOpenFlags = DSOpenCreate | DSOpenRead | DSOpenWrite | DSOpenNonBlock
)

// PrefixBitsUnknown in a DS_OPEN request's Prefix: the caller does not
// know the network's length; the agent answers with the stored one.
const PrefixBitsUnknown uint8 = 0xFF

// Specification constants: DT record types (dsvc.DTType).
const (
	DSTypeSymbol byte = 's'
	DSTypeMacro  byte = 'm'
)

// DNFlagsAll holds every defined bit of a DSDNRecord's Flags (dsvc.DNAll).
const DNFlagsAll uint8 = 0x0F

// Limits of the data service bodies (SPEC.md, "Data service limits").
const (
	DSMaxLocation  = 1024    // Location bytes (at least 1)
	DSMaxContainer = 255     // Container bytes; DS_LIST names
	DSMaxMessage   = 1024    // DSResult.Message bytes
	DSMaxKey       = 128     // DT Key, DN Macro (dsvc.MaxKeyLen)
	DSMaxValue     = 65536   // DT Value bytes
	DSMaxCID       = 64      // DN client id octets (dsvc.MaxCIDLen)
	DSMaxComment   = 48      // DN Comment bytes (dsvc.MaxCommentLen)
	DSMaxNames     = 65536   // names of a DS_LIST reply
	DSMaxImport    = 65536   // records of a DS_IMPORT request
	DSMaxRecords   = 1 << 20 // records of a DS_LOOKUP reply: as many of the smallest as a frame holds
	// DSMaxCode is the largest DSResult.Code: the dsvc codes are 0..25
	// (dsvc.CodeTableExists).
	DSMaxCode = 25
)

// Sizes of the fixed parts.
const (
	DSTargetMin  = 1 + 1 + 2 + 2 + 1 + 2 // kind, flags, reserved, location (≥ 1 byte), container
	DSResultMin  = 1 + 3 + 8 + 2         // code, reserved, index, message length
	DSPrefixSize = 4 + 1

	dtRecordMin = 1 + 1 + 2 + 4 + 8             // type, reserved, key length, value length, sig
	dnRecordMin = 1 + 1 + 4 + 4 + 4 + 2 + 2 + 8 // flags, CID length (0), CIP, SIP, lease, macro, comment, sig
	nameMin     = 2 + 1                         // a DS_LIST name: length, ≥ 1 byte
)

// DSTarget is the header of every data service request: what it acts on.
type DSTarget struct {
	Kind  uint8 // DSKindNone for DS_STATUS and DS_MKLOC, else DSKindDHCPTab or DSKindNetwork
	Flags uint8 // DS_OPEN: DSOpen*; DS_LOOKUP, DS_COUNT: DSLocal, DSPartial; else 0
	// Location names the data store location: 1..DSMaxLocation bytes,
	// no NUL.
	Location string
	// Container is the module's internal container name (0..255 bytes,
	// no NUL): empty for DS_STATUS, DS_MKLOC and DS_LIST, else not.
	Container string
}

// DSDTRecord is a dhcptab record (dsvc.DTRecord).
type DSDTRecord struct {
	Key   string // ≤ DSMaxKey bytes
	Type  byte   // DSTypeSymbol or DSTypeMacro; 0 allowed in a query target only
	Value string // ≤ DSMaxValue bytes
	Sig   uint64
}

// DSDNRecord is a network record (dsvc.DNRecord).
type DSDNRecord struct {
	CID     []byte  // 1..DSMaxCID octets; empty in a query target only. Parse copies it.
	Flags   uint8   // no bit outside DNFlagsAll
	CIP     [4]byte // client IPv4 address
	SIP     [4]byte // server IPv4 address
	Lease   uint32  // unix seconds
	Macro   string  // ≤ DSMaxKey bytes
	Comment string  // ≤ DSMaxComment bytes
	Sig     uint64
}

// DSPrefix is an IPv4 network: Bits 0..32, or PrefixBitsUnknown in a
// DS_OPEN request.
type DSPrefix struct {
	Addr [4]byte
	Bits uint8
}

// DSResult is the header of every data service reply.
type DSResult struct {
	Code    uint8  // a dsvc.Code: 0 success, 1..DSMaxCode a failure of the data service
	Index   uint64 // the log index the answer reflects (a write: its entry; a read: the index read at)
	Message string // ≤ DSMaxMessage bytes; empty on success
}

// DSRequest is the body of every data service request. Which fields
// beyond Target an opcode carries (SPEC.md): the others must be zero.
type DSRequest struct {
	Op     uint16 // not on the wire: the frame's opcode
	Target DSTarget
	Prefix DSPrefix // DS_OPEN of a network container
	// DS_LOOKUP, DS_COUNT: the query (dsvc.Query), how many records at
	// most (< 0: all), and whether a target record follows.
	Query     uint32
	Count     int32
	HasTarget bool
	// The records of the kind: DS_ADD, DS_DELETE one; DS_MODIFY the
	// original and the new; DS_IMPORT 1..DSMaxImport; DS_LOOKUP and
	// DS_COUNT the query target if HasTarget. The slice of the other
	// kind is empty.
	DT []DSDTRecord
	DN []DSDNRecord
}

// DSReply is the body of every data service reply. On success (Result.Code
// 0) the fields of its opcode are set (DS_LIST: Names; DS_OPEN of a
// network: Prefix; DS_LOOKUP: DT or DN by the request's kind; DS_COUNT:
// Count; DS_ADD, DS_MODIFY: Sig); every other field, and all of them on
// a failure, are zero.
type DSReply struct {
	Result DSResult
	Names  []string // sorted container names, each 1..255 bytes
	Prefix DSPrefix // the stored network, Bits 0..32
	Count  uint64
	Sig    uint64
	DT     []DSDTRecord
	DN     []DSDNRecord
}

// dsNames are the opcodes' names, indexed by opcode - OpDSStatus.
var dsNames = [...]string{"DS_STATUS", "DS_MKLOC", "DS_LIST", "DS_OPEN", "DS_REMOVE", "DS_LOOKUP", "DS_COUNT", "DS_ADD", "DS_MODIFY", "DS_DELETE", "DS_IMPORT"}

// dsName returns the name of a data service opcode, or a CodeOpcode
// error.
func dsName(op uint16) (string, *proto.Error) {
	if op < OpDSStatus || op > OpDSImport {
		return "", proto.Errorf(proto.CodeOpcode, "opcode %#04x is not a data service opcode", op)
	}
	return dsNames[op-OpDSStatus], nil
}

// dsLocationOp: DS_STATUS and DS_MKLOC act on a location, Kind 0.
func dsLocationOp(op uint16) bool { return op == OpDSStatus || op == OpDSMkLoc }

// checkKind is the rule of the Kind byte for op.
func checkKind(op uint16, kind uint8) *proto.Error {
	switch {
	case kind > DSKindNetwork:
		return proto.Errorf(proto.CodeField, "unknown kind %d", kind)
	case dsLocationOp(op) && kind != DSKindNone:
		return proto.Errorf(proto.CodeField, "kind %d on a location operation (want 0)", kind)
	case !dsLocationOp(op) && kind == DSKindNone:
		return proto.Errorf(proto.CodeField, "kind 0 on a container operation (want 1 dhcptab or 2 network)")
	}
	return nil
}

// checkTarget is the rule of a DSTarget for op; the lengths are checked
// where they are read (or by dsCheck.target).
func checkTarget(op uint16, t *DSTarget) *proto.Error {
	if err := checkKind(op, t.Kind); err != nil {
		return err
	}
	var mask uint8
	switch op {
	case OpDSOpen:
		mask = dsOpenFlags
	case OpDSLookup, OpDSCount:
		mask = dsLookupFlags
	}
	if t.Flags&^mask != 0 {
		return proto.Errorf(proto.CodeField, "flags %#02x: bits %#02x are not defined", t.Flags, t.Flags&^mask)
	}
	if t.Location == "" {
		return proto.Errorf(proto.CodeField, "empty location")
	}
	if strings.IndexByte(t.Location, 0) >= 0 {
		return proto.Errorf(proto.CodeField, "location holds a NUL byte")
	}
	if strings.IndexByte(t.Container, 0) >= 0 {
		return proto.Errorf(proto.CodeField, "container holds a NUL byte")
	}
	switch empty := dsLocationOp(op) || op == OpDSList; {
	case empty && t.Container != "":
		return proto.Errorf(proto.CodeField, "container %q on an operation without one", t.Container)
	case !empty && t.Container == "":
		return proto.Errorf(proto.CodeField, "empty container")
	}
	return nil
}

// checkDT is the rule of a dhcptab record; target: a query target.
func checkDT(d *DSDTRecord, target bool) *proto.Error {
	if d.Type != DSTypeSymbol && d.Type != DSTypeMacro && (!target || d.Type != 0) {
		return proto.Errorf(proto.CodeField, "record type %#02x (want 's' or 'm')", d.Type)
	}
	return nil
}

// checkDN is the rule of a network record; request: one a client sends,
// which may name a record by its address alone (a query target, a DELETE,
// the original of a MODIFY) and so have no client id — the agent's data
// service validates the rest. The CID's length limit is dsCheck's
// (encoders) or readDN's.
func checkDN(d *DSDNRecord, request bool) *proto.Error {
	if d.Flags&^DNFlagsAll != 0 {
		return proto.Errorf(proto.CodeField, "record flags %#02x outside %#02x", d.Flags, DNFlagsAll)
	}
	if len(d.CID) == 0 && !request {
		return proto.Errorf(proto.CodeField, "empty client id")
	}
	return nil
}

// checkPrefix is the rule of a DSPrefix; unknown: PrefixBitsUnknown is
// allowed.
func checkPrefix(p *DSPrefix, unknown bool) *proto.Error {
	if p.Bits > 32 && (!unknown || p.Bits != PrefixBitsUnknown) {
		return proto.Errorf(proto.CodeField, "prefix length %d", p.Bits)
	}
	return nil
}

// dsRecords says how many records op's request carries: exactly n, or
// 1..DSMaxImport if n < 0.
func dsRecords(r *DSRequest) int {
	switch r.Op {
	case OpDSAdd, OpDSDelete:
		return 1
	case OpDSModify:
		return 2
	case OpDSImport:
		return -1
	case OpDSLookup, OpDSCount:
		if r.HasTarget {
			return 1
		}
	}
	return 0
}

// check is the rule of a whole request, for the encoder; the decoder
// checks the same as it reads.
func (r *DSRequest) check() *proto.Error {
	if err := checkTarget(r.Op, &r.Target); err != nil {
		return err
	}
	query := r.Op == OpDSLookup || r.Op == OpDSCount
	switch {
	case r.Prefix != DSPrefix{} && !(r.Op == OpDSOpen && r.Target.Kind == DSKindNetwork):
		return proto.Errorf(proto.CodeField, "a prefix on a request without one")
	case !query && (r.Query != 0 || r.Count != 0 || r.HasTarget):
		return proto.Errorf(proto.CodeField, "a query on a request without one")
	}
	if err := checkPrefix(&r.Prefix, true); err != nil {
		return err
	}
	n, other := len(r.DT), len(r.DN)
	if r.Target.Kind == DSKindNetwork {
		n, other = other, n
	}
	if other != 0 {
		return proto.Errorf(proto.CodeField, "records of the other kind")
	}
	switch want := dsRecords(r); {
	case want < 0 && n == 0:
		return proto.Errorf(proto.CodeField, "no records")
	case want >= 0 && n != want:
		return proto.Errorf(proto.CodeField, "%d records, want %d", n, want)
	}
	for i := range r.DT {
		if err := checkDT(&r.DT[i], query); err != nil {
			return err
		}
	}
	for i := range r.DN {
		if err := checkDN(&r.DN[i], true); err != nil {
			return err
		}
	}
	return nil
}

// dsCheck is check (events.go) for the data service's lengths: the
// encoders refuse a length over its limit with CodeTooLarge.
type dsCheck struct{ check }

func (c *dsCheck) str(what, s string, limit int) {
	if len(s) > limit {
		c.fail("%s is %d bytes, limit %d", what, len(s), limit)
	}
}

func (c *dsCheck) dt(ds []DSDTRecord) {
	for i := range ds {
		c.str("key", ds[i].Key, DSMaxKey)
		c.str("value", ds[i].Value, DSMaxValue)
	}
}

func (c *dsCheck) dn(ds []DSDNRecord) {
	for i := range ds {
		if len(ds[i].CID) > DSMaxCID {
			c.fail("client id is %d octets, limit %d", len(ds[i].CID), DSMaxCID)
		}
		c.str("macro", ds[i].Macro, DSMaxKey)
		c.str("comment", ds[i].Comment, DSMaxComment)
	}
}

// AppendDSRequest appends the body of r, a request of opcode r.Op. A
// request the rules refuse (CodeField) or beyond the limits
// (CodeTooLarge) is not appended.
func AppendDSRequest(b []byte, r *DSRequest) ([]byte, error) {
	name, perr := dsName(r.Op)
	if perr != nil {
		return b, perr
	}
	var c dsCheck
	c.str("location", r.Target.Location, DSMaxLocation)
	c.str("container", r.Target.Container, DSMaxContainer)
	if r.Op == OpDSImport && len(r.DT)+len(r.DN) > DSMaxImport {
		c.fail("%d records, limit %d", len(r.DT)+len(r.DN), DSMaxImport)
	}
	c.dt(r.DT)
	c.dn(r.DN)
	if c.err != nil {
		return b, c.err
	}
	if err := r.check(); err != nil {
		return b, proto.Errorf(err.Code, "%s: %s", name, err.Detail)
	}
	le := binary.LittleEndian
	t := &r.Target
	// One allocation for the whole body, not one per field that grows it.
	b = slices.Grow(b, 4+2+len(t.Location)+2+len(t.Container)+16+recordsSize(r.DT, r.DN))
	b = append(b, t.Kind, t.Flags, 0, 0)
	b = proto.AppendString16(b, t.Location)
	b = proto.AppendString16(b, t.Container)
	switch r.Op {
	case OpDSOpen:
		if t.Kind == DSKindNetwork {
			b = appendPrefix(b, &r.Prefix)
		}
	case OpDSLookup, OpDSCount:
		b = le.AppendUint32(b, r.Query)
		b = le.AppendUint32(b, uint32(r.Count))
		has := byte(0)
		if r.HasTarget {
			has = 1
		}
		b = append(b, has)
	case OpDSImport:
		b = le.AppendUint32(b, uint32(len(r.DT)+len(r.DN)))
	}
	return appendRecords(b, r.DT, r.DN), nil
}

// ParseDSRequest decodes the body of a data service request of opcode op.
// The result does not alias body.
func ParseDSRequest(op uint16, body []byte) (DSRequest, error) {
	name, perr := dsName(op)
	if perr != nil {
		return DSRequest{}, perr
	}
	r := proto.NewReader(body, name)
	q := DSRequest{Op: op}
	t := &q.Target
	t.Kind = r.U8("kind")
	t.Flags = r.U8("flags")
	r.Zero(2, "reserved")
	t.Location = r.String16(DSMaxLocation, "location")
	t.Container = r.String16(DSMaxContainer, "container")
	if err := checkTarget(op, t); err != nil {
		r.Fail(proto.CodeField, "%s", err.Detail)
		return DSRequest{}, r.Err()
	}
	n := 0
	query := op == OpDSLookup || op == OpDSCount
	switch op {
	case OpDSOpen:
		if t.Kind == DSKindNetwork {
			q.Prefix = readPrefix(r, true)
		}
	case OpDSLookup, OpDSCount:
		q.Query = r.U32("query")
		q.Count = int32(r.U32("count"))
		switch has := r.U8("has target"); has {
		case 0:
		case 1:
			q.HasTarget, n = true, 1
		default:
			r.Fail(proto.CodeField, "has target is %d (want 0 or 1)", has)
		}
	case OpDSAdd, OpDSDelete:
		n = 1
	case OpDSModify:
		n = 2
	case OpDSImport:
		n = count(r, "record", DSMaxImport, recordMin(t.Kind))
		if n == 0 {
			r.Fail(proto.CodeField, "no records")
		}
	}
	q.DT, q.DN = readRecords(r, t.Kind, n, query, true)
	if err := r.Err(); err != nil {
		return DSRequest{}, err
	}
	return q, nil
}

// checkResult is the rule of a DSResult.
func checkResult(res *DSResult) *proto.Error {
	if res.Code > DSMaxCode {
		return proto.Errorf(proto.CodeField, "result code %d, limit %d", res.Code, DSMaxCode)
	}
	if res.Code == 0 && res.Message != "" {
		return proto.Errorf(proto.CodeField, "a message on success")
	}
	return nil
}

// check is the rule of a whole reply to op on kind, for the encoder.
func (p *DSReply) check(op uint16, kind uint8) *proto.Error {
	if err := checkKind(op, kind); err != nil {
		return err
	}
	if err := checkResult(&p.Result); err != nil {
		return err
	}
	ok := p.Result.Code == 0
	lookup := ok && op == OpDSLookup
	switch {
	case len(p.Names) != 0 && !(ok && op == OpDSList):
		return proto.Errorf(proto.CodeField, "names on a reply without them")
	case p.Prefix != DSPrefix{} && !(ok && op == OpDSOpen && kind == DSKindNetwork):
		return proto.Errorf(proto.CodeField, "a prefix on a reply without one")
	case p.Count != 0 && !(ok && op == OpDSCount):
		return proto.Errorf(proto.CodeField, "a count on a reply without one")
	case p.Sig != 0 && !(ok && (op == OpDSAdd || op == OpDSModify)):
		return proto.Errorf(proto.CodeField, "a signature on a reply without one")
	case len(p.DT) != 0 && !(lookup && kind == DSKindDHCPTab):
		return proto.Errorf(proto.CodeField, "dhcptab records on a reply without them")
	case len(p.DN) != 0 && !(lookup && kind == DSKindNetwork):
		return proto.Errorf(proto.CodeField, "network records on a reply without them")
	}
	for _, s := range p.Names {
		if err := checkName(s); err != nil {
			return err
		}
	}
	if err := checkPrefix(&p.Prefix, false); err != nil {
		return err
	}
	for i := range p.DT {
		if err := checkDT(&p.DT[i], false); err != nil {
			return err
		}
	}
	for i := range p.DN {
		if err := checkDN(&p.DN[i], false); err != nil {
			return err
		}
	}
	return nil
}

// checkName is the rule of a DS_LIST name: a container name, not empty.
func checkName(s string) *proto.Error {
	if s == "" {
		return proto.Errorf(proto.CodeField, "empty container name")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return proto.Errorf(proto.CodeField, "container name holds a NUL byte")
	}
	return nil
}

// AppendDSReply appends the body of p, the reply to a request of opcode
// op on kind (the request's Target.Kind). A reply the rules refuse
// (CodeField) or beyond the limits (CodeTooLarge) is not appended.
func AppendDSReply(b []byte, op uint16, kind uint8, p *DSReply) ([]byte, error) {
	name, perr := dsName(op)
	if perr != nil {
		return b, perr
	}
	var c dsCheck
	c.str("message", p.Result.Message, DSMaxMessage)
	if len(p.Names) > DSMaxNames {
		c.fail("%d names, limit %d", len(p.Names), DSMaxNames)
	}
	for _, s := range p.Names {
		c.str("container name", s, DSMaxContainer)
	}
	if len(p.DT)+len(p.DN) > DSMaxRecords {
		c.fail("%d records, limit %d", len(p.DT)+len(p.DN), DSMaxRecords)
	}
	c.dt(p.DT)
	c.dn(p.DN)
	if c.err != nil {
		return b, c.err
	}
	if err := p.check(op, kind); err != nil {
		return b, proto.Errorf(err.Code, "%s reply: %s", name, err.Detail)
	}
	le := binary.LittleEndian
	n := 4 + 8 + 2 + len(p.Result.Message) + 16
	if p.Result.Code == 0 {
		for _, s := range p.Names {
			n += 2 + len(s)
		}
		n += recordsSize(p.DT, p.DN)
	}
	b = slices.Grow(b, n) // one allocation for the whole body
	b = append(b, p.Result.Code, 0, 0, 0)
	b = le.AppendUint64(b, p.Result.Index)
	b = proto.AppendString16(b, p.Result.Message)
	if p.Result.Code != 0 {
		return b, nil
	}
	switch op {
	case OpDSList:
		b = le.AppendUint32(b, uint32(len(p.Names)))
		for _, s := range p.Names {
			b = proto.AppendString16(b, s)
		}
	case OpDSOpen:
		if kind == DSKindNetwork {
			b = appendPrefix(b, &p.Prefix)
		}
	case OpDSLookup:
		b = le.AppendUint32(b, uint32(len(p.DT)+len(p.DN)))
		b = appendRecords(b, p.DT, p.DN)
	case OpDSCount:
		b = le.AppendUint64(b, p.Count)
	case OpDSAdd, OpDSModify:
		b = le.AppendUint64(b, p.Sig)
	}
	return b, nil
}

// ParseDSReply decodes the body of the reply to a data service request of
// opcode op on kind (the request's Target.Kind). The result does not
// alias body.
func ParseDSReply(op uint16, kind uint8, body []byte) (DSReply, error) {
	name, perr := dsName(op)
	if perr != nil {
		return DSReply{}, perr
	}
	r := proto.NewReader(body, name+" reply")
	if err := checkKind(op, kind); err != nil {
		r.Fail(proto.CodeField, "%s", err.Detail)
		return DSReply{}, r.Err()
	}
	var p DSReply
	p.Result.Code = r.U8("code")
	r.Zero(3, "reserved")
	p.Result.Index = r.U64("index")
	p.Result.Message = r.String16(DSMaxMessage, "message")
	if err := checkResult(&p.Result); err != nil {
		r.Fail(proto.CodeField, "%s", err.Detail)
	}
	if p.Result.Code == 0 {
		switch op {
		case OpDSList:
			if n := count(r, "name", DSMaxNames, nameMin); n > 0 {
				p.Names = make([]string, n)
				for i := range p.Names {
					p.Names[i] = r.String16(DSMaxContainer, "container name")
					if err := checkName(p.Names[i]); err != nil {
						r.Fail(proto.CodeField, "name %d: %s", i, err.Detail)
					}
				}
			}
		case OpDSOpen:
			if kind == DSKindNetwork {
				p.Prefix = readPrefix(r, false)
			}
		case OpDSLookup:
			n := count(r, "record", DSMaxRecords, recordMin(kind))
			p.DT, p.DN = readRecords(r, kind, n, false, false)
		case OpDSCount:
			p.Count = r.U64("count")
		case OpDSAdd, OpDSModify:
			p.Sig = r.U64("sig")
		}
	}
	if err := r.Err(); err != nil {
		return DSReply{}, err
	}
	return p, nil
}

func appendPrefix(b []byte, p *DSPrefix) []byte {
	b = append(b, p.Addr[:]...)
	return append(b, p.Bits)
}

func readPrefix(r *proto.Reader, unknown bool) DSPrefix {
	var p DSPrefix
	copy(p.Addr[:], r.Bytes(4, "prefix address"))
	p.Bits = r.U8("prefix length")
	if err := checkPrefix(&p, unknown); err != nil {
		r.Fail(proto.CodeField, "%s", err.Detail)
	}
	return p
}

// recordMin is the smallest record of kind, for count's check.
func recordMin(kind uint8) int {
	if kind == DSKindNetwork {
		return dnRecordMin
	}
	return dtRecordMin
}

// recordsSize is how many bytes appendRecords appends.
func recordsSize(dt []DSDTRecord, dn []DSDNRecord) int {
	n := 0
	for i := range dt {
		n += 2 + 2 + len(dt[i].Key) + 4 + len(dt[i].Value) + 8
	}
	for i := range dn {
		n += 2 + len(dn[i].CID) + 4 + 4 + 4 + 2 + len(dn[i].Macro) + 2 + len(dn[i].Comment) + 8
	}
	return n
}

// appendRecords appends the records; one of dt and dn is empty.
func appendRecords(b []byte, dt []DSDTRecord, dn []DSDNRecord) []byte {
	le := binary.LittleEndian
	for i := range dt {
		d := &dt[i]
		b = append(b, d.Type, 0)
		b = proto.AppendString16(b, d.Key)
		b = le.AppendUint32(b, uint32(len(d.Value)))
		b = append(b, d.Value...)
		b = le.AppendUint64(b, d.Sig)
	}
	for i := range dn {
		d := &dn[i]
		b = append(b, d.Flags, byte(len(d.CID)))
		b = append(b, d.CID...)
		b = append(b, d.CIP[:]...)
		b = append(b, d.SIP[:]...)
		b = le.AppendUint32(b, d.Lease)
		b = proto.AppendString16(b, d.Macro)
		b = proto.AppendString16(b, d.Comment)
		b = le.AppendUint64(b, d.Sig)
	}
	return b
}

// readRecords reads n records of kind; target: they are query targets;
// request: a client sent them. The caller checked n against the bytes
// left.
func readRecords(r *proto.Reader, kind uint8, n int, target, request bool) ([]DSDTRecord, []DSDNRecord) {
	if n == 0 {
		return nil, nil
	}
	if kind == DSKindNetwork {
		dn := make([]DSDNRecord, n)
		for i := range dn {
			readDN(r, &dn[i], request)
		}
		return nil, dn
	}
	dt := make([]DSDTRecord, n)
	for i := range dt {
		readDT(r, &dt[i], target)
	}
	return dt, nil
}

func readDT(r *proto.Reader, d *DSDTRecord, target bool) {
	d.Type = r.U8("record type")
	r.Zero(1, "record reserved")
	d.Key = r.String16(DSMaxKey, "key")
	n := r.U32("value length")
	if n > DSMaxValue {
		r.Fail(proto.CodeField, "value is %d bytes, limit %d", n, DSMaxValue)
		return
	}
	d.Value = string(r.Bytes(int(n), "value"))
	d.Sig = r.U64("sig")
	if err := checkDT(d, target); err != nil {
		r.Fail(proto.CodeField, "%s", err.Detail)
	}
}

func readDN(r *proto.Reader, d *DSDNRecord, request bool) {
	d.Flags = r.U8("record flags")
	n := int(r.U8("client id length"))
	if n > DSMaxCID {
		r.Fail(proto.CodeField, "client id is %d octets, limit %d", n, DSMaxCID)
		return
	}
	if n > 0 {
		d.CID = bytes.Clone(r.Bytes(n, "client id"))
	}
	copy(d.CIP[:], r.Bytes(4, "client address"))
	copy(d.SIP[:], r.Bytes(4, "server address"))
	d.Lease = r.U32("lease")
	d.Macro = r.String16(DSMaxKey, "macro")
	d.Comment = r.String16(DSMaxComment, "comment")
	d.Sig = r.U64("sig")
	if err := checkDN(d, request); err != nil {
		r.Fail(proto.CodeField, "%s", err.Detail)
	}
}
