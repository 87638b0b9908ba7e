package dhcptab

import (
	"fmt"
	"strconv"
	"strings"
)

// Type is the type of a symbol's value (dhcptab(4)).
type Type uint8

// The value types of dhcptab(4). NUMBER is the old form whose Granularity
// is the width in octets (1, 2, 4 or 8); the sized types carry their width
// in the name and Granularity counts values per item.
const (
	ASCII Type = iota + 1
	BOOLEAN
	IP
	OCTET
	NUMBER
	UNUMBER8
	UNUMBER16
	UNUMBER32
	UNUMBER64
	SNUMBER8
	SNUMBER16
	SNUMBER32
	SNUMBER64
)

var typeNames = [...]string{
	ASCII: "ASCII", BOOLEAN: "BOOLEAN", IP: "IP", OCTET: "OCTET", NUMBER: "NUMBER",
	UNUMBER8: "UNUMBER8", UNUMBER16: "UNUMBER16", UNUMBER32: "UNUMBER32", UNUMBER64: "UNUMBER64",
	SNUMBER8: "SNUMBER8", SNUMBER16: "SNUMBER16", SNUMBER32: "SNUMBER32", SNUMBER64: "SNUMBER64",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

func parseType(s string) (Type, bool) {
	for i, n := range typeNames {
		if n != "" && strings.EqualFold(n, s) {
			return Type(i), true
		}
	}
	return 0, false
}

// numeric reports whether t is one of the number types.
func (t Type) numeric() bool { return t >= NUMBER && t <= SNUMBER64 }

// signed reports whether t is a signed number type.
func (t Type) signed() bool { return t >= SNUMBER8 && t <= SNUMBER64 }

// Context says where a symbol's value goes.
type Context uint8

const (
	// ContextStandard symbols are the options of RFC 2132 that Solaris's
	// /etc/dhcp/inittab names; they are built in (Standard()).
	ContextStandard Context = iota + 1
	// ContextField symbols fill a fixed field of the BOOTP header (siaddr, sname,
	// file); Code is the field's byte offset.
	ContextField
	// ContextInternal symbols steer the server and are never sent (Include,
	// LeaseNeg, EchoVC).
	ContextInternal
	// ContextExtend symbols are standard options newer than inittab (codes
	// 77–127), defined in dhcptab.
	ContextExtend
	// ContextSite symbols are site-specific options (codes 128–254).
	ContextSite
	// ContextVendor symbols are sub-options of option 43 for the vendor classes
	// in Symbol.Vendor (codes 1–254).
	ContextVendor
)

var contextNames = [...]string{
	ContextStandard: "Standard", ContextField: "Field", ContextInternal: "Internal",
	ContextExtend: "Extend", ContextSite: "Site", ContextVendor: "Vendor",
}

func (c Context) String() string {
	if int(c) < len(contextNames) && contextNames[c] != "" {
		return contextNames[c]
	}
	return "Context(" + strconv.Itoa(int(c)) + ")"
}

// Limits of a symbol definition.
const (
	MaxGranularity = 255
	MaxMaximum     = 65535
	MaxNameLen     = 128 // dsvc.MaxKeyLen
)

// Symbol is a symbol definition: a name for an option with its type and
// size rules.
type Symbol struct {
	Name    string
	Context Context
	Vendor  []string // the vendor classes of a Vendor symbol, in the order written
	Code    uint8    // option code; Vendor: sub-option code; Field: byte offset
	Type    Type
	// Granularity is the number of values forming one item (IP,2: a list
	// of address pairs); 0 for BOOLEAN. For NUMBER it is the width in
	// octets.
	Granularity int
	// Maximum is the most items (ASCII: characters, OCTET: items of
	// Granularity octets); 0 is unbounded.
	Maximum int
}

// Value renders the definition as a dhcptab symbol record's value,
// "Context,Code,Type,Granularity,Maximum".
func (s Symbol) Value() string {
	ctx := s.Context.String()
	if s.Context == ContextVendor {
		ctx = "Vendor=" + strings.Join(s.Vendor, " ")
	}
	return fmt.Sprintf("%s,%d,%s,%d,%d", ctx, s.Code, s.Type, s.Granularity, s.Maximum)
}

// ParseSymbol parses a symbol record: name is its key and value
// "Context,Code,Type,Granularity,Maximum" with Context Extend, Site or
// Vendor=<class> <class>… (the contexts dhtadm lets a site define).
// Context and type names are case-insensitive.
func ParseSymbol(name, value string) (Symbol, error) {
	s := Symbol{Name: name}
	if err := checkName(name); err != nil {
		return s, err
	}
	f := strings.Split(value, ",")
	if len(f) != 5 {
		return s, fmt.Errorf("%w: %q: want Context,Code,Type,Granularity,Maximum", ErrSyntax, value)
	}
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	lo, hi := 0, 0
	switch ctx, classes, _ := strings.Cut(f[0], "="); {
	case strings.EqualFold(ctx, "Extend") && classes == "" && !strings.Contains(f[0], "="):
		s.Context, lo, hi = ContextExtend, 77, 127
	case strings.EqualFold(ctx, "Site") && classes == "" && !strings.Contains(f[0], "="):
		s.Context, lo, hi = ContextSite, 128, 254
	case strings.EqualFold(ctx, "Vendor"):
		s.Context, lo, hi = ContextVendor, 1, 254
		s.Vendor = strings.Fields(classes)
		if len(s.Vendor) == 0 {
			return s, fmt.Errorf("%w: Vendor= names no class", ErrBadSymbol)
		}
		for _, c := range s.Vendor {
			if !printable(c) || strings.ContainsAny(c, ",:=\"") {
				return s, fmt.Errorf("%w: vendor class %q", ErrBadSymbol, c)
			}
		}
	default:
		return s, fmt.Errorf("%w: context %q (want Extend, Site or Vendor=…)", ErrBadSymbol, f[0])
	}
	code, err := strconv.ParseUint(f[1], 10, 8)
	if err != nil || int(code) < lo || int(code) > hi {
		return s, fmt.Errorf("%w: code %q of a %s symbol must be %d–%d", ErrBadSymbol, f[1], s.Context, lo, hi)
	}
	s.Code = uint8(code)
	t, ok := parseType(f[2])
	if !ok {
		return s, fmt.Errorf("%w: type %q", ErrBadSymbol, f[2])
	}
	s.Type = t
	g, err := strconv.ParseUint(f[3], 10, 16)
	if err != nil || g > MaxGranularity {
		return s, fmt.Errorf("%w: granularity %q", ErrBadSymbol, f[3])
	}
	m, err := strconv.ParseUint(f[4], 10, 32)
	if err != nil || m > MaxMaximum {
		return s, fmt.Errorf("%w: maximum %q", ErrBadSymbol, f[4])
	}
	s.Granularity, s.Maximum = int(g), int(m)
	switch {
	case t == BOOLEAN && (g != 0 || m != 0):
		return s, fmt.Errorf("%w: a BOOLEAN has granularity 0 and maximum 0", ErrBadSymbol)
	case t == NUMBER && g != 1 && g != 2 && g != 4 && g != 8:
		return s, fmt.Errorf("%w: a NUMBER's granularity is its width: 1, 2, 4 or 8", ErrBadSymbol)
	}
	return s, nil
}

// checkName refuses names that cannot appear in a macro value.
func checkName(name string) error {
	if name == "" || len(name) > MaxNameLen || !printable(name) ||
		strings.ContainsAny(name, " \t=:\"\\,") {
		return fmt.Errorf("%w: name %q", ErrSyntax, name)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Symbol names the server itself interprets.
const (
	SymInclude  = "Include"  // Include=<macro>: expand that macro here
	SymLeaseNeg = "LeaseNeg" // the client may negotiate its lease time
	SymEchoVC   = "EchoVC"   // echo the client's class identifier (option 60)
	SymHostname = "Hostname" // valueless: send the client's name from the name service
	SymLeaseTim = "LeaseTim"
	SymBootFile = "BootFile"
	SymBootSrvA = "BootSrvA"
	SymBootSrvN = "BootSrvN"
)

// Offsets of the BOOTP header fields that Field symbols fill.
const (
	fieldSiaddr = 20
	fieldSname  = 44
	fieldFile   = 108
)

// Standard returns the built-in symbols: the options of Solaris's
// /etc/dhcp/inittab with their codes, types, granularities and maxima,
// its BOOTP header fields and its internal symbols. A fresh slice each
// call.
func Standard() []Symbol {
	std := func(name string, code uint8, t Type, g, m int) Symbol {
		return Symbol{Name: name, Context: ContextStandard, Code: code, Type: t, Granularity: g, Maximum: m}
	}
	return []Symbol{
		std("Subnet", 1, IP, 1, 1),
		std("UTCoffst", 2, SNUMBER32, 1, 1),
		std("Router", 3, IP, 1, 0),
		std("Timeserv", 4, IP, 1, 0),
		std("IEN116ns", 5, IP, 1, 0),
		std("DNSserv", 6, IP, 1, 0),
		std("Logserv", 7, IP, 1, 0),
		std("Cookie", 8, IP, 1, 0),
		std("Lprserv", 9, IP, 1, 0),
		std("Impress", 10, IP, 1, 0),
		std("Resource", 11, IP, 1, 0),
		std("Hostname", 12, ASCII, 1, 0),
		std("Bootsize", 13, UNUMBER16, 1, 1),
		std("Dumpfile", 14, ASCII, 1, 0),
		std("DNSdmain", 15, ASCII, 1, 0),
		std("Swapserv", 16, IP, 1, 1),
		std("Rootpath", 17, ASCII, 1, 0),
		std("ExtendP", 18, ASCII, 1, 0),
		std("IpFwdF", 19, UNUMBER8, 1, 1),
		std("NLrouteF", 20, UNUMBER8, 1, 1),
		std("PFilter", 21, IP, 2, 0),
		std("MaxIpSiz", 22, UNUMBER16, 1, 1),
		std("IpTTL", 23, UNUMBER8, 1, 1),
		std("PathTO", 24, UNUMBER32, 1, 1),
		std("PathTbl", 25, UNUMBER16, 1, 0),
		std("MTU", 26, UNUMBER16, 1, 1),
		std("SameMtuF", 27, UNUMBER8, 1, 1),
		std("Broadcst", 28, IP, 1, 1),
		std("MaskDscF", 29, UNUMBER8, 1, 1),
		std("MaskSupF", 30, UNUMBER8, 1, 1),
		std("RDiscvyF", 31, UNUMBER8, 1, 1),
		std("RSolictS", 32, IP, 1, 1),
		std("StaticRt", 33, IP, 2, 0),
		std("TrailerF", 34, UNUMBER8, 1, 1),
		std("ArpTimeO", 35, UNUMBER32, 1, 1),
		std("EthEncap", 36, UNUMBER8, 1, 1),
		std("TcpTTL", 37, UNUMBER8, 1, 1),
		std("TcpKaInt", 38, UNUMBER32, 1, 1),
		std("TcpKaGbF", 39, UNUMBER8, 1, 1),
		std("NISdmain", 40, ASCII, 1, 0),
		std("NISservs", 41, IP, 1, 0),
		std("NTPservs", 42, IP, 1, 0),
		std("NetBNms", 44, IP, 1, 0),
		std("NetBDsts", 45, IP, 1, 0),
		std("NetBNdT", 46, UNUMBER8, 1, 1),
		std("NetBScop", 47, ASCII, 1, 0),
		std("XFontSrv", 48, IP, 1, 0),
		std("XDispMgr", 49, IP, 1, 0),
		std("LeaseTim", 51, UNUMBER32, 1, 1),
		std("Message", 56, ASCII, 1, 0),
		std("T1Time", 58, UNUMBER32, 1, 1),
		std("T2Time", 59, UNUMBER32, 1, 1),
		std("NW_dmain", 62, ASCII, 1, 0),
		std("NWIPOpts", 63, OCTET, 1, 128),
		std("NIS+dom", 64, ASCII, 1, 0),
		std("NIS+serv", 65, IP, 1, 0),
		std("TFTPsrvN", 66, ASCII, 1, 64),
		std("OptBootF", 67, ASCII, 1, 128),
		std("MblIPAgt", 68, IP, 1, 0),
		std("SMTPserv", 69, IP, 1, 0),
		std("POP3serv", 70, IP, 1, 0),
		std("NNTPserv", 71, IP, 1, 0),
		std("WWWservs", 72, IP, 1, 0),
		std("Fingersv", 73, IP, 1, 0),
		std("IRCservs", 74, IP, 1, 0),
		std("STservs", 75, IP, 1, 0),
		std("STDAservs", 76, IP, 1, 0),
		std("UserClas", 77, ASCII, 1, 0),
		std("SLP_DA", 78, OCTET, 1, 0),
		std("SLP_SS", 79, OCTET, 1, 0),
		std("AgentOpt", 82, OCTET, 1, 0),
		std("FQDN", 89, OCTET, 1, 0),
		{Name: SymBootSrvA, Context: ContextField, Code: fieldSiaddr, Type: IP, Granularity: 1, Maximum: 1},
		{Name: SymBootSrvN, Context: ContextField, Code: fieldSname, Type: ASCII, Granularity: 1, Maximum: 63},
		{Name: SymBootFile, Context: ContextField, Code: fieldFile, Type: ASCII, Granularity: 1, Maximum: 127},
		{Name: SymInclude, Context: ContextInternal, Code: 32, Type: ASCII, Granularity: 1, Maximum: MaxNameLen},
		{Name: SymLeaseNeg, Context: ContextInternal, Code: 254, Type: BOOLEAN},
		{Name: SymEchoVC, Context: ContextInternal, Code: 255, Type: BOOLEAN},
	}
}
