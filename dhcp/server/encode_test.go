package server

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// toBytes is dhcpv4's encoding, or nil where it panics (an address field
// that is not IPv4).
func toBytes(m *dhcpv4.DHCPv4) (b []byte) {
	defer func() {
		if recover() != nil {
			b = nil
		}
	}()
	return m.ToBytes()
}

// checkEncode: appendPacket writes what ToBytes does, also after a prefix.
func checkEncode(t *testing.T, m *dhcpv4.DHCPv4) {
	t.Helper()
	want := toBytes(m)
	if want == nil {
		return
	}
	if got := appendPacket(nil, m); !bytes.Equal(got, want) {
		t.Fatalf("appendPacket:\n got %x\nwant %x", got, want)
	}
	if got := appendPacket([]byte("prefix"), m); !bytes.Equal(got[6:], want) {
		t.Fatalf("appendPacket after a prefix:\n got %x\nwant %x", got[6:], want)
	}
}

func TestAppendPacket(t *testing.T) {
	long := bytes.Repeat([]byte{7}, 600) // split in three (RFC 3396)
	m, err := dhcpv4.New(dhcpv4.WithHwAddr(net.HardwareAddr{1, 2, 3, 4, 5, 6}),
		dhcpv4.WithMessageType(dhcpv4.MessageTypeAck),
		dhcpv4.WithOption(dhcpv4.OptRelayAgentInfo(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(1), []byte{9}))),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(time.Hour)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(43), long)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.GenericOptionCode(80), nil)))
	if err != nil {
		t.Fatal(err)
	}
	m.ServerHostName = string(bytes.Repeat([]byte{'s'}, 70)) // cut at 63
	m.BootFileName = "boot"
	m.GatewayIPAddr = net.IPv4(10, 0, 0, 2)
	m.Options[0], m.Options[255] = []byte{1}, nil // never written
	checkEncode(t, m)
	small, _ := dhcpv4.New()
	checkEncode(t, small) // padded to 300
}

// FuzzAppendPacket: for any packet dhcpv4 parses, appendPacket's bytes
// are ToBytes's.
func FuzzAppendPacket(f *testing.F) {
	m, _ := dhcpv4.NewDiscovery(net.HardwareAddr{1, 2, 3, 4, 5, 6})
	f.Add(m.ToBytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		checkEncode(t, m)
	})
}

// BenchmarkReply: an OFFER with the test dhcptab's options, built and
// encoded as send does, and pooled again as Handle does.
func BenchmarkReply(b *testing.B) {
	e := newEnv(b, modules[0])
	s, _ := e.server(ownerA)
	b.Cleanup(func() { s.Close() })
	f := e.client.fake(1)
	m := f.discover()
	m.UpdateOption(dhcpv4.OptParameterRequestList(dhcpv4.OptionRouter, dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName))
	q := &request{m: m, cid: f.CID(), key: string(f.CID()), n: s.nets[0], now: e.clock()}
	rec := dsvc.DNRecord{CID: []byte{0}, CIP: ipN(10), SIP: ownerA, Macro: "srv"}
	b.ReportAllocs()
	for b.Loop() {
		o := s.options(q, &rec, false)
		lease, _ := s.leaseTime(o, q.m, &rec)
		rep := s.reply(q, dhcpv4.MessageTypeOffer, rec.CIP, &o, lease)
		buf := packetPool.Get().(*[]byte)
		*buf = appendPacket((*buf)[:0], rep)
		packetPool.Put(buf)
		putReply(rep)
	}
}
