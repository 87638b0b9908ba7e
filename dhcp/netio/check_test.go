package netio

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

var testMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}

// discover is a well-formed DHCPDISCOVER with transaction id xid.
func discover(t testing.TB, xid uint32) []byte {
	t.Helper()
	m, err := dhcpv4.NewDiscovery(testMAC)
	if err != nil {
		t.Fatal(err)
	}
	m.TransactionID = dhcpv4.TransactionID{byte(xid >> 24), byte(xid >> 16), byte(xid >> 8), byte(xid)}
	return m.ToBytes()
}

// withOpts is a request with the given options field (after the cookie)
// and, when non-nil, file contents.
func withOpts(opts, file []byte) []byte {
	b := make([]byte, offOpts, offOpts+len(opts))
	b[offOp], b[offHType], b[offHLen] = 1, 1, 6
	copy(b[offCookie:], magicCookie[:])
	copy(b[offFile:offCookie], file)
	return append(b, opts...)
}

func TestCheck(t *testing.T) {
	good := discover(t, 1)
	mod := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want DropReason
	}{
		{"discover", good, DropNone},
		{"bootp no option 53", withOpts([]byte{1, 4, 255, 255, 255, 0, 255}, nil), DropNone},
		{"pads then end", withOpts([]byte{0, 0, 53, 1, 3, 0, 255}, nil), DropNone},
		{"relayed hops 16", mod(func(b []byte) { b[offHops] = 16 }), DropNone},
		{"infiniband hlen 0", mod(func(b []byte) { b[offHType], b[offHLen] = 32, 0 }), DropNone},
		{"overload file", withOpts([]byte{53, 1, 1, 52, 1, 1, 255}, []byte{12, 2, 'h', 'i', 255}), DropNone},
		{"overload file without end", withOpts([]byte{53, 1, 1, 52, 1, 1, 255}, []byte{0, 0, 0}), DropNone},

		{"empty", nil, DropShort},
		{"239 bytes", good[:239], DropShort},
		{"reply op", mod(func(b []byte) { b[offOp] = 2 }), DropNotRequest},
		{"htype 0", mod(func(b []byte) { b[offHType] = 0 }), DropHardware},
		{"hlen 17", mod(func(b []byte) { b[offHType] = 6; b[offHLen] = 17 }), DropHardware},
		{"ethernet hlen 5", mod(func(b []byte) { b[offHLen] = 5 }), DropHardware},
		{"hops 17", mod(func(b []byte) { b[offHops] = 17 }), DropHops},
		{"cookie", mod(func(b []byte) { b[offCookie+3] = 0 }), DropCookie},
		{"no options at all", withOpts(nil, nil), DropOptions},
		{"no end", withOpts([]byte{53, 1, 1}, nil), DropOptions},
		{"length byte missing", withOpts([]byte{53, 1, 1, 12}, nil), DropOptions},
		{"value overruns", withOpts([]byte{53, 1, 1, 12, 9, 'a', 'b'}, nil), DropOptions},
		{"overloaded file overruns", withOpts([]byte{52, 1, 1, 255}, append(make([]byte, 126), 12, 5)), DropOptions},
		{"overload length 2", withOpts([]byte{52, 2, 1, 1, 255}, nil), DropOverload},
		{"overload value 4", withOpts([]byte{52, 1, 4, 255}, nil), DropOverload},
		{"overload twice", withOpts([]byte{52, 1, 1, 52, 1, 1, 255}, nil), DropOverload},
		{"overload inside file", withOpts([]byte{52, 1, 1, 255}, []byte{52, 1, 3, 255}), DropOverload},
		{"offer from a client", withOpts([]byte{53, 1, 2, 255}, nil), DropMessageType},
		{"message type length 2", withOpts([]byte{53, 2, 1, 1, 255}, nil), DropMessageType},
		{"message type twice", withOpts([]byte{53, 1, 1, 53, 1, 3, 255}, nil), DropMessageType},
		{"message type only in file", withOpts([]byte{52, 1, 1, 255}, []byte{53, 1, 1, 255}), DropMessageType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Check(tc.b, -1); got != tc.want {
				t.Fatalf("Check = %v, want %v", got, tc.want)
			}
			if tc.want == DropNone {
				if _, err := dhcpv4.FromBytes(tc.b); err != nil {
					t.Fatalf("Check accepts what dhcpv4 refuses: %v", err)
				}
			}
		})
	}
	if got := Check(mod(func(b []byte) { b[offHops] = 3 }), 2); got != DropHops {
		t.Fatalf("maxHops 2, hops 3: %v", got)
	}
}

func TestCheckAllocs(t *testing.T) {
	b := discover(t, 1)
	if n := testing.AllocsPerRun(100, func() { Check(b, -1) }); n != 0 {
		t.Fatalf("Check allocates %v times", n)
	}
}

func TestDropReasonString(t *testing.T) {
	seen := map[string]bool{}
	for r := range DropReason(NumDropReasons) {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Fatalf("reason %d: name %q", r, s)
		}
		seen[s] = true
	}
}

// FuzzCheck: Check never panics, and whatever it accepts the codec the
// server uses parses.
func FuzzCheck(f *testing.F) {
	f.Add(discover(f, 7))                                                         // a DISCOVER as dhcpv4 writes it
	f.Add(withOpts([]byte{1, 4, 255, 255, 255, 0, 255}, nil))                     // BOOTP
	f.Add(withOpts([]byte{53, 1, 1, 52, 1, 3, 255}, []byte{255}))                 // overload both fields
	f.Add(withOpts([]byte{53, 1, 1, 12, 9, 'a'}, nil))                            // overrun
	f.Add(withOpts([]byte{0, 0, 53, 1, 8, 61, 7, 1, 2, 0, 0, 0, 0, 1, 255}, nil)) // INFORM with client id
	f.Fuzz(func(t *testing.T, b []byte) {
		if Check(b, -1) != DropNone {
			return
		}
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			t.Fatalf("Check accepts, dhcpv4.FromBytes: %v", err)
		}
		if m.OpCode != dhcpv4.OpcodeBootRequest {
			t.Fatalf("accepted op %v", m.OpCode)
		}
	})
}

func BenchmarkCheck(b *testing.B) {
	p := discover(b, 1)
	for b.Loop() {
		Check(p, -1)
	}
}
