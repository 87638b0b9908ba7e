package peer_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/proto/peer"
)

// receiveStream is an agent's receive path for STREAM frames at an
// endpoint: the frame checks, the critical extensions the peer protocol
// knows (the transaction ones) and the transaction extensions themselves.
// The body is the service's.
func receiveStream(v uint8, b []byte) (proto.Frame, proto.TxExt, error) {
	f, err := proto.DecodeFrame(b, 0)
	if err != nil {
		return f, proto.TxExt{}, err
	}
	if err := peer.Ops().Check(&f.Header, v); err != nil {
		return f, proto.TxExt{}, err
	}
	if err := proto.CheckTLV(f.Ext, proto.TxExtKnown); err != nil {
		return f, proto.TxExt{}, err
	}
	e, err := proto.ParseTxExt(f.Ext)
	return f, e, err
}

func streamFields(b []byte) golden.Fields {
	if len(b) == 0 {
		return nil
	}
	return golden.Fields{{Size: len(b), Name: "body: the service's bytes, opaque to the mesh"}}
}

func streamVectors() []wiretest.Vector {
	const initiator, responder = 1, 4
	const msgID = 7<<40 | 1 // epoch 7, counter 1
	st := func(flags proto.Flags, src, dst uint64, ext, body []byte) proto.Frame {
		return proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: v3, Opcode: peer.OpStream, Flags: flags,
			Hops: proto.HopLimit, MsgID: msgID, Source: src, Target: dst}, Ext: ext, Body: body}
	}
	open := st(proto.FlagCreate, initiator, responder, nil, []byte("hello"))
	parent := proto.TxExt{Parent: proto.TxRef{Initiator: initiator, MsgID: 6<<40 | 9}}
	child := st(proto.FlagCreate, initiator, responder, proto.AppendTxExt(nil, parent), []byte("child"))
	child.MsgID = 7<<40 | 2
	linkFail := proto.TxExt{FailedLink: [2]uint64{2, 3}}
	lf := st(proto.FlagCreate|proto.FlagDelete|proto.FlagReply|proto.FlagAbort, responder, initiator, proto.AppendTxExt(nil, linkFail),
		proto.AppendStatus(nil, &proto.Status{Code: proto.CodeLinkFail, Text: "link from node 2 lost"}))
	lf.Hops = proto.HopLimit - 1
	unknown := st(proto.FlagCreate, initiator, responder, proto.AppendTLV(nil, 0xFF7E, []byte{1}), nil)
	v2Open := open
	v2Open.Version = v2
	expectStream := func(want proto.Frame, ext proto.TxExt) func([]byte) error {
		want.Seal()
		return func(b []byte) error {
			f, e, err := receiveStream(want.Version, b)
			if err != nil {
				return err
			}
			if !wiretest.Equal(f, want) || e != ext {
				return fmt.Errorf("decoded %+v / %+v, want %+v / %+v", f, e, want, ext)
			}
			return nil
		}
	}
	errStream := func(v uint8) func([]byte) error {
		return func(b []byte) error { _, _, err := receiveStream(v, b); return err }
	}
	return []wiretest.Vector{
		vec("stream_create", []string{
			"STREAM (peer v3): node 1 opens a transaction with node 4 (CREATE without",
			"DELETE: it stays open), msg id epoch 7 << 40 | counter 1; relays pin its path.",
		}, open, streamFields, expectStream(open, proto.TxExt{}), 0, ""),
		vec("stream_child", []string{
			"STREAM CREATE stacked under transaction {1, 6<<40|9}: the critical PARENT",
			"extension (0xFF01), which the peer protocol knows.",
		}, child, streamFields, expectStream(child, parent), 0, ""),
		vec("stream_linkfail", []string{
			"Terminal ABORT CodeLinkFail toward the initiator (CREATE|DELETE|REPLY|ABORT:",
			"the responder had not answered), sent by relay 2 when its link to node 3",
			"went down: FAILED_LINK (0x7F01) names the link, one hop travelled.",
		}, lf, wiretest.StatusFields, expectStream(lf, linkFail), 0, ""),
		vec("err_stream_critical", []string{
			"STREAM CREATE with a critical extension the peer protocol does not know.",
		}, unknown, streamFields, errStream(v3), proto.CodeField, "unknown critical extension 0xff7e"),
		vec("err_stream_v2", []string{"STREAM on a link that agreed on version 2."},
			v2Open, streamFields, errStream(v2), proto.CodeOpcode, "version 2 has no opcode 0x0202"),
	}
}

// FuzzReceiveStream runs an endpoint's receive path for STREAM over one
// frame: what it accepts holds no critical extension but PARENT, and its
// transaction extensions and the frame re-encode to the same bytes.
func FuzzReceiveStream(f *testing.F) {
	for _, v := range streamVectors() {
		f.Add(v.Data)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, e, err := receiveStream(peer.MaxVersion, b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if err := proto.CheckTLV(fr.Ext, func(typ uint16) bool { return typ == proto.ExtParent }); err != nil {
			t.Fatalf("accepted %v", err)
		}
		if e2, err := proto.ParseTxExt(proto.AppendTxExt(nil, e)); err != nil || e2 != e {
			t.Fatalf("transaction extensions %+v re-decode as %+v, %v", e, e2, err)
		}
		if !bytes.Equal(proto.AppendFrame(nil, &fr), b) {
			t.Fatal("re-encoded frame differs")
		}
	})
}
