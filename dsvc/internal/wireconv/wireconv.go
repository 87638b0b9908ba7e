package wireconv

import (
	"errors"
	"net/netip"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
)

// DT converts a dhcptab record to its wire form.
func DT(r *dsvc.DTRecord) wire.DSDTRecord {
	return wire.DSDTRecord{Key: r.Key, Type: byte(r.Type), Value: r.Value, Sig: r.Sig}
}

// FromDT converts a wire dhcptab record.
func FromDT(r *wire.DSDTRecord) dsvc.DTRecord {
	return dsvc.DTRecord{Key: r.Key, Type: dsvc.DTType(r.Type), Value: r.Value, Sig: r.Sig}
}

// DN converts a network record to its wire form. An address that is not
// IPv4 (only the zero Addr of a query target can be) is sent as 0.0.0.0.
func DN(r *dsvc.DNRecord) wire.DSDNRecord {
	return wire.DSDNRecord{CID: r.CID, Flags: uint8(r.Flags), CIP: v4(r.CIP), SIP: v4(r.SIP),
		Lease: r.Lease, Macro: r.Macro, Comment: r.Comment, Sig: r.Sig}
}

// FromDN converts a wire network record.
func FromDN(r *wire.DSDNRecord) dsvc.DNRecord {
	return dsvc.DNRecord{CID: r.CID, Flags: dsvc.DNFlags(r.Flags), CIP: netip.AddrFrom4(r.CIP),
		SIP: netip.AddrFrom4(r.SIP), Lease: r.Lease, Macro: r.Macro, Comment: r.Comment, Sig: r.Sig}
}

func v4(a netip.Addr) [4]byte {
	if a.Is4() {
		return a.As4()
	}
	return [4]byte{}
}

// DTs converts records for the wire.
func DTs(rs []dsvc.DTRecord) []wire.DSDTRecord {
	out := make([]wire.DSDTRecord, len(rs))
	for i := range rs {
		out[i] = DT(&rs[i])
	}
	return out
}

// FromDTs converts wire records.
func FromDTs(rs []wire.DSDTRecord) []dsvc.DTRecord {
	out := make([]dsvc.DTRecord, len(rs))
	for i := range rs {
		out[i] = FromDT(&rs[i])
	}
	return out
}

// DNs converts records for the wire.
func DNs(rs []dsvc.DNRecord) []wire.DSDNRecord {
	out := make([]wire.DSDNRecord, len(rs))
	for i := range rs {
		out[i] = DN(&rs[i])
	}
	return out
}

// FromDNs converts wire records.
func FromDNs(rs []wire.DSDNRecord) []dsvc.DNRecord {
	out := make([]dsvc.DNRecord, len(rs))
	for i := range rs {
		out[i] = FromDN(&rs[i])
	}
	return out
}

// Prefix converts a network for the wire; a prefix of unknown length
// (Bits() == -1) is sent with wire.PrefixBitsUnknown.
func Prefix(p netip.Prefix) wire.DSPrefix {
	bits := uint8(wire.PrefixBitsUnknown)
	if p.Bits() >= 0 {
		bits = uint8(p.Bits())
	}
	return wire.DSPrefix{Addr: v4(p.Addr()), Bits: bits}
}

// FromPrefix converts a wire network; PrefixBitsUnknown gives a prefix of
// unknown length (Bits() == -1), as dsvc passes OpenDN one.
func FromPrefix(p wire.DSPrefix) netip.Prefix {
	a := netip.AddrFrom4(p.Addr)
	if p.Bits == wire.PrefixBitsUnknown {
		return netip.PrefixFrom(a, -1)
	}
	return netip.PrefixFrom(a, int(p.Bits))
}

// Kind converts a container kind for the wire.
func Kind(k dsvc.Kind) uint8 {
	switch k {
	case dsvc.DHCPTab:
		return wire.DSKindDHCPTab
	case dsvc.Network:
		return wire.DSKindNetwork
	}
	return wire.DSKindNone
}

// FromKind converts a wire container kind (0 for none).
func FromKind(k uint8) dsvc.Kind {
	switch k {
	case wire.DSKindDHCPTab:
		return dsvc.DHCPTab
	case wire.DSKindNetwork:
		return dsvc.Network
	}
	return 0
}

// Result is the wire result of err: Code 0 for nil, the dsvc code of a
// *dsvc.Error (CodeInternal for any other error) with its message.
func Result(err error, index uint64) wire.DSResult {
	if err == nil {
		return wire.DSResult{Index: index}
	}
	msg := err.Error()
	var e *dsvc.Error
	if errors.As(err, &e) {
		msg = e.Detail // the code and the op travel as the code
	}
	if len(msg) > wire.DSMaxMessage {
		msg = msg[:wire.DSMaxMessage]
	}
	return wire.DSResult{Code: uint8(dsvc.CodeOf(err)), Index: index, Message: msg}
}

// Err is the error of a wire result: nil for Code 0, else a *dsvc.Error
// with the code and the agent's message.
func Err(op string, r wire.DSResult) error {
	if r.Code == 0 {
		return nil
	}
	return &dsvc.Error{Code: dsvc.Code(r.Code), Op: op, Detail: r.Message}
}

// FromProto maps a protocol failure (an ABORT, a closed link) to the dsvc
// code a caller can act on: the agent busy (try again), or unavailable.
func FromProto(op string, err error) error {
	var pe *proto.Error
	if errors.As(err, &pe) && pe.Code == proto.CodeTryAgain {
		return &dsvc.Error{Code: dsvc.CodeBusy, Op: op, Detail: "agent busy", Err: err}
	}
	return &dsvc.Error{Code: dsvc.CodeUnavailable, Op: op, Detail: "cluster agent", Err: err}
}
