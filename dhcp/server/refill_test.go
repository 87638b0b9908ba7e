package server

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/corralhq/corral/dhcp/netio"
	"github.com/corralhq/corral/dsvc"
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

// TestOffersPending: a committed offer (bind) is no longer pending, a
// DISCOVER refreshing it keeps it bound, and every way an offer leaves
// the cache takes it out of the count.
func TestOffersPending(t *testing.T) {
	now := time.Unix(1e9, 0)
	o := newOffers(10 * time.Second)
	rec := func(i byte) dsvc.DNRecord { return dsvc.DNRecord{CIP: netip.AddrFrom4([4]byte{10, 0, 0, i})} }
	for i := byte(1); i <= 4; i++ {
		if !o.reserve(string(rune('a'+i)), rec(i), now) {
			t.Fatalf("reserve %d refused", i)
		}
	}
	o.bind("b", rec(1), now)
	o.bind("c", rec(2), now)
	if got := o.pending(); got != 2 {
		t.Fatalf("pending %d after two binds, want 2", got)
	}
	o.reserve("b", rec(1), now) // the bound client discovers again
	if got := o.pending(); got != 2 {
		t.Fatalf("pending %d after refreshing a bound offer, want 2", got)
	}
	o.reserve("b", rec(9), now) // and is offered another address
	o.drop("d")
	o.dropIP(rec(4).CIP)
	if got := o.pending(); got != 1 {
		t.Fatalf("pending %d, want 1 (b's new offer)", got)
	}
	o.reserve("z", rec(7), now)
	o.mu.Lock()
	o.sweepLocked(now.Add(time.Minute)) // every offer expired
	o.mu.Unlock()
	if got := o.pending(); got != 0 || o.len() != 0 {
		t.Fatalf("pending %d, offers %d after the sweep, want 0", got, o.len())
	}
	o.reserve("y", rec(8), now)
	o.flush()
	if got := o.pending(); got != 0 {
		t.Fatalf("pending %d after flush", got)
	}
}
