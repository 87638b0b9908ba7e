package admin_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"testing"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/internal/golden"
	"github.com/corralhq/corral/proto/internal/wiretest"
)

// sampleRoutes: node 2 linked directly (with node 3 as a feasible
// alternate), node 4 two hops away through node 2, node 9 unreachable.
var sampleRoutes = []admin.Route{
	{ID: 2, NextHop: 2, Alt: 3, Since: 1700000001000000000, RTT: 250, Metric: 100, Seqno: 0x1234, Hops: 1, Up: true, Direct: true},
	{ID: 4, NextHop: 2, Since: 1700000002000000000, Metric: 200, Seqno: 7, Hops: 2, Up: true},
	{ID: 9, Since: 1700000003000000000, Seqno: 0xffff},
}

func routesFields(b []byte) golden.Fields {
	w := golden.NewWalker(b)
	n := w.U32("route count")
	for i := uint64(0); i < n && !w.Done(); i++ {
		w.U64(fmt.Sprintf("route[%d] destination node id", i))
		w.U64("  next hop node id, 0 if none")
		w.U64("  feasible alternate next hop, 0 if none")
		w.Fixed(8, "  since: unix nanoseconds (i64 LE)")
		w.U32("  rtt of the direct link in microseconds")
		w.U16("  metric")
		w.U16("  seqno")
		w.U8("  hops")
		w.U8("  flags: bit 0 up, bit 1 direct")
		w.Fixed(2, "  reserved, zero")
	}
	return w.Fields
}

func parseRoutes(b []byte) error { _, err := admin.ParseRoutes(b); return err }

func routesWith(fn func(b []byte) []byte) []byte { return fn(admin.AppendRoutes(nil, sampleRoutes)) }

// routesVectors are the messages of admin version 3.
func routesVectors() []wiretest.Vector {
	req := request(admin.OpRoutes, nil)
	rep := reply(admin.OpRoutes, admin.AppendRoutes(nil, sampleRoutes))
	one := reply(admin.OpRoutes, admin.AppendRoutes(nil, sampleRoutes[:1]))
	empty := reply(admin.OpRoutes, admin.AppendRoutes(nil, nil))
	old := req
	old.Version = 2
	over := make([]byte, 4+(admin.MaxRoutes+1)*admin.RouteSize)
	binary.LittleEndian.PutUint32(over, admin.MaxRoutes+1)
	const flags = 4 + 41 // the first row's flags byte
	return []wiretest.Vector{
		frameVector("routes_request", []string{"Admin ROUTES request (version 3): empty body."}, req, nil, expect(req, nil), 0, ""),
		frameVector("routes_reply", []string{
			"Admin ROUTES reply with three rows: node 2 linked directly (metric 100, one hop,",
			"250 us round trip, node 3 a feasible alternate), node 4 routed through node 2",
			"(metric 200, two hops), node 9 unreachable.",
		}, rep, routesFields, expect(rep, sampleRoutes), 0, ""),
		frameVector("routes_reply_one", []string{"Admin ROUTES reply with one row: node 2, linked directly."},
			one, routesFields, expect(one, sampleRoutes[:1]), 0, ""),
		frameVector("routes_reply_empty", []string{"Admin ROUTES reply with no rows: a node with no peers."},
			empty, routesFields, expect(empty, []admin.Route{}), 0, ""),
		frameVector("err_routes_v2", []string{"A ROUTES request sent as admin version 2, which does not define it."},
			old, nil, receiveErr, proto.CodeOpcode, "admin protocol version 2 has no opcode 0x0012"),
		bodyVector("err_routes_count", "ROUTES reply announcing 1000 rows in a body that holds three: refused before allocating.",
			routesWith(func(b []byte) []byte { binary.LittleEndian.PutUint32(b, 1000); return b }), routesFields, parseRoutes, "route count 1000 does not fit a body of 136 bytes"),
		bodyVector("err_routes_over_limit", "ROUTES reply of 4097 rows (all zero): more than MaxRoutes = 4096, though the body holds them.",
			over, func([]byte) golden.Fields {
				return golden.Fields{{Size: 4, Name: "route count (u32 LE)"}, {Size: len(over) - 4, Name: "4097 rows of 44 zero bytes"}}
			}, parseRoutes, "route count 4097"),
		bodyVector("err_routes_truncated", "ROUTES reply cut off inside its last row.",
			routesWith(func(b []byte) []byte { return b[:len(b)-1] }), routesFields, parseRoutes, "route count 3 does not fit a body of 135 bytes"),
		bodyVector("err_routes_trailing", "ROUTES reply followed by one extra byte.",
			routesWith(func(b []byte) []byte { return append(b, 0) }), routesFields, parseRoutes, "1 unexpected bytes"),
		bodyVector("err_routes_flags", "ROUTES reply whose first row has flag bit 2 set, which is not defined.",
			routesWith(func(b []byte) []byte { b[flags] |= 4; return b }), routesFields, parseRoutes, "route 0: unknown flags"),
		bodyVector("err_routes_node_zero", "ROUTES reply whose first row is for node 0, which no node is.",
			routesWith(func(b []byte) []byte { clear(b[4:12]); return b }), routesFields, parseRoutes, "route 0: node id 0"),
		bodyVector("err_routes_direct_down", "ROUTES reply whose first row is direct but not up.",
			routesWith(func(b []byte) []byte { b[flags] = 2; return b }), routesFields, parseRoutes, "route 0: direct but not up"),
		bodyVector("err_routes_direct_next_hop", "ROUTES reply whose first row is direct to node 2 with next hop 3.",
			routesWith(func(b []byte) []byte { b[12] = 3; return b }), routesFields, parseRoutes, "route 0: direct to node 2 with next hop 3"),
		bodyVector("err_routes_reserved", "ROUTES reply whose first row has a reserved byte not zero.",
			routesWith(func(b []byte) []byte { b[flags+1] = 1; return b }), routesFields, parseRoutes, "reserved reserved is not zero"),
	}
}

func TestRoutesRoundTrip(t *testing.T) {
	most := make([]admin.Route, admin.MaxRoutes)
	for i := range most {
		most[i] = admin.Route{ID: uint64(i + 1), NextHop: uint64(i + 1), Alt: ^uint64(0), Since: -int64(i), RTT: ^uint32(0),
			Metric: uint16(i), Seqno: ^uint16(0), Hops: uint8(i), Up: true, Direct: i%2 == 0}
	}
	for _, rs := range [][]admin.Route{sampleRoutes, nil, most} {
		b := admin.AppendRoutes(nil, rs)
		if len(b) != 4+len(rs)*admin.RouteSize {
			t.Fatalf("%d rows take %d bytes, want %d", len(rs), len(b), 4+len(rs)*admin.RouteSize)
		}
		got, err := admin.ParseRoutes(b)
		if err != nil || !wiretest.Equal(got, rs) {
			t.Fatalf("round trip of %d rows: %d, %v", len(rs), len(got), err)
		}
	}
}

// TestRoutesCountCheckedBeforeAllocation: a count the body cannot hold is
// refused without allocating room for the rows it claims.
func TestRoutesCountCheckedBeforeAllocation(t *testing.T) {
	b := []byte{0x00, 0x10, 0, 0, 0, 0, 0, 0} // 4096 rows claimed, 4 bytes of them
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const runs = 100
	for range runs {
		if _, err := admin.ParseRoutes(b); err == nil {
			t.Fatal("accepted")
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 4<<10 {
		t.Fatalf("%d bytes allocated per refused body; room for 4096 rows would be ~%d", per, 4096*64)
	}
}

func FuzzParseRoutes(f *testing.F) {
	f.Add(admin.AppendRoutes(nil, sampleRoutes))                                                // the routes_reply body
	f.Add(admin.AppendRoutes(nil, nil))                                                         // no rows
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0})                                           // a huge count in a short body
	f.Add(routesWith(func(b []byte) []byte { b[4+41] = 2; return b }))                          // direct but not up
	f.Add(routesWith(func(b []byte) []byte { return b[:4+admin.RouteSize+admin.RouteSize/2] })) // cut inside the second row
	f.Fuzz(func(t *testing.T, b []byte) {
		rs, err := admin.ParseRoutes(b)
		wiretest.Typed(t, err)
		if err != nil {
			return
		}
		if len(rs) > admin.MaxRoutes {
			t.Fatalf("%d rows accepted", len(rs))
		}
		for _, r := range rs {
			if r.ID == 0 || (r.Direct && (!r.Up || r.NextHop != r.ID)) {
				t.Fatalf("accepted %+v", r)
			}
		}
		if out := admin.AppendRoutes(nil, rs); !bytes.Equal(out, b) {
			t.Fatalf("re-encoded rows differ:\n%x\n%x", out, b)
		}
	})
}
