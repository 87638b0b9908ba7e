package dhcptab

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// records parses lines "Key s|m Value" (the files module's layout).
func records(t testing.TB, text string) []dsvc.DTRecord {
	t.Helper()
	var out []dsvc.DTRecord
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.SplitN(l, " ", 3)
		if len(f) != 3 || len(f[1]) != 1 {
			t.Fatalf("bad record line %q", l)
		}
		out = append(out, dsvc.DTRecord{Key: f[0], Type: dsvc.DTType(f[1][0]), Value: f[2]})
	}
	return out
}

func build(t testing.TB, text string) (*Table, []error) {
	t.Helper()
	return Build(records(t, text))
}

func mustBuild(t testing.TB, text string) *Table {
	t.Helper()
	tab, errs := build(t, text)
	for _, e := range errs {
		t.Errorf("Build: %v", e)
	}
	return tab
}

func ip(s string) []byte {
	var a, b, c, d byte
	fmt.Sscanf(s, "%d.%d.%d.%d", &a, &b, &c, &d)
	return []byte{a, b, c, d}
}

func wantOpt(t *testing.T, o Options, code uint8, want []byte) {
	t.Helper()
	got, ok := o.Get(code)
	switch {
	case want == nil && ok:
		t.Errorf("option %d = %x, want absent", code, got)
	case want != nil && !ok:
		t.Errorf("option %d absent, want %x", code, want)
	case !bytes.Equal(got, want):
		t.Errorf("option %d = %x, want %x", code, got, want)
	}
}

// findErr returns the error of key (and symbol) wrapping target.
func findErr(errs []error, key, sym string, target error) *Error {
	for _, e := range errs {
		var te *Error
		if errors.As(e, &te) && te.Key == key && te.Symbol == sym && errors.Is(e, target) {
			return te
		}
	}
	return nil
}

var cid = []byte{0x01, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}

// One symbol (Router) at every level: each later level overrides.
func TestPrecedence(t *testing.T) {
	tab := mustBuild(t, `
SUNW.i86pc m :Router=1.1.1.1:MTU=1000:
10.0.0.0 m :Router=2.2.2.2:
srv m :Router=3.3.3.3:
01AABBCCDDEEFF m :Router=4.4.4.4:
`)
	all := Inputs{ClientClass: "SUNW.i86pc", Network: "10.0.0.0", RecordMacro: "srv", ClientID: cid}
	for _, c := range []struct {
		name string
		in   Inputs
		want string
	}{
		{"all four", all, "4.4.4.4"},
		{"no client id macro", Inputs{ClientClass: "SUNW.i86pc", Network: "10.0.0.0", RecordMacro: "srv", ClientID: []byte{1, 2}}, "3.3.3.3"},
		{"class and network", Inputs{ClientClass: "SUNW.i86pc", Network: "10.0.0.0", RecordMacro: "nosuch"}, "2.2.2.2"},
		{"class only", Inputs{ClientClass: "SUNW.i86pc"}, "1.1.1.1"},
		{"BOOTP skips the class", Inputs{ClientClass: "SUNW.i86pc", BOOTP: true}, ""},
		{"BOOTP network", Inputs{ClientClass: "SUNW.i86pc", Network: "10.0.0.0", BOOTP: true}, "2.2.2.2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var want []byte
			if c.want != "" {
				want = ip(c.want)
			}
			wantOpt(t, tab.Options(c.in), 3, want)
		})
	}
	// Symbols a later level does not touch survive from the earlier.
	wantOpt(t, tab.Options(all), 26, []byte{0x03, 0xe8})
}

func TestIncludeInPlace(t *testing.T) {
	tab := mustBuild(t, `
outer m :Router=1.1.1.1:Include=mid:MTU=1500:
mid m :Router=2.2.2.2:MTU=576:Include=leaf:
leaf m :DNSserv=9.9.9.9 8.8.8.8:MTU=1400:
`)
	o := tab.Options(Inputs{RecordMacro: "outer"})
	wantOpt(t, o, 3, ip("2.2.2.2"))                           // the Include overrides what came before it
	wantOpt(t, o, 26, []byte{0x05, 0xdc})                     // what comes after overrides the Include
	wantOpt(t, o, 6, append(ip("9.9.9.9"), ip("8.8.8.8")...)) // a chain of two
	wantOpt(t, tab.Options(Inputs{RecordMacro: "mid"}), 26, []byte{0x05, 0x78})
}

func chain(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "M%d m :Include=M%d:\n", i, i+1)
	}
	fmt.Fprintf(&b, "M%d m :MTU=1234:\n", n)
	return b.String()
}

func TestNestingLimit(t *testing.T) {
	// M0 includes M1 … includes M21: 21 levels below M0, 20 below M1.
	tab, errs := build(t, chain(MaxNesting+1))
	if len(errs) != 1 || findErr(errs, "M0", SymInclude, ErrNesting) == nil {
		t.Fatalf("errors %v, want one ErrNesting for M0", errs)
	}
	wantOpt(t, tab.Options(Inputs{RecordMacro: "M1"}), 26, []byte{0x04, 0xd2})
	wantOpt(t, tab.Options(Inputs{RecordMacro: "M0"}), 26, nil)
	if !tab.HasMacro("M0") {
		t.Error("M0 left out; only its Include should be")
	}
	tab, errs = build(t, chain(MaxNesting))
	if len(errs) != 0 {
		t.Fatalf("20 levels: %v", errs)
	}
	wantOpt(t, tab.Options(Inputs{RecordMacro: "M0"}), 26, []byte{0x04, 0xd2})
}

func TestCycles(t *testing.T) {
	tab, errs := build(t, `
A m :Include=B:Router=1.1.1.1:
B m :Include=A:MTU=1000:
C m :Include=C:DNSserv=3.3.3.3:
D m :Include=A:Broadcst=10.0.0.255:
`)
	for _, k := range []string{"A", "B", "C"} {
		if findErr(errs, k, SymInclude, ErrCircular) == nil {
			t.Errorf("no ErrCircular for %s in %v", k, errs)
		}
	}
	if len(errs) != 3 {
		t.Errorf("errors %v, want 3", errs)
	}
	// A keeps its own entries, without B; D includes A.
	o := tab.Options(Inputs{RecordMacro: "D"})
	wantOpt(t, o, 3, ip("1.1.1.1"))
	wantOpt(t, o, 26, nil)
	wantOpt(t, o, 28, ip("10.0.0.255"))
	wantOpt(t, tab.Options(Inputs{RecordMacro: "C"}), 6, ip("3.3.3.3"))
}

func TestUndefinedAndTooManyIncludes(t *testing.T) {
	var b strings.Builder
	b.WriteString("many m :")
	for i := range MaxIncludes + 1 {
		fmt.Fprintf(&b, "Include=I%d:", i)
	}
	b.WriteString("\n")
	for i := range MaxIncludes + 1 {
		fmt.Fprintf(&b, "I%d m :MTU=%d:\n", i, 1000+i)
	}
	b.WriteString("u m :Router=1.1.1.1:Include=nosuch:MTU=1500:\n")
	tab, errs := build(t, b.String())
	if findErr(errs, "u", SymInclude, ErrUndefinedMacro) == nil {
		t.Errorf("no ErrUndefinedMacro: %v", errs)
	}
	if findErr(errs, "many", SymInclude, ErrTooManyIncludes) == nil {
		t.Errorf("no ErrTooManyIncludes: %v", errs)
	}
	if len(errs) != 2 {
		t.Errorf("errors %v, want 2", errs)
	}
	o := tab.Options(Inputs{RecordMacro: "u"})
	wantOpt(t, o, 3, ip("1.1.1.1"))
	wantOpt(t, o, 26, []byte{0x05, 0xdc})
	// The 32nd Include is the last honoured.
	wantOpt(t, tab.Options(Inputs{RecordMacro: "many"}), 26, []byte{0x04, 0x07})
}

func TestDelete(t *testing.T) {
	tab := mustBuild(t, `
base m :Router=1.1.1.1:DNSserv=2.2.2.2:LeaseNeg:
10.0.0.0 m :Include=base:MTU=1500:
srv m :Router=:LeaseNeg=:
in m :Include=base:DNSserv=:
flag m :LeaseNeg=_NULL_VALUE_:
`)
	o := tab.Options(Inputs{Network: "10.0.0.0", RecordMacro: "srv"})
	wantOpt(t, o, 3, nil) // a later level's sym= removes an earlier level's
	wantOpt(t, o, 6, ip("2.2.2.2"))
	wantOpt(t, o, 26, []byte{0x05, 0xdc})
	if o.LeaseNeg() {
		t.Error("LeaseNeg survived its deletion")
	}
	if !tab.Options(Inputs{Network: "10.0.0.0"}).LeaseNeg() {
		t.Error("LeaseNeg lost from the network macro")
	}
	wantOpt(t, tab.Options(Inputs{RecordMacro: "in"}), 6, nil) // deletes what its Include set
	if !tab.Options(Inputs{RecordMacro: "flag"}).LeaseNeg() {
		t.Error("_NULL_VALUE_ is not a flag")
	}
}

func TestTypes(t *testing.T) {
	sym := func(typ Type, g, m int) *Symbol {
		return &Symbol{Name: "X", Context: ContextSite, Code: 200, Type: typ, Granularity: g, Maximum: m}
	}
	for _, c := range []struct {
		s    *Symbol
		raw  string
		want string // hex; "" = refused
	}{
		{sym(ASCII, 1, 0), `"a:b \"c\""`, "613a6220226322"},
		{sym(ASCII, 1, 0), `word`, "776f7264"},
		{sym(ASCII, 1, 3), `"abcd"`, ""},
		{sym(ASCII, 1, 0), `""`, ""},
		{sym(ASCII, 1, 0), `"a"b`, ""},
		{sym(IP, 1, 0), "10.0.0.1 10.0.0.2", "0a0000010a000002"},
		{sym(IP, 1, 0), "10.0.0.1,10.0.0.2", "0a0000010a000002"},
		{sym(IP, 1, 1), "10.0.0.1 10.0.0.2", ""},
		{sym(IP, 2, 0), "10.0.0.0 10.0.0.1", "0a0000000a000001"},
		{sym(IP, 2, 0), "10.0.0.0 10.0.0.1 10.0.0.2", ""},
		{sym(IP, 1, 0), "10.0.0.256", ""},
		{sym(IP, 1, 0), "::1", ""},
		{sym(UNUMBER8, 1, 1), "255", "ff"},
		{sym(UNUMBER8, 1, 1), "256", ""},
		{sym(UNUMBER8, 1, 1), "-1", ""},
		{sym(UNUMBER16, 1, 0), "1500 576", "05dc0240"},
		{sym(UNUMBER32, 1, 1), "3600", "00000e10"},
		{sym(UNUMBER32, 1, 1), "0x10", "00000010"},
		{sym(UNUMBER64, 1, 1), "18446744073709551615", "ffffffffffffffff"},
		{sym(SNUMBER8, 1, 1), "-128", "80"},
		{sym(SNUMBER8, 1, 1), "128", ""},
		{sym(SNUMBER16, 1, 1), "-2", "fffe"},
		{sym(SNUMBER32, 1, 1), "-18000", "ffffb9b0"},
		{sym(SNUMBER64, 1, 1), "-1", "ffffffffffffffff"},
		{sym(NUMBER, 2, 0), "1 2", "00010002"},
		{sym(NUMBER, 4, 1), "1 2", ""},
		{sym(UNUMBER16, 2, 0), "1 2 3", ""},
		{sym(UNUMBER16, 1, 1), "x", ""},
		{sym(OCTET, 1, 0), "0x0102ff", "0102ff"},
		{sym(OCTET, 1, 0), "0102FF", "0102ff"},
		{sym(OCTET, 2, 0), "010203", ""},
		{sym(OCTET, 1, 2), "010203", ""},
		{sym(OCTET, 1, 0), "0g", ""},
		{sym(BOOLEAN, 0, 0), "1", ""},
	} {
		got, err := c.s.Encode(c.raw)
		if c.want == "" {
			if err == nil || !errors.Is(err, ErrBadValue) {
				t.Errorf("%s,%d,%d %q: %x, %v; want ErrBadValue", c.s.Type, c.s.Granularity, c.s.Maximum, c.raw, got, err)
			}
			continue
		}
		if err != nil || fmt.Sprintf("%x", got) != c.want {
			t.Errorf("%s,%d,%d %q = %x, %v; want %s", c.s.Type, c.s.Granularity, c.s.Maximum, c.raw, got, err, c.want)
		}
	}
}

// A bad entry is an error naming macro and symbol; the rest of the macro
// and the table build.
func TestBadEntries(t *testing.T) {
	tab, errs := build(t, `
MyOpt s Site,130,UNUMBER16,1,1
BadCtx s Local,130,IP,1,1
BadCode s Site,100,IP,1,1
ZDup s Site,130,IP,1,1
Router s Site,131,IP,1,1
bad m :Router=10.0.0.300:MTU=1500:Nosuch=1:LeaseNeg=yes:DNSserv:MyOpt=70000:Hostname:
broken m :Router="1.1.1.1:
`)
	for _, c := range []struct {
		key, sym string
		typ      dsvc.DTType
		err      error
	}{
		{"BadCtx", "", dsvc.DTSymbol, ErrBadSymbol},
		{"BadCode", "", dsvc.DTSymbol, ErrBadSymbol},
		{"ZDup", "", dsvc.DTSymbol, ErrDuplicate},
		{"Router", "", dsvc.DTSymbol, ErrDuplicate},
		{"bad", "Router", dsvc.DTMacro, ErrBadValue},
		{"bad", "Nosuch", dsvc.DTMacro, ErrUnknownSymbol},
		{"bad", "LeaseNeg", dsvc.DTMacro, ErrBadValue},
		{"bad", "DNSserv", dsvc.DTMacro, ErrBadValue},
		{"bad", "MyOpt", dsvc.DTMacro, ErrBadValue},
		{"broken", "", dsvc.DTMacro, ErrSyntax},
	} {
		e := findErr(errs, c.key, c.sym, c.err)
		if e == nil || e.Type != c.typ {
			t.Errorf("no %v for %s %s in %v", c.err, c.key, c.sym, errs)
		}
	}
	if len(errs) != 10 {
		t.Errorf("%d errors, want 10: %v", len(errs), errs)
	}
	o := tab.Options(Inputs{RecordMacro: "bad"})
	wantOpt(t, o, 26, []byte{0x05, 0xdc})
	wantOpt(t, o, 3, nil)
	if !o.HostnameLookup() {
		t.Error("valueless Hostname is not a lookup")
	}
	if tab.HasMacro("broken") {
		t.Error("a macro that does not parse is defined")
	}
	if s, ok := tab.Symbol("MyOpt"); !ok || s.Code != 130 {
		t.Errorf("MyOpt = %+v %v", s, ok)
	}
}

func TestVendor(t *testing.T) {
	tab := mustBuild(t, `
SrootIP4 s Vendor=SUNW.Ultra-1 SUNW.i86pc,2,IP,1,1
SrootNM s Vendor=SUNW.Ultra-1 SUNW.i86pc,3,ASCII,1,0
PXEmenu s Vendor=PXEClient,9,OCTET,1,0
SUNW.i86pc m :SrootNM="x86boot":
10.0.0.0 m :SrootIP4=10.0.0.5:PXEmenu=0001:Router=10.0.0.1:
`)
	o := tab.Options(Inputs{ClientClass: "SUNW.i86pc", Network: "10.0.0.0"})
	wantOpt(t, o, 43, []byte{2, 4, 10, 0, 0, 5, 3, 7, 'x', '8', '6', 'b', 'o', 'o', 't'})
	o = tab.Options(Inputs{ClientClass: "PXEClient", Network: "10.0.0.0"})
	wantOpt(t, o, 43, []byte{9, 2, 0, 1})
	o = tab.Options(Inputs{Network: "10.0.0.0"})
	wantOpt(t, o, 43, nil)
	wantOpt(t, o, 3, ip("10.0.0.1"))
	wantOpt(t, tab.Options(Inputs{ClientClass: "SUNW.i86pc", Network: "10.0.0.0", BOOTP: true}), 43, nil)
	// A second symbol with a code and a class already taken is refused.
	_, errs := build(t, "A s Vendor=X Y,1,IP,1,1\nB s Vendor=Y,1,IP,1,1\nC s Vendor=Z,1,IP,1,1\n")
	if len(errs) != 1 || findErr(errs, "B", "", ErrDuplicate) == nil {
		t.Errorf("errors %v, want ErrDuplicate for B", errs)
	}
}

func TestLease(t *testing.T) {
	tab := mustBuild(t, "s m :LeaseTim=3600:LeaseNeg:EchoVC:\nn m :LeaseTim=86400:\n")
	o := tab.Options(Inputs{RecordMacro: "s"})
	if d, ok := o.LeaseTime(); !ok || d != time.Hour || !o.LeaseNeg() || !o.EchoVC() {
		t.Errorf("s: %v %v %v %v", d, ok, o.LeaseNeg(), o.EchoVC())
	}
	o = tab.Options(Inputs{RecordMacro: "n"})
	if d, ok := o.LeaseTime(); !ok || d != 24*time.Hour || o.LeaseNeg() {
		t.Errorf("n: %v %v %v", d, ok, o.LeaseNeg())
	}
	var zero Options
	if _, ok := zero.LeaseTime(); ok || zero.LeaseNeg() || zero.EchoVC() || zero.HostnameLookup() {
		t.Error("the zero Options is not empty")
	}
}

func TestApply(t *testing.T) {
	long := strings.Repeat("a", 200)
	tab := mustBuild(t, fmt.Sprintf(`
m m :Subnet=255.255.255.0:Router=10.0.0.1:DNSdmain="%s":NISdmain="%s":Message="%s":BootFile="pxelinux.0":BootSrvA=10.0.0.2:
`, long, long[:100], long[:20]))
	o := tab.Options(Inputs{RecordMacro: "m"})
	reply := func() *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New()
		if err != nil {
			t.Fatal(err)
		}
		m.Options = dhcpv4.Options{}
		m.UpdateOption(dhcpv4.OptMessageType(dhcpv4.MessageTypeOffer))
		m.UpdateOption(dhcpv4.OptRouter(ip("192.168.0.1")))
		return m
	}
	// 576 octets: 307 for options; 53 and 3 already take 3+6. Requested
	// NISdmain (102) and Message (22) go in first, then Subnet (6); the
	// 202-octet DNSdmain no longer fits.
	m := reply()
	omitted := o.Apply(m, []uint8{40, 56}, 0)
	if fmt.Sprint(omitted) != "[15]" {
		t.Errorf("omitted %v, want [15]", omitted)
	}
	if !bytes.Equal(m.Options[3], ip("192.168.0.1")) {
		t.Errorf("the reply's own Router was replaced: %x", m.Options[3])
	}
	for _, c := range []uint8{1, 40, 56} {
		if _, ok := m.Options[c]; !ok {
			t.Errorf("option %d missing", c)
		}
	}
	if m.BootFileName != "pxelinux.0" || !m.ServerIPAddr.Equal(ip("10.0.0.2")) {
		t.Errorf("fields %q %v", m.BootFileName, m.ServerIPAddr)
	}
	if n := len(m.ToBytes()); n > MinMessageSize-28 {
		t.Errorf("reply is %d octets, over %d", n, MinMessageSize-28)
	}
	// Without a request list DNSdmain (lowest code) wins the space.
	m = reply()
	omitted = o.Apply(m, nil, 0)
	if _, ok := m.Options[15]; !ok || fmt.Sprint(omitted) != "[40]" {
		t.Errorf("no list: omitted %v, 15 present %v", omitted, ok)
	}
	// A client accepting 1500 octets gets everything.
	m = reply()
	if omitted := o.Apply(m, []uint8{40, 56}, 1500); omitted != nil {
		t.Errorf("1500: omitted %v", omitted)
	}
	if got, err := dhcpv4.FromBytes(m.ToBytes()); err != nil || got.DomainName() != long {
		t.Errorf("round trip: %v", err)
	}
}

// Table is read-only after Build: many goroutines at once (run -race).
func TestConcurrent(t *testing.T) {
	tab := golden(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				in := goldenInputs[(g+i)%len(goldenInputs)].in
				o := tab.Options(in)
				m, _ := dhcpv4.New()
				o.Apply(m, []uint8{1, 3, 6, 15}, 0)
			}
		}()
	}
	wg.Wait()
}

func BenchmarkOptions(b *testing.B) {
	tab := golden(b)
	in := Inputs{ClientClass: "SUNW.i86pc", Network: "10.21.0.0", RecordMacro: "atlantic", ClientID: []byte{1, 0, 0x20, 0xed, 0x11, 0x12, 0xb7}}
	b.ReportAllocs()
	for b.Loop() {
		o := tab.Options(in)
		if _, ok := o.Get(1); !ok {
			b.Fatal("no subnet")
		}
	}
}
