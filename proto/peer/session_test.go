package peer_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/proto/peer"
)

const v4 = 4

func sessionFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("cookie: the sender's, 0 = no sessions")
	w.U64("peer cookie: the receiver's, as the sender knows it (0 = none)")
	w.U64("recv: sequenced frames the sender received in the session")
	w.U64("sent: sequenced frames the sender sent in the session")
	return w.Fields
}

func ackFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("recv: sequenced frames received")
	return w.Fields
}

func receiveErr4(b []byte) error { _, _, err := receive(v4, b); return err }

func sessionVectors() []wiretest.Vector {
	res := peer.Session{Cookie: 0x1111222233334444, PeerCookie: 0x5555666677778888, Recv: 1000, Sent: 1200}
	fresh := peer.Session{Cookie: 0x1111222233334444}
	resF := frameAt(v4, peer.OpSession, request, peer.AppendSession(nil, res))
	freshF := frameAt(v4, peer.OpSession, request, peer.AppendSession(nil, fresh))
	ackF := frameAt(v4, peer.OpAck, request, peer.AppendAck(nil, 1064))
	with := func(s peer.Session, fn func([]byte) []byte) proto.Frame {
		return frameAt(v4, peer.OpSession, request, fn(peer.AppendSession(nil, s)))
	}
	ackV3 := ackF
	ackV3.Version = v3
	return []wiretest.Vector{
		vec("session_resume", []string{
			"SESSION (peer v4): the first peer frame on a new link of a session the",
			"sender can resume: its cookie, the receiver's cookie from the previous",
			"link, 1000 frames received, 1200 sent (the receiver resends from 1001).",
		}, resF, sessionFields, expect(resF, res), 0, ""),
		vec("session_fresh", []string{
			"SESSION: a sender that knows no session with the receiver (first link,",
			"or after a restart): peer cookie 0, nothing received or sent.",
		}, freshF, sessionFields, expect(freshF, fresh), 0, ""),
		vec("ack", []string{"ACK (peer v4): the sender has received 1064 sequenced frames."},
			ackF, ackFields, expect(ackF, uint64(1064)), 0, ""),
		vec("err_session_truncated", []string{"SESSION without its last byte."},
			with(res, func(b []byte) []byte { return b[:len(b)-1] }), sessionFields, receiveErr4, proto.CodeField, "truncated"),
		vec("err_session_trailing", []string{"SESSION followed by one byte."},
			with(res, func(b []byte) []byte { return append(b, 0) }), sessionFields, receiveErr4, proto.CodeField, "1 unexpected bytes"),
		vec("err_session_cookie", []string{"SESSION with cookie 0 (no sessions) that claims frames received."},
			with(peer.Session{}, func(b []byte) []byte { b[16] = 1; return b }), sessionFields, receiveErr4, proto.CodeField, "cookie 0 with session state"),
		vec("err_session_count", []string{"SESSION with a sent count of 2^63."},
			with(res, func(b []byte) []byte { binary.LittleEndian.PutUint64(b[24:], 1<<63); return b }), sessionFields, receiveErr4, proto.CodeField, "over 2^63"),
		vec("err_ack_truncated", []string{"ACK of 7 bytes."},
			frameAt(v4, peer.OpAck, request, peer.AppendAck(nil, 1)[:7]), ackFields, receiveErr4, proto.CodeField, "truncated"),
		vec("err_ack_v3", []string{
			"ACK sent as peer version 3, on a link that agreed on version 3: ACK",
			"exists since version 4.",
		}, ackV3, ackFields, receiveErr3, proto.CodeOpcode, "peer protocol version 3 has no opcode 0x0003"),
	}
}

// FuzzSession: never panics, errors are *proto.Error, what is accepted
// keeps the rules and re-encodes to the same bytes.
func FuzzSession(f *testing.F) {
	f.Add(peer.AppendSession(nil, peer.Session{Cookie: 1, PeerCookie: 2, Recv: 3, Sent: 4})) // session_resume
	f.Add(peer.AppendSession(nil, peer.Session{Cookie: 1}))                                  // session_fresh
	f.Add(peer.AppendSession(nil, peer.Session{Recv: 1}))                                    // cookie 0 with state
	f.Add(make([]byte, 31))                                                                  // short
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := peer.ParseSession(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if s.Recv >= 1<<63 || s.Sent >= 1<<63 || s.Cookie == 0 && s != (peer.Session{}) {
			t.Fatalf("accepted %+v", s)
		}
		if !bytes.Equal(peer.AppendSession(nil, s), b) {
			t.Fatal("re-encoded SESSION differs")
		}
	})
}

// FuzzAck: as FuzzSession, for ACK.
func FuzzAck(f *testing.F) {
	f.Add(peer.AppendAck(nil, 1064))
	f.Add(peer.AppendAck(nil, 1<<63))
	f.Add(make([]byte, 7))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := peer.ParseAck(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if n >= 1<<63 || !bytes.Equal(peer.AppendAck(nil, n), b) {
			t.Fatalf("accepted %d from %x", n, b)
		}
	})
}
