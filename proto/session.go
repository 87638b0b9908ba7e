package proto

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"
)

// The session sub-protocol (ProtoSession) opens and closes every
// connection. Its frames are sent with Version 0 and their layout is frozen:
// an agent of any version can read a HELLO or REJECT of any other, which is
// what lets it refuse a peer of the wrong version with a clear reason.
// New fields go into the extension area.
const (
	OpHello   uint16 = 0x0001
	OpReject  uint16 = 0x0002
	OpGoodbye uint16 = 0x0003

	HelloMagic uint32 = 0x4F4C4843 // "CHLO"

	MaxNameLen   = 255
	MaxReasonLen = 1024
	MaxRanges    = 8
	AuthLen      = 32 // HMAC-SHA256
)

// Reason says why a connection is opened.
type Reason uint8

// Specification constants: HELLO reasons.
const (
	ReasonJoin   Reason = 1 // a node joins the cluster for the first time
	ReasonRejoin Reason = 2 // a node that was a member comes back
	ReasonRelay  Reason = 3 // a link opened to carry routed traffic
	ReasonAdmin  Reason = 4 // an administrator's tool
	ReasonClient Reason = 5 // an application on the local node
)

func (r Reason) String() string {
	switch r {
	case ReasonJoin:
		return "join"
	case ReasonRejoin:
		return "rejoin"
	case ReasonRelay:
		return "relay"
	case ReasonAdmin:
		return "admin"
	case ReasonClient:
		return "client"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Proto returns the sub-protocol a connection opened for r speaks.
func (r Reason) Proto() ProtoID {
	switch r {
	case ReasonAdmin:
		return ProtoAdmin
	case ReasonClient:
		return ProtoClient
	}
	return ProtoPeer
}

// Range is the span of versions of one sub-protocol a node speaks.
type Range struct {
	Proto    ProtoID
	Min, Max uint8
}

func (r Range) String() string { return fmt.Sprintf("%s %d..%d", r.Proto, r.Min, r.Max) }

// Ranges is a list of version ranges, at most one per sub-protocol.
type Ranges []Range

// Find returns the range for p.
func (rs Ranges) Find(p ProtoID) (Range, bool) {
	for _, r := range rs {
		if r.Proto == p {
			return r, true
		}
	}
	return Range{}, false
}

func (rs Ranges) String() string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ", ")
}

// Negotiate returns the highest version of p both sides speak. With none in
// common it returns a CodeVersion error that names both ranges.
func Negotiate(p ProtoID, local, remote Ranges) (uint8, error) {
	l, lok := local.Find(p)
	r, rok := remote.Find(p)
	switch {
	case !lok:
		return 0, Errorf(CodeVersion, "%s protocol: not spoken here", p)
	case !rok:
		return 0, Errorf(CodeVersion, "%s protocol: peer speaks none, we speak %d..%d", p, l.Min, l.Max)
	}
	hi := min(l.Max, r.Max)
	if hi < max(l.Min, r.Min) {
		return 0, Errorf(CodeVersion, "%s protocol: we speak %d..%d, peer speaks %d..%d", p, l.Min, l.Max, r.Min, r.Max)
	}
	return hi, nil
}

// Hello is the first frame each side sends.
type Hello struct {
	Reason   Reason
	NodeID   uint64
	Features uint64
	Ranges   Ranges
	Cluster  string
	NodeName string
	// Auth proves knowledge of the cluster key: HMAC-SHA256 over the
	// session binding and the hello up to this field (see transport). It
	// is empty on local sockets, where file permissions authenticate.
	Auth []byte
}

// AppendHello appends the body of h, Auth last, and returns the offset at
// which Auth starts so the MAC can cover everything before it.
func AppendHello(dst []byte, h *Hello) (out []byte, authOff int) {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, HelloMagic)
	dst = append(dst, byte(h.Reason), byte(len(h.Ranges)), 0, 0)
	dst = le.AppendUint64(dst, h.NodeID)
	dst = le.AppendUint64(dst, h.Features)
	dst = appendRanges(dst, h.Ranges)
	dst = AppendString16(dst, h.Cluster)
	dst = AppendString16(dst, h.NodeName)
	authOff = len(dst)
	dst = le.AppendUint16(dst, uint16(len(h.Auth)))
	return append(dst, h.Auth...), authOff
}

// ParseHello decodes a HELLO body. It also returns the offset of the Auth
// field, so the receiver can check the MAC over the bytes before it.
func ParseHello(b []byte) (h Hello, authOff int, err error) {
	r := NewReader(b, "HELLO")
	if m := r.U32("magic"); r.err == nil && m != HelloMagic {
		return h, 0, Errorf(CodeSync, "HELLO: bad hello magic %#08x: not a corral hello", m)
	}
	h.Reason = Reason(r.U8("reason"))
	n := int(r.U8("range count"))
	r.Zero(2, "reserved")
	h.NodeID = r.U64("node id")
	h.Features = r.U64("features")
	h.Ranges = readRanges(r, n)
	h.Cluster = r.String16(MaxNameLen, "cluster name")
	h.NodeName = r.String16(MaxNameLen, "node name")
	authOff = r.off
	if al := int(r.U16("auth length")); al != 0 && al != AuthLen && r.err == nil {
		r.Fail(CodeKeyFormat, "auth is %d bytes, want 0 or %d", al, AuthLen)
	} else {
		h.Auth = r.Bytes(al, "auth")
	}
	if h.Reason < ReasonJoin || h.Reason > ReasonClient {
		r.Fail(CodeField, "unknown reason %d", uint8(h.Reason))
	}
	return h, authOff, r.Err()
}

func appendRanges(dst []byte, rs Ranges) []byte {
	if len(rs) > MaxRanges {
		panic("proto: too many version ranges")
	}
	for _, rg := range rs {
		dst = append(dst, byte(rg.Proto), rg.Min, rg.Max, 0)
	}
	return dst
}

func readRanges(r *Reader, n int) Ranges {
	if n > MaxRanges {
		r.Fail(CodeField, "%d version ranges, limit %d", n, MaxRanges)
		return nil
	}
	rs := make(Ranges, 0, n)
	for i := 0; i < n; i++ {
		rg := Range{Proto: ProtoID(r.U8("range proto")), Min: r.U8("range min"), Max: r.U8("range max")}
		r.Zero(1, "range reserved")
		if r.err == nil && (rg.Proto > protoMax || rg.Min > rg.Max) {
			r.Fail(CodeField, "bad version range %s", rg)
		}
		if _, dup := rs.Find(rg.Proto); dup && r.err == nil {
			r.Fail(CodeField, "two version ranges for %s", rg.Proto)
		}
		rs = append(rs, rg)
	}
	return rs
}

// Specification constants: session extensions (SPEC.md, "Session
// extensions"). They travel in the extension area of HELLO and REJECT
// frames, so the frozen bodies need not change.
const (
	// ExtClusterID carries the sender's cluster id, u64 LE, non-zero.
	// It is not critical: a receiver that predates it skips it and treats
	// the sender as one that does not know its id yet, which is also what
	// a receiver that knows of it does with a HELLO that lacks it.
	ExtClusterID uint16 = 0x0001
	// ExtListenAddr carries the peer address the sender listens on
	// ("host:port", 1..MaxNameLen bytes). It tells a node's restart (same
	// address) from a second node started with the same id (another
	// address). Not critical: without it a receiver cannot tell them
	// apart and keeps the newer link, as before.
	ExtListenAddr uint16 = 0x0002

	clusterIDLen = 8
)

// SessionExt holds the extensions of a HELLO or REJECT frame that this
// build understands.
type SessionExt struct {
	// ClusterID is the sender's cluster id: generated when the cluster
	// was bootstrapped and kept in its log. 0 means the sender does not
	// know it (yet): a node joining for the first time, a tool, or an
	// agent that predates cluster ids. It is sent only when non-zero.
	ClusterID uint64
	// ListenAddr is the peer address the sender listens on; empty if it
	// has none (a tool, an application) or predates the entry. It is
	// sent only when non-empty.
	ListenAddr string
}

// AppendSessionExt appends the extension area for e to dst. A ListenAddr
// longer than MaxNameLen is cut, as names are.
func AppendSessionExt(dst []byte, e SessionExt) []byte {
	if e.ClusterID != 0 {
		dst = AppendTLV(dst, ExtClusterID, binary.LittleEndian.AppendUint64(nil, e.ClusterID))
	}
	if e.ListenAddr != "" {
		dst = AppendTLV(dst, ExtListenAddr, []byte(truncate(e.ListenAddr, MaxNameLen)))
	}
	return dst
}

// ParseSessionExt reads the extension area of a HELLO or REJECT frame. It
// skips entries it does not know, refuses an unknown critical one, and
// refuses a cluster id entry that is not 8 bytes, holds 0 or repeats, and
// a listen address entry that is empty, longer than MaxNameLen, not UTF-8
// or repeats.
func ParseSessionExt(ext []byte) (SessionExt, error) {
	var e SessionExt
	seen, seenAddr := false, false
	err := walkTLV(ext, func(t TLV) error {
		switch {
		case t.Type == ExtListenAddr:
			if seenAddr {
				return Errorf(CodeField, "session extension: two listen address entries")
			}
			seenAddr = true
			if len(t.Value) == 0 || len(t.Value) > MaxNameLen {
				return Errorf(CodeField, "session extension: listen address of %d bytes, want 1..%d", len(t.Value), MaxNameLen)
			}
			if !utf8.Valid(t.Value) {
				return Errorf(CodeField, "session extension: listen address is not UTF-8")
			}
			e.ListenAddr = string(t.Value)
		case t.Type == ExtClusterID:
			if seen {
				return Errorf(CodeField, "session extension: two cluster id entries")
			}
			seen = true
			if len(t.Value) != clusterIDLen {
				return Errorf(CodeField, "session extension: cluster id is %d bytes, want %d", len(t.Value), clusterIDLen)
			}
			e.ClusterID = binary.LittleEndian.Uint64(t.Value)
			if e.ClusterID == 0 {
				return Errorf(CodeField, "session extension: cluster id 0 (a sender without an id omits the entry)")
			}
		case t.Type&TLVCritical != 0:
			return Errorf(CodeField, "unknown critical extension %#04x", t.Type)
		}
		return nil
	})
	if err != nil {
		return SessionExt{}, err
	}
	return e, nil
}

// Reject is sent instead of (or after) a HELLO when the connection is
// refused; the sender closes the connection after it. It states the reason
// and both sides' version ranges, so either log says what did not match.
type Reject struct {
	Code   Code
	Local  Ranges // the rejecting side's ranges
	Remote Ranges // the ranges it received from the other side, if any
	Text   string
}

// AppendReject appends the body of rj.
func AppendReject(dst []byte, rj *Reject) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(rj.Code))
	dst = append(dst, byte(len(rj.Local)), byte(len(rj.Remote)))
	dst = appendRanges(dst, rj.Local)
	dst = appendRanges(dst, rj.Remote)
	return AppendString16(dst, truncate(rj.Text, MaxReasonLen))
}

// ParseReject decodes a REJECT body.
func ParseReject(b []byte) (rj Reject, err error) {
	r := NewReader(b, "REJECT")
	rj.Code = Code(r.U16("code"))
	nl, nr := int(r.U8("local count")), int(r.U8("remote count"))
	rj.Local = readRanges(r, nl)
	rj.Remote = readRanges(r, nr)
	rj.Text = r.String16(MaxReasonLen, "text")
	return rj, r.Err()
}

// Err turns a received REJECT into an *Error with the peer's words.
func (rj *Reject) Err() *Error {
	return Errorf(rj.Code, "the peer refused the link: %s (peer speaks %s; we offered %s)", peerText(rj.Code, rj.Text), rj.Local, rj.Remote)
}

// Status is a code with words for humans. It is the body of GOODBYE
// (an orderly close: CodeShutdown, CodeDup, or the error that ends the
// link) and of every reply sent with FlagAbort.
type Status struct {
	Code Code
	Text string
}

// AppendStatus appends the body of st.
func AppendStatus(dst []byte, st *Status) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(st.Code))
	return AppendString16(dst, truncate(st.Text, MaxReasonLen))
}

// ParseStatus decodes a status body; msg names the message in errors.
func ParseStatus(b []byte, msg string) (st Status, err error) {
	r := NewReader(b, msg)
	st.Code = Code(r.U16("code"))
	st.Text = r.String16(MaxReasonLen, "text")
	return st, r.Err()
}

// Err turns a received status into an *Error.
func (st *Status) Err() *Error {
	return Errorf(st.Code, "the peer failed the request: %s", peerText(st.Code, st.Text))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// SessionFrame builds a session frame with the given opcode and body.
func SessionFrame(op uint16, body []byte) Frame {
	return Frame{Header: Header{Proto: ProtoSession, Opcode: op, Flags: FlagCreate | FlagDelete, Hops: 1}, Body: body}
}

// CheckSession checks the header of a session frame: the session
// sub-protocol, version 0 and a known opcode.
func CheckSession(h *Header) error {
	if h.Proto != ProtoSession {
		return Errorf(CodeField, "frame of the %s protocol where a session frame is expected", h.Proto)
	}
	if h.Version != 0 {
		return Errorf(CodeVersion, "session frame of version %d, want 0", h.Version)
	}
	switch h.Opcode {
	case OpHello, OpReject, OpGoodbye:
		return nil
	}
	return Errorf(CodeOpcode, "session opcode %#04x", h.Opcode)
}
