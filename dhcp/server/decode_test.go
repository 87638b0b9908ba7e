package server

import (
	"bytes"
	"net"
	"reflect"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// checkParse: parsePacket fails where FromBytes fails and otherwise
// returns the same packet; its result does not alias the input.
func checkParse(t *testing.T, b []byte) {
	t.Helper()
	want, werr := dhcpv4.FromBytes(b)
	in := bytes.Clone(b)
	got, err := parsePacket(in)
	if (err != nil) != (werr != nil) {
		t.Fatalf("parsePacket error %v, FromBytes error %v", err, werr)
	}
	if err != nil {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parsePacket:\n got %#v\nwant %#v", got, want)
	}
	clear(in)
	if !reflect.DeepEqual(got, want) {
		t.Fatal("parsePacket's result aliases its input")
	}
}

func parseSeeds(t testing.TB) [][]byte {
	m, err := dhcpv4.NewDiscovery(net.HardwareAddr{1, 2, 3, 4, 5, 6},
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 1, 2, 3, 4, 5, 6})),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte{9}))))
	if err != nil {
		t.Fatal(err)
	}
	m.GatewayIPAddr = net.IPv4(10, 0, 0, 2)
	m.ServerHostName = "srv"
	b := m.ToBytes()
	// An option given three times (concatenated), an empty one, one
	// empty then given again, pads, and the End.
	opts := []byte{12, 2, 'a', 'b', 12, 0, 12, 1, 'c', 80, 0, 81, 0, 81, 1, 'x', 0, 0, 255}
	long := append(bytes.Clone(b[:packetHeaderLen]), opts...)
	return [][]byte{b, long, b[:packetHeaderLen], b[:packetHeaderLen-1], long[:len(long)-1], long[:packetHeaderLen+1],
		long[:packetHeaderLen+3]}
}

func TestParsePacket(t *testing.T) {
	for _, b := range parseSeeds(t) {
		checkParse(t, b)
	}
}

// FuzzParsePacket: parsePacket is dhcpv4.FromBytes, for any input.
func FuzzParsePacket(f *testing.F) {
	for _, b := range parseSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { checkParse(t, b) })
}

func BenchmarkParse(b *testing.B) {
	p := parseSeeds(b)[0]
	b.Run("FromBytes", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := dhcpv4.FromBytes(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parsePacket", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := parsePacket(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}
