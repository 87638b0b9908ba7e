package tx_test

import (
	"errors"
	"testing"

	"github.com/corralhq/corral/mesh/tx"
	"github.com/corralhq/corral/proto"
)

func TestConfig(t *testing.T) {
	route := func(tx.NodeID) (tx.LinkID, bool) { return 0, false }
	if _, err := tx.New(tx.Config{Self: 1, Epoch: 1 << 24, Route: route}); !errors.Is(err, tx.ErrEpoch) {
		t.Fatalf("epoch 1<<24: %v", err)
	}
	for _, c := range []tx.Config{{Route: route}, {Self: 1}, {Self: 1, Route: route, RelayCap: -1}} {
		if _, err := tx.New(c); !errors.Is(err, tx.ErrConfig) {
			t.Fatalf("%+v: %v", c, err)
		}
	}
}

// TestMsgIDs: msg ids are epoch<<40 | counter from 1, so two starts with
// different epochs never share a key.
func TestMsgIDs(t *testing.T) {
	seen := map[tx.Key]bool{}
	for _, epoch := range []uint32{1, 2, 1<<24 - 1} {
		tb, err := tx.New(tx.Config{Self: 1, Epoch: epoch, Route: func(tx.NodeID) (tx.LinkID, bool) { return 2, true }})
		if err != nil {
			t.Fatal(err)
		}
		for i := uint64(1); i <= 3; i++ {
			k, err := tb.Open(3, proto.Frame{}, tx.Key{})
			if err != nil {
				t.Fatal(err)
			}
			if want := uint64(epoch)<<40 | i; k.MsgID != want || k.Initiator != 1 || seen[k] {
				t.Fatalf("key %v, want msg id %#x, unseen", k, want)
			}
			seen[k] = true
		}
	}
}

// TestTypedErrors: what the initiator's application gets is a
// *proto.Error that errors.Is matches by code.
func TestTypedErrors(t *testing.T) {
	n := newNet(func(format string, args ...any) { t.Fatalf(format, args...) })
	n.caps[2] = 1
	n.links[pair(1, 2)], n.links[pair(2, 3)] = true, true
	n1 := n.node(1)
	if _, err := n1.Open(9, proto.Frame{}, tx.Key{}); !errors.Is(err, proto.ErrNoRoute) {
		t.Fatalf("open to an unreachable node: %v", err)
	}
	if _, err := n1.Open(1, proto.Frame{}, tx.Key{}); !errors.Is(err, tx.ErrSelf) {
		t.Fatalf("open to self: %v", err)
	}
	a, err := n1.Open(3, proto.Frame{}, tx.Key{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := n1.Open(3, proto.Frame{}, tx.Key{})
	if err != nil {
		t.Fatal(err)
	}
	n.collect(1, nil)
	n.deliver(100, nil)
	if d := n.app[1]; len(d) != 1 || d[0].Key != b || !errors.Is(d[0].Err, proto.ErrBusy) || !d[0].Closed {
		t.Fatalf("initiator saw %+v, want b refused with ErrBusy", d)
	}
	if err := n1.Send(b, proto.Frame{}); !errors.Is(err, proto.ErrBusy) {
		t.Fatalf("send on the refused transaction: %v", err)
	}
	n.cut(2, 3, nil)
	n.deliver(100, nil)
	if d := n.app[1]; len(d) != 2 || d[1].Key != a || !errors.Is(d[1].Err, proto.ErrLinkFail) {
		t.Fatalf("initiator saw %+v, want a ended with ErrLinkFail", d)
	}
	if err := n1.Send(a, proto.Frame{}); !errors.Is(err, proto.ErrLinkFail) {
		t.Fatalf("send after LINKFAIL: %v", err)
	}
	if _, err := n1.Open(3, proto.Frame{}, a); !errors.Is(err, proto.ErrLinkFail) {
		t.Fatalf("child of a transaction LINKFAIL ended: %v", err)
	}
	if err := n1.Step(2, proto.Frame{Header: proto.Header{Source: 0, Target: 1}}); !errors.Is(err, tx.ErrNotRouted) {
		t.Fatalf("link-local frame: %v", err)
	}
}

// FuzzStep feeds arbitrary routed frames to a relay and an endpoint: the
// table never fails or panics on them, sends only on links that exist,
// and sends at most two frames per frame (a repeated CREATE is answered
// and ends the path ahead).
func FuzzStep(f *testing.F) {
	f.Add(uint16(proto.FlagCreate), uint8(16), uint64(1), uint64(1), uint64(3), []byte(nil), []byte("x"))
	f.Add(uint16(proto.FlagCreate|proto.FlagDelete|proto.FlagReply|proto.FlagAbort), uint8(1), uint64(7), uint64(3), uint64(1), []byte(nil), []byte{44, 0, 0, 0})
	f.Add(uint16(proto.FlagCreate), uint8(16), uint64(2), uint64(1), uint64(2), proto.AppendTxExt(nil, proto.TxExt{Parent: proto.TxRef{Initiator: 1, MsgID: 1}}), []byte(nil))
	f.Add(uint16(proto.FlagDelete|proto.FlagAbort), uint8(0), uint64(1), uint64(1), uint64(3), []byte{1, 0xff, 0, 1}, []byte{0x2c})
	f.Fuzz(func(t *testing.T, flags uint16, hops uint8, msgid, src, dst uint64, ext, body []byte) {
		route := func(target tx.NodeID) (tx.LinkID, bool) {
			if target == 1 || target == 3 {
				return tx.LinkID(target), true
			}
			return 0, false
		}
		tb, err := tx.New(tx.Config{Self: 2, Epoch: 1, Route: route, RelayCap: 4})
		if err != nil {
			t.Fatal(err)
		}
		// One open transaction of its own and one relayed, for the
		// frames to hit.
		if _, err := tb.Open(3, proto.Frame{}, tx.Key{}); err != nil {
			t.Fatal(err)
		}
		_ = tb.Step(1, proto.Frame{Header: proto.Header{Flags: proto.FlagCreate, Hops: 16, MsgID: 1, Source: 1, Target: 3}})
		tb.Advance()
		for _, l := range []tx.LinkID{1, 3} {
			fr := proto.Frame{Header: proto.Header{Flags: proto.Flags(flags) & 0xF, Hops: hops, MsgID: msgid, Source: src, Target: dst}, Ext: ext, Body: body}
			err := tb.Step(l, fr)
			if err != nil && !errors.Is(err, tx.ErrNotRouted) {
				t.Fatalf("Step: %v", err)
			}
			rd := tb.Ready()
			if len(rd.Msgs) > 2 {
				t.Fatalf("one frame caused %d", len(rd.Msgs))
			}
			for _, m := range rd.Msgs {
				if m.Link != 1 && m.Link != 3 {
					t.Fatalf("sent on link %d", m.Link)
				}
			}
			tb.Advance()
			tb.LinkDown(l)
			tb.Advance()
		}
		if tb.Len() != 0 {
			t.Fatalf("%d entries after both links went down: %+v", tb.Len(), tb.Entries())
		}
	})
}
