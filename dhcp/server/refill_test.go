package server

import (
	"context"
	"net/netip"
	"testing"

	"github.com/corralhq/corral/dhcp/netio"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestManyOutstandingOffers: with more offers out (DISCOVERs whose
// REQUEST has not come) than one refill batch, new clients still get
// offers of distinct addresses: a refill reads past the offered records,
// which the store still holds as free.
func TestManyOutstandingOffers(t *testing.T) {
	forModules(t, func(t *testing.T, e *env) {
		const batch, clients = 8, 60
		e.add(2, 200, ownerA, 0)
		s, cfg := e.server(ownerA)
		for _, n := range s.nets {
			n.offers.batch = batch // before it serves
		}
		srv := serve(t, s, cfg)
		seen := map[netip.Addr]int{}
		for i := range clients {
			f := e.client.fake(i)
			off := f.one(t, f.discover(), srv)
			if off.MessageType() != dhcpv4.MessageTypeOffer {
				t.Fatalf("client %d: %s", i, off.Summary())
			}
			ip := addr4(off.YourIPAddr)
			if j, dup := seen[ip]; dup {
				t.Fatalf("%s offered to clients %d and %d", ip, j, i)
			}
			seen[ip] = i
		}
	})
}

// serve runs s as env.start does, for a server adjusted before it serves.
func serve(t *testing.T, s *Server, cfg Config) netip.AddrPort {
	t.Helper()
	ns, err := netio.Listen(cfg.NetConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ns.Serve(ctx, s.Handle) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		s.Close()
	})
	return ns.Addr()
}
