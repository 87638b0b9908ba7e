package peer_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
	"github.com/corralhq/corral/proto/peer"
)

const v3 = 3

func routesFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	n := w.U16("count")
	w.Fixed(2, "reserved, zero")
	for i := 0; i < n && !w.Done(); i++ {
		if left := len(b) - peer.RoutesHeaderSize - i*peer.RouteEntrySize; left < peer.RouteEntrySize {
			w.Fixed(left, "entry %d, cut short", i)
			break
		}
		w.U64(fmt.Sprintf("entry %d: origin", i))
		w.U16("seqno")
		w.U16("metric, 0xffff = retraction")
		w.U8("hops")
		w.Fixed(3, "reserved, zero")
	}
	return w.Fields
}

func seqnoReqFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	w.U64("origin")
	w.U16("seqno")
	w.U8("hop count")
	w.Fixed(1, "reserved, zero")
	w.U32("reserved, zero")
	return w.Fields
}

func receiveErr3(b []byte) error { _, _, err := receive(v3, b); return err }

func routeVectors() []wiretest.Vector {
	routes := func(es []peer.RouteEntry) proto.Frame {
		return frameAt(v3, peer.OpRoutes, request, peer.AppendRoutes(nil, es))
	}
	with := func(es []peer.RouteEntry, fn func([]byte) []byte) proto.Frame {
		return frameAt(v3, peer.OpRoutes, request, fn(peer.AppendRoutes(nil, es)))
	}
	dump := []peer.RouteEntry{
		{Origin: 1, Seqno: 7, Metric: 200, Hops: 2},
		{Origin: 2, Seqno: 7, Metric: 100, Hops: 1},
		{Origin: 3, Seqno: 5, Metric: 0, Hops: 0},
	}
	delta := []peer.RouteEntry{
		{Origin: 4, Seqno: 9, Metric: peer.MetricInf},
		{Origin: 5, Seqno: 2, Metric: 300, Hops: 3},
	}
	dumpF, deltaF := routes(dump), routes(delta)
	one := func(e peer.RouteEntry) proto.Frame { return routes([]peer.RouteEntry{e}) }
	count := func(n uint16) func([]byte) []byte {
		return func(b []byte) []byte { binary.LittleEndian.PutUint16(b, n); return b[:peer.RoutesHeaderSize] }
	}
	setByte := func(i int, v byte) func([]byte) []byte {
		return func(b []byte) []byte { b[i] = v; return b }
	}
	q := peer.SeqnoReq{Origin: 5, Seqno: 8, HopCount: 16}
	qF := frameAt(v3, peer.OpSeqnoReq, request, peer.AppendSeqnoReq(nil, q))
	qWith := func(fn func([]byte) []byte) proto.Frame {
		return frameAt(v3, peer.OpSeqnoReq, request, fn(peer.AppendSeqnoReq(nil, q)))
	}
	dumpV2 := dumpF
	dumpV2.Version = v2
	return []wiretest.Vector{
		vec("routes", []string{
			"ROUTES (peer v3): node 3's full table for a neighbour whose link just came up:",
			"node 1 at metric 200 over 2 hops (seqno 7), node 2 at 100 over 1 hop, and",
			"node 3 itself, metric 0, 0 hops, seqno 5. Origins ascend.",
		}, dumpF, routesFields, expect(dumpF, dump), 0, ""),
		vec("routes_delta", []string{
			"ROUTES: a change: node 4 retracted (metric 0xffff, hops 0), node 5 now at",
			"metric 300 over 3 hops.",
		}, deltaF, routesFields, expect(deltaF, delta), 0, ""),
		vec("seqno_req", []string{
			"SEQNO_REQ (peer v3): asks for an advert of node 5 with seqno 8 or newer;",
			"it may travel 16 hops towards node 5.",
		}, qF, seqnoReqFields, expect(qF, q), 0, ""),
		vec("err_routes_count", []string{
			"ROUTES announcing 1025 entries, one more than a frame may carry; refused",
			"from the count, before any entry is read.",
		}, with(dump, count(1025)), routesFields, receiveErr3, proto.CodeTooLarge, "1025 entries, limit 1024"),
		vec("err_routes_empty", []string{"ROUTES with count 0."},
			with(dump, count(0)), routesFields, receiveErr3, proto.CodeField, "no entries"),
		vec("err_routes_truncated", []string{"routes without its last byte."},
			with(dump, func(b []byte) []byte { return b[:len(b)-1] }), routesFields, receiveErr3, proto.CodeField, "truncated"),
		vec("err_routes_trailing", []string{"routes followed by one byte."},
			with(dump, func(b []byte) []byte { return append(b, 0) }), routesFields, receiveErr3, proto.CodeField, "1 unexpected bytes"),
		vec("err_routes_reserved", []string{"routes with a non-zero reserved byte in the header."},
			with(dump, setByte(2, 1)), routesFields, receiveErr3, proto.CodeField, "reserved header is not zero"),
		vec("err_routes_entry_reserved", []string{"routes with a non-zero reserved byte in entry 1."},
			with(dump, setByte(peer.RoutesHeaderSize+peer.RouteEntrySize+13, 1)), routesFields, receiveErr3, proto.CodeField, "reserved entry padding is not zero"),
		vec("err_routes_origin", []string{"ROUTES with an entry for node 0."},
			one(peer.RouteEntry{Origin: 0, Seqno: 1, Metric: 100, Hops: 1}), routesFields, receiveErr3, proto.CodeField, "entry 0: origin 0"),
		vec("err_routes_order", []string{"routes with entries 0 and 1 swapped: origins must ascend."},
			routes([]peer.RouteEntry{dump[1], dump[0], dump[2]}), routesFields, receiveErr3, proto.CodeField, "entry 1: origin 1 not above 2"),
		vec("err_routes_metric", []string{
			"ROUTES with metric 2 over 3 hops: every link costs at least 1, so no route",
			"is cheaper than its hop count.",
		}, one(peer.RouteEntry{Origin: 9, Seqno: 1, Metric: 2, Hops: 3}), routesFields, receiveErr3, proto.CodeField, "entry 0: metric 2 over 3 hops"),
		vec("err_routes_zero_metric", []string{"ROUTES with metric 0 over 1 hop: only the sender itself is at metric 0."},
			one(peer.RouteEntry{Origin: 9, Seqno: 1, Metric: 0, Hops: 1}), routesFields, receiveErr3, proto.CodeField, "entry 0: metric 0 over 1 hops"),
		vec("err_routes_hops", []string{"ROUTES with a route of 16 hops, at the frame hop limit: no frame could use it."},
			one(peer.RouteEntry{Origin: 9, Seqno: 1, Metric: 1600, Hops: 16}), routesFields, receiveErr3, proto.CodeField, "entry 0: 16 hops, at or beyond the hop limit 16"),
		vec("err_routes_retract_hops", []string{"ROUTES with a retraction (metric 0xffff) that claims 3 hops."},
			one(peer.RouteEntry{Origin: 9, Seqno: 1, Metric: peer.MetricInf, Hops: 3}), routesFields, receiveErr3, proto.CodeField, "entry 0: retraction with 3 hops"),
		vec("err_routes_v2", []string{
			"routes sent as peer version 2, on a link that agreed on version 2: ROUTES",
			"exists since version 3.",
		}, dumpV2, routesFields, receiveErr, proto.CodeOpcode, "peer protocol version 2 has no opcode 0x0200"),
		vec("err_seqno_req_hops", []string{"SEQNO_REQ with hop count 0: a request that may not travel is never sent."},
			qWith(setByte(10, 0)), seqnoReqFields, receiveErr3, proto.CodeField, "hop count 0"),
		vec("err_seqno_req_origin", []string{"SEQNO_REQ for node 0."},
			qWith(func(b []byte) []byte { clear(b[:8]); return b }), seqnoReqFields, receiveErr3, proto.CodeField, "origin 0"),
		vec("err_seqno_req_reserved", []string{"seqno_req with a non-zero byte in the reserved u32."},
			qWith(setByte(15, 1)), seqnoReqFields, receiveErr3, proto.CodeField, "reserved u32 is not zero"),
		vec("err_seqno_req_truncated", []string{"seqno_req without its last byte."},
			qWith(func(b []byte) []byte { return b[:len(b)-1] }), seqnoReqFields, receiveErr3, proto.CodeField, "truncated"),
	}
}

// FuzzRoutes: never panics, errors are *proto.Error, what is accepted
// keeps the limits and re-encodes to the same bytes.
func FuzzRoutes(f *testing.F) {
	dump := []peer.RouteEntry{{Origin: 1, Seqno: 7, Metric: 200, Hops: 2}, {Origin: 2, Seqno: 7, Metric: 100, Hops: 1}, {Origin: 3, Seqno: 5}}
	f.Add(peer.AppendRoutes(nil, dump))                                                             // routes
	f.Add(peer.AppendRoutes(nil, []peer.RouteEntry{{Origin: 4, Seqno: 9, Metric: peer.MetricInf}})) // a retraction
	b := peer.AppendRoutes(nil, dump)
	binary.LittleEndian.PutUint16(b, peer.MaxRouteEntries+1)
	f.Add(b[:peer.RoutesHeaderSize])                                                  // count over the limit
	f.Add(peer.AppendRoutes(nil, []peer.RouteEntry{}))                                // empty
	f.Add(peer.AppendRoutes(nil, dump)[:peer.RoutesHeaderSize+peer.RouteEntrySize+3]) // cut in entry 1
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := peer.ParseRoutes(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if len(es) == 0 || len(es) > peer.MaxRouteEntries {
			t.Fatalf("accepted %d entries", len(es))
		}
		for i, e := range es {
			if e.Origin == 0 || i > 0 && e.Origin <= es[i-1].Origin || e.Metric != peer.MetricInf && (e.Hops >= proto.HopLimit || e.Metric < uint16(e.Hops)) {
				t.Fatalf("accepted entry %d: %+v", i, e)
			}
		}
		if !bytes.Equal(peer.AppendRoutes(nil, es), b) {
			t.Fatal("re-encoded ROUTES differs")
		}
	})
}

// FuzzSeqnoReq: as FuzzRoutes, for SEQNO_REQ.
func FuzzSeqnoReq(f *testing.F) {
	f.Add(peer.AppendSeqnoReq(nil, peer.SeqnoReq{Origin: 5, Seqno: 8, HopCount: 16})) // seqno_req
	f.Add(peer.AppendSeqnoReq(nil, peer.SeqnoReq{Origin: 5, Seqno: 8}))               // hop count 0
	f.Add(make([]byte, 15))                                                           // short
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := peer.ParseSeqnoReq(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if q.Origin == 0 || q.HopCount == 0 {
			t.Fatalf("accepted %+v", q)
		}
		if !bytes.Equal(peer.AppendSeqnoReq(nil, q), b) {
			t.Fatal("re-encoded SEQNO_REQ differs")
		}
	})
}
