package dsvc

import (
	"math/rand/v2"
	"net/netip"
)

// Limits of record fields (dhcp_svc_public.h).
const (
	MaxKeyLen     = 128 // DSVC_MAX_MACSYM_LEN: dhcptab keys, network record macros
	MaxCIDLen     = 64  // DN_MAX_CID_LEN: client id octets
	MaxCommentLen = 48  // DN_MAX_COMMENT_LEN
)

// LeasePermanent is the lease of a record whose lease never expires
// (DHCP_PERM).
const LeasePermanent uint32 = 0xffffffff

// DTType is the type of a dhcptab record.
type DTType byte

const (
	DTSymbol DTType = 's' // a symbol definition: "Context,Code,Type,Granularity,Maximum"
	DTMacro  DTType = 'm' // a macro: ":sym=val:sym=val:"
)

// DTRecord is a dhcptab record (dt_rec_t). Key and Type together identify
// it. Keys are stored as given and compared case-sensitively (as the
// Solaris modules do; dhcptab(4) calls names case-insensitive, but the
// implementation and its test specification treat "Sterm" and "sTERM" as two
// keys).
type DTRecord struct {
	Key   string // ≤ MaxKeyLen bytes of printable ASCII, no trailing space
	Type  DTType
	Value string
	Sig   uint64 // set by the module; opaque to applications
}

// DNFlags are a network record's flags (dn_flags).
type DNFlags uint8

const (
	DNDynamic   DNFlags = 0x00 // DN_FDYNAMIC: allocated and reclaimed by the server
	DNAutomatic DNFlags = 0x01 // DN_FAUTOMATIC ("PERMANENT"): the lease is not evaluated
	DNManual    DNFlags = 0x02 // DN_FMANUAL: an administrator's binding, never reclaimed
	DNUnusable  DNFlags = 0x04 // DN_FUNUSABLE: found in use, or declined
	DNBootpOnly DNFlags = 0x08 // DN_FBOOTP_ONLY: reserved for BOOTP clients
	DNAll       DNFlags = DNAutomatic | DNManual | DNUnusable | DNBootpOnly
)

// DNRecord is a network container's record (dn_rec_t). CIP identifies it.
type DNRecord struct {
	CID     []byte     // 1..MaxCIDLen octets; {0x00}: free
	Flags   DNFlags    // no bits outside DNAll
	CIP     netip.Addr // client IPv4 address, in the container's network
	SIP     netip.Addr // IPv4 address of the server that owns the record
	Lease   uint32     // absolute expiry, unix seconds; LeasePermanent; 0: none
	Macro   string     // ≤ MaxKeyLen bytes
	Comment string     // ≤ MaxCommentLen bytes
	Sig     uint64     // set by the module; opaque to applications
}

// Signature layout: a 16-bit generation chosen at random when a record is
// added, then a 48-bit counter starting at 1 and incremented by every
// modify.
const (
	sigCounterBits = 48
	sigCounterMask = 1<<sigCounterBits - 1
)

// NewSig returns the signature of a newly added record: a random 16-bit
// generation and counter 1. The random source is the caller's (the cluster
// module draws it on the proposing node and carries it in the command).
func NewSig(gen uint16) uint64 { return uint64(gen)<<sigCounterBits | 1 }

// RandomSig is NewSig with a generation from math/rand/v2: the generation
// only has to differ between a deleted record and its re-creation.
func RandomSig() uint64 { return NewSig(uint16(rand.Uint32())) }

// NextSig returns the signature a record stored with sig gets when it is
// modified: the same generation, the counter plus one (wrapping within its
// 48 bits, never to 0).
func NextSig(sig uint64) uint64 {
	c := (sig + 1) & sigCounterMask
	if c == 0 {
		c = 1
	}
	return sig&^sigCounterMask | c
}
