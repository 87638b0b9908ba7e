package proto

import (
	"fmt"
	"strings"
)

// Code classifies a wire error. Codes 1–14 keep the numbering of the
// receive errors of the HAMMER2 messaging layer that corral's link is
// modelled on; codes from 32 on are corral's own. Codes travel in REJECT
// and GOODBYE frames, so their values are part of the wire format.
type Code uint16

// Specification constants: error codes (SPEC.md, "Error codes").
const (
	CodeNone        Code = 0
	CodeSync        Code = 1  // bad magic: byte-swapped or desynchronized stream
	CodeEOF         Code = 2  // unexpected end of stream inside a frame
	CodeSock        Code = 3  // read or write error on the socket
	CodeField       Code = 4  // a field holds a value the format does not allow
	CodeHeaderCRC   Code = 5  // header CRC32C mismatch
	CodeExtCRC      Code = 6  // reserved: corral covers the extension area by the payload CRC
	CodePayloadCRC  Code = 7  // payload CRC32C mismatch
	CodeState       Code = 8  // a valid frame that is not allowed in the current state
	CodeNoPeer      Code = 9  // the peer is not known or not allowed
	CodeNoRemoteKey Code = 10 // the peer presented no proof of the cluster key
	CodeNoLocalKey  Code = 11 // this node has no cluster key
	CodeKeyExchange Code = 12 // authentication or TLS handshake failed
	CodeKeyFormat   Code = 13 // a key file is malformed
	CodeBadRandom   Code = 14 // the system random source failed

	CodeTooLarge Code = 32 // a length exceeds the receiver's limit
	CodeOpcode   Code = 33 // an opcode the negotiated version does not define
	CodeVersion  Code = 34 // no common protocol version, or a frame of the wrong version
	CodeTimeout  Code = 35 // the peer did not speak in time
	CodeCluster  Code = 36 // the peer belongs to another cluster
	CodeShutdown Code = 37 // the sender is shutting down (GOODBYE)
	CodeDup      Code = 38 // a link to this node exists already (GOODBYE)
	CodeBehind   Code = 39 // the receiver fell too far behind the sender's stream (GOODBYE)
	// CodeClusterID: both ends know their cluster id and the ids differ,
	// e.g. a node whose disk was wiped founded a second cluster of the
	// same name (REJECT).
	CodeClusterID Code = 40
	// CodeDupNode: the peer's node id is held by another live node, one
	// linked from another listen address: two agents were started with
	// the same id (REJECT).
	CodeDupNode Code = 41
	// CodeTryAgain: the sender's window is full: wait for a reply and
	// send again (a group SEND refused; the client protocol, "Group
	// messaging").
	CodeTryAgain Code = 42
	// CodeNoMember: no such member session, or not a member of that group.
	CodeNoMember Code = 43
	// CodeLinkFail: a link on the transaction's recorded path went down,
	// or a frame arrived off that path (mesh relays, ABORT|DELETE).
	CodeLinkFail Code = 44
	// CodeNoRoute: no route to the target, or the PARENT of a stacked
	// CREATE is not held on this path.
	CodeNoRoute Code = 45
	// CodeHopLimit: the frame's hop count ran out, or its CREATE came
	// round a loop (seen twice by one node).
	CodeHopLimit Code = 46
	// CodeBusy: a relay's transaction table for the link is full; the
	// CREATE is refused, nothing else is affected.
	CodeBusy Code = 47
)

var codeNames = map[Code]string{
	CodeNone:        "no error",
	CodeSync:        "out of sync (bad magic)",
	CodeEOF:         "unexpected end of stream",
	CodeSock:        "socket error",
	CodeField:       "bad field",
	CodeHeaderCRC:   "header CRC mismatch",
	CodeExtCRC:      "extension CRC mismatch",
	CodePayloadCRC:  "payload CRC mismatch",
	CodeState:       "bad state",
	CodeNoPeer:      "unknown peer",
	CodeNoRemoteKey: "no remote key",
	CodeNoLocalKey:  "no local key",
	CodeKeyExchange: "key exchange failed",
	CodeKeyFormat:   "bad key format",
	CodeBadRandom:   "random source failed",
	CodeTooLarge:    "too large",
	CodeOpcode:      "unknown opcode",
	CodeVersion:     "version mismatch",
	CodeTimeout:     "timeout",
	CodeCluster:     "wrong cluster",
	CodeShutdown:    "shutting down",
	CodeDup:         "duplicate link",
	CodeBehind:      "fell behind",
	CodeClusterID:   "cluster id mismatch",
	CodeDupNode:     "node id in use",
	CodeTryAgain:    "window full, try again",
	CodeNoMember:    "no such member",
	CodeLinkFail:    "link failed",
	CodeNoRoute:     "no route",
	CodeHopLimit:    "hop limit",
	CodeBusy:        "relay busy",
}

func (c Code) String() string {
	if s, ok := codeNames[c]; ok {
		return s
	}
	return fmt.Sprintf("code %d", uint16(c))
}

// Error is the typed error of every corral decoder and link. Callers branch
// on it with errors.Is against the sentinels below (which match any Error
// of the same Code) or errors.As to read Code and Detail.
type Error struct {
	Code   Code
	Detail string // what exactly was wrong, for humans
	Err    error  // underlying cause, if any
}

// Error is "<code name>: <detail>: <cause>" without a package prefix: the
// text travels in REJECT and GOODBYE frames and ends up inside the
// callers' own prefixed errors, so a prefix here would be printed twice.
func (e *Error) Error() string {
	s := e.Code.String()
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is a sentinel of the same code, so that
// errors.Is(err, proto.ErrHeaderCRC) holds for every header CRC error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Detail == "" && t.Err == nil && t.Code == e.Code
}

// Errorf returns an *Error with the given code and a formatted detail.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Detail: fmt.Sprintf(format, args...)}
}

// Sentinels for errors.Is; each matches every *Error with its code.
var (
	ErrSync        = &Error{Code: CodeSync}
	ErrEOF         = &Error{Code: CodeEOF}
	ErrSock        = &Error{Code: CodeSock}
	ErrField       = &Error{Code: CodeField}
	ErrHeaderCRC   = &Error{Code: CodeHeaderCRC}
	ErrPayloadCRC  = &Error{Code: CodePayloadCRC}
	ErrState       = &Error{Code: CodeState}
	ErrNoPeer      = &Error{Code: CodeNoPeer}
	ErrNoRemoteKey = &Error{Code: CodeNoRemoteKey}
	ErrNoLocalKey  = &Error{Code: CodeNoLocalKey}
	ErrKeyExchange = &Error{Code: CodeKeyExchange}
	ErrKeyFormat   = &Error{Code: CodeKeyFormat}
	ErrBadRandom   = &Error{Code: CodeBadRandom}
	ErrTooLarge    = &Error{Code: CodeTooLarge}
	ErrOpcode      = &Error{Code: CodeOpcode}
	ErrVersion     = &Error{Code: CodeVersion}
	ErrTimeout     = &Error{Code: CodeTimeout}
	ErrCluster     = &Error{Code: CodeCluster}
	ErrShutdown    = &Error{Code: CodeShutdown}
	ErrDup         = &Error{Code: CodeDup}
	ErrBehind      = &Error{Code: CodeBehind}
	ErrClusterID   = &Error{Code: CodeClusterID}
	ErrDupNode     = &Error{Code: CodeDupNode}
	ErrTryAgain    = &Error{Code: CodeTryAgain}
	ErrNoMember    = &Error{Code: CodeNoMember}
	ErrLinkFail    = &Error{Code: CodeLinkFail}
	ErrNoRoute     = &Error{Code: CodeNoRoute}
	ErrHopLimit    = &Error{Code: CodeHopLimit}
	ErrBusy        = &Error{Code: CodeBusy}
)

// peerText is the text a peer sent with code, without what would repeat
// the code name: the peer's own Error text starts with it, and peers of
// before v0.3 put "corral: " in front of that.
func peerText(code Code, text string) string {
	text = strings.TrimPrefix(text, "corral: ")
	if t, ok := strings.CutPrefix(text, code.String()+": "); ok {
		return t
	}
	if text == code.String() {
		return ""
	}
	return text
}
