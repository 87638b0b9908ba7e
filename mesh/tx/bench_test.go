package tx_test

import (
	"fmt"
	"testing"

	"github.com/corralhq/corral/mesh/tx"
	"github.com/corralhq/corral/proto"
)

// line3 is 1-2-3 with n transactions open from 1 to 3 (CREATE through,
// no reply yet): what a cut of 2-3 has to abort.
func line3(b *testing.B, n int) (t1, t2, t3 *tx.Table) {
	route := func(self tx.NodeID) tx.Route {
		return func(target tx.NodeID) (tx.LinkID, bool) {
			switch {
			case self < target:
				return tx.LinkID(self + 1), true
			case self > target:
				return tx.LinkID(self - 1), true
			}
			return 0, false
		}
	}
	mk := func(id tx.NodeID) *tx.Table {
		t, err := tx.New(tx.Config{Self: id, Epoch: 1, Route: route(id), TombstoneTicks: 2})
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	t1, t2, t3 = mk(1), mk(2), mk(3)
	f := proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0100}, Body: []byte("req")}
	for range n {
		if _, err := t1.Open(3, f, tx.Key{}); err != nil {
			b.Fatal(err)
		}
	}
	pass := func(from tx.NodeID, src, dst *tx.Table) {
		for _, m := range src.Ready().Msgs {
			if err := dst.Step(tx.LinkID(from), m.Frame); err != nil {
				b.Fatal(err)
			}
		}
		src.Advance()
	}
	pass(1, t1, t2)
	pass(2, t2, t3)
	t3.Advance()
	if t2.Len() != n || t3.Len() != n {
		b.Fatalf("relay holds %d, responder %d, want %d", t2.Len(), t3.Len(), n)
	}
	return t1, t2, t3
}

// BenchmarkLinkFail cuts 2-3 under n open transactions: the relay aborts
// all of them toward 1, the initiator takes the n terminal ABORTs, the
// responder reports n LINKFAILs itself. One op is the whole storm.
func BenchmarkLinkFail(b *testing.B) {
	for _, n := range []int{1, 1000, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				t1, t2, t3 := line3(b, n)
				b.StartTimer()
				t2.LinkDown(3)
				for _, m := range t2.Ready().Msgs {
					_ = t1.Step(2, m.Frame)
				}
				t2.Advance()
				far := len(t1.Ready().Deliveries)
				t1.Advance()
				t3.LinkDown(2)
				near := len(t3.Ready().Deliveries)
				t3.Advance()
				b.StopTimer()
				if far != n || near != n || t1.Len()+t2.Len()+t3.Len() != 0 {
					b.Fatalf("far %d near %d left %d, want %d each and none", far, near, t1.Len()+t2.Len()+t3.Len(), n)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/tx")
		})
	}
}

// BenchmarkRelay is the cost of forwarding one data frame at a relay.
func BenchmarkRelay(b *testing.B) {
	_, t2, _ := line3(b, 1)
	k := t2.Entries()[0].Key
	f := proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0100, Hops: proto.HopLimit,
		MsgID: k.MsgID, Source: 1, Target: 3}, Body: make([]byte, 64)}
	b.ReportAllocs()
	for b.Loop() {
		if err := t2.Step(1, f); err != nil {
			b.Fatal(err)
		}
		t2.Advance()
	}
}
