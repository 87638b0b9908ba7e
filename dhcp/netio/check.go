package netio

// BOOTP/DHCP layout (RFC 951, RFC 2131 §2): the fixed header, then the
// magic cookie, then options.
const (
	offOp     = 0
	offHType  = 1
	offHLen   = 2
	offHops   = 3
	offSName  = 44  // 64 bytes
	offFile   = 108 // 128 bytes
	offCookie = 236
	offOpts   = 240

	// MinPacket is the smallest packet Check accepts: the 236-byte fixed
	// header and the 4-byte magic cookie.
	MinPacket = offOpts

	opBootRequest = 1

	optPad      = 0
	optOverload = 52
	optMsgType  = 53
	msgDiscover = 1 // option 53 value of a DHCPDISCOVER
	optEnd      = 255

	// DefaultMaxHops is RFC 1542 §4.1.1's recommended limit on relay hops.
	DefaultMaxHops = 16
)

// magicCookie is 99.130.83.99 (RFC 2131 §3).
var magicCookie = [4]byte{99, 130, 83, 99}

// DropReason says why a packet was not handed to the handler (or a reply
// not sent). DropNone means the packet passed.
type DropReason uint8

const (
	DropNone        DropReason = iota
	DropShort                  // shorter than MinPacket
	DropTruncated              // larger than the receive buffer (MSG_TRUNC)
	DropNotRequest             // op is not BOOTREQUEST
	DropHardware               // htype 0, hlen over 16, or Ethernet with hlen ≠ 6
	DropHops                   // hops over the limit
	DropCookie                 // no DHCP magic cookie
	DropOptions                // an option runs past its field, or no End option
	DropOverload               // option 52 malformed or repeated
	DropMessageType            // option 53 malformed, repeated, not a client message, or only in an overloaded field
	DropQueueFull              // the worker queue was full
	DropShutdown               // queued when Serve was stopping
	DropStale                  // a DISCOVER or BOOTREQUEST that waited in the queue over Config.MaxWait

	// NumDropReasons is the length of Stats.Drops.
	NumDropReasons = iota
)

var dropNames = [NumDropReasons]string{
	DropNone:        "none",
	DropShort:       "short",
	DropTruncated:   "truncated",
	DropNotRequest:  "not_request",
	DropHardware:    "bad_hardware",
	DropHops:        "hops",
	DropCookie:      "bad_cookie",
	DropOptions:     "option_overrun",
	DropOverload:    "bad_overload",
	DropMessageType: "bad_message_type",
	DropQueueFull:   "queue_full",
	DropShutdown:    "shutdown",
	DropStale:       "stale",
}

// String returns the reason as a metric label ("bad_cookie").
func (r DropReason) String() string {
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return "unknown"
}

// clientMessage lists the DHCP message types a client (or relay on its
// behalf) sends to a server (RFC 2131 §3.1, §3.2, §4.3.5): DISCOVER,
// REQUEST, DECLINE, RELEASE, INFORM. Server messages or unknown types in a
// BOOTREQUEST are dropped here so the server never parses them.
var clientMessage = [256]bool{1: true, 3: true, 4: true, 7: true, 8: true}

// Check validates a BOOTP/DHCP request cheaply, before a full parse, and
// returns DropNone or why it must be dropped. It reads b only; it does not
// allocate.
//
// It requires: len(b) ≥ MinPacket; op BOOTREQUEST; htype nonzero, hlen ≤
// 16 (6 for Ethernet); hops ≤ maxHops (maxHops < 0 means
// DefaultMaxHops); the magic cookie; an options field whose every option
// fits and which ends with End (RFC 2131 §4.1, as dhcpv4.FromBytes
// requires); when option 52 (overload, RFC 2132 §9.3) is present, length 1
// and value 1–3, and the overloaded file and/or sname fields walk without
// overrun (their End is optional: the field's end ends them); at most one
// option 53, of length 1, a client message type, in the options field
// itself (a parser that ignores overload would otherwise take the packet
// for BOOTP). A packet without option 53 is BOOTP and passes.
func Check(b []byte, maxHops int) DropReason {
	r, _ := check(b, maxHops)
	return r
}

// check is Check that also returns option 53's value (0: none, BOOTP).
func check(b []byte, maxHops int) (DropReason, uint8) {
	if maxHops < 0 {
		maxHops = DefaultMaxHops
	}
	if len(b) < MinPacket {
		return DropShort, 0
	}
	if b[offOp] != opBootRequest {
		return DropNotRequest, 0
	}
	htype, hlen := b[offHType], b[offHLen]
	if htype == 0 || hlen > 16 || (htype == 1 && hlen != 6) {
		return DropHardware, 0
	}
	if int(b[offHops]) > maxHops {
		return DropHops, 0
	}
	if [4]byte(b[offCookie:offOpts]) != magicCookie {
		return DropCookie, 0
	}
	var w walk
	if r := w.field(b[offOpts:], true, true); r != DropNone {
		return r, 0
	}
	if w.overload != 0 {
		// RFC 2131 §4.1: file first, then sname.
		if w.overload&1 != 0 {
			if r := w.field(b[offFile:offCookie], false, false); r != DropNone {
				return r, 0
			}
		}
		if w.overload&2 != 0 {
			if r := w.field(b[offSName:offFile], false, false); r != DropNone {
				return r, 0
			}
		}
	}
	return DropNone, w.msgType
}

// walk is the state of an options walk across the fields of one packet.
type walk struct {
	overload uint8 // option 52's value, 0 when absent
	seen52   bool
	seen53   bool
	msgType  uint8 // option 53's value once seen53
}

// field walks one options area. main is the options field (where 52 and
// 53 must be); needEnd requires an End option.
func (w *walk) field(f []byte, main, needEnd bool) DropReason {
	for i := 0; i < len(f); {
		code := f[i]
		switch code {
		case optPad:
			i++
			continue
		case optEnd:
			return DropNone
		}
		if i+1 >= len(f) {
			return DropOptions
		}
		n := int(f[i+1])
		v := i + 2
		if v+n > len(f) {
			return DropOptions
		}
		switch code {
		case optOverload:
			if !main || w.seen52 || n != 1 || f[v] < 1 || f[v] > 3 {
				return DropOverload
			}
			w.seen52, w.overload = true, f[v]
		case optMsgType:
			if !main || w.seen53 || n != 1 || !clientMessage[f[v]] {
				return DropMessageType
			}
			w.seen53, w.msgType = true, f[v]
		}
		i = v + n
	}
	if needEnd {
		return DropOptions
	}
	return DropNone
}
