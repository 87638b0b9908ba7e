package server

import (
	"context"
	"testing"

	"github.com/corralhq/corral/dhcp/netio"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzParseConfig: the config parser never panics, and what it accepts
// validates.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte("[datastore]\nlocation = \"/x\"\n[[network]]\nprefix = \"10.0.0.0/24\"\n"))
	f.Add([]byte("offer_ttl = \"1s\"\nowners = [\"10.0.0.1\"]\n[datastore]\nlocation = \"/x\"\n[[network]]\nprefix = \"10.0.0.0/8\"\nserver_id = \"10.0.0.1\"\n"))
	f.Add([]byte("bogus = 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted %q, then: %v", b, err)
			}
		}
	})
}

// FuzzAnswer: any datagram the socket layer passes reaches the server
// logic without a panic, whatever its options say, and a reply is always
// a BOOTREPLY with the request's transaction id, encoded as dhcpv4 does.
func FuzzAnswer(f *testing.F) {
	e := newEnv(f, modules[0])
	e.add(10, 4, ownerA, 0)
	s, _ := e.server(ownerA)
	f.Cleanup(func() { s.Close() })
	c := e.client
	for i, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeDecline,
		dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeInform, dhcpv4.MessageTypeNone} {
		fk := c.fake(i)
		fk.ip = ipN(10)
		f.Add(fk.msg(mt, dhcpv4.WithClientIP(fk.ip.AsSlice()), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ipN(11).AsSlice())),
			dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ownerA.AsSlice()))).ToBytes())
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if netio.Check(b, netio.DefaultMaxHops) != netio.DropNone {
			return
		}
		m, rep := s.answer(context.Background(), &netio.Packet{Data: b})
		if rep == nil {
			return
		}
		if rep.OpCode != dhcpv4.OpcodeBootReply || rep.TransactionID != m.TransactionID {
			t.Fatalf("reply %s to %s", rep.Summary(), m.Summary())
		}
		checkEncode(t, rep) // the bytes send writes are dhcpv4's
	})
}
