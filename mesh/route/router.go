package route

import "fmt"

// LinkUp records a live link to peer with the given cost (≥ 1) and queues
// the full table for it.
func (r *Router) LinkUp(peer NodeID, cost Metric) error {
	if err := r.checkPeer(peer, cost); err != nil {
		return err
	}
	if _, ok := r.links[peer]; ok {
		return fmt.Errorf("%w: %d", ErrLinkUp, peer)
	}
	r.links[peer] = cost
	r.told[peer] = map[NodeID]Update{}
	r.dump[peer] = true
	r.flush()
	return nil
}

// LinkReset records that the link to peer was replaced by a new one, as
// when both ends dial at once: what was in flight on the old link may be
// lost, in both directions. A replacement is not a change of topology, so
// nothing is retracted and no route moves: the routes learned from peer
// stay in use, the full table is queued for it again (it may have missed
// adverts), and a route peer does not advertise again within ResetTicks
// ticks is dropped, as the retraction lost with the old link would have
// done. The neighbour resets its end too, so its full table is on its way.
// Loop freedom does not depend on it: feasibility holds whatever was lost.
func (r *Router) LinkReset(peer NodeID) error {
	if _, ok := r.links[peer]; !ok {
		return fmt.Errorf("%w: %d", ErrNoLink, peer)
	}
	st := map[NodeID]uint64{}
	for id, d := range r.dests {
		if _, ok := d.via[peer]; ok {
			st[id] = r.now + uint64(r.cfg.ResetTicks)
		}
	}
	r.stale[peer] = st
	r.told[peer] = map[NodeID]Update{}
	r.dump[peer] = true
	for id, q := range r.reqs {
		if q.to == peer && q.tries > 0 {
			// Perhaps lost: ask again on the new link now.
			r.queueReq(peer, SeqnoRequest{Origin: id, Seqno: q.seqno, HopCount: r.cfg.SeqnoReqHops})
		}
	}
	r.flush()
	return nil
}

// Resend queues for peer, again, what a message that could not be sent to
// it carried (lost): for each origin it named, the advert peer should have
// now — a retraction if it should have none. Use it when a send failed on
// a link that lives on; a lost retraction must not leave peer a route
// through this node, so this is not the full table (which names only the
// finite routes).
func (r *Router) Resend(peer NodeID, lost Message) error {
	if _, ok := r.links[peer]; !ok {
		return fmt.Errorf("%w: %d", ErrNoLink, peer)
	}
	for _, u := range lost.Updates {
		if cur, ok := r.told[peer][u.Origin]; ok {
			r.queueUpdate(peer, cur)
		} else {
			r.queueUpdate(peer, Update{Origin: u.Origin, Seqno: u.Seqno, Metric: Inf})
		}
	}
	for _, q := range lost.Requests {
		if _, ok := r.outFor(peer).reqs[q.Origin]; !ok {
			r.queueReq(peer, q)
		}
	}
	r.flush()
	return nil
}

// LinkCost changes the cost of the link to peer.
func (r *Router) LinkCost(peer NodeID, cost Metric) error {
	if err := r.checkPeer(peer, cost); err != nil {
		return err
	}
	old, ok := r.links[peer]
	if !ok {
		return fmt.Errorf("%w: %d", ErrNoLink, peer)
	}
	if old == cost {
		return nil
	}
	r.links[peer] = cost
	r.reselectVia(peer)
	r.flush()
	return nil
}

// LinkDown drops the link to peer, every route learned over it and every
// message still queued for it, and selects again. Unknown peers are
// ignored, so the caller may report a link's end more than once.
func (r *Router) LinkDown(peer NodeID) {
	if _, ok := r.links[peer]; !ok {
		return
	}
	r.reselectVia(peer)
	for _, d := range r.dests {
		delete(d.via, peer)
	}
	delete(r.links, peer)
	delete(r.told, peer)
	delete(r.stale, peer)
	delete(r.out, peer)
	for id, q := range r.reqs {
		if q.to == peer {
			delete(r.reqs, id) // lost with the link: ask again elsewhere now
		}
	}
	r.flush()
}

func (r *Router) checkPeer(peer NodeID, cost Metric) error {
	if peer == 0 || peer == r.cfg.Self {
		return fmt.Errorf("%w: %d", ErrPeer, peer)
	}
	if cost == 0 || cost == Inf {
		return fmt.Errorf("%w: %d", ErrCost, cost)
	}
	return nil
}

func (r *Router) reselectVia(peer NodeID) {
	for id, d := range r.dests {
		if _, ok := d.via[peer]; ok {
			r.reselect[id] = true
		}
	}
}

// Step handles a message from the neighbour from: its updates, then its
// requests. A malformed message is refused whole (ErrMalformed).
func (r *Router) Step(from NodeID, m Message) error {
	if _, ok := r.links[from]; !ok {
		return fmt.Errorf("%w: %d", ErrNoLink, from)
	}
	if err := check(from, m); err != nil {
		return err
	}
	for _, u := range m.Updates {
		r.update(from, u)
	}
	for _, q := range m.Requests {
		r.request(from, q)
	}
	r.flush()
	return nil
}

// check refuses what no correct neighbour sends: every link costs at
// least 1, so a finite metric is at least the hop count, and only the
// neighbour itself is 0 hops (and metric 0) away.
func check(from NodeID, m Message) error {
	for _, u := range m.Updates {
		switch {
		case u.Origin == 0:
			return fmt.Errorf("%w: update for node 0", ErrMalformed)
		case u.Metric == Inf:
		case (u.Hops == 0) != (u.Metric == 0):
			return fmt.Errorf("%w: update for %d: metric %d over %d hops", ErrMalformed, u.Origin, u.Metric, u.Hops)
		case u.Metric < Metric(u.Hops):
			return fmt.Errorf("%w: update for %d: metric %d below its %d hops", ErrMalformed, u.Origin, u.Metric, u.Hops)
		case (u.Hops == 0) != (u.Origin == from):
			return fmt.Errorf("%w: update for %d from %d over %d hops", ErrMalformed, u.Origin, from, u.Hops)
		}
	}
	for _, q := range m.Requests {
		if q.Origin == 0 || q.HopCount == 0 {
			return fmt.Errorf("%w: seqno request for %d with hop count %d", ErrMalformed, q.Origin, q.HopCount)
		}
	}
	return nil
}

func (r *Router) update(from NodeID, u Update) {
	if u.Origin == r.cfg.Self {
		return
	}
	if st := r.stale[from]; st != nil {
		delete(st, u.Origin) // repeated or retracted since the reset
	}
	d := r.dests[u.Origin]
	if u.Metric == Inf || int(u.Hops)+1 >= int(r.cfg.MaxHops) {
		// A retraction, or a route too long to carry a frame.
		if d != nil {
			if _, ok := d.via[from]; ok {
				delete(d.via, from)
				r.reselect[u.Origin] = true
			}
		}
		return
	}
	if d == nil {
		d = &dest{via: map[NodeID]entry{}, metric: Inf, altM: Inf, reported: Change{Dest: u.Origin, Metric: Inf}}
		r.dests[u.Origin] = d
	}
	d.via[from] = entry{seqno: u.Seqno, adv: u.Metric, hops: u.Hops + 1}
	r.reselect[u.Origin] = true
	if r.feasible(u.Origin, u.Seqno, u.Metric) {
		if q := r.reqs[u.Origin]; q != nil && !q.seqno.Newer(u.Seqno) {
			delete(r.reqs, u.Origin) // answered
		}
	} else if d.sel == from {
		// The selected next hop turned unfeasible (§3.8.2.2): ask for a
		// newer seqno so it can be used again, even if an alternate is.
		r.originate(u.Origin, from)
	}
}

func (r *Router) request(from NodeID, q SeqnoRequest) {
	if q.Origin == r.cfg.Self {
		// Raise once to the seqno asked for; a duplicate is not newer.
		if q.Seqno.Newer(r.seqno) {
			r.seqno = q.Seqno
			r.seqnoChanged = true
			r.dirty[r.cfg.Self] = true
		}
		return
	}
	d := r.dests[q.Origin]
	if d != nil && d.sel != 0 && d.sel != from && !q.Seqno.Newer(d.via[d.sel].seqno) {
		// We have what is asked for; the requester has it too unless our
		// advert to it changed, which the flush sends.
		r.dirty[q.Origin] = true
		return
	}
	if q.HopCount <= 1 || d == nil {
		return
	}
	next := d.sel
	if next == 0 || next == from {
		next = r.bestEntry(q.Origin, from, false)
	}
	if next == 0 {
		return
	}
	ex := r.reqs[q.Origin]
	switch {
	case ex != nil && !q.Seqno.Newer(ex.seqno):
		return // duplicate: one outstanding request per origin and seqno
	case ex != nil && ex.tries > 0:
		ex.seqno, ex.to = q.Seqno, next // ours, now asking for more
	default:
		r.reqs[q.Origin] = &request{seqno: q.Seqno, to: next, due: r.now + uint64(r.cfg.ReqRetryTicks)}
	}
	r.queueReq(next, SeqnoRequest{Origin: q.Origin, Seqno: q.Seqno, HopCount: q.HopCount - 1})
}

// originate sends this node's own seqno request for origin to the
// neighbour to, unless one for that seqno is already outstanding.
func (r *Router) originate(origin, to NodeID) {
	src := r.sources[origin]
	if src == nil {
		return // without an FD every route is feasible
	}
	want := src.seqno + 1
	if ex := r.reqs[origin]; ex != nil && !want.Newer(ex.seqno) {
		if ex.tries == 0 { // forwarded for someone else: now ours too, retried
			ex.tries, ex.due = 1, r.now+uint64(r.cfg.ReqRetryTicks)
		}
		return
	}
	r.reqs[origin] = &request{seqno: want, to: to, tries: 1, due: r.now + uint64(r.cfg.ReqRetryTicks)}
	r.queueReq(to, SeqnoRequest{Origin: origin, Seqno: want, HopCount: r.cfg.SeqnoReqHops})
}

// Tick advances logical time: seqno requests are retried or expire,
// feasibility distances unused for SourceGCTicks are forgotten, and routes
// a reset link's neighbour did not repeat are dropped.
func (r *Router) Tick() {
	r.now++
	for _, n := range sortedKeys(r.stale) {
		st := r.stale[n]
		for _, id := range sortedKeys(st) {
			if r.now < st[id] {
				continue
			}
			delete(st, id)
			if d := r.dests[id]; d != nil {
				if _, ok := d.via[n]; ok {
					delete(d.via, n)
					r.reselect[id] = true
				}
			}
		}
		if len(st) == 0 {
			delete(r.stale, n)
		}
	}
	for _, id := range sortedKeys(r.reqs) {
		q := r.reqs[id]
		if r.now < q.due {
			continue
		}
		d, src := r.dests[id], r.sources[id]
		to := NodeID(0)
		if d != nil && d.wants && src != nil && q.tries > 0 {
			if q.tries == reqTries {
				// Given up for now. Still starving, so every answer
				// was lost (with a replaced link, or a send that
				// failed) or is slow: nothing else would ask again.
				// Pause, then start over.
				q.tries++
				q.due = r.now + uint64(r.cfg.ReqRetryTicks)<<(reqTries+1)
				continue
			}
			if q.tries > reqTries {
				q.tries = 0 // the pause is over
			}
			to = r.bestEntry(id, 0, true)
		}
		if to == 0 {
			delete(r.reqs, id) // forwarded and expired, answered another way, or given up
			continue
		}
		q.seqno, q.to = src.seqno+1, to
		q.due = r.now + uint64(r.cfg.ReqRetryTicks)<<q.tries
		q.tries++
		r.queueReq(to, SeqnoRequest{Origin: id, Seqno: q.seqno, HopCount: r.cfg.SeqnoReqHops})
	}
	for id, s := range r.sources {
		if d := r.dests[id]; d != nil && d.sel != 0 {
			s.used = r.now
		} else if r.now-s.used >= uint64(r.cfg.SourceGCTicks) {
			// Every neighbour has had our retraction for a long time.
			delete(r.sources, id)
			if d != nil {
				r.reselect[id] = true
			}
		}
	}
	r.flush()
}

func (r *Router) feasible(origin NodeID, s Seqno, adv Metric) bool {
	src := r.sources[origin]
	return src == nil || s.Newer(src.seqno) || s == src.seqno && adv < src.metric
}

// bestEntry returns the neighbour with the lowest metric towards id (ties
// to the lowest id), other than not; unfeasible: only among unfeasible
// routes (where a starving node sends its request).
func (r *Router) bestEntry(id, not NodeID, unfeasible bool) NodeID {
	d := r.dests[id]
	best, bm := NodeID(0), Inf
	for _, n := range sortedKeys(d.via) {
		e := d.via[n]
		if n == not || unfeasible && r.feasible(id, e.seqno, e.adv) {
			continue
		}
		if m := add(e.adv, r.links[n]); m < bm {
			best, bm = n, m
		}
	}
	return best
}

// selectRoute picks the route to id and its alternate. It marks id dirty
// when what we would advertise changed, and sends a seqno request when the
// best route is unfeasible: none is feasible (starvation, §3.8.2.1), or an
// unfeasible one is better than the selected by more than the hysteresis
// (as babeld does; without it a node could keep a worse route for ever,
// since nothing else refreshes seqnos on reliable links).
func (r *Router) selectRoute(id NodeID) {
	d := r.dests[id]
	if d == nil {
		return
	}
	var best, second, unf NodeID
	bm, sm, um := Inf, Inf, Inf
	curM := Inf
	for _, n := range sortedKeys(d.via) {
		e := d.via[n]
		m := add(e.adv, r.links[n])
		if m == Inf {
			continue
		}
		if !r.feasible(id, e.seqno, e.adv) {
			if m < um {
				unf, um = n, m
			}
			continue
		}
		if n == d.sel {
			curM = m
		}
		if m < bm {
			second, sm = best, bm
			best, bm = n, m
		} else if m < sm {
			second, sm = n, m
		}
	}
	old, oldM, oldS, oldH := d.sel, d.metric, d.seqno, d.hops
	if h := r.cfg.Hysteresis; h > 0 && old != 0 && old != best && curM != Inf && curM <= add(bm, h) {
		d.sel, d.metric, d.alt, d.altM = old, curM, best, bm
	} else {
		d.sel, d.metric, d.alt, d.altM = best, bm, second, sm
	}
	e := d.via[d.sel]
	d.seqno, d.hops = e.seqno, e.hops
	if d.sel != old || d.metric != oldM || d.seqno != oldS || d.hops != oldH {
		r.dirty[id] = true
	}
	d.wants = unf != 0 && (d.sel == 0 || add(um, r.cfg.Hysteresis) < d.metric)
	if d.wants {
		r.originate(id, unf)
	}
}

// flush turns the effects of an input into output: routes selected again,
// adverts queued (FD updated before each finite one), alternates refreshed
// where FD changed, route changes recorded.
func (r *Router) flush() {
	touched := map[NodeID]bool{}
	for len(r.reselect) > 0 || len(r.dirty) > 0 || len(r.dump) > 0 {
		for _, id := range sortedKeys(r.reselect) {
			r.selectRoute(id)
			touched[id] = true
		}
		clear(r.reselect)
		dirty := sortedKeys(r.dirty)
		var all []NodeID
		if len(r.dump) > 0 {
			all = append([]NodeID{r.cfg.Self}, sortedKeys(r.dests)...)
		}
		for _, n := range sortedKeys(r.links) {
			list := dirty
			if r.dump[n] {
				list = all
			}
			for _, o := range list {
				r.advertise(n, o)
			}
		}
		clear(r.dirty)
		clear(r.dump)
	}
	for _, id := range sortedKeys(touched) {
		d := r.dests[id]
		if d == nil {
			continue
		}
		c := Change{Dest: id, NextHop: d.sel, Alt: d.alt, Metric: d.metric}
		if c != d.reported {
			d.reported = c
			r.changes[id] = c
		}
		if d.sel == 0 && len(d.via) == 0 {
			delete(r.dests, id)
			if q := r.reqs[id]; q != nil && q.tries > 0 {
				delete(r.reqs, id) // nobody left to ask
			}
		}
	}
}

// advertise brings neighbour n's view of origin o up to date.
func (r *Router) advertise(n, o NodeID) {
	want, ok := r.advert(n, o)
	told, had := r.told[n][o]
	switch {
	case ok && had && told == want:
	case ok:
		if o != r.cfg.Self && r.updateFD(o, want) {
			r.reselect[o] = true // the alternate may no longer be feasible
		}
		r.told[n][o] = want
		r.queueUpdate(n, want)
	case had:
		delete(r.told[n], o)
		r.queueUpdate(n, Update{Origin: o, Seqno: told.Seqno, Metric: Inf})
	}
}

// advert is what n should have from us for o: our selected route, unless
// it goes through n (split horizon), n is o, or n could not accept it
// (hops).
func (r *Router) advert(n, o NodeID) (Update, bool) {
	if o == r.cfg.Self {
		return Update{Origin: o, Seqno: r.seqno}, true
	}
	d := r.dests[o]
	if d == nil || d.sel == 0 || d.sel == n || o == n {
		return Update{}, false
	}
	e := d.via[d.sel]
	if int(e.hops)+1 >= int(r.cfg.MaxHops) {
		return Update{}, false
	}
	return Update{Origin: o, Seqno: e.seqno, Metric: d.metric, Hops: e.hops}, true
}

// updateFD records a finite advert about to be sent (§3.7.3) and reports
// whether FD changed.
func (r *Router) updateFD(o NodeID, u Update) bool {
	s := r.sources[o]
	switch {
	case s == nil:
		r.sources[o] = &source{seqno: u.Seqno, metric: u.Metric, used: r.now}
		return true
	case u.Seqno.Newer(s.seqno) || u.Seqno == s.seqno && u.Metric < s.metric:
		s.seqno, s.metric, s.used = u.Seqno, u.Metric, r.now
		return true
	}
	s.used = r.now
	return false
}

func (r *Router) outFor(n NodeID) *pending {
	p := r.out[n]
	if p == nil {
		p = &pending{updates: map[NodeID]Update{}, reqs: map[NodeID]SeqnoRequest{}}
		r.out[n] = p
	}
	return p
}

func (r *Router) queueUpdate(n NodeID, u Update) { r.outFor(n).updates[u.Origin] = u }

func (r *Router) queueReq(n NodeID, q SeqnoRequest) {
	if _, ok := r.links[n]; ok {
		r.outFor(n).reqs[q.Origin] = q
	}
}
