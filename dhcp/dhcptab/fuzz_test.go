package dhcptab

import (
	"slices"
	"testing"
)

// FuzzParseMacro: no panic; a value that parses renders (FormatMacro) to
// one that parses to the same entries.
func FuzzParseMacro(f *testing.F) {
	for _, s := range []string{
		":Include=Locale:Timeserv=10.21.0.2:LeaseTim=3600:LeaseNeg:Hostname:", // dhtadm's usual form
		`:DNSdmain="a:b \"c\"":Router=:Flag=_NULL_VALUE_:`,                    // quotes, deletion, null value
		"Router=10.0.0.1 10.0.0.2::  MTU = 1500 :",                            // blanks, empty entry, no leading colon
		`:x="unterminated:`, // refused
		`:="nameless":`,     // refused
		`:a="\`,             // backslash at the end
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseMacro(s)
		if err != nil {
			return
		}
		r := FormatMacro(e)
		e2, err := ParseMacro(r)
		if err != nil {
			t.Fatalf("%q rendered as %q: %v", s, r, err)
		}
		if !slices.Equal(e, e2) {
			t.Fatalf("%q → %v → %q → %v", s, e, r, e2)
		}
	})
}

// FuzzParseSymbol: no panic; a definition that parses renders (Value) to
// one that parses to the same symbol.
func FuzzParseSymbol(f *testing.F) {
	for _, s := range [][2]string{
		{"MystatRt", "Site,130,IP,2,0"},                          // dhcptab(4)'s example
		{"SinstIP4", "Vendor=SUNW.i86pc SUNW.Ultra-1,10,IP,1,1"}, // two classes
		{"Old", "extend,80,number,4,2"},                          // lower case, NUMBER width
		{"Bool", "Site,200,BOOLEAN,0,0"},
		{"Bad", "Site,300,IP,1,1"},  // code out of range
		{"Bad", "Vendor=,1,IP,1,1"}, // no class
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, name, value string) {
		s, err := ParseSymbol(name, value)
		if err != nil {
			return
		}
		v := s.Value()
		s2, err := ParseSymbol(name, v)
		if err != nil {
			t.Fatalf("%q rendered as %q: %v", value, v, err)
		}
		if s.Name != s2.Name || s.Context != s2.Context || s.Code != s2.Code || s.Type != s2.Type ||
			s.Granularity != s2.Granularity || s.Maximum != s2.Maximum || !slices.Equal(s.Vendor, s2.Vendor) {
			t.Fatalf("%q → %+v → %q → %+v", value, s, v, s2)
		}
		// Encoding any value never panics.
		_, _ = s.Encode(value)
	})
}
