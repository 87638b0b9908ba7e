package route_test

import (
	"slices"
	"testing"

	"github.com/corralhq/corral/mesh/route"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
)

// frames encodes m as the peer protocol carries it: one ROUTES frame per
// MaxRouteEntries updates, then one SEQNO_REQ frame per request.
func frames(m route.Message) [][]byte {
	var out [][]byte
	add := func(op uint16, body []byte) {
		f := proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: peer.MaxVersion, Opcode: op,
			Flags: proto.FlagCreate | proto.FlagDelete, Hops: proto.HopLimit}, Body: body}
		out = append(out, proto.AppendFrame(nil, &f))
	}
	for chunk := range slices.Chunk(m.Updates, peer.MaxRouteEntries) {
		es := make([]peer.RouteEntry, len(chunk))
		for i, u := range chunk {
			es[i] = peer.RouteEntry{Origin: uint64(u.Origin), Seqno: uint16(u.Seqno), Metric: uint16(u.Metric), Hops: u.Hops}
		}
		add(peer.OpRoutes, peer.AppendRoutes(nil, es))
	}
	for _, q := range m.Requests {
		add(peer.OpSeqnoReq, peer.AppendSeqnoReq(nil, peer.SeqnoReq{Origin: uint64(q.Origin), Seqno: uint16(q.Seqno), HopCount: q.HopCount}))
	}
	return out
}

// roundTrip is what the receiver gets of m: encoded, decoded and checked
// by the peer protocol's parsers.
func roundTrip(t testing.TB, m route.Message) route.Message {
	var back route.Message
	for _, b := range frames(m) {
		f, err := proto.DecodeFrame(b, 0)
		if err == nil {
			err = peer.Ops().Check(&f.Header, peer.MaxVersion)
		}
		if err != nil {
			t.Fatalf("frame: %v", err)
		}
		switch f.Opcode {
		case peer.OpRoutes:
			es, err := peer.ParseRoutes(f.Body)
			if err != nil {
				t.Fatalf("ROUTES: %v", err)
			}
			for _, e := range es {
				back.Updates = append(back.Updates, route.Update{Origin: route.NodeID(e.Origin), Seqno: route.Seqno(e.Seqno), Metric: route.Metric(e.Metric), Hops: e.Hops})
			}
		case peer.OpSeqnoReq:
			q, err := peer.ParseSeqnoReq(f.Body)
			if err != nil {
				t.Fatalf("SEQNO_REQ: %v", err)
			}
			back.Requests = append(back.Requests, route.SeqnoRequest{Origin: route.NodeID(q.Origin), Seqno: route.Seqno(q.Seqno), HopCount: q.HopCount})
		}
	}
	return back
}

// wireSize is the size on the wire of m, frame headers included.
func wireSize(m route.Message) int {
	n := 0
	for _, b := range frames(m) {
		n += len(b)
	}
	return n
}
