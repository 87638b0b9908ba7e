package mesh

import (
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/transport"
)

// mux dispatches frames to handlers by opcode range. It is filled before
// Run and read-only after, so dispatch takes no lock.
type mux struct {
	ranges []opRange
}

type opRange struct {
	lo, hi uint16
	h      Handler
}

func (x *mux) add(lo, hi uint16, h Handler) {
	if lo > hi || h == nil {
		panic("mesh: bad handler range")
	}
	for _, r := range x.ranges {
		if lo <= r.hi && r.lo <= hi {
			panic("mesh: overlapping handler ranges")
		}
	}
	x.ranges = append(x.ranges, opRange{lo, hi, h})
}

func (x *mux) dispatch(l *transport.Link, f *proto.Frame) error {
	for _, r := range x.ranges {
		if f.Opcode >= r.lo && f.Opcode <= r.hi {
			return r.h(l, f)
		}
	}
	return proto.Errorf(proto.CodeOpcode, "peer opcode %#04x has no handler", f.Opcode)
}
