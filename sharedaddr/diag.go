package sharedaddr

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strconv"
	"syscall"
)

// The sock_diag messages this package reads and writes; SPEC.md has the
// byte tables. Netlink headers and the inet_diag counters are in the
// host's byte order, ports and addresses in network order. Constant names
// are those of linux/netlink.h, linux/sock_diag.h and linux/inet_diag.h.
const (
	nlmsgHdrLen = 16 // struct nlmsghdr
	nlmsgError  = 2  // NLMSG_ERROR
	nlmsgDone   = 3  // NLMSG_DONE

	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY

	nlmFRequest  = 0x1   // NLM_F_REQUEST
	nlmFDump     = 0x300 // NLM_F_ROOT|NLM_F_MATCH
	nlmFDumpIntr = 0x10  // NLM_F_DUMP_INTR: the dump was inconsistent

	inetDiagReqV2Len = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	rtaHdrLen        = 4  // struct rtattr

	afInet  = 2  // AF_INET
	afInet6 = 10 // AF_INET6
)

// hostOrder is the byte order of the netlink header and of inet_diag's
// counters: the kernel's own. corral runs on little-endian machines only
// (amd64, arm64); SPEC.md says so, and the golden vectors are
// little-endian captures.
var hostOrder = binary.NativeEndian

// TCPInfoV1 is the version of TCPInfo this package fills. Seed:
// CL_TCPI_V1 in cl_tcp_info_t.
const TCPInfoV1 = 1

// TCPState is a Linux TCP state as sock_diag reports it (include/net/tcp_states.h).
type TCPState uint8

// The TCP states.
const (
	StateEstablished TCPState = 1
	StateSynSent     TCPState = 2
	StateSynRecv     TCPState = 3
	StateFinWait1    TCPState = 4
	StateFinWait2    TCPState = 5
	StateTimeWait    TCPState = 6
	StateClose       TCPState = 7
	StateCloseWait   TCPState = 8
	StateLastAck     TCPState = 9
	StateListen      TCPState = 10
	StateClosing     TCPState = 11
	StateNewSynRecv  TCPState = 12
)

var stateNames = [...]string{
	StateEstablished: "ESTABLISHED", StateSynSent: "SYN_SENT", StateSynRecv: "SYN_RECV",
	StateFinWait1: "FIN_WAIT1", StateFinWait2: "FIN_WAIT2", StateTimeWait: "TIME_WAIT",
	StateClose: "CLOSE", StateCloseWait: "CLOSE_WAIT", StateLastAck: "LAST_ACK",
	StateListen: "LISTEN", StateClosing: "CLOSING", StateNewSynRecv: "NEW_SYN_RECV",
}

func (s TCPState) String() string {
	if int(s) < len(stateNames) && stateNames[s] != "" {
		return stateNames[s]
	}
	return "STATE(" + strconv.Itoa(int(s)) + ")"
}

// TCPInfo is one TCP socket of a stack, as the walk reports it. Seed:
// cl_tcp_info_t (version, ipversion, state, ports, v6 addresses); the
// family is folded into netip, and IPv4-mapped IPv6 addresses are
// unmapped. Fields are only ever appended.
type TCPInfo struct {
	Version uint16 // TCPInfoV1
	Stack   StackID
	State   TCPState
	Local   netip.AddrPort
	Remote  netip.AddrPort // 0.0.0.0:0 or [::]:0 for a listener
	// Cookie is the kernel's socket cookie: it tells two sockets with the
	// same 4-tuple apart over time (a TIME_WAIT one and its successor).
	Cookie uint64
}

func (ti TCPInfo) String() string {
	return fmt.Sprintf("%s %s %s", ti.State, ti.Local, ti.Remote)
}

// diagMsg is one decoded struct inet_diag_msg.
type diagMsg struct {
	Family  uint8
	State   TCPState
	Timer   uint8
	Retrans uint8
	Local   netip.AddrPort
	Remote  netip.AddrPort
	IfIndex uint32
	Cookie  uint64
	Expires uint32
	RQueue  uint32
	WQueue  uint32
	UID     uint32
	Inode   uint32
	// Attrs counts the rtattrs after the message (their types are not
	// needed; their framing is checked).
	Attrs int
}

func (m diagMsg) info(s StackID) TCPInfo {
	unmap := func(ap netip.AddrPort) netip.AddrPort {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return TCPInfo{Version: TCPInfoV1, Stack: s, State: m.State, Local: unmap(m.Local), Remote: unmap(m.Remote), Cookie: m.Cookie}
}

// allStates asks for every state in stateNames.
const allStates = 1<<(StateNewSynRecv+1) - 2

// diagRequest encodes a dump request for every TCP socket of family
// (afInet or afInet6) in every state, TIME_WAIT and request sockets
// included.
func diagRequest(family uint8, seq uint32) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagReqV2Len)
	hostOrder.PutUint32(b[0:], uint32(len(b)))
	hostOrder.PutUint16(b[4:], sockDiagByFamily)
	hostOrder.PutUint16(b[6:], nlmFRequest|nlmFDump)
	hostOrder.PutUint32(b[8:], seq)
	// b[12:16] pid 0: the kernel.
	r := b[nlmsgHdrLen:]
	r[0] = family
	r[1] = byte(ProtoTCP)
	// r[2] idiag_ext 0: no extensions; r[3] pad.
	// idiag_states: a bit per state, 1 (ESTABLISHED) to 12 (NEW_SYN_RECV),
	// the states the decoder knows; a later kernel's new states are not
	// asked for, so they cannot fail the walk.
	hostOrder.PutUint32(r[4:], allStates)
	// r[8:56] inet_diag_sockid zero: no filter. The cookie must be
	// INET_DIAG_NOCOOKIE (all ones) for a dump to ignore it.
	hostOrder.PutUint32(r[8+40:], ^uint32(0))
	hostOrder.PutUint32(r[8+44:], ^uint32(0))
	return b
}

// malformed returns an error wrapping ErrMalformed at offset off.
func malformed(off int, format string, args ...any) error {
	return fmt.Errorf("%w: at byte %d: %s", ErrMalformed, off, fmt.Sprintf(format, args...))
}

func align4(n int) int { return (n + 3) &^ 3 }

// decodeDiag decodes one datagram read from a NETLINK_SOCK_DIAG socket in
// reply to diagRequest with sequence number seq. It returns the sockets in
// it, and done when the datagram ends the dump. A netlink error reply is
// returned as the syscall.Errno it carries, wrapped; anything else that
// does not follow SPEC.md wraps ErrMalformed.
func decodeDiag(b []byte, seq uint32) (msgs []diagMsg, done bool, err error) {
	off := 0
	for off < len(b) {
		rest := b[off:]
		if len(rest) < nlmsgHdrLen {
			return msgs, false, malformed(off, "%d bytes left, a netlink header needs %d", len(rest), nlmsgHdrLen)
		}
		n := int(hostOrder.Uint32(rest[0:]))
		typ := hostOrder.Uint16(rest[4:])
		flags := hostOrder.Uint16(rest[6:])
		if n < nlmsgHdrLen || n > len(rest) {
			return msgs, false, malformed(off, "message length %d, %d bytes left", n, len(rest))
		}
		if got := hostOrder.Uint32(rest[8:]); got != seq {
			return msgs, false, malformed(off, "sequence %d, want %d", got, seq)
		}
		if flags&nlmFDumpIntr != 0 {
			return msgs, false, malformed(off, "dump interrupted (NLM_F_DUMP_INTR): the socket tables changed during it")
		}
		body := rest[nlmsgHdrLen:n]
		switch typ {
		case sockDiagByFamily:
			m, err := decodeDiagMsg(body, off+nlmsgHdrLen)
			if err != nil {
				return msgs, false, err
			}
			msgs = append(msgs, m)
		case nlmsgDone:
			if len(body) < 4 {
				return msgs, false, malformed(off, "NLMSG_DONE with %d bytes, want 4", len(body))
			}
			if e := int32(hostOrder.Uint32(body)); e < 0 {
				return msgs, true, fmt.Errorf("sharedaddr: sock_diag dump: %w", syscall.Errno(-e))
			}
			if off+align4(n) < len(b) {
				return msgs, true, malformed(off+n, "%d bytes after NLMSG_DONE", len(b)-off-align4(n))
			}
			return msgs, true, nil
		case nlmsgError:
			if len(body) < 4 {
				return msgs, false, malformed(off, "NLMSG_ERROR with %d bytes, want at least 4", len(body))
			}
			e := int32(hostOrder.Uint32(body))
			if e == 0 {
				return msgs, false, malformed(off, "NLMSG_ERROR acknowledging a dump")
			}
			if e > 0 {
				return msgs, false, malformed(off, "NLMSG_ERROR with positive error %d", e)
			}
			return msgs, false, fmt.Errorf("sharedaddr: sock_diag: %w", syscall.Errno(-e))
		default:
			return msgs, false, malformed(off, "message type %d, want %d, %d or %d", typ, sockDiagByFamily, nlmsgDone, nlmsgError)
		}
		next := align4(n)
		if next > len(rest) {
			// The last message may end unpadded.
			next = len(rest)
		}
		off += next
	}
	return msgs, false, nil
}

// decodeDiagMsg decodes the body of a SOCK_DIAG_BY_FAMILY message; base is
// its offset in the datagram, for errors.
func decodeDiagMsg(b []byte, base int) (diagMsg, error) {
	if len(b) < inetDiagMsgLen {
		return diagMsg{}, malformed(base, "inet_diag_msg of %d bytes, want %d", len(b), inetDiagMsgLen)
	}
	m := diagMsg{Family: b[0], State: TCPState(b[1]), Timer: b[2], Retrans: b[3]}
	var alen int
	switch m.Family {
	case afInet:
		alen = 4
	case afInet6:
		alen = 16
	default:
		return diagMsg{}, malformed(base, "address family %d, want %d or %d", m.Family, afInet, afInet6)
	}
	if m.State == 0 || int(m.State) >= len(stateNames) {
		return diagMsg{}, malformed(base+1, "TCP state %d", m.State)
	}
	id := b[4:52]
	addr := func(a []byte) netip.Addr {
		if alen == 4 {
			return netip.AddrFrom4([4]byte(a[:4]))
		}
		return netip.AddrFrom16([16]byte(a[:16]))
	}
	m.Local = netip.AddrPortFrom(addr(id[4:20]), binary.BigEndian.Uint16(id[0:]))
	m.Remote = netip.AddrPortFrom(addr(id[20:36]), binary.BigEndian.Uint16(id[2:]))
	m.IfIndex = hostOrder.Uint32(id[36:])
	m.Cookie = uint64(hostOrder.Uint32(id[40:])) | uint64(hostOrder.Uint32(id[44:]))<<32
	m.Expires = hostOrder.Uint32(b[52:])
	m.RQueue = hostOrder.Uint32(b[56:])
	m.WQueue = hostOrder.Uint32(b[60:])
	m.UID = hostOrder.Uint32(b[64:])
	m.Inode = hostOrder.Uint32(b[68:])
	for off := inetDiagMsgLen; off < len(b); {
		rest := b[off:]
		if len(rest) < rtaHdrLen {
			return diagMsg{}, malformed(base+off, "%d bytes left, an attribute header needs %d", len(rest), rtaHdrLen)
		}
		n := int(hostOrder.Uint16(rest))
		if n < rtaHdrLen || n > len(rest) {
			return diagMsg{}, malformed(base+off, "attribute length %d, %d bytes left", n, len(rest))
		}
		m.Attrs++
		off += min(align4(n), len(rest))
	}
	return m, nil
}
