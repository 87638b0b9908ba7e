package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/corralhq/corral/dhcp/dhcptab"
	"github.com/corralhq/corral/dsvc"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

// errLost: the record changed under a commit and is no longer this
// client's to take.
var errLost = errors.New("dhcp/server: record taken by another client")

// commitRetries bounds the re-reads after ErrCollision.
const commitRetries = 4

// freeBatch is how many free records one store scan caches.
const freeBatch = 256

var freeCID = []byte{0}

func isFree(r *dsvc.DNRecord) bool { return len(r.CID) == 1 && r.CID[0] == 0 }

// expired: a dynamic lease whose time has passed.
func expired(r *dsvc.DNRecord, now time.Time) bool {
	return r.Flags&(dsvc.DNAutomatic|dsvc.DNManual) == 0 && r.Lease != dsvc.LeasePermanent && int64(r.Lease) < now.Unix()
}

// allocatable: a record this server may give a new DHCP client: owned,
// not MANUAL, UNUSABLE or BOOTP-only, and free or an expired dynamic
// lease.
func (s *Server) allocatable(r *dsvc.DNRecord, now time.Time) bool {
	return s.owns(r) && r.Flags&(dsvc.DNManual|dsvc.DNUnusable|dsvc.DNBootpOnly) == 0 &&
		(isFree(r) || expired(r, now))
}

// lookupCID returns the network's records bound to cid, of any owner.
func (n *network) lookupCID(ctx context.Context, cid []byte) ([]dsvc.DNRecord, error) {
	return n.h.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCID), -1, &dsvc.DNRecord{CID: cid})
}

// lookupIP returns the record of ip.
func (n *network) lookupIP(ctx context.Context, ip netip.Addr) (dsvc.DNRecord, bool, error) {
	rs, err := n.h.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCIP), 1, &dsvc.DNRecord{CIP: ip})
	if err != nil || len(rs) == 0 {
		return dsvc.DNRecord{}, false, err
	}
	return rs[0], true, nil
}

// refill reads free records owned by this server into the candidates:
// never-used ones first, then expired dynamic leases.
func (s *Server) refill(ctx context.Context, n *network, key string, now time.Time) (dsvc.DNRecord, bool, error) {
	n.refillMu.Lock()
	defer n.refillMu.Unlock()
	// Another worker may have refilled while this one waited.
	if rec, ok := n.offers.take(key, now); ok {
		return rec, true, nil
	}
	q := dsvc.Query(0).Eq(dsvc.DNQSIP).Eq(dsvc.DNQFManual).Eq(dsvc.DNQFUnusable).Eq(dsvc.DNQFBootpOnly)
	// Offered records stay free in the store until their REQUEST commits
	// them, and the store returns them again: read past every held one,
	// or under load (more offers out than one batch) each refill would
	// return only offered records and every DISCOVER would go unanswered.
	// Reading held+max(batch, held) makes each refill yield at least as
	// many new candidates as it skips, so the cost per offer stays bounded.
	held := n.offers.held()
	count := held + max(n.offers.batch, held)
	var cands []dsvc.DNRecord
	found := false // any free record, offered or not
	scan := s.scanOwners(n)
	for _, o := range scan {
		rs, err := n.h.LookupDN(ctx, false, q.Eq(dsvc.DNQCID), count, &dsvc.DNRecord{SIP: o, CID: freeCID})
		if err != nil {
			return dsvc.DNRecord{}, false, err
		}
		// A departed peer's records: only this server's share.
		cands = n.offers.appendFree(cands, rs, key, now, s.owns)
		if len(rs) > 0 {
			found = true
		}
	}
	if !found {
		for _, o := range scan {
			rs, err := n.h.LookupDN(ctx, false, q, -1, &dsvc.DNRecord{SIP: o})
			if err != nil {
				return dsvc.DNRecord{}, false, err
			}
			for _, r := range rs {
				if expired(&r, now) && s.owns(&r) {
					cands = append(cands, r)
				}
			}
		}
	}
	// Lowest address last: take pops from the end, so addresses go out in
	// ascending order, as an administrator expects.
	slices.SortFunc(cands, func(a, b dsvc.DNRecord) int { return b.CIP.Compare(a.CIP) })
	n.offers.refill(cands)
	rec, ok := n.offers.take(key, now)
	return rec, ok, nil
}

// discover answers a DISCOVER with an OFFER of this client's binding, the
// address it asks for, or a free one; it writes nothing.
func (s *Server) discover(ctx context.Context, q *request) *dhcpv4.DHCPv4 {
	n := q.n
	if of, ok := n.offers.get(q.key, q.now); ok {
		n.offers.reserve(q.key, of.rec, q.now) // refresh its TTL
		return s.offer(q, of.rec)
	}
	bound, err := n.lookupCID(ctx, q.cid)
	if err != nil {
		s.storeError("discover: lookup client", err)
		return nil
	}
	var pick *dsvc.DNRecord
	for i := range bound {
		r := &bound[i]
		if !s.owns(r) {
			// Another server's binding: let it answer, unless it is a
			// dynamic lease that has run out.
			if r.Flags&dsvc.DNManual != 0 || !expired(r, q.now) {
				s.ctr.notOurs.Add(1)
				return nil
			}
			continue
		}
		if r.Flags&dsvc.DNUnusable != 0 {
			if r.Flags&dsvc.DNManual != 0 {
				return nil // in.dhcpd refuses a client whose manual binding is unusable
			}
			continue
		}
		if r.Flags&dsvc.DNBootpOnly != 0 {
			continue
		}
		if pick == nil || r.Flags&dsvc.DNManual != 0 {
			pick = r
		}
	}
	if pick != nil && n.offers.reserve(q.key, *pick, q.now) {
		return s.offer(q, *pick)
	}
	if want := addr4(q.m.RequestedIPAddress()); want.IsValid() && n.prefix.Contains(want) {
		r, ok, err := n.lookupIP(ctx, want)
		if err == nil && ok && s.allocatable(&r, q.now) && n.offers.reserve(q.key, r, q.now) {
			return s.offerNew(ctx, q, r)
		}
	}
	rec, ok := n.offers.take(q.key, q.now)
	if !ok {
		rec, ok, err = s.refill(ctx, n, q.key, q.now)
		if err != nil {
			s.storeError("discover: free records", err)
			return nil
		}
		if !ok {
			s.ctr.noAddress.Add(1)
			s.log.Warn("no free address", "network", n.name)
			return nil
		}
	}
	return s.offerNew(ctx, q, rec)
}

func (s *Server) offer(q *request, rec dsvc.DNRecord) *dhcpv4.DHCPv4 {
	o := s.options(q, &rec, false)
	lease, _ := s.leaseTime(o, q.m, &rec)
	return s.reply(q, dhcpv4.MessageTypeOffer, rec.CIP, &o, lease)
}

// request answers a REQUEST in each of the client's states (RFC 2131
// §4.3.2).
func (s *Server) request(ctx context.Context, q *request) *dhcpv4.DHCPv4 {
	n := q.n
	sid := addr4(q.m.ServerIdentifier())
	ci := addr4(q.m.ClientIPAddr)
	switch {
	case sid.IsValid() && !sid.IsUnspecified(): // SELECTING
		if !s.serverIDs[sid] {
			n.offers.drop(q.key) // it chose another server
			return nil
		}
		of, ok := n.offers.get(q.key, q.now)
		if !ok {
			return nil // no offer, or it expired: the client will discover again
		}
		want := addr4(q.m.RequestedIPAddress())
		if !want.IsValid() {
			want = ci
		}
		if want != of.rec.CIP {
			return nil
		}
		rec, o, lease, err := s.commit(ctx, q, of.rec, func(r *dsvc.DNRecord) bool {
			return s.owns(r) && (bytes.Equal(r.CID, q.cid) || s.allocatable(r, q.now)) && r.Flags&dsvc.DNUnusable == 0
		})
		if err != nil {
			n.offers.drop(q.key)
			s.commitFailed(err)
			return nil
		}
		// The offer stays until its TTL: a refill read before this commit
		// cannot hand the address to another client meanwhile.
		n.offers.reserve(q.key, rec, q.now)
		return s.reply(q, dhcpv4.MessageTypeAck, rec.CIP, &o, lease)

	case !ci.IsValid() || ci.IsUnspecified(): // INIT-REBOOT
		want := addr4(q.m.RequestedIPAddress())
		if !want.IsValid() {
			return nil
		}
		if !n.prefix.Contains(want) {
			return s.nak(q, "No valid configuration exists on network")
		}
		bound, err := n.lookupCID(ctx, q.cid)
		if err != nil {
			s.storeError("init-reboot: lookup", err)
			return nil
		}
		if len(bound) == 0 {
			return nil // a server not sharing this store may know the client
		}
		r := bound[0]
		for _, b := range bound {
			if b.CIP == want {
				r = b
			}
		}
		if !s.owns(&r) {
			s.ctr.notOurs.Add(1)
			return nil
		}
		switch {
		case r.CIP != want:
			return s.nak(q, "Incorrect IP address.")
		case r.Flags&dsvc.DNUnusable != 0:
			return s.nak(q, "Address unusable.")
		case expired(&r, q.now):
			return s.nak(q, "Lease has expired.")
		}
		return s.extend(ctx, q, r)

	default: // RENEWING (unicast) or REBINDING (broadcast)
		bound, err := n.h.LookupDN(ctx, false, dsvc.Query(0).Eq(dsvc.DNQCID).Eq(dsvc.DNQCIP), 1, &dsvc.DNRecord{CID: q.cid, CIP: ci})
		if err != nil {
			s.storeError("renew: lookup", err)
			return nil
		}
		if len(bound) == 0 {
			s.log.Debug("renew of an unknown binding", "ciaddr", ci.String())
			return nil
		}
		r := bound[0]
		if !s.owns(&r) && time.Duration(q.m.NumSeconds)*time.Second < s.cfg.SecondaryServerTimeout.Duration {
			s.ctr.notOurs.Add(1)
			return nil // give the owner time to answer first
		}
		if r.Flags&dsvc.DNUnusable != 0 {
			return s.nak(q, "Address unusable.")
		}
		return s.extend(ctx, q, r)
	}
}

// extend writes a new lease on a record bound to the client and ACKs.
func (s *Server) extend(ctx context.Context, q *request, r dsvc.DNRecord) *dhcpv4.DHCPv4 {
	rec, o, lease, err := s.commit(ctx, q, r, func(x *dsvc.DNRecord) bool {
		return bytes.Equal(x.CID, q.cid) && x.Flags&dsvc.DNUnusable == 0
	})
	if err != nil {
		s.commitFailed(err)
		return nil
	}
	return s.reply(q, dhcpv4.MessageTypeAck, rec.CIP, &o, lease)
}

// commit writes the client's lease on rec with rec's signature. On
// ErrCollision it rereads the record and, if still takes it, tries
// again. It returns the record as stored and the reply's options.
func (s *Server) commit(ctx context.Context, q *request, rec dsvc.DNRecord, still func(*dsvc.DNRecord) bool) (dsvc.DNRecord, dhcptab.Options, time.Duration, error) {
	for range commitRetries {
		o := s.options(q, &rec, false)
		lease, perm := s.leaseTime(o, q.m, &rec)
		nr := rec
		nr.CID = slices.Clone(q.cid)
		if perm {
			nr.Lease = dsvc.LeasePermanent
		} else {
			nr.Lease = uint32(min(q.now.Add(lease).Unix(), math.MaxUint32-1))
		}
		err := q.n.h.ModifyDN(ctx, &rec, &nr)
		if err == nil {
			s.ctr.commits.Add(1)
			if s.adoptedFrom(&nr) {
				s.met.takeovers.Add(1)
			}
			return nr, o, lease, nil
		}
		if !errors.Is(err, dsvc.ErrCollision) {
			return dsvc.DNRecord{}, o, 0, err
		}
		s.ctr.collisions.Add(1)
		fresh, ok, err := q.n.lookupIP(ctx, rec.CIP)
		if err != nil {
			return dsvc.DNRecord{}, o, 0, err
		}
		if !ok || !still(&fresh) {
			return dsvc.DNRecord{}, o, 0, errLost
		}
		rec = fresh
	}
	return dsvc.DNRecord{}, dhcptab.Options{}, 0, errLost
}

func (s *Server) commitFailed(err error) {
	if errors.Is(err, errLost) {
		s.ctr.lost.Add(1)
		return
	}
	s.storeError("commit", err)
}

func (s *Server) storeError(what string, err error) {
	s.ctr.storeErrors.Add(1)
	s.log.Warn(what, "err", err)
}

// decline marks the declined address UNUSABLE (in.dhcpd keeps the client
// id on it, so an administrator sees who declined it).
func (s *Server) decline(ctx context.Context, q *request) {
	ip := addr4(q.m.RequestedIPAddress())
	if !ip.IsValid() || !q.n.prefix.Contains(ip) {
		return
	}
	q.n.offers.dropIP(ip)
	for range commitRetries {
		r, ok, err := q.n.lookupIP(ctx, ip)
		if err != nil {
			s.storeError("decline: lookup", err)
			return
		}
		if !ok || !bytes.Equal(r.CID, q.cid) {
			return
		}
		nr := r
		nr.Flags |= dsvc.DNUnusable
		err = q.n.h.ModifyDN(ctx, &r, &nr)
		if err == nil {
			s.ctr.declines.Add(1)
			s.log.Warn("address declined", "ip", ip.String(), "client", dhcptab.ClientIDMacro(q.cid))
			return
		}
		if !errors.Is(err, dsvc.ErrCollision) {
			s.storeError("decline", err)
			return
		}
		s.ctr.collisions.Add(1)
	}
}

// release frees the client's binding of ciaddr; MANUAL bindings stay.
func (s *Server) release(ctx context.Context, q *request) {
	ip := addr4(q.m.ClientIPAddr)
	if !ip.IsValid() || !q.n.prefix.Contains(ip) {
		return
	}
	for range commitRetries {
		r, ok, err := q.n.lookupIP(ctx, ip)
		if err != nil {
			s.storeError("release: lookup", err)
			return
		}
		if !ok || !bytes.Equal(r.CID, q.cid) || r.Flags&dsvc.DNManual != 0 {
			return
		}
		nr := r
		nr.CID = []byte{0}
		nr.Lease = 0
		err = q.n.h.ModifyDN(ctx, &r, &nr)
		if err == nil {
			s.ctr.releases.Add(1)
			q.n.offers.drop(q.key)
			if s.owns(&nr) && nr.Flags&(dsvc.DNUnusable|dsvc.DNBootpOnly) == 0 {
				q.n.offers.putFree(nr)
			}
			return
		}
		if !errors.Is(err, dsvc.ErrCollision) {
			s.storeError("release", err)
			return
		}
		s.ctr.collisions.Add(1)
	}
}

// inform answers an INFORM with the options alone.
func (s *Server) inform(q *request) *dhcpv4.DHCPv4 {
	o := s.options(q, nil, false)
	return s.reply(q, dhcpv4.MessageTypeAck, netip.Addr{}, &o, 0)
}

// bootp answers a BOOTP request: the client's BOOTP binding, else a
// BOOTP-only record of this server's, bound permanently at once (BOOTP
// has no REQUEST to commit on).
func (s *Server) bootp(ctx context.Context, q *request) *dhcpv4.DHCPv4 {
	n := q.n
	bound, err := n.lookupCID(ctx, q.cid)
	if err != nil {
		s.storeError("bootp: lookup", err)
		return nil
	}
	for _, r := range bound {
		if r.Flags&dsvc.DNUnusable == 0 && (r.Flags&(dsvc.DNBootpOnly|dsvc.DNManual) != 0 || r.Lease == dsvc.LeasePermanent) {
			if !s.owns(&r) {
				return nil
			}
			return s.bootpReply(q, r)
		}
	}
	qq := dsvc.Query(0).Eq(dsvc.DNQSIP).Eq(dsvc.DNQCID).Eq(dsvc.DNQFBootpOnly).Eq(dsvc.DNQFUnusable)
	for _, o := range s.scanOwners(n) {
		rs, err := n.h.LookupDN(ctx, false, qq, 16, &dsvc.DNRecord{SIP: o, CID: freeCID, Flags: dsvc.DNBootpOnly})
		if err != nil {
			s.storeError("bootp: free records", err)
			return nil
		}
		for _, r := range rs {
			if !s.owns(&r) || n.offers.heldByOther(r.CIP, q.key, q.now) {
				continue
			}
			nr := r
			nr.CID = slices.Clone(q.cid)
			nr.Lease = dsvc.LeasePermanent
			if err := n.h.ModifyDN(ctx, &r, &nr); err != nil {
				if errors.Is(err, dsvc.ErrCollision) {
					s.ctr.collisions.Add(1)
					continue
				}
				s.storeError("bootp: commit", err)
				return nil
			}
			s.ctr.commits.Add(1)
			if s.adoptedFrom(&nr) {
				s.met.takeovers.Add(1)
			}
			return s.bootpReply(q, nr)
		}
	}
	s.ctr.noAddress.Add(1)
	return nil
}

func (s *Server) bootpReply(q *request, r dsvc.DNRecord) *dhcpv4.DHCPv4 {
	o := s.options(q, &r, true)
	rep := s.reply(q, dhcpv4.MessageTypeNone, r.CIP, &o, 0)
	if rep.ServerIPAddr == nil {
		rep.ServerIPAddr = q.n.serverID.AsSlice()
	}
	return rep
}

func (s *Server) nak(q *request, msg string) *dhcpv4.DHCPv4 {
	s.ctr.naks.Add(1)
	rep := s.reply(q, dhcpv4.MessageTypeNak, netip.Addr{}, nil, 0)
	rep.UpdateOption(dhcpv4.OptMessage(msg))
	return rep
}

// options combines the macros of a reply.
func (s *Server) options(q *request, rec *dsvc.DNRecord, bootp bool) dhcptab.Options {
	in := dhcptab.Inputs{ClientClass: q.m.ClassIdentifier(), Network: q.n.name, ClientID: q.cid, BOOTP: bootp}
	if rec != nil {
		in.RecordMacro = rec.Macro
	}
	return s.tab.Load().Options(in)
}

// leaseTime is the lease a reply grants: permanent for a PERMANENT
// record or an infinite LeaseTim; else LeaseTim (the configured default
// without one), or the client's shorter request when LeaseNeg allows
// negotiation (dhcp_network(4)).
func (s *Server) leaseTime(o dhcptab.Options, m *dhcpv4.DHCPv4, r *dsvc.DNRecord) (time.Duration, bool) {
	if r.Flags&dsvc.DNAutomatic != 0 || r.Lease == dsvc.LeasePermanent && r.Flags&dsvc.DNManual != 0 {
		return infinite, true
	}
	lt, ok := o.LeaseTime()
	if !ok || lt <= 0 {
		lt = s.cfg.DefaultLease.Duration
	}
	if lt >= infinite {
		return infinite, true
	}
	if o.LeaseNeg() {
		if v := m.Options.Get(dhcpv4.OptionIPAddressLeaseTime); len(v) == 4 {
			if want := time.Duration(binary.BigEndian.Uint32(v)) * time.Second; want > 0 && want < lt {
				lt = want
			}
		}
	}
	return lt, false
}

// replyPool recycles replies with their option maps: a reply has more
// than eight options, past which a map grows from one group into a
// table, and growing one for every reply was half of BenchmarkReply's
// time. Handle returns its reply with putReply once it is encoded.
var replyPool = sync.Pool{New: func() any { return &dhcpv4.DHCPv4{Options: make(dhcpv4.Options, maxPooledOptions)} }}

// maxPooledOptions bounds the map a pooled reply keeps (a map does not
// shrink): a reply with more options is left to the collector.
const maxPooledOptions = 32

// putReply clears rep, which nothing may use again, and pools it.
func putReply(rep *dhcpv4.DHCPv4) {
	opts := rep.Options
	if opts == nil || len(opts) > maxPooledOptions {
		return
	}
	clear(opts)
	*rep = dhcpv4.DHCPv4{Options: opts}
	replyPool.Put(rep)
}

// infinite is the 0xffffffff-second lease.
const infinite = time.Duration(math.MaxUint32) * time.Second

// seconds is a lease option's value, as dhcpv4's Duration encodes it.
func seconds(d time.Duration) uint32 { return uint32(d / time.Second) }

// msgTypes[t] is option 53's value for message type t; replies share it.
var msgTypes = func() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}()

// reply builds a reply to q (RFC 2131 table 3). lease 0: no lease
// options (INFORM, NAK, BOOTP).
func (s *Server) reply(q *request, mt dhcpv4.MessageType, yiaddr netip.Addr, o *dhcptab.Options, lease time.Duration) *dhcpv4.DHCPv4 {
	m := q.m
	rep := replyPool.Get().(*dhcpv4.DHCPv4) // cleared by putReply
	*rep = dhcpv4.DHCPv4{
		OpCode:        dhcpv4.OpcodeBootReply,
		HWType:        m.HWType,
		TransactionID: m.TransactionID,
		Flags:         m.Flags,
		ClientIPAddr:  net.IPv4zero,
		YourIPAddr:    net.IPv4zero,
		GatewayIPAddr: m.GatewayIPAddr,
		ClientHWAddr:  m.ClientHWAddr,
		Options:       rep.Options,
	}
	if yiaddr.IsValid() {
		rep.YourIPAddr = yiaddr.AsSlice()
	}
	if mt == dhcpv4.MessageTypeAck || mt == dhcpv4.MessageTypeNone {
		rep.ClientIPAddr = m.ClientIPAddr
	}
	if mt != dhcpv4.MessageTypeNone {
		rep.Options[dhcpv4.OptionDHCPMessageType.Code()] = msgTypes[mt : mt+1 : mt+1]
		rep.Options[dhcpv4.OptionServerIdentifier.Code()] = q.n.sid
	}
	// RFC 6842: echo the client identifier; RFC 3046: echo option 82.
	for _, c := range []dhcpv4.OptionCode{dhcpv4.OptionClientIdentifier, dhcpv4.OptionRelayAgentInformation} {
		if v := m.Options.Get(c); v != nil {
			rep.Options[c.Code()] = v
		}
	}
	if mt == dhcpv4.MessageTypeNak || o == nil {
		return rep
	}
	if lease > 0 {
		// The three lease times share one allocation.
		lt := make([]byte, 0, 12)
		lt = binary.BigEndian.AppendUint32(lt, seconds(lease))
		rep.Options[dhcpv4.OptionIPAddressLeaseTime.Code()] = lt[0:4:4]
		if lease < infinite {
			if _, ok := o.Get(dhcpv4.OptionRenewTimeValue.Code()); !ok {
				lt = binary.BigEndian.AppendUint32(lt, seconds(lease/2))
				rep.Options[dhcpv4.OptionRenewTimeValue.Code()] = lt[len(lt)-4 : len(lt) : len(lt)]
			}
			if _, ok := o.Get(dhcpv4.OptionRebindingTimeValue.Code()); !ok {
				lt = binary.BigEndian.AppendUint32(lt, seconds(lease*7/8))
				rep.Options[dhcpv4.OptionRebindingTimeValue.Code()] = lt[len(lt)-4 : len(lt) : len(lt)]
			}
		}
	}
	if _, ok := o.Get(dhcpv4.OptionSubnetMask.Code()); !ok && yiaddr.IsValid() {
		// A client without a mask guesses one from the address class.
		rep.Options[dhcpv4.OptionSubnetMask.Code()] = q.n.mask
	}
	// The parameter request list's octets are the codes (RFC 2132 §9.8).
	prl := m.Options.Get(dhcpv4.OptionParameterRequestList)
	maxMsg := 0
	// MaxMessageSize would make an error for every client without
	// option 57.
	if v := m.Options.Get(dhcpv4.OptionMaximumDHCPMessageSize); len(v) == 2 {
		maxMsg = int(binary.BigEndian.Uint16(v))
	}
	if mt == dhcpv4.MessageTypeNone {
		maxMsg = 0 // BOOTP: 64 octets of vendor area, kept to the 576 minimum
	}
	o.Apply(rep, prl, maxMsg)
	return rep
}
