package files

import (
	"reflect"
	"testing"
)

// FuzzParseDN: the network record parser never panics, and what it accepts
// is written back as a line that parses to the same record.
func FuzzParseDN(f *testing.F) {
	for _, s := range []string{
		"10.0.0.5|01080020FFFFFF|02|10.0.0.1|946684800|12345678901234567|atlantic|a \\| comment", // Solaris example
		"10.0.0.6|00|00|10.0.0.1|0|1|atlantic|",                                                  // free record, empty comment
		"10.0.0.7|636c69656e74|13|10.0.0.2|-1|2||",                                               // lower-case hex, lease -1
		"10.0.0.8|01|00|10.0.0.1|0|1|m|x|y",                                                      // 9 fields: refused
		"10.0.0.9|0|00|10.0.0.1|0|1|m|",                                                          // odd hex
		"10.0.0.10|01|16|10.0.0.1|0|1|m|",                                                        // flag 0x10
		"10.0.0.11|01|00|10.0.0.1|4294967296|1|m|",                                               // lease overflow
		"10.0.0.12|01|00|10.0.0.1|0|1|a\\\\|b\\",                                                 // escapes, trailing backslash
		"::1|01|00|10.0.0.1|0|1|m|",                                                              // IPv6
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := parseDN(line)
		if err != nil {
			return
		}
		out := formatDN(&r)
		r2, err := parseDN(out[:len(out)-1])
		if err != nil {
			t.Fatalf("%q parsed, its rewrite %q does not: %v", line, out, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("%q → %+v, rewritten %q → %+v", line, r, out, r2)
		}
	})
}

// FuzzDhcptabReader: the dhcptab reader (comment lines, '\' continuation,
// key|type|sig|value) never panics; a record it accepts and the module can
// store is written back as one line that reads as the same record.
func FuzzDhcptabReader(f *testing.F) {
	for _, s := range []string{
		"# files1_dhcptab\nLocale|s|1|Vendor=SUNW.Ultra-1,1,IP,1,0\n",
		"atlantic|m|2|:Include=Locale:\\\nTimeserv=10.0.0.1:\n", // continuation
		"# comment \\\nx|m|1|:a=1:\n",                           // comment ending in '\' does not continue
		"a\\|b|m|3|v|w\\\n",                                     // escaped key, '|' in value, '\' at EOF
		"k|x|1|v\n|m|1|v\nk|m|notanumber|v\n#k|m|1|v\n",         // bad type, empty key, bad sig
		"k|m|18446744073709551615|\r\n",                         // CR in value
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, e := range entries(data, true) {
			if e.start < 0 || e.end > len(data) || e.start >= e.end {
				t.Fatalf("entry span %d..%d of %d", e.start, e.end, len(data))
			}
			r, err := parseDT(e.text)
			if err != nil || storableDT(&r) != nil {
				continue
			}
			line := formatDT(&r)
			es := entries([]byte(line), true)
			if len(es) != 1 {
				t.Fatalf("%+v written as %q: %d entries", r, line, len(es))
			}
			r2, err := parseDT(es[0].text)
			if err != nil || !reflect.DeepEqual(r, r2) {
				t.Fatalf("%+v written as %q read as %+v, %v", r, line, r2, err)
			}
		}
	})
}
