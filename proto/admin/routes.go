package admin

import (
	"encoding/binary"

	"github.com/corralhq/corral/proto"
)

// Route is one row of a ROUTES reply: how the answering agent reaches one
// other node, over a direct link, routed through a neighbour, or not.
type Route struct {
	ID      uint64 // destination node id, never 0
	NextHop uint64 // the neighbour frames leave through (ID when direct); 0 if none
	Alt     uint64 // a feasible alternate next hop; 0 if none
	Since   int64  // unix nanoseconds of the last change between reachable and not; 0 if never
	RTT     uint32 // the direct link's round trip in microseconds; 0 when routed or unknown
	Metric  uint16 // the route's metric, the sum of its links' costs
	Seqno   uint16 // the destination's route sequence number
	Hops    uint8  // the route's length in links
	Up      bool   // reachable: a direct link or a route
	Direct  bool   // a direct link is up
}

// Route flags.
const (
	routeUp     = 1 << 0
	routeDirect = 1 << 1
)

// RouteSize is the size of one ROUTES row; MaxRoutes bounds their count.
const (
	RouteSize = 8 + 8 + 8 + 8 + 4 + 2 + 2 + 1 + 1 + 2
	MaxRoutes = MaxMembers
)

// AppendRoutes appends the body of a ROUTES reply.
func AppendRoutes(dst []byte, rs []Route) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint32(dst, uint32(len(rs)))
	for i := range rs {
		r := &rs[i]
		dst = le.AppendUint64(dst, r.ID)
		dst = le.AppendUint64(dst, r.NextHop)
		dst = le.AppendUint64(dst, r.Alt)
		dst = le.AppendUint64(dst, uint64(r.Since))
		dst = le.AppendUint32(dst, r.RTT)
		dst = le.AppendUint16(dst, r.Metric)
		dst = le.AppendUint16(dst, r.Seqno)
		var flags byte
		if r.Up {
			flags |= routeUp
		}
		if r.Direct {
			flags |= routeDirect
		}
		dst = append(dst, r.Hops, flags, 0, 0)
	}
	return dst
}

// ParseRoutes decodes a ROUTES reply.
func ParseRoutes(b []byte) ([]Route, error) {
	r := proto.NewReader(b, "ROUTES reply")
	n := uint64(r.U32("count"))
	// Rows are fixed-size: the count is checked against the body before
	// anything is allocated.
	if n > MaxRoutes || n*RouteSize > uint64(r.Len()) {
		r.Fail(proto.CodeField, "route count %d does not fit a body of %d bytes (limit %d)", n, len(b), MaxRoutes)
		return nil, r.Err()
	}
	rs := make([]Route, n)
	for i := range rs {
		x := &rs[i]
		x.ID = r.U64("node id")
		x.NextHop = r.U64("next hop")
		x.Alt = r.U64("alternate")
		x.Since = int64(r.U64("since"))
		x.RTT = r.U32("rtt")
		x.Metric = r.U16("metric")
		x.Seqno = r.U16("seqno")
		x.Hops = r.U8("hops")
		flags := r.U8("flags")
		r.Zero(2, "reserved")
		x.Up, x.Direct = flags&routeUp != 0, flags&routeDirect != 0
		switch {
		case flags&^(routeUp|routeDirect) != 0:
			r.Fail(proto.CodeField, "route %d: unknown flags %#02x", i, flags)
		case x.ID == 0:
			r.Fail(proto.CodeField, "route %d: node id 0", i)
		case x.Direct && !x.Up:
			r.Fail(proto.CodeField, "route %d: direct but not up", i)
		case x.Direct && x.NextHop != x.ID:
			r.Fail(proto.CodeField, "route %d: direct to node %d with next hop %d", i, x.ID, x.NextHop)
		}
	}
	return rs, r.Err()
}
