package groups

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/types/event"
)

// maxEntryEvents bounds the events of one log entry: the place of an
// event in its entry has 20 bits (event.SeqShift).
const maxEntryEvents = 1<<event.SeqShift - 1

// Machine is the groups machine (rsm.Groups). Apply, ApplyView, Snapshot,
// Restore and Load run on the node's goroutine; the queries may be called
// from any goroutine.
type Machine struct {
	log *slog.Logger

	mu sync.Mutex // guards st: the log's goroutine writes it, the queries read it
	st state

	// self is the node whose deliveries are counted (SetSelf); the
	// counters are of messages (and their bytes) applied with a recipient
	// on it, once per recipient.
	self                      atomic.Uint64
	delivered, deliveredBytes atomic.Uint64
}

// SetSelf names the node whose members' deliveries Delivered counts.
func (m *Machine) SetSelf(node uint64) { m.self.Store(node) }

// Delivered returns how many messages, and payload bytes, the machine has
// applied for members on the SetSelf node, counted once per member (a
// BROADCAST, for every subscriber, is not counted). Not part of the
// replicated state: it counts from the process's start.
func (m *Machine) Delivered() (msgs, bytes uint64) {
	return m.delivered.Load(), m.deliveredBytes.Load()
}

var (
	_ rsm.Machine      = (*Machine)(nil)
	_ rsm.ViewObserver = (*Machine)(nil)
)

// state is the mirror of the machine's Tx.
type state struct {
	applied  uint64
	batches  map[uint64]batchPos // by node: the last batch applied
	sessions map[sessKey]*session
	byMember map[uint64]*session
	groups   map[string]*group
}

type sessKey struct{ node, key uint64 }

// batchPos is where a node's sequence of batches stands: the last batch
// applied (run, n), and the run before, whose late batches are refused.
type batchPos struct{ run, n, prevRun uint64 }

type session struct {
	node, key, member uint64
	pid               uint32
	name              string
	groups            map[string]uint64 // group → born-on
	parts             map[uint64]int    // transfer → bytes stored
}

func (s *session) gm(bornOn uint64) event.GroupMember {
	return event.GroupMember{Node: s.node, Member: s.member, Pid: s.pid, Name: s.name, BornOn: bornOn}
}

// group holds the slices events hand out: they are replaced, never
// modified, when the group changes, so events may share them.
type group struct {
	members []event.GroupMember // oldest first (BornOn, Member)
	to      []uint64            // member ids, ascending
}

func newState() state {
	return state{batches: map[uint64]batchPos{}, sessions: map[sessKey]*session{}, byMember: map[uint64]*session{}, groups: map[string]*group{}}
}

// NewMachine returns a machine with no state; Load or Restore gives it the
// log's.
func NewMachine(log *slog.Logger) *Machine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Machine{log: log.With("subsystem", "groups"), st: newState()}
}

// ID implements rsm.Machine.
func (*Machine) ID() rsm.ID { return rsm.Groups }

// GroupInfo is one group of Groups.
type GroupInfo struct {
	Name    string
	Members int
}

// Members returns the group's members, oldest first, and the Seq of the
// last group event the answer reflects.
func (m *Machine) Members(name string) (seq uint64, members []event.GroupMember) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g := m.st.groups[name]; g != nil {
		members = slices.Clone(g.members)
	}
	return m.st.applied, members
}

// Groups returns every group with members, sorted by name.
func (m *Machine) Groups() []GroupInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]GroupInfo, 0, len(m.st.groups))
	for name, g := range m.st.groups {
		out = append(out, GroupInfo{name, len(g.members)})
	}
	slices.SortFunc(out, func(a, b GroupInfo) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Session returns the member id of node's session key.
func (m *Machine) Session(node, key uint64) (member uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s := m.st.sessions[sessKey{node, key}]; s != nil {
		return s.member, true
	}
	return 0, false
}

// Applied returns the Seq of the last event the machine produced: the
// state reflects every group event up to it.
func (m *Machine) Applied() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.applied
}

// Tx keys (SPEC.md, "State").
var keyApplied = []byte("a")

func sessionKey(node, key uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte{'s'}, node), key)
}

func memberKey(member uint64, name string) []byte {
	k := binary.BigEndian.AppendUint64([]byte{'g'}, member)
	return append(append(k, byte(len(name))), name...)
}

func partKey(member, xfer uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64([]byte{'p'}, member), xfer)
}

func sessionValue(s *session) []byte {
	v := binary.LittleEndian.AppendUint64(nil, s.member)
	v = binary.LittleEndian.AppendUint32(v, s.pid)
	return proto.AppendString16(v, s.name)
}

// Apply implements rsm.Machine: it applies one batch. A batch that does
// not parse changes nothing and is answered with one result holding the
// error; otherwise every command gets its result, in order.
func (m *Machine) Apply(tx rsm.Tx, e rsm.Entry) (rsm.Result, error) {
	// Events must not alias the log: one copy, which the events' payloads
	// share.
	h, cmds, err := ParseBatch(bytes.Clone(e.Cmd))
	if err != nil {
		return rsm.Result{Reply: AppendRefusal(nil, Refusal{Status: proto.CodeField, Text: err.Error()})}, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.st.order(h); !ok {
		return rsm.Result{Reply: AppendRefusal(nil, r)}, nil
	}
	if err := tx.Put(batchKey(h.Node), batchValue(m.st.batches[h.Node])); err != nil {
		return rsm.Result{}, err
	}
	node := h.Node
	a := &apply{m: m, tx: tx, e: e, node: node}
	// Most commands make one event: room for as many, in two
	// allocations rather than two per event.
	a.events = make([]events.Event, 0, len(cmds))
	a.slab = make([]event.Group, 0, len(cmds))
	rs := make([]CmdResult, len(cmds))
	for i := range cmds {
		r, err := a.cmd(uint32(i), &cmds[i])
		if err != nil {
			return rsm.Result{}, fmt.Errorf("groups: entry %d command %d (%v): %w", e.Index, i, cmds[i].Op, err)
		}
		rs[i] = r
	}
	if err := a.finish(); err != nil {
		return rsm.Result{}, err
	}
	return rsm.Result{Events: a.events, Reply: AppendResults(nil, rs)}, nil
}

// order decides whether batch h comes next from its node, and if so
// records it as applied: the first batch of a new run, or the next of the
// current one. Otherwise it returns the refusal: ResultOutOfOrder for a
// batch that overtook one not yet applied (its agent proposes it again),
// CodeState for one applied already or of a run that was replaced.
func (st *state) order(h Header) (Refusal, bool) {
	pos, seen := st.batches[h.Node]
	switch {
	case seen && h.Run == pos.run && h.N == pos.n+1:
		pos.n = h.N
	case h.N == 1 && (!seen || (h.Run != pos.run && h.Run != pos.prevRun)):
		pos = batchPos{run: h.Run, n: 1, prevRun: pos.run}
	case seen && h.Run == pos.run && h.N <= pos.n:
		return Refusal{proto.CodeState, fmt.Sprintf("batch %d of run %#x of node %d was applied already (the last is %d)", h.N, h.Run, h.Node, pos.n)}, false
	case seen && h.Run == pos.prevRun:
		return Refusal{proto.CodeState, fmt.Sprintf("batch %d of run %#x of node %d: that run was replaced by run %#x", h.N, h.Run, h.Node, pos.run)}, false
	default:
		return Refusal{ResultOutOfOrder, fmt.Sprintf("batch %d of run %#x of node %d out of order: the last applied is %d of run %#x", h.N, h.Run, h.Node, pos.n, pos.run)}, false
	}
	st.batches[h.Node] = pos
	return Refusal{}, true
}

// ResultOutOfOrder is the status of the Refusal of a batch that overtook
// an earlier batch of its run not applied yet.
const ResultOutOfOrder = proto.CodeTryAgain

func batchKey(node uint64) []byte { return binary.BigEndian.AppendUint64([]byte{'o'}, node) }

func batchValue(p batchPos) []byte {
	le := binary.LittleEndian
	return le.AppendUint64(le.AppendUint64(le.AppendUint64(nil, p.run), p.n), p.prevRun)
}

// ApplyView implements rsm.ViewObserver: it closes, reason node down,
// every session of a node that is not in the view.
func (m *Machine) ApplyView(tx rsm.Tx, e rsm.Entry, view *events.Membership) (rsm.Result, error) {
	in := make(map[uint64]bool, len(view.Members))
	for _, n := range view.Members {
		in[n.ID] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a := &apply{m: m, tx: tx, e: e}
	for _, s := range m.sortedSessions(func(s *session) bool { return !in[s.node] }) {
		if !a.room(len(s.groups)) {
			// Deterministic on every node; the sessions stay until the
			// next view.
			m.log.Error("too many group events for one entry; sessions of nodes that left stay open", "index", e.Index)
			break
		}
		if err := a.closeSession(s, event.LeaveNodeDown); err != nil {
			return rsm.Result{}, fmt.Errorf("groups: view of entry %d: %w", e.Index, err)
		}
	}
	if err := a.finish(); err != nil {
		return rsm.Result{}, err
	}
	return rsm.Result{Events: a.events}, nil
}

func (m *Machine) sortedSessions(keep func(*session) bool) []*session {
	var ss []*session
	for _, s := range m.st.sessions {
		if keep(s) {
			ss = append(ss, s)
		}
	}
	slices.SortFunc(ss, func(a, b *session) int {
		return cmp.Or(cmp.Compare(a.node, b.node), cmp.Compare(a.key, b.key))
	})
	return ss
}

// apply is the work on one entry.
type apply struct {
	m      *Machine
	tx     rsm.Tx
	e      rsm.Entry
	node   uint64 // the batch's node: the proposing agent's node id
	events []events.Event
	// slab holds the events' data while it has room; events are
	// read-only once emitted, so they may share one allocation.
	slab []event.Group
}

func (a *apply) nextSeq() uint64 { return event.SeqOf(a.e.Index, a.e.Event+uint32(len(a.events))) }

// room reports whether n more events fit in the entry.
func (a *apply) room(n int) bool {
	return int(a.e.Event)+len(a.events)+n <= maxEntryEvents
}

func (a *apply) emit(desc events.Descriptor, g event.Group) uint64 {
	seq := a.nextSeq()
	var d *event.Group
	if len(a.slab) < cap(a.slab) {
		a.slab = append(a.slab, g)
		d = &a.slab[len(a.slab)-1]
	} else {
		d = new(event.Group)
		*d = g
	}
	a.events = append(a.events, events.Event{Desc: desc, Data: d})
	return seq
}

func (a *apply) finish() error {
	if len(a.events) == 0 {
		return nil
	}
	a.m.st.applied = a.nextSeq() - 1
	return a.tx.Put(keyApplied, binary.LittleEndian.AppendUint64(nil, a.m.st.applied))
}

func refuse(code proto.Code, format string, args ...any) CmdResult {
	return CmdResult{Status: code, Text: fmt.Sprintf(format, args...)}
}

// cmd applies command i. Its error is a failed Tx; a refused command is
// its result.
func (a *apply) cmd(i uint32, c *Cmd) (CmdResult, error) {
	st := &a.m.st
	if c.Op == OpReset {
		ss := a.m.sortedSessions(func(s *session) bool { return s.node == a.node })
		n := 0
		for _, s := range ss {
			n += len(s.groups)
		}
		if !a.room(n) {
			return refuse(proto.CodeTooLarge, "RESET: %d events do not fit in the entry", n), nil
		}
		first := a.nextSeq()
		for _, s := range ss {
			if err := a.closeSession(s, event.LeaveProcDown); err != nil {
				return CmdResult{}, err
			}
		}
		r := CmdResult{Delivered: uint32(len(ss))}
		if n > 0 {
			r.Seq = first
		}
		return r, nil
	}
	s := st.sessions[sessKey{a.node, c.Key}]
	if c.Op == OpOpen {
		return a.open(i, c, s)
	}
	if s == nil {
		return refuse(proto.CodeNoMember, "%v: no session %#x of node %d", c.Op, c.Key, a.node), nil
	}
	switch c.Op {
	case OpClose:
		if c.Reason < event.LeaveLeft || c.Reason > event.LeaveBehind {
			return refuse(proto.CodeField, "CLOSE: bad reason %d", c.Reason), nil
		}
		if !a.room(len(s.groups)) {
			return refuse(proto.CodeTooLarge, "CLOSE: %d events do not fit in the entry", len(s.groups)), nil
		}
		r := CmdResult{Member: s.member, Delivered: uint32(len(s.groups))}
		if len(s.groups) > 0 {
			r.Seq = a.nextSeq()
		}
		return r, a.closeSession(s, c.Reason)
	case OpJoin:
		return a.join(c, s)
	case OpLeave:
		if r, ok := checkGroup(c); !ok {
			return r, nil
		}
		if _, ok := s.groups[c.Group]; !ok {
			return refuse(proto.CodeNoMember, "LEAVE: member %d is not in group %q", s.member, c.Group), nil
		}
		if !a.room(1) {
			return refuse(proto.CodeTooLarge, "LEAVE: the entry is full of events"), nil
		}
		seq, n, err := a.leave(s, c.Group, event.LeaveLeft)
		return CmdResult{Member: s.member, Seq: seq, Delivered: uint32(n)}, err
	case OpSend:
		return a.send(c, s)
	case OpPart:
		return a.part(c, s)
	}
	return refuse(proto.CodeField, "unknown op %d", c.Op), nil
}

func checkGroup(c *Cmd) (CmdResult, bool) {
	switch {
	case c.Group == "":
		return refuse(proto.CodeField, "%v: empty group name", c.Op), false
	case len(c.Group) > MaxGroupName:
		return refuse(proto.CodeTooLarge, "%v: group name is %d bytes, limit %d", c.Op, len(c.Group), MaxGroupName), false
	case !utf8.ValidString(c.Group):
		return refuse(proto.CodeField, "%v: group name is not UTF-8", c.Op), false
	}
	return CmdResult{}, true
}

func (a *apply) open(i uint32, c *Cmd, s *session) (CmdResult, error) {
	switch {
	case s != nil:
		return refuse(proto.CodeState, "OPEN: session %#x of node %d exists (member %d)", c.Key, a.node, s.member), nil
	case len(c.Name) > MaxMemberName:
		return refuse(proto.CodeTooLarge, "OPEN: member name is %d bytes, limit %d", len(c.Name), MaxMemberName), nil
	case !utf8.ValidString(c.Name):
		return refuse(proto.CodeField, "OPEN: member name is not UTF-8"), nil
	}
	s = &session{node: a.node, key: c.Key, member: event.SeqOf(a.e.Index, i), pid: c.Pid, name: c.Name,
		groups: map[string]uint64{}, parts: map[uint64]int{}}
	if err := a.tx.Put(sessionKey(s.node, s.key), sessionValue(s)); err != nil {
		return CmdResult{}, err
	}
	a.m.st.add(s)
	return CmdResult{Member: s.member}, nil
}

func (st *state) add(s *session) {
	st.sessions[sessKey{s.node, s.key}] = s
	st.byMember[s.member] = s
}

func (a *apply) join(c *Cmd, s *session) (CmdResult, error) {
	if r, ok := checkGroup(c); !ok {
		return r, nil
	}
	if _, ok := s.groups[c.Group]; ok {
		return refuse(proto.CodeState, "JOIN: member %d is in group %q already", s.member, c.Group), nil
	}
	g := a.m.st.groups[c.Group]
	if g != nil && len(g.members) >= MaxMembers {
		return refuse(proto.CodeTooLarge, "JOIN: group %q has %d members, limit %d", c.Group, len(g.members), MaxMembers), nil
	}
	if !a.room(1) {
		return refuse(proto.CodeTooLarge, "JOIN: the entry is full of events"), nil
	}
	seq := a.nextSeq()
	if err := a.tx.Put(memberKey(s.member, c.Group), binary.LittleEndian.AppendUint64(nil, seq)); err != nil {
		return CmdResult{}, err
	}
	g = a.m.st.joined(c.Group, s, seq)
	a.emit(events.GSJoin, event.Group{Name: c.Group, From: s.gm(seq), Members: g.members, To: g.to})
	return CmdResult{Member: s.member, Seq: seq, Delivered: uint32(len(g.to))}, nil
}

// joined adds s to group name with born-on seq, in new slices.
func (st *state) joined(name string, s *session, seq uint64) *group {
	s.groups[name] = seq
	old := st.groups[name]
	if old == nil {
		old = &group{}
	}
	g := &group{
		members: sortMembers(append(slices.Clip(old.members), s.gm(seq))),
		to:      insertID(old.to, s.member),
	}
	st.groups[name] = g
	return g
}

func sortMembers(ms []event.GroupMember) []event.GroupMember {
	slices.SortFunc(ms, func(a, b event.GroupMember) int {
		return cmp.Or(cmp.Compare(a.BornOn, b.BornOn), cmp.Compare(a.Member, b.Member))
	})
	return ms
}

// insertID returns a new sorted slice of ids and id.
func insertID(ids []uint64, id uint64) []uint64 {
	i, _ := slices.BinarySearch(ids, id)
	return slices.Insert(slices.Clone(ids), i, id)
}

// leave takes s out of group name, with a LEAVE to the remaining members
// (and to s, if it left itself or fell behind). It returns the event's seq and recipients.
func (a *apply) leave(s *session, name string, why event.LeaveReason) (uint64, int, error) {
	bornOn := s.groups[name]
	if err := a.tx.Delete(memberKey(s.member, name)); err != nil {
		return 0, 0, err
	}
	delete(s.groups, name)
	old := a.m.st.groups[name]
	g := &group{}
	if len(old.members) > 1 {
		g.members = slices.DeleteFunc(slices.Clone(old.members), func(x event.GroupMember) bool { return x.Member == s.member })
		g.to = slices.DeleteFunc(slices.Clone(old.to), func(id uint64) bool { return id == s.member })
		a.m.st.groups[name] = g
	} else {
		delete(a.m.st.groups, name)
	}
	to := g.to
	if why == event.LeaveLeft || why == event.LeaveBehind {
		// A member that left, or was closed for falling behind, is still
		// connected and hears it.
		to = insertID(g.to, s.member)
	}
	seq := a.emit(events.GSLeave, event.Group{Name: name, From: s.gm(bornOn), Reason: why, Members: g.members, To: to})
	return seq, len(to), nil
}

// closeSession leaves every group of s (in name order), drops its
// transfers and ends it. The caller checked that the events fit.
func (a *apply) closeSession(s *session, why event.LeaveReason) error {
	for _, name := range slices.Sorted(maps.Keys(s.groups)) {
		if _, _, err := a.leave(s, name, why); err != nil {
			return err
		}
	}
	for _, xfer := range slices.Sorted(maps.Keys(s.parts)) {
		if err := a.tx.Delete(partKey(s.member, xfer)); err != nil {
			return err
		}
	}
	if err := a.tx.Delete(sessionKey(s.node, s.key)); err != nil {
		return err
	}
	delete(a.m.st.sessions, sessKey{s.node, s.key})
	delete(a.m.st.byMember, s.member)
	return nil
}

func (a *apply) send(c *Cmd, s *session) (CmdResult, error) {
	desc := event.MakeDescriptor(event.ClassGroup, uint32(c.Kind))
	switch {
	case desc != events.GSBroadcast && desc != events.GSMulticast && desc != events.GSUnicast && desc != events.GSReply:
		return refuse(proto.CodeField, "SEND: bad kind %d", c.Kind), nil
	case c.Flags&^FlagAssembled != 0:
		return refuse(proto.CodeField, "SEND: unknown flags %#x", c.Flags), nil
	case len(c.Payload) > MaxEntryPayload:
		return refuse(proto.CodeTooLarge, "SEND: payload is %d bytes, limit %d", len(c.Payload), MaxEntryPayload), nil
	case (desc == events.GSUnicast || desc == events.GSReply) && c.Target == 0:
		return refuse(proto.CodeField, "SEND: %v needs a target", desc), nil
	case desc == events.GSReply && c.ReplyTo == 0:
		return refuse(proto.CodeField, "SEND: REPLY needs the seq it answers"), nil
	}
	if desc == events.GSMulticast || desc == events.GSUnicast || c.Group != "" {
		if r, ok := checkGroup(c); !ok {
			return r, nil
		}
	}
	if !a.room(1) {
		return refuse(proto.CodeTooLarge, "SEND: the entry is full of events"), nil
	}
	payload := c.Payload
	if c.Flags&FlagAssembled != 0 {
		have, ok := s.parts[c.Xfer]
		if !ok {
			return refuse(proto.CodeState, "SEND: member %d has no transfer %d", s.member, c.Xfer), nil
		}
		if have+len(c.Payload) > MaxMessage {
			return refuse(proto.CodeTooLarge, "SEND: message is %d bytes, limit %d", have+len(c.Payload), MaxMessage), nil
		}
		k := partKey(s.member, c.Xfer)
		payload = append(append(make([]byte, 0, have+len(c.Payload)), a.tx.Get(k)...), c.Payload...)
		if err := a.tx.Delete(k); err != nil {
			return CmdResult{}, err
		}
		delete(s.parts, c.Xfer)
		if len(payload) == 0 {
			payload = nil
		}
	}
	var to []uint64
	switch desc {
	case events.GSMulticast:
		if g := a.m.st.groups[c.Group]; g != nil {
			to = g.to
		}
	case events.GSUnicast:
		if t := a.m.st.byMember[c.Target]; t != nil {
			if _, ok := t.groups[c.Group]; ok {
				to = []uint64{c.Target}
			}
		}
	case events.GSReply:
		if a.m.st.byMember[c.Target] != nil {
			to = []uint64{c.Target}
		}
	}
	seq := a.emit(desc, event.Group{Name: c.Group, From: s.gm(s.groups[c.Group]), Target: c.Target,
		MsgID: c.MsgID, ReplyTo: c.ReplyTo, Payload: payload, To: to})
	if self := a.m.self.Load(); self != 0 {
		n := uint64(0)
		for _, id := range to {
			if r := a.m.st.byMember[id]; r != nil && r.node == self {
				n++
			}
		}
		a.m.delivered.Add(n)
		a.m.deliveredBytes.Add(n * uint64(len(payload)))
	}
	return CmdResult{Member: s.member, Seq: seq, Delivered: uint32(len(to))}, nil
}

func (a *apply) part(c *Cmd, s *session) (CmdResult, error) {
	if len(c.Payload) > MaxEntryPayload {
		return refuse(proto.CodeTooLarge, "PART: payload is %d bytes, limit %d", len(c.Payload), MaxEntryPayload), nil
	}
	have := s.parts[c.Xfer]
	if have+len(c.Payload) > MaxMessage {
		return refuse(proto.CodeTooLarge, "PART: transfer %d would be %d bytes, limit %d", c.Xfer, have+len(c.Payload), MaxMessage), nil
	}
	k := partKey(s.member, c.Xfer)
	v := append(append(make([]byte, 0, have+len(c.Payload)), a.tx.Get(k)...), c.Payload...)
	if err := a.tx.Put(k, v); err != nil {
		return CmdResult{}, err
	}
	s.parts[c.Xfer] = len(v)
	return CmdResult{Member: s.member}, nil
}

// Load rebuilds the mirror from the machine's Tx; the node calls it when
// it opens the log.
func (m *Machine) Load(tx rsm.Tx) error {
	st, err := load(tx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st = st
	return nil
}

// ErrState is returned (wrapped) by Load for a key space it cannot read.
var ErrState = errors.New("groups: bad state")

func load(tx rsm.Tx) (state, error) {
	st := newState()
	if v := tx.Get(keyApplied); v != nil {
		if len(v) != 8 {
			return st, fmt.Errorf("%w: applied is %d bytes", ErrState, len(v))
		}
		st.applied = binary.LittleEndian.Uint64(v)
	}
	err := tx.Scan([]byte{'o'}, func(k, v []byte) error {
		if len(k) != 9 || len(v) != 24 {
			return fmt.Errorf("%w: batch position %x", ErrState, k)
		}
		le := binary.LittleEndian
		st.batches[binary.BigEndian.Uint64(k[1:])] = batchPos{run: le.Uint64(v), n: le.Uint64(v[8:]), prevRun: le.Uint64(v[16:])}
		return nil
	})
	if err != nil {
		return st, err
	}
	err = tx.Scan([]byte{'s'}, func(k, v []byte) error {
		r := reader{b: v}
		s := &session{member: r.u64("member"), pid: r.u32("pid"), name: r.str16("name"),
			groups: map[string]uint64{}, parts: map[uint64]int{}}
		if len(k) != 17 || r.end() != nil {
			return fmt.Errorf("%w: session %x", ErrState, k)
		}
		s.node, s.key = binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:])
		st.add(s)
		return nil
	})
	if err != nil {
		return st, err
	}
	err = tx.Scan([]byte{'g'}, func(k, v []byte) error {
		if len(k) < 10 || len(k) != 10+int(k[9]) || len(v) != 8 {
			return fmt.Errorf("%w: membership %x", ErrState, k)
		}
		s := st.byMember[binary.BigEndian.Uint64(k[1:])]
		if s == nil {
			return fmt.Errorf("%w: membership %x of no session", ErrState, k)
		}
		s.groups[string(k[10:])] = binary.LittleEndian.Uint64(v)
		return nil
	})
	if err != nil {
		return st, err
	}
	err = tx.Scan([]byte{'p'}, func(k, v []byte) error {
		if len(k) != 17 {
			return fmt.Errorf("%w: transfer %x", ErrState, k)
		}
		s := st.byMember[binary.BigEndian.Uint64(k[1:9])]
		if s == nil {
			return fmt.Errorf("%w: transfer %x of no session", ErrState, k)
		}
		s.parts[binary.BigEndian.Uint64(k[9:])] = len(v)
		return nil
	})
	if err != nil {
		return st, err
	}
	st.buildGroups()
	return st, nil
}

// buildGroups makes the groups from the sessions' memberships.
func (st *state) buildGroups() {
	st.groups = map[string]*group{}
	for _, s := range st.byMember {
		for name, bornOn := range s.groups {
			g := st.groups[name]
			if g == nil {
				g = &group{}
				st.groups[name] = g
			}
			g.members = append(g.members, s.gm(bornOn))
			g.to = append(g.to, s.member)
		}
	}
	for _, g := range st.groups {
		sortMembers(g.members)
		slices.Sort(g.to)
	}
}

// Snapshot implements rsm.Machine (SPEC.md, "Snapshot").
func (m *Machine) Snapshot(tx rsm.Tx, w io.Writer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	le := binary.LittleEndian
	b := append([]byte{snapshotVersion, 0, 0, 0}, le.AppendUint64(nil, m.st.applied)...)
	ss := m.sortedSessions(func(*session) bool { return true })
	b = le.AppendUint32(b, uint32(len(ss)))
	nparts := 0
	for _, s := range ss {
		b = le.AppendUint64(b, s.node)
		b = le.AppendUint64(b, s.key)
		b = le.AppendUint64(b, s.member)
		b = le.AppendUint32(b, s.pid)
		b = proto.AppendString16(b, s.name)
		b = le.AppendUint32(b, uint32(len(s.groups)))
		for _, name := range slices.Sorted(maps.Keys(s.groups)) {
			b = proto.AppendString16(b, name)
			b = le.AppendUint64(b, s.groups[name])
		}
		nparts += len(s.parts)
	}
	b = le.AppendUint32(b, uint32(nparts))
	slices.SortFunc(ss, func(a, b *session) int { return cmp.Compare(a.member, b.member) })
	for _, s := range ss {
		for _, xfer := range slices.Sorted(maps.Keys(s.parts)) {
			p := tx.Get(partKey(s.member, xfer))
			b = le.AppendUint64(b, s.member)
			b = le.AppendUint64(b, xfer)
			b = le.AppendUint32(b, uint32(len(p)))
			b = append(b, p...)
		}
		if len(b) > 1<<20 {
			if _, err := w.Write(b); err != nil {
				return err
			}
			b = b[:0]
		}
	}
	nodes := slices.Sorted(maps.Keys(m.st.batches))
	b = le.AppendUint32(b, uint32(len(nodes)))
	for _, node := range nodes {
		b = le.AppendUint64(b, node)
		b = append(b, batchValue(m.st.batches[node])...)
	}
	_, err := w.Write(b)
	return err
}

const snapshotVersion = 1

// ErrSnapshot is returned (wrapped) by Restore for a snapshot it refuses.
var ErrSnapshot = errors.New("groups: bad snapshot")

// Restore implements rsm.Machine: the key space is empty (the Mux empties
// it); an empty snapshot is the empty state.
func (m *Machine) Restore(tx rsm.Tx, r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(b) > 0 {
		if err := restore(tx, b); err != nil {
			return err
		}
	}
	return m.Load(tx)
}

// restore checks snapshot b and writes it into tx.
func restore(tx rsm.Tx, b []byte) error {
	r := reader{b: b}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrSnapshot, fmt.Sprintf(format, args...))
	}
	if v := r.u8("version"); r.err == nil && v != snapshotVersion {
		return bad("version %d, want %d", v, snapshotVersion)
	}
	r.zero(3, "reserved")
	applied := r.u64("applied")
	if r.err != nil {
		return bad("%v", r.err)
	}
	if err := tx.Put(keyApplied, binary.LittleEndian.AppendUint64(nil, applied)); err != nil {
		return err
	}
	members := map[uint64]bool{}
	groupSize := map[string]int{}
	var last sessKey
	n := r.u32("sessions")
	for i := uint32(0); i < n && r.err == nil; i++ {
		s := &session{node: r.u64("node"), key: r.u64("key"), member: r.u64("member"), pid: r.u32("pid"), name: r.str16("name")}
		ng := r.u32("groups")
		if r.err != nil {
			break
		}
		k := sessKey{s.node, s.key}
		switch {
		case i > 0 && cmp.Or(cmp.Compare(k.node, last.node), cmp.Compare(k.key, last.key)) <= 0:
			return bad("session %d: sessions not in increasing (node, key) order", i)
		case s.member == 0 || members[s.member]:
			return bad("session %d: member id %d zero or repeated", i, s.member)
		case len(s.name) > MaxMemberName || !utf8.ValidString(s.name):
			return bad("session %d: bad member name", i)
		}
		last, members[s.member] = k, true
		if err := tx.Put(sessionKey(s.node, s.key), sessionValue(s)); err != nil {
			return err
		}
		prev := ""
		for j := uint32(0); j < ng && r.err == nil; j++ {
			name, bornOn := r.str16("group"), r.u64("born-on")
			if r.err != nil {
				break
			}
			c := Cmd{Group: name}
			if _, ok := checkGroup(&c); !ok || (j > 0 && name <= prev) {
				return bad("session %d group %d: bad name or not in increasing order", i, j)
			}
			if groupSize[name]++; groupSize[name] > MaxMembers {
				return bad("group %q has more than %d members", name, MaxMembers)
			}
			prev = name
			if err := tx.Put(memberKey(s.member, name), binary.LittleEndian.AppendUint64(nil, bornOn)); err != nil {
				return err
			}
		}
	}
	np := r.u32("transfers")
	var lastM, lastX uint64
	for i := uint32(0); i < np && r.err == nil; i++ {
		member, xfer := r.u64("member"), r.u64("xfer")
		p := r.take(int(min(r.u32("length"), MaxMessage+1)), "transfer")
		if r.err != nil {
			break
		}
		switch {
		case !members[member]:
			return bad("transfer %d of no session", i)
		case i > 0 && cmp.Or(cmp.Compare(member, lastM), cmp.Compare(xfer, lastX)) <= 0:
			return bad("transfer %d: not in increasing (member, xfer) order", i)
		case len(p) > MaxMessage:
			return bad("transfer %d is over %d bytes", i, MaxMessage)
		}
		lastM, lastX = member, xfer
		if err := tx.Put(partKey(member, xfer), bytes.Clone(p)); err != nil {
			return err
		}
	}
	nb := r.u32("batch positions")
	var lastNode uint64
	for i := uint32(0); i < nb && r.err == nil; i++ {
		node, run, n, prev := r.u64("node"), r.u64("run"), r.u64("batch number"), r.u64("previous run")
		if r.err != nil {
			break
		}
		if node == 0 || n == 0 || node <= lastNode {
			return bad("batch position %d: node %d, batch %d: zero, or nodes not in increasing order", i, node, n)
		}
		lastNode = node
		if err := tx.Put(batchKey(node), batchValue(batchPos{run: run, n: n, prevRun: prev})); err != nil {
			return err
		}
	}
	if err := r.end(); err != nil {
		return bad("%v", err)
	}
	return nil
}
