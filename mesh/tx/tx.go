package tx

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/corralhq/corral/proto"
)

// NodeID is a node's cluster-wide id (never 0).
type NodeID uint64

// LinkID names a link by the node id of its other end (the mesh keeps one
// link per pair of nodes); the FAILED_LINK extension of a LINKFAIL says
// so. Local (0) in an entry means "this node": the end of the path.
type LinkID uint64

// Local marks the end of a path at this node.
const Local LinkID = 0

// Key names a transaction cluster-wide.
type Key struct {
	Initiator NodeID
	MsgID     uint64
}

// KeyOf returns the key of a routed frame: the initiator is the Target of
// a reply-direction frame and the Source of the others.
func KeyOf(h *proto.Header) Key {
	if h.Flags&proto.FlagReply != 0 {
		return Key{NodeID(h.Target), h.MsgID}
	}
	return Key{NodeID(h.Source), h.MsgID}
}

func (k Key) String() string { return fmt.Sprintf("%d/%#x", k.Initiator, k.MsgID) }

func compareKeys(a, b Key) int {
	if c := cmp.Compare(a.Initiator, b.Initiator); c != 0 {
		return c
	}
	return cmp.Compare(a.MsgID, b.MsgID)
}

// Route returns the first link toward target, if there is a route.
type Route func(target NodeID) (LinkID, bool)

// Config configures a Table.
type Config struct {
	Self NodeID
	// Epoch is this start's boot epoch (< 1<<24): msg ids are
	// Epoch<<40 | counter, so a node that never repeats an epoch never
	// repeats a key.
	Epoch uint32
	Route Route
	// RelayCap bounds the relayed transactions per link (either side of
	// the relay); a CREATE over it is refused with CodeBusy. 0: no cap.
	RelayCap int
	// TombstoneTicks is how long a key ended by a terminal ABORT keeps
	// swallowing frames still in flight (about 2 × the heartbeat timeout).
	TombstoneTicks int
}

// Out is a frame to write on a link.
type Out struct {
	Link  LinkID
	Frame proto.Frame
}

// Delivery is what the local application is told about a transaction.
type Delivery struct {
	Key   Key
	Frame proto.Frame // as received, or synthesized for a LINKFAIL
	// Err is set for a frame with ABORT: a *proto.Error with the Status
	// code (errors.Is(err, proto.ErrLinkFail), proto.ErrBusy, …).
	Err error
	// Closed: both directions are closed, the transaction is over here.
	Closed bool
}

// Ready holds the outputs of the calls since the last Advance, in the
// order they happened.
type Ready struct {
	Msgs       []Out
	Deliveries []Delivery
}

// Role is a node's part in a transaction.
type Role uint8

// Roles.
const (
	RoleInitiator Role = iota + 1
	RoleResponder
	RoleRelay
)

func (r Role) String() string {
	switch r {
	case RoleInitiator:
		return "init"
	case RoleResponder:
		return "resp"
	case RoleRelay:
		return "relay"
	}
	return "role?"
}

// Entry is a snapshot of one transaction's state at this node.
type Entry struct {
	Key                    Key
	Responder              NodeID
	Parent                 Key // zero: not stacked
	Role                   Role
	TowardInit             LinkID // Local at the initiator
	TowardResp             LinkID // Local at the responder
	CmdCreated, CmdDeleted bool
	RepCreated, RepDeleted bool
}

// Stats counts what the table did.
type Stats struct {
	Relayed uint64 // frames forwarded
	// RelayedBytes counts the bodies' bytes of the frames forwarded.
	RelayedBytes uint64
	Dropped      uint64 // frames swallowed (tombstone, ABORT off path, closed direction)
	// Terminal ABORTs this node originated (sent or reported locally), by code.
	LinkFail, NoRoute, HopLimit, Busy uint64
}

// Errors of local calls. Open and Send also return *proto.Error values:
// CodeNoRoute when there is no route, and the code of the terminal ABORT
// (CodeLinkFail, …) for a transaction that one ended.
var (
	ErrUnknown   = errors.New("tx: no such transaction")
	ErrClosed    = errors.New("tx: this direction of the transaction is closed")
	ErrSelf      = errors.New("tx: transaction to this node")
	ErrParent    = errors.New("tx: a child transaction goes to its parent's other end")
	ErrReserved  = errors.New("tx: codes 44-47 are the mesh's own (terminal ABORT)")
	ErrNotRouted = errors.New("tx: link-local frame (source or target 0)")
	ErrEpoch     = errors.New("tx: epoch does not fit 24 bits")
	ErrExhausted = errors.New("tx: msg ids of this epoch are used up")
	ErrConfig    = errors.New("tx: bad config")
)

const (
	epochBits    = 24
	counterBits  = 40
	counterLimit = uint64(1) << counterBits
)

// terminalCodes make an ABORT|DELETE terminal (proto/SPEC.md §2.7).
var terminalCodes = [...]proto.Code{proto.CodeLinkFail, proto.CodeNoRoute, proto.CodeHopLimit, proto.CodeBusy}

// entry is one transaction at this node.
type entry struct {
	key            Key
	resp           NodeID
	parent         *entry
	children       map[Key]*entry // nil until the first child
	role           Role
	init, respLink LinkID
	cmdC, cmdD     bool
	repC, repD     bool
	proto          proto.ProtoID
	version        uint8
	opcode         uint16
	parentKey      Key
	removed        bool
	// dead: ended by a terminal ABORT with code; the entry stays in the
	// map as the tombstone that swallows frames still in flight.
	dead bool
	code proto.Code
}

type tombAt struct {
	e  *entry
	at int64
}

// Table is the transaction table of one node. It is not safe for
// concurrent use: the caller feeds it from one goroutine (or one mutex).
type Table struct {
	cfg     Config
	counter uint64
	now     int64
	entries map[Key]*entry            // open transactions and tombstones
	dead    int                       // tombstones in entries
	byLink  map[LinkID]map[Key]*entry // every open entry by each of its links
	relays  map[LinkID]int            // relay entries per link, for RelayCap
	tombq   []tombAt                  // tombstones, oldest first (expiry order)
	ready   Ready
	stats   Stats
	syn     synth // the last synthesized terminal ABORT's parts
}

// synth caches the parts of synthesized terminal ABORTs, which a link
// failure makes by the thousand with the same code, text and link.
type synth struct {
	ok   bool
	code proto.Code
	text string
	dead LinkID
	ext  []byte
	body []byte
	err  error
}

// New returns an empty table.
func New(cfg Config) (*Table, error) {
	if cfg.Epoch >= 1<<epochBits {
		return nil, fmt.Errorf("%w: %d", ErrEpoch, cfg.Epoch)
	}
	if cfg.Self == 0 || cfg.Route == nil || cfg.RelayCap < 0 {
		return nil, fmt.Errorf("%w: self %d, route set %v, relay cap %d", ErrConfig, cfg.Self, cfg.Route != nil, cfg.RelayCap)
	}
	cfg.TombstoneTicks = max(cfg.TombstoneTicks, 1)
	return &Table{
		cfg:     cfg,
		entries: make(map[Key]*entry),
		byLink:  make(map[LinkID]map[Key]*entry),
		relays:  make(map[LinkID]int),
	}, nil
}

// Ready returns the outputs since the last Advance. The slices are valid
// until Advance.
func (t *Table) Ready() Ready { return t.ready }

// HasReady reports whether Ready holds anything.
func (t *Table) HasReady() bool { return len(t.ready.Msgs)+len(t.ready.Deliveries) > 0 }

// Advance releases what Ready returned.
func (t *Table) Advance() {
	clear(t.ready.Msgs)
	clear(t.ready.Deliveries)
	t.ready.Msgs = t.ready.Msgs[:0]
	t.ready.Deliveries = t.ready.Deliveries[:0]
}

// Stats returns the counters.
func (t *Table) Stats() Stats { return t.stats }

// Len returns the number of open transactions at this node.
func (t *Table) Len() int { return len(t.entries) - t.dead }

// Holds reports whether the table has an entry for k: an open
// transaction or a tombstone. The mesh asks it to tell a CREATE|DELETE
// of a transaction (its last frame, a terminal ABORT) from a one-shot.
func (t *Table) Holds(k Key) bool { return t.entries[k] != nil }

// Tombstones returns the number of keys still swallowing frames.
func (t *Table) Tombstones() int { return t.dead }

// Entries returns every transaction at this node, by key.
func (t *Table) Entries() []Entry {
	out := make([]Entry, 0, t.Len())
	for _, e := range t.entries {
		if e.dead {
			continue
		}
		out = append(out, Entry{
			Key: e.key, Responder: e.resp, Parent: e.parentKey, Role: e.role,
			TowardInit: e.init, TowardResp: e.respLink,
			CmdCreated: e.cmdC, CmdDeleted: e.cmdD, RepCreated: e.repC, RepDeleted: e.repD,
		})
	}
	slices.SortFunc(out, func(a, b Entry) int { return compareKeys(a.Key, b.Key) })
	return out
}

// Tick advances logical time by one: tombstones older than
// TombstoneTicks are forgotten.
func (t *Table) Tick() {
	t.now++
	n := 0
	for n < len(t.tombq) && t.tombq[n].at <= t.now {
		delete(t.entries, t.tombq[n].e.key)
		t.dead--
		t.tombq[n] = tombAt{}
		n++
	}
	t.tombq = t.tombq[n:]
}

// Open starts a transaction to target with the frame f (Proto, Version,
// Opcode, Ext, Body; Flags may hold DELETE for a one-shot request and
// ABORT). With a non-zero parent the transaction is stacked under it: it
// goes to the parent's other end on the parent's path.
func (t *Table) Open(target NodeID, f proto.Frame, parent Key) (Key, error) {
	if target == t.cfg.Self || target == 0 {
		return Key{}, ErrSelf
	}
	if f.Flags&proto.FlagAbort != 0 && terminalCode(statusCode(f.Body)) {
		return Key{}, ErrReserved
	}
	var link LinkID
	var p *entry
	if parent != (Key{}) {
		p = t.entries[parent]
		if p == nil || p.dead || p.role == RoleRelay || p.over() {
			if p != nil && p.dead {
				return Key{}, &proto.Error{Code: p.code, Detail: fmt.Sprintf("parent transaction %v ended", parent)}
			}
			return Key{}, fmt.Errorf("parent %v: %w", parent, ErrUnknown)
		}
		if t.otherEnd(p) != target {
			return Key{}, fmt.Errorf("parent %v, target %d: %w", parent, target, ErrParent)
		}
		link = t.remoteLink(p)
	} else {
		l, ok := t.cfg.Route(target)
		if !ok || l == Local {
			t.stats.NoRoute++
			return Key{}, &proto.Error{Code: proto.CodeNoRoute, Detail: fmt.Sprintf("no route to node %d", target)}
		}
		link = l
	}
	if t.counter+1 >= counterLimit {
		return Key{}, ErrExhausted
	}
	t.counter++
	key := Key{t.cfg.Self, uint64(t.cfg.Epoch)<<counterBits | t.counter}
	e := &entry{
		key: key, resp: target, role: RoleInitiator, init: Local, respLink: link, cmdC: true,
		proto: f.Proto, version: f.Version, opcode: f.Opcode,
	}
	f.Flags = f.Flags&(proto.FlagDelete|proto.FlagAbort) | proto.FlagCreate
	f.Hops = proto.HopLimit
	f.MsgID = key.MsgID
	f.Source = uint64(t.cfg.Self)
	f.Target = uint64(target)
	if p != nil {
		e.parentKey = parent
		f.Ext = proto.AppendTxExt(slices.Clip(f.Ext), proto.TxExt{Parent: proto.TxRef{Initiator: uint64(parent.Initiator), MsgID: parent.MsgID}})
	}
	t.insert(e, p)
	e.cmdD = f.Flags&proto.FlagDelete != 0
	t.send(link, f)
	return key, nil
}

// Send sends f on an open transaction in this node's direction: Body,
// Ext, and optionally DELETE (half-close) or ABORT in Flags. A responder's
// first frame carries CREATE|REPLY, set here. After this node's DELETE
// only an ABORT without DELETE (asking the other end to finish) may
// follow.
func (t *Table) Send(key Key, f proto.Frame) error {
	e := t.entries[key]
	if e == nil || e.dead || e.role == RoleRelay || e.over() {
		if e != nil && e.dead {
			return &proto.Error{Code: e.code, Detail: fmt.Sprintf("transaction %v ended", key)}
		}
		return fmt.Errorf("%v: %w", key, ErrUnknown)
	}
	flags := f.Flags & (proto.FlagDelete | proto.FlagAbort)
	if flags&proto.FlagAbort != 0 && terminalCode(statusCode(f.Body)) {
		return ErrReserved
	}
	mine := e.cmdD
	if e.role == RoleResponder {
		mine = e.repD
	}
	if mine && flags != proto.FlagAbort {
		return fmt.Errorf("%v: %w", key, ErrClosed)
	}
	if f.Proto == 0 && f.Opcode == 0 {
		f.Proto, f.Version, f.Opcode = e.proto, e.version, e.opcode
	}
	reply := e.role == RoleResponder
	if reply {
		flags |= proto.FlagReply
		if !e.repC && !mine {
			flags |= proto.FlagCreate
		}
	}
	f.Flags = flags
	f.Hops = proto.HopLimit
	f.MsgID = key.MsgID
	f.Source = uint64(t.cfg.Self)
	f.Target = uint64(t.otherEnd(e))
	if !mine {
		t.mark(e, reply, flags)
	}
	t.send(t.remoteLink(e), f)
	t.maybeRemove(e)
	return nil
}

// Close half-closes this node's direction (DELETE without data).
func (t *Table) Close(key Key) error {
	return t.Send(key, proto.Frame{Header: proto.Header{Flags: proto.FlagDelete}})
}

// Abort ends this node's direction with an error (ABORT|DELETE with a
// Status), or, when that direction is closed already, asks the other end
// to end its own (ABORT alone).
func (t *Table) Abort(key Key, code proto.Code, text string) error {
	flags := proto.FlagAbort | proto.FlagDelete
	if e := t.entries[key]; e != nil && !e.dead && ((e.role == RoleInitiator && e.cmdD) || (e.role == RoleResponder && e.repD)) {
		flags = proto.FlagAbort
	}
	return t.Send(key, proto.Frame{
		Header: proto.Header{Flags: flags},
		Body:   proto.AppendStatus(nil, &proto.Status{Code: code, Text: text}),
	})
}

// Step takes a routed frame received on link. Transaction-level errors are
// answered or swallowed here and never returned: an error means the frame
// is not the table's (link-local), and says nothing about the link.
func (t *Table) Step(link LinkID, f proto.Frame) error {
	if f.Source == 0 || f.Target == 0 {
		return ErrNotRouted
	}
	if link == Local {
		return fmt.Errorf("%w: frame from link 0", ErrConfig)
	}
	if NodeID(f.Target) == t.cfg.Self {
		t.atEndpoint(link, f)
	} else {
		t.atRelay(link, f)
	}
	return nil
}

// LinkDown ends every transaction whose recorded path uses link: a relay
// sends one terminal ABORT CodeLinkFail on its other link, an endpoint
// reports one locally; children before parents, in key order.
func (t *Table) LinkDown(link LinkID) {
	set := t.byLink[link]
	if len(set) == 0 {
		return
	}
	// Detached first: its entries all go, so unlink need not delete them
	// one by one from it.
	delete(t.byLink, link)
	t.ready.Msgs = slices.Grow(t.ready.Msgs, len(set))
	t.ready.Deliveries = slices.Grow(t.ready.Deliveries, len(set))
	roots := make([]*entry, 0, len(set))
	for _, e := range set {
		if e.parent == nil || set[e.parent.key] == nil {
			roots = append(roots, e)
		}
	}
	slices.SortFunc(roots, func(a, b *entry) int { return compareKeys(a.key, b.key) })
	text := fmt.Sprintf("link from node %d lost", t.cfg.Self)
	for _, e := range roots {
		t.kill(e, link, proto.CodeLinkFail, text, nil, true)
	}
	delete(t.relays, link)
}

// Unsent takes back a frame the table gave to link that could not be
// written there (no room in time): an open transaction that lost a frame
// would go on with a hole in its stream, so it ends with a terminal ABORT
// CodeBusy on both its sides, children before parents, like a link
// failure that concerns it alone. The ABORTs on link come last in Ready:
// they are the frames the caller may have to wait longest for. Frames of
// a key the table no longer holds open are ignored.
func (t *Table) Unsent(link LinkID, f proto.Frame) {
	if f.Source == 0 || f.Target == 0 {
		return
	}
	e := t.entries[KeyOf(&f.Header)]
	if e == nil || e.dead {
		return
	}
	text := fmt.Sprintf("node %d: no room for the transaction on the link to node %d", t.cfg.Self, link)
	// The frames toward link, made before kill unlinks the entries: the
	// other end's side of every entry of the subtree that uses link.
	var far []Out
	var walk func(e *entry)
	walk = func(e *entry) {
		kids := make([]*entry, 0, len(e.children))
		for _, c := range e.children {
			kids = append(kids, c)
		}
		slices.SortFunc(kids, func(a, b *entry) int { return compareKeys(a.key, b.key) })
		for _, c := range kids {
			walk(c)
		}
		switch {
		case e.role == RoleRelay && (e.init == link || e.respLink == link):
			far = append(far, Out{link, t.terminalFrame(e, e.init == link, proto.CodeBusy, text, Local)})
		case (e.role == RoleInitiator || e.role == RoleResponder) && !e.over() && t.remoteLink(e) == link:
			far = append(far, Out{link, t.terminalFrame(e, e.role == RoleResponder, proto.CodeBusy, text, Local)})
		}
	}
	walk(e)
	t.kill(e, link, proto.CodeBusy, text, nil, false)
	t.ready.Msgs = append(t.ready.Msgs, far...)
}

// kill ends e and its subtree after a terminal ABORT f that came in on
// dead (forwarded at a relay, delivered at an endpoint), or with a
// synthesized one (f nil) after dead went down (gone) or was found
// unusable. Children go first, in key order.
func (t *Table) kill(e *entry, dead LinkID, code proto.Code, text string, f *proto.Frame, gone bool) {
	p := e.parent
	t.killTree(e, dead, code, text, f, gone)
	// A parent closed both ways was kept only for its children.
	t.maybeRemove(p)
}

func (t *Table) killTree(e *entry, dead LinkID, code proto.Code, text string, f *proto.Frame, gone bool) {
	if len(e.children) > 0 {
		kids := make([]*entry, 0, len(e.children))
		for _, c := range e.children {
			kids = append(kids, c)
		}
		slices.SortFunc(kids, func(a, b *entry) int { return compareKeys(a.key, b.key) })
		for _, c := range kids {
			t.killTree(c, dead, code, text, nil, gone)
		}
	}
	if f == nil {
		t.count(code)
	}
	switch e.role {
	case RoleRelay:
		survivor := e.init
		if dead == e.init {
			survivor = e.respLink
		}
		switch {
		case f != nil:
			// Forwarded by its direction: both sides may be one link
			// when a route pointed back.
			to := e.respLink
			if f.Flags&proto.FlagReply != 0 {
				to = e.init
			}
			t.relay(to, *f)
		case survivor == dead && gone:
			// Both sides on the link that went: nobody to tell.
		default:
			t.send(survivor, t.terminalFrame(e, survivor == e.init, code, text, dead))
		}
	case RoleInitiator, RoleResponder:
		if e.over() {
			// Kept only for its children: the application knows
			// it is over.
			break
		}
		var d Delivery
		if f != nil {
			d = Delivery{Key: e.key, Frame: *f, Err: abortErr(f.Body), Closed: true}
		} else {
			d = Delivery{Key: e.key, Frame: t.terminalFrame(e, e.role == RoleInitiator, code, text, dead), Err: t.syn.err, Closed: true}
		}
		t.ready.Deliveries = append(t.ready.Deliveries, d)
	}
	t.unlink(e)
	e.dead, e.code = true, code
	t.dead++
	t.tombq = append(t.tombq, tombAt{e, t.now + int64(t.cfg.TombstoneTicks)})
}

// terminalFrame is the terminal ABORT for e travelling toward the
// initiator (toInit) or the responder.
func (t *Table) terminalFrame(e *entry, toInit bool, code proto.Code, text string, dead LinkID) proto.Frame {
	flags := proto.FlagAbort | proto.FlagDelete
	src, dst := e.key.Initiator, e.resp
	if toInit {
		flags |= proto.FlagReply
		if !e.repC {
			flags |= proto.FlagCreate
		}
		src, dst = dst, src
	}
	if text == "" {
		text = code.String()
	}
	if c := &t.syn; !c.ok || c.code != code || c.text != text || c.dead != dead {
		// One body, extension and error for a whole abort storm. Link
		// ids are node ids in the mesh, so the extension names the link.
		*c = synth{ok: true, code: code, text: text, dead: dead}
		if code == proto.CodeLinkFail && dead != Local {
			c.ext = proto.AppendTxExt(nil, proto.TxExt{FailedLink: [2]uint64{uint64(t.cfg.Self), uint64(dead)}})
		}
		c.body = proto.AppendStatus(nil, &proto.Status{Code: code, Text: text})
		c.err = abortErr(c.body)
	}
	ext, body := t.syn.ext, t.syn.body
	return proto.Frame{
		Header: proto.Header{
			Proto: e.proto, Version: e.version, Opcode: e.opcode, Flags: flags, Hops: proto.HopLimit,
			MsgID: e.key.MsgID, Source: uint64(src), Target: uint64(dst),
		},
		Ext:  ext,
		Body: body,
	}
}

// bounce answers f on the link it came in on with an ABORT|DELETE in the
// other direction (terminal for codes 44–47).
func (t *Table) bounce(l LinkID, f *proto.Frame, code proto.Code, text string) {
	flags := proto.FlagAbort | proto.FlagDelete
	if f.Flags&proto.FlagReply == 0 {
		flags |= proto.FlagReply
		if f.Flags&proto.FlagCreate != 0 {
			flags |= proto.FlagCreate
		}
	}
	t.count(code)
	t.send(l, proto.Frame{
		Header: proto.Header{
			Proto: f.Proto, Version: f.Version, Opcode: f.Opcode, Flags: flags, Hops: proto.HopLimit,
			MsgID: f.MsgID, Source: f.Target, Target: f.Source,
		},
		Body: proto.AppendStatus(nil, &proto.Status{Code: code, Text: text}),
	})
}

func (t *Table) count(code proto.Code) {
	switch code {
	case proto.CodeLinkFail:
		t.stats.LinkFail++
	case proto.CodeNoRoute:
		t.stats.NoRoute++
	case proto.CodeHopLimit:
		t.stats.HopLimit++
	case proto.CodeBusy:
		t.stats.Busy++
	}
}

func (t *Table) send(l LinkID, f proto.Frame) {
	t.ready.Msgs = append(t.ready.Msgs, Out{Link: l, Frame: f})
}

// relay forwards f, another node's frame, on l, counting it.
func (t *Table) relay(l LinkID, f proto.Frame) {
	t.stats.Relayed++
	t.stats.RelayedBytes += uint64(len(f.Body))
	t.send(l, f)
}

func (t *Table) deliver(e *entry, f proto.Frame) {
	d := Delivery{Key: e.key, Frame: f, Closed: e.cmdD && e.repD}
	if f.Flags&proto.FlagAbort != 0 {
		d.Err = abortErr(f.Body)
	}
	t.ready.Deliveries = append(t.ready.Deliveries, d)
}

func (t *Table) mark(e *entry, reply bool, flags proto.Flags) {
	c, d := flags&proto.FlagCreate != 0, flags&proto.FlagDelete != 0
	if reply {
		e.repC, e.repD = e.repC || c, e.repD || d
	} else {
		e.cmdC, e.cmdD = e.cmdC || c, e.cmdD || d
	}
}

func (t *Table) insert(e *entry, parent *entry) {
	t.entries[e.key] = e
	for _, l := range [2]LinkID{e.init, e.respLink} {
		if l == Local {
			continue
		}
		m := t.byLink[l]
		if m == nil {
			m = make(map[Key]*entry)
			t.byLink[l] = m
		}
		m[e.key] = e
		if e.role == RoleRelay {
			t.relays[l]++
		}
	}
	if parent != nil {
		e.parent = parent
		if parent.children == nil {
			parent.children = make(map[Key]*entry)
		}
		parent.children[e.key] = e
	}
}

// maybeRemove drops e once DELETE has passed both ways and no child
// remains, then its parent if that was waiting for its last child.
func (t *Table) maybeRemove(e *entry) {
	for e != nil && !e.removed && e.cmdD && e.repD && len(e.children) == 0 {
		p := e.parent
		t.remove(e)
		e = p
	}
}

func (t *Table) remove(e *entry) {
	delete(t.entries, e.key)
	t.unlink(e)
}

// unlink takes e out of the link index and its parent's children.
func (t *Table) unlink(e *entry) {
	e.removed = true
	for _, l := range [2]LinkID{e.init, e.respLink} {
		if l == Local {
			continue
		}
		if m := t.byLink[l]; m != nil {
			delete(m, e.key)
			if len(m) == 0 {
				delete(t.byLink, l)
			}
		}
		if e.role == RoleRelay {
			if t.relays[l]--; t.relays[l] <= 0 {
				delete(t.relays, l)
			}
		}
	}
	if e.parent != nil {
		delete(e.parent.children, e.key)
		e.parent = nil
	}
}

// over: DELETE passed both ways; the entry stays only for its children
// and is invisible to the application.
func (e *entry) over() bool { return e.cmdD && e.repD }

// otherEnd is the node at the far end of an endpoint's transaction.
func (t *Table) otherEnd(e *entry) NodeID {
	if e.role == RoleInitiator {
		return e.resp
	}
	return e.key.Initiator
}

// remoteLink is the link an endpoint's transaction leaves this node on.
func (t *Table) remoteLink(e *entry) LinkID {
	if e.role == RoleInitiator {
		return e.respLink
	}
	return e.init
}

func statusCode(body []byte) proto.Code {
	if len(body) < 2 {
		return proto.CodeNone
	}
	return proto.Code(binary.LittleEndian.Uint16(body))
}

func terminalCode(c proto.Code) bool { return slices.Contains(terminalCodes[:], c) }

// Terminal reports a terminal ABORT: ABORT|DELETE with code 44–47. It
// closes both directions at every hop and nobody answers it.
func Terminal(f *proto.Frame) bool { return isTerminal(f) }

// isTerminal reports a terminal ABORT: ABORT|DELETE with code 44–47.
func isTerminal(f *proto.Frame) bool {
	const ad = proto.FlagAbort | proto.FlagDelete
	return f.Flags&ad == ad && terminalCode(statusCode(f.Body))
}

func abortErr(body []byte) error {
	st, err := proto.ParseStatus(body, "ABORT")
	if err != nil {
		return err
	}
	return &proto.Error{Code: st.Code, Detail: st.Text}
}
