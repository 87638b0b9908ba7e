package userspace

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files under testdata/ from the encoder")

var (
	client4 = netip.MustParseAddrPort("203.0.113.7:51234")
	vip4    = netip.MustParseAddrPort("10.251.0.100:80")
	client6 = netip.MustParseAddrPort("[2001:db8::7]:51234")
	vip6    = netip.MustParseAddrPort("[2001:db8:1::100]:443")
)

// vector is one golden file: the bytes come from the encoder (then
// mangled, for the bad ones); the decoder must give want or err.
type vector struct {
	name    string
	comment string
	hdr     Header
	mangle  func([]byte) []byte
	err     error
}

func vectors() []vector {
	set := func(i int, v byte) func([]byte) []byte {
		return func(b []byte) []byte { b[i] = v; return b }
	}
	return []vector{
		{name: "proxy-tcp4", comment: "PROXY, TCP over IPv4: the header the proxy writes",
			hdr: Header{Command: CmdProxy, Source: client4, Dest: vip4}},
		{name: "proxy-tcp6", comment: "PROXY, TCP over IPv6",
			hdr: Header{Command: CmdProxy, Source: client6, Dest: vip6}},
		{name: "local-unspec", comment: "LOCAL, family UNSPEC: a health check, no addresses",
			hdr: Header{Command: CmdLocal}},
		{name: "proxy-tcp4-tlv", comment: "PROXY, TCP over IPv4, with a NOOP TLV (0x04) of 2 bytes and an empty one",
			hdr: Header{Command: CmdProxy, Source: client4, Dest: vip4, TLVs: []TLV{{Type: 4, Value: []byte("ab")}, {Type: 0x30, Value: []byte{}}}}},
		{name: "local-udp4", comment: "LOCAL with family UDP over IPv4: accepted, the body skipped",
			hdr: Header{Command: CmdLocal, Source: client4, Dest: vip4}, mangle: set(13, 0x12)},
		{name: "bad-signature", comment: "an HTTP request where a header should be",
			mangle: func([]byte) []byte { return []byte("GET / HTTP/1.1\r\n") }, err: ErrSignature},
		{name: "bad-version", comment: "version 1 in the version nibble",
			hdr: Header{Command: CmdProxy, Source: client4, Dest: vip4}, mangle: set(12, 0x11), err: ErrVersion},
		{name: "bad-command", comment: "command 2",
			hdr: Header{Command: CmdProxy, Source: client4, Dest: vip4}, mangle: set(12, 0x22), err: ErrCommand},
		{name: "truncated-fixed", comment: "ends inside the fixed part",
			hdr: Header{Command: CmdProxy, Source: client4, Dest: vip4}, mangle: func(b []byte) []byte { return b[:14] }, err: ErrTruncated},
		{name: "truncated-addr", comment: "ends inside the address block",
			hdr: Header{Command: CmdProxy, Source: client4, Dest: vip4}, mangle: func(b []byte) []byte { return b[:24] }, err: ErrTruncated},
		{name: "bad-family", comment: "PROXY over UDP/IPv4 (0x12): not relayed by this proxy",
			hdr: Header{Command: CmdProxy, Source: client4, Dest: vip4}, mangle: set(13, 0x12), err: ErrFamily},
		{name: "bad-family-unix", comment: "PROXY over UNIX stream (0x31)",
			hdr: Header{Command: CmdProxy, Source: client4, Dest: vip4}, mangle: set(13, 0x31), err: ErrFamily},
		{name: "bad-length", comment: "TCP over IPv4 with length 8, shorter than its 12-byte address block",
			hdr:    Header{Command: CmdProxy, Source: client4, Dest: vip4},
			mangle: func(b []byte) []byte { b[15] = 8; return b[:24] }, err: ErrLength},
		{name: "bad-tlv", comment: "a TLV whose length overruns the header",
			hdr:    Header{Command: CmdProxy, Source: client4, Dest: vip4, TLVs: []TLV{{Type: 4, Value: []byte("ab")}}},
			mangle: set(30, 9), err: ErrLength},
		{name: "bad-tlv-short", comment: "2 bytes after the addresses: not a TLV",
			hdr:    Header{Command: CmdProxy, Source: client4, Dest: vip4},
			mangle: func(b []byte) []byte { b[15] = 14; return append(b, 4, 0) }, err: ErrLength},
	}
}

var sentinels = []error{ErrSignature, ErrVersion, ErrCommand, ErrTruncated, ErrFamily, ErrLength}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	for i, s := range []string{"ErrSignature", "ErrVersion", "ErrCommand", "ErrTruncated", "ErrFamily", "ErrLength"} {
		if errors.Is(err, sentinels[i]) {
			return s
		}
	}
	return "other: " + err.Error()
}

// annotate names the bytes of a header, restating SPEC.md's table
// independently of the decoder.
func annotate(b []byte) [][2]any {
	var fs [][2]any
	off := 0
	add := func(n int, name string) {
		if off >= len(b) {
			return
		}
		n = min(n, len(b)-off)
		fs = append(fs, [2]any{n, name})
		off += n
	}
	add(12, "signature")
	add(1, "version<<4 | command")
	add(1, "family<<4 | transport")
	add(2, "length (u16 BE)")
	if len(b) >= 14 {
		switch b[13] {
		case 0x11, 0x12:
			add(4, "source IPv4")
			add(4, "destination IPv4")
			add(2, "source port")
			add(2, "destination port")
		case 0x21, 0x22:
			add(16, "source IPv6")
			add(16, "destination IPv6")
			add(2, "source port")
			add(2, "destination port")
		}
	}
	for off+3 <= len(b) {
		add(1, "TLV type")
		add(2, "TLV length (u16 BE)")
		n := int(b[off-2])<<8 | int(b[off-1])
		if n > 0 {
			add(n, "TLV value")
		}
	}
	add(len(b)-off, "(rest)")
	return fs
}

func format(v vector, b []byte) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "# %s\n# expect: %s\n", v.comment, errName(v.err))
	if v.err == nil {
		fmt.Fprintf(&sb, "# header: %s\n", describe(v.hdr))
	}
	off := 0
	for _, f := range annotate(b) {
		n, name := f[0].(int), f[1].(string)
		for first := true; first || n > 0; first = false {
			k := min(n, 16)
			var hex []string
			for _, c := range b[off : off+k] {
				hex = append(hex, fmt.Sprintf("%02x", c))
			}
			label := name
			if !first {
				label = "…"
			}
			fmt.Fprintf(&sb, "%04x: %-47s # %s\n", off, strings.Join(hex, " "), label)
			off += k
			n -= k
		}
	}
	return sb.String()
}

func describe(h Header) string {
	s := fmt.Sprintf("command %d source %v dest %v", h.Command, h.Source, h.Dest)
	for _, t := range h.TLVs {
		s += fmt.Sprintf(" tlv %#x %q", t.Type, t.Value)
	}
	return s
}

func parseHex(text string) ([]byte, error) {
	var data []byte
	for i, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		tok := strings.Fields(line)
		if len(tok) == 0 {
			continue
		}
		off, ok := strings.CutSuffix(tok[0], ":")
		if n, err := strconv.ParseUint(off, 16, 32); !ok || err != nil || int(n) != len(data) {
			return nil, fmt.Errorf("line %d: bad offset %q", i+1, tok[0])
		}
		for _, t := range tok[1:] {
			c, err := strconv.ParseUint(t, 16, 8)
			if err != nil || len(t) != 2 {
				return nil, fmt.Errorf("line %d: %q is not a hex byte", i+1, t)
			}
			data = append(data, byte(c))
		}
	}
	return data, nil
}

// TestGolden checks the encoder against testdata/*.hex and the decoder
// against the files' bytes: Parse and ReadHeader (one byte at a time,
// with data after the header) agree with the expectation.
func TestGolden(t *testing.T) {
	var names []string
	for _, v := range vectors() {
		names = append(names, v.name)
		t.Run(v.name, func(t *testing.T) {
			b, err := v.hdr.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			if v.mangle != nil {
				b = v.mangle(b)
			}
			path := filepath.Join("testdata", v.name+".hex")
			want := format(v, b)
			if *rewrite {
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test -rewrite creates it)", err)
			}
			if string(got) != want {
				t.Errorf("%s differs from the encoder's:\nfile:\n%s\ncode:\n%s", path, got, want)
			}
			data, err := parseHex(string(got))
			if err != nil {
				t.Fatal(err)
			}
			wantHdr := v.hdr
			if v.hdr.Command == CmdLocal && v.mangle != nil {
				wantHdr = Header{Command: CmdLocal} // body of an unknown family skipped
			}
			h, n, err := Parse(data)
			check(t, "Parse", h, err, wantHdr, v.err)
			if err == nil && n != len(data) {
				t.Errorf("Parse took %d of %d bytes", n, len(data))
			}
			in := slices.Clone(data)
			if v.err == nil {
				in = append(in, "payload"...) // must be left unread
			}
			r := iotest.OneByteReader(bytes.NewReader(in))
			h, err = ReadHeader(r)
			check(t, "ReadHeader", h, err, wantHdr, v.err)
			if err == nil {
				rest := make([]byte, 16)
				k, _ := r.Read(rest)
				if string(rest[:k]) != "p" {
					t.Errorf("ReadHeader read past the header: next byte %q", rest[:k])
				}
			}
		})
	}
	if !*rewrite {
		files, _ := filepath.Glob("testdata/*.hex")
		for _, f := range files {
			if !slices.Contains(names, strings.TrimSuffix(filepath.Base(f), ".hex")) {
				t.Errorf("%s: no vector writes it", f)
			}
		}
	}
}

func check(t *testing.T, who string, h Header, err error, want Header, wantErr error) {
	t.Helper()
	if wantErr != nil {
		if !errors.Is(err, wantErr) {
			t.Fatalf("%s: error %v, want %v", who, err, wantErr)
		}
		for _, s := range sentinels {
			if s != wantErr && errors.Is(err, s) {
				t.Errorf("%s: error %v wraps %v too", who, err, s)
			}
		}
		return
	}
	if err != nil {
		t.Fatalf("%s: %v", who, err)
	}
	if describe(h) != describe(want) {
		t.Errorf("%s: %s, want %s", who, describe(h), describe(want))
	}
}

// TestAppendFamilies: mapped IPv4 is written as IPv4, mixed families as
// IPv6, a half-given header is refused.
func TestAppendFamilies(t *testing.T) {
	mapped := netip.AddrPortFrom(netip.AddrFrom16(client4.Addr().As16()), client4.Port())
	b, err := Header{Command: CmdProxy, Source: mapped, Dest: vip4}.Append(nil)
	if err != nil || b[13] != 0x11 || len(b) != 28 {
		t.Fatalf("mapped IPv4: %x %v", b, err)
	}
	b, err = Header{Command: CmdProxy, Source: client4, Dest: vip6}.Append(nil)
	if err != nil || b[13] != 0x21 {
		t.Fatalf("mixed: %x %v", b, err)
	}
	h, _, err := Parse(b)
	if err != nil || h.Source.Addr().Unmap() != client4.Addr() || h.Dest != vip6 {
		t.Fatalf("mixed decoded: %+v %v", h, err)
	}
	for _, bad := range []Header{{Command: CmdProxy, Source: client4}, {Command: 7},
		{Command: CmdProxy, Source: client4, Dest: vip4, TLVs: []TLV{{Value: make([]byte, 70000)}}}} {
		if _, err := bad.Append(nil); !errors.Is(err, ErrEncode) {
			t.Errorf("%s: %v, want ErrEncode", describe(bad), err)
		}
	}
}

// FuzzParse: the decoder never panics, reports one of its sentinels, and
// what it accepts re-encodes to the same header.
func FuzzParse(f *testing.F) {
	for _, v := range vectors() {
		b, _ := v.hdr.Append(nil)
		if v.mangle != nil {
			b = v.mangle(b)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, n, err := Parse(b)
		h2, err2 := ReadHeader(bytes.NewReader(b))
		if (err == nil) != (err2 == nil) {
			t.Fatalf("Parse %v, ReadHeader %v", err, err2)
		}
		if err != nil {
			if !slices.ContainsFunc(sentinels, func(s error) bool { return errors.Is(err, s) }) {
				t.Fatalf("error %v wraps no sentinel", err)
			}
			return
		}
		if n > len(b) || !reflect.DeepEqual(describe(h), describe(h2)) {
			t.Fatalf("n %d of %d; Parse %s, ReadHeader %s", n, len(b), describe(h), describe(h2))
		}
		if b[13] != 0x00 && b[13] != 0x11 && b[13] != 0x21 {
			return // a LOCAL header of another family: its body is dropped
		}
		e, err := h.Append(nil)
		if err != nil {
			t.Fatalf("re-encode %s: %v", describe(h), err)
		}
		// A TCP6 header of two mapped IPv4 addresses re-encodes as TCP4.
		if b[13] == 0x21 && h.Source.Addr().Is4In6() && h.Dest.Addr().Is4In6() {
			return
		}
		if !bytes.Equal(e, b[:n]) {
			t.Fatalf("re-encoded %x, was %x", e, b[:n])
		}
	})
}
