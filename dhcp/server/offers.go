package server

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/corralhq/corral/dsvc"
)

// offer is an address reserved for one client between its OFFER and its
// REQUEST (in.dhcpd's itable/ctable entry). It is not in the store.
type offer struct {
	cid     string
	rec     dsvc.DNRecord // as read when offered: its Sig guards the commit
	expires time.Time
}

// offers is one network's offer cache and free-record cache. An address
// is offered to one client at a time, and a client asking again within
// the TTL gets the same offer.
type offers struct {
	ttl   time.Duration
	batch int // new candidates one refill wants at least (freeBatch; tests lower it)

	mu        sync.Mutex // guards the fields below
	byCID     map[string]*offer
	byIP      map[uint32]*offer // by ipKey: a uint32 hashes much faster than a netip.Addr
	free      []dsvc.DNRecord   // candidates read from the store, not yet offered; may be stale (the commit's signature catches that)
	lastSweep time.Time
}

// ipKey is an IPv4 address as the offer cache's key (records are IPv4;
// anything else is 0, which As4 would panic on).
func ipKey(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func newOffers(ttl time.Duration) *offers {
	return &offers{ttl: ttl, batch: freeBatch, byCID: map[string]*offer{}, byIP: map[uint32]*offer{}}
}

// get returns cid's live offer.
func (o *offers) get(cid string, now time.Time) (*offer, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	of, ok := o.byCID[cid]
	if !ok || now.After(of.expires) {
		return nil, false
	}
	return of, true
}

// heldByOther reports whether ip is offered to a client other than cid.
func (o *offers) heldByOther(ip netip.Addr, cid string, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.heldLocked(ip, cid, now)
}

func (o *offers) heldLocked(ip netip.Addr, cid string, now time.Time) bool {
	of, ok := o.byIP[ipKey(ip)]
	return ok && of.cid != cid && !now.After(of.expires)
}

// appendFree appends to dst the records of rs that keep accepts and no
// client but cid holds an offer for. It takes the lock once per
// freeBatch records, not once per record (a refill reads thousands), and
// releases it between batches, so the workers are not held up for the
// whole of a large refill.
func (o *offers) appendFree(dst, rs []dsvc.DNRecord, cid string, now time.Time, keep func(*dsvc.DNRecord) bool) []dsvc.DNRecord {
	dst = slices.Grow(dst, len(rs))
	for len(rs) > 0 {
		k := min(len(rs), freeBatch)
		o.mu.Lock()
		for i := range rs[:k] {
			if keep(&rs[i]) && !o.heldLocked(rs[i].CIP, cid, now) {
				dst = append(dst, rs[i])
			}
		}
		o.mu.Unlock()
		rs = rs[k:]
	}
	return dst
}

// reserve offers rec to cid unless another client holds rec's address;
// it replaces cid's earlier offer.
func (o *offers) reserve(cid string, rec dsvc.DNRecord, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.heldLocked(rec.CIP, cid, now) {
		return false
	}
	o.sweepLocked(now)
	o.dropLocked(cid)
	of := &offer{cid: cid, rec: rec, expires: now.Add(o.ttl)}
	o.byCID[cid] = of
	o.byIP[ipKey(rec.CIP)] = of
	return true
}

// take pops a free candidate no one holds an offer for and reserves it
// for cid. ok false: the candidates ran out (refill and try again).
func (o *offers) take(cid string, now time.Time) (dsvc.DNRecord, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for len(o.free) > 0 {
		rec := o.free[len(o.free)-1]
		o.free = o.free[:len(o.free)-1]
		if o.heldLocked(rec.CIP, cid, now) {
			continue
		}
		o.sweepLocked(now)
		o.dropLocked(cid)
		of := &offer{cid: cid, rec: rec, expires: now.Add(o.ttl)}
		o.byCID[cid] = of
		o.byIP[ipKey(rec.CIP)] = of
		return rec, true
	}
	return dsvc.DNRecord{}, false
}

// held is how many addresses are offered (an upper bound: expired
// offers not yet swept count too).
func (o *offers) held() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.byIP)
}

// refill replaces the free candidates.
func (o *offers) refill(recs []dsvc.DNRecord) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.free = recs
}

// putFree adds a record just freed (RELEASE) to the candidates.
func (o *offers) putFree(rec dsvc.DNRecord) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.free = append(o.free, rec)
}

// drop forgets cid's offer.
func (o *offers) drop(cid string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.dropLocked(cid)
}

// dropIP forgets the offer of ip, whoever holds it.
func (o *offers) dropIP(ip netip.Addr) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if of, ok := o.byIP[ipKey(ip)]; ok {
		delete(o.byIP, ipKey(ip))
		if o.byCID[of.cid] == of {
			delete(o.byCID, of.cid)
		}
	}
}

// flush forgets every offer and candidate (Reload, as SIGHUP does for
// in.dhcpd).
func (o *offers) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	clear(o.byCID)
	clear(o.byIP)
	o.free = nil
}

func (o *offers) dropLocked(cid string) {
	if of, ok := o.byCID[cid]; ok {
		delete(o.byCID, cid)
		if o.byIP[ipKey(of.rec.CIP)] == of {
			delete(o.byIP, ipKey(of.rec.CIP))
		}
	}
}

// sweepLocked removes expired offers, at most once per TTL, so the maps
// do not grow with clients that never came back.
func (o *offers) sweepLocked(now time.Time) {
	if now.Sub(o.lastSweep) < o.ttl {
		return
	}
	o.lastSweep = now
	for cid, of := range o.byCID {
		if now.After(of.expires) {
			delete(o.byCID, cid)
			if o.byIP[ipKey(of.rec.CIP)] == of {
				delete(o.byIP, ipKey(of.rec.CIP))
			}
		}
	}
}

// len is the number of offers held (tests).
func (o *offers) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.byCID)
}
