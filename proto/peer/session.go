package peer

import (
	"encoding/binary"

	"github.com/corralhq/corral/proto"
)

// Specification constants: link sessions (since version 4). A session is
// the ordered, lossless stream of sequenced frames between two agents; it
// may span several connections (SPEC.md, "Sessions and resume").
const (
	// OpAck acknowledges sequenced frames: body Ack.
	OpAck uint16 = 0x0003
	// OpSession opens a session or resumes one: body Session, the first
	// peer frame each agent sends on a link of version 4.
	OpSession uint16 = 0x0004

	// AckSize and SessionSize are the sizes of the bodies.
	AckSize     = 8
	SessionSize = 32
)

// Sequenced reports whether frames of opcode op count in a session's
// sequence: every peer frame but PING, PONG, ACK and SESSION.
func Sequenced(op uint16) bool {
	return op != OpPing && op != OpPong && op != OpAck && op != OpSession
}

// Session is a SESSION body. Cookie 0 says the sender keeps no sessions:
// the link is not sequenced and cannot be resumed.
type Session struct {
	Cookie     uint64 // the sender's cookie of this session
	PeerCookie uint64 // the receiver's cookie the sender knows, 0 if none
	Recv       uint64 // sequenced frames the sender received in the session
	Sent       uint64 // sequenced frames the sender sent in the session
}

// AppendSession appends the body of s.
func AppendSession(dst []byte, s Session) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, s.Cookie)
	dst = le.AppendUint64(dst, s.PeerCookie)
	dst = le.AppendUint64(dst, s.Recv)
	return le.AppendUint64(dst, s.Sent)
}

// ParseSession decodes a SESSION body. It refuses (CodeField) any other
// size, counts above Sent's room (Recv or Sent over 2^63), and a
// sessionless SESSION (cookie 0) with any other field set.
func ParseSession(b []byte) (Session, error) {
	r := proto.NewReader(b, "SESSION")
	s := Session{Cookie: r.U64("cookie"), PeerCookie: r.U64("peer cookie"), Recv: r.U64("recv"), Sent: r.U64("sent")}
	switch {
	case r.Err() != nil:
	case s.Recv >= 1<<63 || s.Sent >= 1<<63:
		r.Fail(proto.CodeField, "sequence count over 2^63")
	case s.Cookie == 0 && (s.PeerCookie != 0 || s.Recv != 0 || s.Sent != 0):
		r.Fail(proto.CodeField, "cookie 0 with session state")
	}
	return s, r.Err()
}

// AppendAck appends an ACK body: recv sequenced frames received.
func AppendAck(dst []byte, recv uint64) []byte {
	return binary.LittleEndian.AppendUint64(dst, recv)
}

// ParseAck decodes an ACK body. It refuses (CodeField) any other size and
// a count over 2^63.
func ParseAck(b []byte) (uint64, error) {
	r := proto.NewReader(b, "ACK")
	n := r.U64("recv")
	if r.Err() == nil && n >= 1<<63 {
		r.Fail(proto.CodeField, "sequence count over 2^63")
	}
	return n, r.Err()
}
