package peer

import (
	"encoding/binary"

	"github.com/corralhq/corral/proto"
)

// Specification constants: ROUTES and SEQNO_REQ (since version 3).
const (
	// MaxRouteEntries is the most entries one ROUTES carries; a larger
	// table goes in several frames.
	MaxRouteEntries = 1024
	// RoutesHeaderSize and RouteEntrySize: a ROUTES body is the header and
	// count entries.
	RoutesHeaderSize = 4
	RouteEntrySize   = 16
	// SeqnoReqSize is the size of a SEQNO_REQ body.
	SeqnoReqSize = 16
	// MetricInf in an entry retracts the route.
	MetricInf uint16 = 0xFFFF
)

// RouteEntry is one advert: the sender reaches Origin at Metric (the sum of
// link costs, each at least 1) over Hops links; Seqno is Origin's. Metric
// MetricInf retracts the route, with Hops 0.
type RouteEntry struct {
	Origin uint64
	Seqno  uint16
	Metric uint16
	Hops   uint8
}

// AppendRoutes appends a ROUTES body carrying es. The caller keeps es to
// 1..MaxRouteEntries entries in ascending Origin order; ParseRoutes
// refuses anything else.
func AppendRoutes(dst []byte, es []RouteEntry) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint16(dst, uint16(len(es)))
	dst = append(dst, 0, 0)
	for _, e := range es {
		dst = le.AppendUint64(dst, e.Origin)
		dst = le.AppendUint16(dst, e.Seqno)
		dst = le.AppendUint16(dst, e.Metric)
		dst = append(dst, e.Hops, 0, 0, 0)
	}
	return dst
}

// ParseRoutes decodes a ROUTES body. It refuses (CodeTooLarge) a count
// over MaxRouteEntries before reading the entries, and (CodeField) an
// empty body, truncation, bytes after the last entry, non-zero reserved
// bytes, origin 0, origins out of ascending order, and metrics no route
// can have: a finite metric below the hop count, metric 0 at any distance
// but 0 hops (and the reverse), a route at or beyond proto.HopLimit, a
// retraction with hops.
func ParseRoutes(b []byte) ([]RouteEntry, error) {
	r := proto.NewReader(b, "ROUTES")
	n := int(r.U16("count"))
	r.Zero(2, "header")
	switch {
	case n > MaxRouteEntries:
		r.Fail(proto.CodeTooLarge, "%d entries, limit %d", n, MaxRouteEntries)
		return nil, r.Err()
	case n == 0:
		r.Fail(proto.CodeField, "no entries")
	}
	if r.Len() < n*RouteEntrySize {
		r.Bytes(n*RouteEntrySize, "entries") // records the truncation
		return nil, r.Err()
	}
	es := make([]RouteEntry, 0, n)
	for i := range n {
		var e RouteEntry
		e.Origin = r.U64("origin")
		e.Seqno = r.U16("seqno")
		e.Metric = r.U16("metric")
		e.Hops = r.U8("hops")
		r.Zero(3, "entry padding")
		switch {
		case e.Origin == 0:
			r.Fail(proto.CodeField, "entry %d: origin 0", i)
		case i > 0 && e.Origin <= es[i-1].Origin:
			r.Fail(proto.CodeField, "entry %d: origin %d not above %d", i, e.Origin, es[i-1].Origin)
		case e.Metric == MetricInf && e.Hops != 0:
			r.Fail(proto.CodeField, "entry %d: retraction with %d hops", i, e.Hops)
		case e.Metric == MetricInf:
		case e.Hops >= proto.HopLimit:
			r.Fail(proto.CodeField, "entry %d: %d hops, at or beyond the hop limit %d", i, e.Hops, proto.HopLimit)
		case (e.Hops == 0) != (e.Metric == 0) || e.Metric < uint16(e.Hops):
			r.Fail(proto.CodeField, "entry %d: metric %d over %d hops", i, e.Metric, e.Hops)
		}
		es = append(es, e)
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return es, nil
}

// SeqnoReq asks for an advert of Origin with seqno Seqno or newer. A node
// that has none forwards it towards Origin with HopCount one less, while
// HopCount is above 1.
type SeqnoReq struct {
	Origin   uint64
	Seqno    uint16
	HopCount uint8
}

// AppendSeqnoReq appends the body of q.
func AppendSeqnoReq(dst []byte, q SeqnoReq) []byte {
	le := binary.LittleEndian
	dst = le.AppendUint64(dst, q.Origin)
	dst = le.AppendUint16(dst, q.Seqno)
	return append(dst, q.HopCount, 0, 0, 0, 0, 0)
}

// ParseSeqnoReq decodes a SEQNO_REQ body; origin 0, hop count 0 and
// non-zero reserved bytes are CodeField.
func ParseSeqnoReq(b []byte) (SeqnoReq, error) {
	r := proto.NewReader(b, "SEQNO_REQ")
	var q SeqnoReq
	q.Origin = r.U64("origin")
	q.Seqno = r.U16("seqno")
	q.HopCount = r.U8("hop count")
	r.Zero(1, "reserved")
	r.Zero(4, "reserved u32")
	switch {
	case q.Origin == 0:
		r.Fail(proto.CodeField, "origin 0")
	case q.HopCount == 0:
		r.Fail(proto.CodeField, "hop count 0")
	}
	return q, r.Err()
}
