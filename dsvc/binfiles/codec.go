package binfiles

import (
	"encoding/binary"
	"net/netip"

	"github.com/corralhq/corral/dsvc"
)

// Bucket names and keys of a container file (FORMAT.md).
var (
	bucketMeta = []byte("meta")
	bucketCIP  = []byte("cip") // network: cip (4) → record value
	bucketCID  = []byte("cid") // network: len(cid) (1) ‖ cid ‖ cip (4) → empty
	bucketDT   = []byte("dt")  // dhcptab: type (1) ‖ key → record value
	keyMeta    = []byte("container")
)

// formatVersion is the first byte of every stored value. A reader refuses
// any other value with ErrInternal; a new layout gets a new number and a
// new container version.
const formatVersion = 1

// Container kinds in the meta value.
const (
	kindDHCPTab = 't'
	kindNetwork = 'n'
)

// Fixed part of a network record value: version, sig, flags, sip, lease.
const dnFixedLen = 1 + 8 + 1 + 4 + 4

// Fixed part of a dhcptab record value: version, sig.
const dtFixedLen = 1 + 8

// meta is the container's description, stored under meta/container.
type meta struct {
	kind byte
	net  netip.Prefix // network containers only
}

func encodeMeta(m meta) []byte {
	if m.kind == kindDHCPTab {
		return []byte{formatVersion, kindDHCPTab}
	}
	a := m.net.Addr().As4()
	return []byte{formatVersion, kindNetwork, a[0], a[1], a[2], a[3], byte(m.net.Bits())}
}

func decodeMeta(b []byte) (meta, error) {
	switch {
	case len(b) < 2 || b[0] != formatVersion:
		return meta{}, corrupt("container meta: version or length")
	case b[1] == kindDHCPTab && len(b) == 2:
		return meta{kind: kindDHCPTab}, nil
	case b[1] == kindNetwork && len(b) == 7:
		bits := int(b[6])
		if bits > 32 {
			return meta{}, corrupt("container meta: prefix length %d", bits)
		}
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte(b[2:6])), bits)
		if p.Masked() != p {
			return meta{}, corrupt("container meta: %v has host bits", p)
		}
		return meta{kind: kindNetwork, net: p}, nil
	}
	return meta{}, corrupt("container meta: kind %#x, %d bytes", b[1], len(b))
}

func cipKey(a netip.Addr) []byte {
	k := a.As4()
	return k[:]
}

// cidPrefix is the start of every CID index key of cid.
func cidPrefix(cid []byte) []byte {
	k := make([]byte, 0, 1+len(cid)+4)
	k = append(k, byte(len(cid)))
	return append(k, cid...)
}

func cidKey(cid []byte, cip netip.Addr) []byte {
	return append(cidPrefix(cid), cipKey(cip)...)
}

// encodeDN is the stored value of r; the CIP is the bucket key. The
// framework has validated the lengths; encodeDN truncates nothing and
// trusts them (a longer field would not decode, so Add refuses it first).
func encodeDN(r *dsvc.DNRecord) []byte {
	b := make([]byte, dnFixedLen, dnFixedLen+3+len(r.CID)+len(r.Macro)+len(r.Comment))
	b[0] = formatVersion
	binary.BigEndian.PutUint64(b[1:9], r.Sig)
	b[9] = byte(r.Flags)
	sip := [4]byte{}
	if r.SIP.Is4() {
		sip = r.SIP.As4()
	}
	copy(b[10:14], sip[:])
	binary.BigEndian.PutUint32(b[14:18], r.Lease)
	b = append(b, byte(len(r.CID)))
	b = append(b, r.CID...)
	b = append(b, byte(len(r.Macro)))
	b = append(b, r.Macro...)
	b = append(b, byte(len(r.Comment)))
	b = append(b, r.Comment...)
	return b
}

// decodeDN decodes the record stored under key k with value v. Anything
// that encodeDN cannot have written is ErrInternal. The result shares no
// memory with k or v (bbolt's slices die with the transaction).
func decodeDN(k, v []byte) (dsvc.DNRecord, error) {
	var r dsvc.DNRecord
	if len(k) != 4 {
		return r, corrupt("network record key of %d bytes", len(k))
	}
	if len(v) < dnFixedLen || v[0] != formatVersion {
		return r, corrupt("network record %v: version or length", netip.AddrFrom4([4]byte(k)))
	}
	r.CIP = netip.AddrFrom4([4]byte(k))
	r.Sig = binary.BigEndian.Uint64(v[1:9])
	r.Flags = dsvc.DNFlags(v[9])
	r.SIP = netip.AddrFrom4([4]byte(v[10:14]))
	r.Lease = binary.BigEndian.Uint32(v[14:18])
	rest := v[dnFixedLen:]
	field := func(max int) ([]byte, bool) {
		if len(rest) < 1 || int(rest[0]) > max || len(rest) < 1+int(rest[0]) {
			return nil, false
		}
		f := rest[1 : 1+int(rest[0])]
		rest = rest[1+int(rest[0]):]
		return f, true
	}
	cid, ok1 := field(dsvc.MaxCIDLen)
	macro, ok2 := field(dsvc.MaxKeyLen)
	comment, ok3 := field(dsvc.MaxCommentLen)
	switch {
	case !ok1 || !ok2 || !ok3 || len(rest) != 0:
		return r, corrupt("network record %v: field lengths", r.CIP)
	case len(cid) == 0:
		return r, corrupt("network record %v: empty client id", r.CIP)
	case r.Flags&^dsvc.DNAll != 0:
		return r, corrupt("network record %v: flags %#x", r.CIP, r.Flags)
	case r.Sig == 0:
		return r, corrupt("network record %v: signature 0", r.CIP)
	}
	r.CID = append([]byte(nil), cid...)
	r.Macro = string(macro)
	r.Comment = string(comment)
	return r, nil
}

func dtKey(typ dsvc.DTType, key string) []byte {
	k := make([]byte, 0, 1+len(key))
	k = append(k, byte(typ))
	return append(k, key...)
}

func encodeDT(r *dsvc.DTRecord) []byte {
	b := make([]byte, dtFixedLen, dtFixedLen+len(r.Value))
	b[0] = formatVersion
	binary.BigEndian.PutUint64(b[1:9], r.Sig)
	return append(b, r.Value...)
}

func decodeDT(k, v []byte) (dsvc.DTRecord, error) {
	var r dsvc.DTRecord
	if len(k) < 2 || len(k) > 1+dsvc.MaxKeyLen || (k[0] != byte(dsvc.DTSymbol) && k[0] != byte(dsvc.DTMacro)) {
		return r, corrupt("dhcptab record key of %d bytes", len(k))
	}
	if len(v) < dtFixedLen || v[0] != formatVersion {
		return r, corrupt("dhcptab record %q: version or length", k[1:])
	}
	r.Type = dsvc.DTType(k[0])
	r.Key = string(k[1:])
	r.Sig = binary.BigEndian.Uint64(v[1:9])
	if r.Sig == 0 {
		return r, corrupt("dhcptab record %q: signature 0", r.Key)
	}
	r.Value = string(v[dtFixedLen:])
	return r, nil
}

func corrupt(format string, args ...any) error {
	return dsvc.Errorf(dsvc.CodeInternal, "corrupt container: "+format, args...)
}
