package dsvc

import (
	"bytes"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseNetwork parses a network container's admin name: a dotted IPv4
// network address, optionally with a prefix length ("10.0.0.0",
// "10.0.0.0/24"). bits is -1 without one. Refused (ErrInval): anything not
// four decimal octets, 255.255.255.255 (as Solaris), a prefix length
// outside 1..32, and host bits set under the prefix.
func ParseNetwork(name string) (addr netip.Addr, bits int, err error) {
	s, lenStr, hasLen := strings.Cut(name, "/")
	addr, err = netip.ParseAddr(s)
	if err != nil || !addr.Is4() || addr.String() != s {
		return netip.Addr{}, 0, Errorf(CodeInval, "network %q is not a dotted IPv4 address", name)
	}
	if addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return netip.Addr{}, 0, Errorf(CodeInval, "network 255.255.255.255")
	}
	bits = -1
	if hasLen {
		n, err := strconv.Atoi(lenStr)
		if err != nil || n < 1 || n > 32 || strconv.Itoa(n) != lenStr {
			return netip.Addr{}, 0, Errorf(CodeInval, "network %q: prefix length must be 1..32", name)
		}
		bits = n
		if p := netip.PrefixFrom(addr, n); p.Masked().Addr() != addr {
			return netip.Addr{}, 0, Errorf(CodeInval, "network %q has host bits set (the network is %s)", name, p.Masked())
		}
	}
	return addr, bits, nil
}

// adminName checks a container name of kind and returns its canonical
// admin form ("dhcptab", or the dotted network without prefix length) and
// the prefix length (-1 if not given).
func adminName(kind Kind, name string) (string, int, error) {
	switch kind {
	case DHCPTab:
		if name != "dhcptab" {
			return "", 0, Errorf(CodeInval, "the dhcptab container is named \"dhcptab\", not %q", name)
		}
		return name, -1, nil
	case Network:
		a, bits, err := ParseNetwork(name)
		if err != nil {
			return "", 0, err
		}
		return a.String(), bits, nil
	}
	return "", 0, Errorf(CodeInval, "container kind %d", kind)
}

// checkText checks a key-like field: at most max bytes of printable ASCII
// and no trailing space; empty allowed only with allowEmpty.
func checkText(field, s string, max int, allowEmpty bool) error {
	if s == "" {
		if allowEmpty {
			return nil
		}
		return Errorf(CodeInval, "empty %s", field)
	}
	if len(s) > max {
		return Errorf(CodeInval, "%s of %d bytes (at most %d)", field, len(s), max)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return Errorf(CodeInval, "%s has byte %#02x at %d (printable ASCII only)", field, s[i], i)
		}
	}
	if s[len(s)-1] == ' ' {
		return Errorf(CodeInval, "%s %q ends in a space", field, s)
	}
	return nil
}

// ValidateDT checks a dhcptab record as the framework does before Add and
// Modify (full) or for the record that names one (key and type only).
func ValidateDT(r *DTRecord, full bool) error {
	if r == nil {
		return Errorf(CodeInval, "nil record")
	}
	if err := checkText("key", r.Key, MaxKeyLen, false); err != nil {
		return err
	}
	if r.Type != DTSymbol && r.Type != DTMacro {
		return Errorf(CodeInval, "record type %q (want 's' or 'm')", rune(r.Type))
	}
	if full {
		for i := 0; i < len(r.Value); i++ {
			if c := r.Value[i]; c == '\n' || c == '\r' || c == 0 {
				return Errorf(CodeInval, "value has control byte %#02x at %d", c, i)
			}
		}
	}
	return nil
}

// ValidateDN checks a network record against its container's network, as
// ValidateDT.
func ValidateDN(r *DNRecord, net netip.Prefix, full bool) error {
	if r == nil {
		return Errorf(CodeInval, "nil record")
	}
	if !r.CIP.Is4() {
		return Errorf(CodeInval, "client IP %v is not IPv4", r.CIP)
	}
	if !net.Contains(r.CIP) {
		return Errorf(CodeInval, "client IP %v is not in network %v", r.CIP, net)
	}
	if !full {
		return nil
	}
	if n := len(r.CID); n < 1 || n > MaxCIDLen {
		return Errorf(CodeInval, "client id of %d octets (1..%d)", n, MaxCIDLen)
	}
	if r.Flags&^DNAll != 0 {
		return Errorf(CodeInval, "flags %#02x outside %#02x", uint8(r.Flags), uint8(DNAll))
	}
	if !r.SIP.Is4() {
		return Errorf(CodeInval, "server IP %v is not IPv4", r.SIP)
	}
	if err := checkText("macro", r.Macro, MaxKeyLen, true); err != nil {
		return err
	}
	if len(r.Comment) > MaxCommentLen {
		return Errorf(CodeInval, "comment of %d bytes (at most %d)", len(r.Comment), MaxCommentLen)
	}
	for i := 0; i < len(r.Comment); i++ {
		if c := r.Comment[i]; c < 0x20 || c == 0x7f {
			return Errorf(CodeInval, "comment has control byte %#02x at %d", c, i)
		}
	}
	return nil
}

// MatchDT reports whether r matches target under q (lookup_dt's test).
func MatchDT(q Query, r, target *DTRecord) bool {
	if q&DTQKey != 0 && (r.Key == target.Key) != q.IsEq(DTQKey) {
		return false
	}
	if q&DTQType != 0 && (r.Type == target.Type) != q.IsEq(DTQType) {
		return false
	}
	return true
}

var dnFlagQueries = [...]struct {
	q Query
	f DNFlags
}{
	{DNQFDynamic, DNDynamic}, // compares no bit: Eq selects all, Neq none
	{DNQFAutomatic, DNAutomatic},
	{DNQFManual, DNManual},
	{DNQFUnusable, DNUnusable},
	{DNQFBootpOnly, DNBootpOnly},
}

// MatchDN reports whether r matches target under q (lookup_dn's
// record_match, flags one bit each).
func MatchDN(q Query, r, target *DNRecord) bool {
	test := func(f Query, eq bool) bool { return q&f == 0 || eq == q.IsEq(f) }
	if !test(DNQCID, bytes.Equal(r.CID, target.CID)) ||
		!test(DNQCIP, r.CIP == target.CIP) ||
		!test(DNQSIP, r.SIP == target.SIP) ||
		!test(DNQLease, r.Lease == target.Lease) ||
		!test(DNQMacro, r.Macro == target.Macro) {
		return false
	}
	for _, fq := range dnFlagQueries {
		if !test(fq.q, r.Flags&fq.f == target.Flags&fq.f) {
			return false
		}
	}
	return true
}

func checkQuery(q Query, all Query, hasTarget bool) error {
	if !q.Valid(all) {
		return Errorf(CodeInval, "query %#08x uses bits outside %#04x", uint32(q), uint32(all))
	}
	if q&all != 0 && !hasTarget {
		return Errorf(CodeInval, "query selects fields but has no target record")
	}
	return nil
}

func flagsString(f OpenFlags) string { return fmt.Sprintf("%#02x", uint8(f)) }
