package server

import (
	"context"
	"fmt"
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

// TestAppendFree: a refill keeps the records its filter accepts, skips
// those offered to another client, and keeps those offered to the
// asking client or whose offer has expired.
func TestAppendFree(t *testing.T) {
	o := newOffers(time.Minute)
	now := time.Unix(1000, 0)
	rec := func(i byte) dsvc.DNRecord {
		return dsvc.DNRecord{CID: []byte{0}, CIP: netip.AddrFrom4([4]byte{10, 0, 0, i})}
	}
	o.reserve("other", rec(1), now)
	o.reserve("me", rec(2), now)
	o.reserve("late", rec(3), now.Add(-2*time.Minute)) // expired by now
	rs := []dsvc.DNRecord{rec(1), rec(2), rec(3), rec(4), rec(5)}
	notFive := func(r *dsvc.DNRecord) bool { return r.CIP != rec(5).CIP }
	got := o.appendFree([]dsvc.DNRecord{rec(9)}, rs, "me", now, notFive)
	var ips []string
	for _, r := range got {
		ips = append(ips, r.CIP.String())
	}
	if want := "[10.0.0.9 10.0.0.2 10.0.0.3 10.0.0.4]"; fmt.Sprint(ips) != want {
		t.Fatalf("appendFree = %v, want %s", ips, want)
	}
	// More records than one batch under the lock: every third is held.
	var many []dsvc.DNRecord
	for i := range 3*freeBatch + 7 {
		r := dsvc.DNRecord{CID: []byte{0}, CIP: netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}
		if i%3 == 0 {
			o.reserve(fmt.Sprint("c", i), r, now)
		}
		many = append(many, r)
	}
	got = o.appendFree(nil, many, "me", now, func(*dsvc.DNRecord) bool { return true })
	if want := len(many) - (len(many)+2)/3; len(got) != want {
		t.Fatalf("appendFree of %d records, a third held: %d, want %d", len(many), len(got), want)
	}
	for _, r := range got {
		if b := r.CIP.As4(); (int(b[2])<<8|int(b[3]))%3 == 0 {
			t.Fatalf("appendFree kept %s, held by another client", r.CIP)
		}
	}
}
