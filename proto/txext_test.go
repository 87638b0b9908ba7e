package proto_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

// Transaction extension samples: a stacked CREATE and the terminal ABORT a
// relay sends when a link on the path goes down (SPEC.md, "Transaction
// extensions").
var (
	sampleParent = proto.TxExt{Parent: proto.TxRef{Initiator: 0x0a, MsgID: 0x0000_0100_0000_0001}}
	sampleFailed = proto.TxExt{FailedLink: [2]uint64{0x0b, 0x0c}}
	sampleWindow = proto.TxExt{Window: 128 << 10}
	windowF      = proto.Frame{
		Header: proto.Header{
			Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0100, Flags: proto.FlagReply,
			Hops: proto.HopLimit, MsgID: 0x0000_0100_0000_0002, Source: 0x0d, Target: 0x0a,
		},
		Ext: proto.AppendTxExt(nil, sampleWindow),
	}
	parentCreateF = proto.Frame{
		Header: proto.Header{
			Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0100, Flags: proto.FlagCreate,
			Hops: proto.HopLimit, MsgID: 0x0000_0100_0000_0002, Source: 0x0a, Target: 0x0d,
		},
		Ext:  proto.AppendTxExt(nil, sampleParent),
		Body: []byte("read 4096"),
	}
	linkFailStatus = proto.Status{Code: proto.CodeLinkFail, Text: "link 11-12 down"}
	linkFailF      = proto.Frame{
		Header: proto.Header{
			Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0100,
			Flags: proto.FlagCreate | proto.FlagDelete | proto.FlagReply | proto.FlagAbort,
			Hops:  proto.HopLimit, MsgID: 0x0000_0100_0000_0002, Source: 0x0d, Target: 0x0a,
		},
		Ext:  proto.AppendTxExt(nil, sampleFailed),
		Body: proto.AppendStatus(nil, &linkFailStatus),
	}
)

// receiveTx is a relay's path for a routed frame: frame checks, the
// transaction extensions, and for an ABORT its Status.
func receiveTx(b []byte) (proto.Frame, proto.TxExt, proto.Status, error) {
	f, err := proto.DecodeFrame(b, 0)
	if err != nil {
		return f, proto.TxExt{}, proto.Status{}, err
	}
	if err := proto.CheckTLV(f.Ext, proto.TxExtKnown); err != nil {
		return f, proto.TxExt{}, proto.Status{}, err
	}
	e, err := proto.ParseTxExt(f.Ext)
	if err != nil {
		return f, e, proto.Status{}, err
	}
	var st proto.Status
	if f.Flags&proto.FlagAbort != 0 {
		st, err = proto.ParseStatus(f.Body, "ABORT")
	}
	return f, e, st, err
}

func expectTx(want proto.Frame, ext proto.TxExt, st proto.Status) func([]byte) error {
	want.Seal()
	return func(b []byte) error {
		f, e, s, err := receiveTx(b)
		if err != nil {
			return err
		}
		if !wiretest.Equal(f, want) || e != ext || s != st {
			return fmt.Errorf("decoded %+v %+v %+v, want %+v %+v %+v", f, e, s, want, ext, st)
		}
		return nil
	}
}

func receiveTxErr(b []byte) error { _, _, _, err := receiveTx(b); return err }

func withExt(f proto.Frame, ext []byte) proto.Frame { f.Ext = ext; return f }

func txVectors() []wiretest.Vector {
	ref := bytes.Clone(parentCreateF.Ext[4:])
	short := withExt(parentCreateF, proto.AppendTLV(nil, proto.ExtParent, ref[:8]))
	zero := withExt(parentCreateF, proto.AppendTLV(nil, proto.ExtParent, make([]byte, 16)))
	twice := withExt(parentCreateF, proto.AppendTxExt(parentCreateF.Ext, sampleParent))
	return []wiretest.Vector{
		frameVector("tx_parent", []string{
			"A stacked CREATE (peer protocol, opcode 0x0100, flags CREATE) from node 0x0a",
			"to node 0x0d, msg id 0x0000010000000002 (boot epoch 1, counter 2), with the",
			"critical transaction extension 0xff01 PARENT: initiator 0x0a, msg id",
			"0x0000010000000001. Relays route it on the parent's recorded path.",
		}, wiretest.Frame(parentCreateF), nil, expectTx(parentCreateF, sampleParent, proto.Status{}), 0, ""),
		frameVector("tx_linkfail", []string{
			"The terminal ABORT a relay sends toward the initiator when the link between",
			"nodes 0x0b and 0x0c on the path of transaction {0x0a, 0x0000010000000002} goes",
			"down before the responder answered: flags CREATE|DELETE|REPLY|ABORT, source",
			"0x0d (the responder), target 0x0a, Status code 44 (link failed), and the",
			"optional extension 0x7f01 FAILED_LINK naming both ends. Nobody answers it.",
		}, wiretest.Frame(linkFailF), wiretest.StatusFields, expectTx(linkFailF, sampleFailed, linkFailStatus), 0, ""),
		frameVector("tx_window", []string{
			"A window grant: the responder 0x0d of transaction {0x0a, 0x0000010000000002}",
			"has read 128 KiB of the initiator's stream and lets it send 128 KiB more:",
			"flags REPLY (its direction), no body, the optional extension 0x7f02 WINDOW",
			"of 131072 bytes. It is not delivered to the application.",
		}, wiretest.Frame(windowF), nil, expectTx(windowF, sampleWindow, proto.Status{}), 0, ""),
		frameVector("err_tx_window_zero", []string{
			"tx_window granting 0 bytes: a grant is never empty.",
		}, wiretest.Frame(withExt(windowF, proto.AppendTLV(nil, proto.ExtWindow, make([]byte, 4)))), nil, receiveTxErr, proto.CodeField, "window of 0 bytes"),
		frameVector("err_tx_window_len", []string{
			"tx_window with a WINDOW value of 8 bytes; it is 4.",
		}, wiretest.Frame(withExt(windowF, proto.AppendTLV(nil, proto.ExtWindow, make([]byte, 8)))), nil, receiveTxErr, proto.CodeField, "window is 8 bytes, want 4"),
		frameVector("err_tx_parent_len", []string{
			"tx_parent with a PARENT value of 8 bytes; it is 16.",
		}, wiretest.Frame(short), nil, receiveTxErr, proto.CodeField, "parent is 8 bytes, want 16"),
		frameVector("err_tx_parent_zero", []string{
			"tx_parent with a PARENT of initiator 0: no node has id 0.",
		}, wiretest.Frame(zero), nil, receiveTxErr, proto.CodeField, "parent of initiator 0"),
		frameVector("err_tx_parent_twice", []string{
			"tx_parent with two PARENT entries: a transaction has one parent.",
		}, wiretest.Frame(twice), nil, receiveTxErr, proto.CodeField, "two parent entries"),
	}
}

// FuzzParseTxExt also encodes a TxExt and decodes it back.
func FuzzParseTxExt(f *testing.F) {
	f.Add(parentCreateF.Ext, uint64(0x0a), uint64(1), uint64(0), uint64(0))                                   // tx_parent
	f.Add(linkFailF.Ext, uint64(0), uint64(0), uint64(0x0b), uint64(0x0c))                                    // tx_linkfail
	f.Add(proto.AppendTLV(nil, proto.ExtParent, make([]byte, 8)), uint64(1), uint64(2), uint64(3), uint64(4)) // short
	f.Add(proto.AppendTLV(nil, 0x8001, nil), uint64(0), uint64(0), uint64(0), uint64(0))                      // other critical type: skipped
	f.Add(windowF.Ext, uint64(0), uint64(0), uint64(0), uint64(1<<17))                                        // tx_window
	f.Fuzz(func(t *testing.T, ext []byte, init, msgid, a, b uint64) {
		e, err := proto.ParseTxExt(ext)
		typed(t, err)
		if err == nil && proto.ValidateTLV(ext) != nil {
			t.Fatal("accepted a malformed extension area")
		}
		if err == nil {
			back, err := proto.ParseTxExt(proto.AppendTxExt(nil, e))
			if err != nil || back != e {
				t.Fatalf("decode(encode(%+v)) = %+v, %v", e, back, err)
			}
		}
		x := proto.TxExt{Parent: proto.TxRef{Initiator: init, MsgID: msgid}, FailedLink: [2]uint64{a, b}, Window: uint32(b >> 32)}
		got, err := proto.ParseTxExt(proto.AppendTxExt(nil, x))
		valid := (x.Parent == proto.TxRef{} || init != 0) && (x.FailedLink == [2]uint64{} || (a != 0 && b != 0))
		if valid != (err == nil) || (valid && got != x) {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", x, got, err)
		}
	})
}
