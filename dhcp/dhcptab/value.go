package dhcptab

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// width returns the octets of one value of a number type.
func (s *Symbol) width() int {
	switch s.Type {
	case NUMBER:
		return s.Granularity
	case UNUMBER8, SNUMBER8:
		return 1
	case UNUMBER16, SNUMBER16:
		return 2
	case UNUMBER32, SNUMBER32:
		return 4
	case UNUMBER64, SNUMBER64:
		return 8
	}
	return 0
}

// per returns the values per item: Granularity, at least 1; a NUMBER's
// items are single values (its Granularity is the width).
func (s *Symbol) per() int {
	if s.Type == NUMBER || s.Granularity < 1 {
		return 1
	}
	return s.Granularity
}

// Encode returns the option bytes of raw, a value as written in a macro
// (Entry.Value), checked against the symbol's type, granularity and
// maximum: an IP list as 4-octet addresses, numbers big-endian at their
// width, ASCII as its characters, OCTET from hex. BOOLEAN symbols take no
// value (use Op Flag).
func (s *Symbol) Encode(raw string) ([]byte, error) {
	var out []byte
	switch {
	case s.Type == BOOLEAN:
		return nil, fmt.Errorf("%w: a BOOLEAN takes no value", ErrBadValue)
	case s.Type == ASCII:
		v, err := unquote(raw)
		if err != nil {
			return nil, err
		}
		if v == "" {
			return nil, fmt.Errorf("%w: empty string", ErrBadValue)
		}
		if s.Maximum > 0 && len(v) > s.Maximum {
			return nil, fmt.Errorf("%w: %d characters, at most %d", ErrBadValue, len(v), s.Maximum)
		}
		out = []byte(v)
	case s.Type == IP:
		f := fields(raw)
		for _, a := range f {
			ip, err := netip.ParseAddr(a)
			if err != nil || !ip.Is4() {
				return nil, fmt.Errorf("%w: %q is not an IPv4 address", ErrBadValue, a)
			}
			b := ip.As4()
			out = append(out, b[:]...)
		}
		if err := s.count(len(f)); err != nil {
			return nil, err
		}
	case s.Type.numeric():
		f := fields(raw)
		w := s.width()
		for _, n := range f {
			b, err := s.number(n, w)
			if err != nil {
				return nil, err
			}
			out = append(out, b...)
		}
		if err := s.count(len(f)); err != nil {
			return nil, err
		}
	case s.Type == OCTET:
		h := strings.Join(fields(raw), "")
		if len(h) > 2 && (h[:2] == "0x" || h[:2] == "0X") {
			h = h[2:]
		}
		b, err := hex.DecodeString(h)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not hex octets", ErrBadValue, raw)
		}
		if err := s.count(len(b)); err != nil {
			return nil, err
		}
		out = b
	default:
		return nil, fmt.Errorf("%w: type %s", ErrBadSymbol, s.Type)
	}
	if s.Context == ContextVendor && len(out) > 255 {
		return nil, fmt.Errorf("%w: %d octets, a vendor sub-option holds 255", ErrBadValue, len(out))
	}
	return out, nil
}

// count checks n values against Granularity (whole items) and Maximum.
func (s *Symbol) count(n int) error {
	per := s.per()
	switch {
	case n == 0:
		return fmt.Errorf("%w: no value", ErrBadValue)
	case n%per != 0:
		return fmt.Errorf("%w: %d values, not a multiple of the granularity %d", ErrBadValue, n, per)
	case s.Maximum > 0 && n/per > s.Maximum:
		return fmt.Errorf("%w: %d items, at most %d", ErrBadValue, n/per, s.Maximum)
	}
	return nil
}

// number encodes one decimal (or 0x hex) number at width w.
func (s *Symbol) number(n string, w int) ([]byte, error) {
	base, digits := 10, n
	if len(n) > 2 && (n[:2] == "0x" || n[:2] == "0X") {
		base, digits = 16, n[2:]
	}
	var u uint64
	if s.Type.signed() && base == 10 {
		v, err := strconv.ParseInt(digits, 10, w*8)
		if err != nil {
			return nil, fmt.Errorf("%w: %q is not a %d-bit signed number", ErrBadValue, n, w*8)
		}
		u = uint64(v)
	} else {
		v, err := strconv.ParseUint(digits, base, w*8)
		if err != nil || strings.HasPrefix(digits, "+") {
			return nil, fmt.Errorf("%w: %q is not a %d-bit number", ErrBadValue, n, w*8)
		}
		u = v
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], u)
	return b[8-w:], nil
}

// fields splits a list on blanks and commas.
func fields(raw string) []string {
	return strings.FieldsFunc(raw, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' })
}

// unquote returns an ASCII value: a "quoted string" with \-escapes, or an
// unquoted word as written.
func unquote(raw string) (string, error) {
	if !strings.HasPrefix(raw, `"`) {
		if strings.Contains(raw, `"`) {
			return "", fmt.Errorf("%w: stray quote in %q", ErrBadValue, raw)
		}
		return raw, nil
	}
	var b strings.Builder
	for i := 1; i < len(raw); i++ {
		c := raw[i]
		switch c {
		case '\\':
			i++
			if i == len(raw) {
				return "", fmt.Errorf("%w: backslash at the end of %q", ErrBadValue, raw)
			}
			b.WriteByte(raw[i])
		case '"':
			if i != len(raw)-1 {
				return "", fmt.Errorf("%w: text after the closing quote in %q", ErrBadValue, raw)
			}
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("%w: unterminated quote in %q", ErrBadValue, raw)
}
