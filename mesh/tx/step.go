package tx

import (
	"fmt"

	"github.com/corralhq/corral/proto"
)

// The receive rules of proto/SPEC.md §2.7: a frame for another node
// (relay) and a frame for this one (endpoint).

func (t *Table) atRelay(l LinkID, f proto.Frame) {
	abort := f.Flags&proto.FlagAbort != 0
	if f.Hops <= 1 {
		if abort {
			t.stats.Dropped++
			return
		}
		t.bounce(l, &f, proto.CodeHopLimit, fmt.Sprintf("hop limit at node %d", t.cfg.Self))
		return
	}
	f.Hops--
	key := KeyOf(&f.Header)
	e := t.entries[key]
	if e != nil && e.dead {
		t.stats.Dropped++
		return
	}
	reply := f.Flags&proto.FlagReply != 0
	if f.Flags&proto.FlagCreate != 0 && !reply {
		if e != nil {
			t.duplicate(l, &f, e)
			return
		}
		t.relayCreate(l, f, key)
		return
	}
	if e == nil {
		if abort {
			t.stats.Dropped++
			return
		}
		t.bounce(l, &f, proto.CodeLinkFail, fmt.Sprintf("node %d holds no such transaction", t.cfg.Self))
		return
	}
	from, to := e.init, e.respLink
	if reply {
		from, to = to, from
	}
	if e.role != RoleRelay || l != from {
		if abort {
			t.stats.Dropped++
			return
		}
		t.bounce(l, &f, proto.CodeLinkFail, fmt.Sprintf("frame off its path at node %d", t.cfg.Self))
		return
	}
	if isTerminal(&f) {
		t.kill(e, l, statusCode(f.Body), "", &f, false)
		return
	}
	t.mark(e, reply, f.Flags)
	t.relay(to, f)
	t.maybeRemove(e)
}

func (t *Table) relayCreate(l LinkID, f proto.Frame, key Key) {
	ext, err := proto.ParseTxExt(f.Ext)
	if err != nil {
		t.bounce(l, &f, proto.CodeNoRoute, fmt.Sprintf("node %d: %v", t.cfg.Self, err))
		return
	}
	var out LinkID
	var p *entry
	if ext.Parent != (proto.TxRef{}) {
		p = t.entries[Key{NodeID(ext.Parent.Initiator), ext.Parent.MsgID}]
		switch {
		case p == nil || p.dead || p.role != RoleRelay || p.over():
		case l == p.init && NodeID(f.Source) == p.key.Initiator && NodeID(f.Target) == p.resp:
			out = p.respLink
		case l == p.respLink && NodeID(f.Source) == p.resp && NodeID(f.Target) == p.key.Initiator:
			out = p.init
		}
		if out == Local {
			t.bounce(l, &f, proto.CodeNoRoute, fmt.Sprintf("node %d holds no parent %d/%#x on this path", t.cfg.Self, ext.Parent.Initiator, ext.Parent.MsgID))
			return
		}
	} else {
		var ok bool
		if out, ok = t.cfg.Route(NodeID(f.Target)); !ok || out == Local {
			t.bounce(l, &f, proto.CodeNoRoute, fmt.Sprintf("node %d has no route to node %d", t.cfg.Self, f.Target))
			return
		}
	}
	if c := t.cfg.RelayCap; c > 0 && (t.relays[l] >= c || t.relays[out] >= c) {
		t.bounce(l, &f, proto.CodeBusy, fmt.Sprintf("node %d relays %d transactions on a link", t.cfg.Self, c))
		return
	}
	e := &entry{
		key: key, resp: NodeID(f.Target), role: RoleRelay, init: l, respLink: out,
		proto: f.Proto, version: f.Version, opcode: f.Opcode,
	}
	if p != nil {
		e.parentKey = p.key
	}
	t.insert(e, p)
	t.mark(e, false, f.Flags)
	t.relay(out, f)
	t.maybeRemove(e)
}

// duplicate handles a CREATE for a key this node holds. Arriving on
// another link than the first, it came round a loop: the terminal ABORT
// sent back unwinds the loop and returns to this node on the entry's
// outgoing link, which ends the entry. Arriving on the same link, the
// initiator repeated itself: the entry ends now.
func (t *Table) duplicate(l LinkID, f *proto.Frame, e *entry) {
	text := fmt.Sprintf("node %d saw the CREATE twice", t.cfg.Self)
	t.bounce(l, f, proto.CodeHopLimit, text)
	if l == e.init {
		t.kill(e, l, proto.CodeHopLimit, text, nil, false)
	}
}

func (t *Table) atEndpoint(l LinkID, f proto.Frame) {
	key := KeyOf(&f.Header)
	abort := f.Flags&proto.FlagAbort != 0
	reply := f.Flags&proto.FlagReply != 0
	e := t.entries[key]
	if e != nil && e.dead {
		t.stats.Dropped++
		return
	}
	if f.Flags&proto.FlagCreate != 0 && !reply {
		if e != nil {
			t.duplicate(l, &f, e)
			return
		}
		if key.Initiator == t.cfg.Self {
			// Our own key, not in the table: a CREATE from a previous
			// life of this node, or forged. Nobody here answers it.
			t.stats.Dropped++
			return
		}
		t.respond(l, f, key)
		return
	}
	if e == nil {
		if abort {
			t.stats.Dropped++
			return
		}
		t.bounce(l, &f, proto.CodeState, fmt.Sprintf("node %d holds no such transaction", t.cfg.Self))
		return
	}
	want, from := RoleResponder, e.init
	if reply {
		want, from = RoleInitiator, e.respLink
	}
	if e.role != want || l != from {
		if abort {
			t.stats.Dropped++
			return
		}
		t.bounce(l, &f, proto.CodeLinkFail, fmt.Sprintf("frame off its path at node %d", t.cfg.Self))
		return
	}
	if isTerminal(&f) {
		t.kill(e, l, statusCode(f.Body), "", &f, false)
		return
	}
	done := e.cmdD
	if reply {
		done = e.repD
	}
	if e.over() || (done && (!abort || f.Flags&proto.FlagDelete != 0)) {
		t.stats.Dropped++
		return
	}
	t.mark(e, reply, f.Flags)
	t.deliver(e, f)
	t.maybeRemove(e)
}

func (t *Table) respond(l LinkID, f proto.Frame, key Key) {
	ext, err := proto.ParseTxExt(f.Ext)
	if err != nil {
		t.bounce(l, &f, proto.CodeNoRoute, fmt.Sprintf("node %d: %v", t.cfg.Self, err))
		return
	}
	var p *entry
	if ext.Parent != (proto.TxRef{}) {
		p = t.entries[Key{NodeID(ext.Parent.Initiator), ext.Parent.MsgID}]
		if p == nil || p.dead || p.role == RoleRelay || p.over() || t.remoteLink(p) != l || t.otherEnd(p) != NodeID(f.Source) {
			t.bounce(l, &f, proto.CodeNoRoute, fmt.Sprintf("node %d holds no parent %d/%#x on this path", t.cfg.Self, ext.Parent.Initiator, ext.Parent.MsgID))
			return
		}
	}
	if isTerminal(&f) {
		// A terminal ABORT that opens nothing: nobody to tell.
		t.stats.Dropped++
		return
	}
	e := &entry{
		key: key, resp: t.cfg.Self, role: RoleResponder, init: l, respLink: Local,
		proto: f.Proto, version: f.Version, opcode: f.Opcode,
	}
	if p != nil {
		e.parentKey = p.key
	}
	t.insert(e, p)
	t.mark(e, false, f.Flags)
	t.deliver(e, f)
	t.maybeRemove(e)
}
