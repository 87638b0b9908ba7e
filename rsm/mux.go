package rsm

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/events"
)

// Mux is the clusterlog.Applier that runs the registered machines: it
// routes each data entry by its envelope's machine id, and each
// configuration change to the Membership machine, inside the transaction
// that records the applied index. It dedupes requests (DedupeWindow),
// writes and restores the composite snapshot, and publishes the machines'
// events once their entries are durable.
//
// Register every machine before the node starts; the node's goroutine is
// the only caller of the Applier methods after that.
type Mux struct {
	log     *slog.Logger
	publish func([]events.Event)

	mu       sync.Mutex // guards machines (Register against the node's calls)
	machines map[ID]Machine

	pending []events.Event // events of applied entries not yet committed; node goroutine only
}

var (
	_ clusterlog.Applier     = (*Mux)(nil)
	_ clusterlog.ConfChecker = (*Mux)(nil)
)

// NewMux returns a Mux with no machines. publish receives every event the
// machines return, with Seq set to its position in the log, in log order, after
// the entry is durably applied; it is called on the node's goroutine and
// must not block for long. A nil publish drops the events.
func NewMux(publish func(events.Event), logger *slog.Logger) *Mux {
	if publish == nil {
		return NewBatchMux(nil, logger)
	}
	return NewBatchMux(func(evs []events.Event) {
		for _, ev := range evs {
			publish(ev)
		}
	}, logger)
}

// NewBatchMux is NewMux with publish receiving the events of every entry
// a committed transaction applied at once, in log order (an event stream
// takes them under one lock). publish must not keep evs.
func NewBatchMux(publish func(evs []events.Event), logger *slog.Logger) *Mux {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if publish == nil {
		publish = func([]events.Event) {}
	}
	return &Mux{
		log:      logger.With("subsystem", "rsm"),
		publish:  publish,
		machines: make(map[ID]Machine),
	}
}

// Register adds a machine. Its id must be a machine id (1..254) not yet
// registered (ErrDuplicateMachine).
func (m *Mux) Register(mc Machine) error {
	id := mc.ID()
	if id == idEnd || id == idDedupe {
		return fmt.Errorf("rsm: register: machine id %d is reserved", id)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.machines[id]; ok {
		return fmt.Errorf("%w: %d", ErrDuplicateMachine, id)
	}
	m.machines[id] = mc
	return nil
}

func (m *Mux) machine(id ID) Machine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.machines[id]
}

func (m *Mux) sorted() []Machine {
	m.mu.Lock()
	defer m.mu.Unlock()
	ms := make([]Machine, 0, len(m.machines))
	for _, mc := range m.machines {
		ms = append(ms, mc)
	}
	slices.SortFunc(ms, func(a, b Machine) int { return int(a.ID()) - int(b.ID()) })
	return ms
}

// bucketOf names machine id's bucket in the AppTx (SPEC.md).
func bucketOf(id ID) []byte { return []byte{'m', byte(id)} }

func machineTx(tx *clusterlog.AppTx, id ID) (Tx, error) {
	return tx.Bucket(bucketOf(id))
}

// MachineTx returns machine id's key space in tx, for work outside the log's
// entries: loading a machine's state when the log is opened, or importing
// state written by an earlier version.
func MachineTx(tx *clusterlog.AppTx, id ID) (Tx, error) { return machineTx(tx, id) }

// Apply implements clusterlog.Applier.
func (m *Mux) Apply(tx *clusterlog.AppTx, e clusterlog.Entry) ([]byte, error) {
	if e.Kind == clusterlog.KindConfChange {
		mc := m.machine(Membership)
		if mc == nil {
			return nil, nil // no membership machine: raft's change alone
		}
		return m.runConf(tx, mc, confEntry(e))
	}
	env, err := ParseEnvelope(e.Data)
	if err != nil {
		m.log.Error("skipping entry", "index", e.Index, "err", err)
		return nil, fmt.Errorf("%w: entry %d: %w", clusterlog.ErrRejected, e.Index, err)
	}
	mc := m.machine(env.Machine)
	if mc == nil {
		m.log.Error("skipping entry for an unknown machine", "index", e.Index, "machine", env.Machine)
		return nil, fmt.Errorf("%w: entry %d: %w %d", clusterlog.ErrRejected, e.Index, ErrUnknownMachine, env.Machine)
	}
	ent := Entry{Index: e.Index, Term: e.Term, Proposer: env.Proposer, Request: env.Request, Cmd: env.Cmd}
	if env.Request == 0 {
		return m.run(tx, mc, ent)
	}
	dd, err := tx.Bucket(bucketDedupe)
	if err != nil {
		return nil, err
	}
	if first, reply, ok := lookupRequest(dd, env.Proposer, env.Request); ok {
		m.log.Debug("request applied before; not again", "index", e.Index, "first", first,
			"proposer", env.Proposer, "request", env.Request)
		return reply, nil
	}
	if expiredRequest(dd, env.Proposer, env.Request) {
		m.log.Warn("refusing a request below its proposer's window: it may have applied already",
			"index", e.Index, "proposer", env.Proposer, "request", env.Request)
		return nil, fmt.Errorf("%w: entry %d: %w: proposer %d request %d", clusterlog.ErrRejected, e.Index, ErrRequestExpired, env.Proposer, env.Request)
	}
	reply, err := m.run(tx, mc, ent)
	if err != nil {
		return nil, err
	}
	return reply, recordRequest(dd, env.Proposer, env.Request, e.Index, reply)
}

func confEntry(e clusterlog.Entry) Entry {
	return Entry{
		Index: e.Index, Term: e.Term, Proposer: e.Proposer, Cmd: e.Change.Context,
		Conf: &Conf{Voters: slices.Clone(e.Voters), Learners: slices.Clone(e.Learners)},
	}
}

// run applies ent to mc and queues its events.
func (m *Mux) run(tx *clusterlog.AppTx, mc Machine, ent Entry) ([]byte, error) {
	res, err := m.apply(tx, mc, ent)
	return res.Reply, err
}

// apply applies ent to mc and queues its events at places ent.Event, ….
func (m *Mux) apply(tx *clusterlog.AppTx, mc Machine, ent Entry) (Result, error) {
	mt, err := machineTx(tx, mc.ID())
	if err != nil {
		return Result{}, err
	}
	res, err := mc.Apply(mt, ent)
	if err != nil {
		return Result{}, fmt.Errorf("rsm: machine %d: apply entry %d: %w", mc.ID(), ent.Index, err)
	}
	m.queue(ent, res.Events)
	return res, nil
}

func (m *Mux) queue(ent Entry, evs []events.Event) {
	for i, ev := range evs {
		ev.Seq = events.SeqOf(ent.Index, ent.Event+uint32(i))
		m.pending = append(m.pending, ev)
	}
}

// runConf applies a configuration-change entry to the Membership machine
// and, if it made a new view, tells every other machine that observes
// views, in id order, in the same entry: their events follow the NEWVIEW.
func (m *Mux) runConf(tx *clusterlog.AppTx, mc Machine, ent Entry) ([]byte, error) {
	res, err := m.apply(tx, mc, ent)
	if err != nil {
		return nil, err
	}
	var view *events.Membership
	for _, ev := range res.Events {
		if v := ev.Membership(); ev.Desc == events.MSNewView && v != nil {
			view = v
		}
	}
	if view == nil {
		return res.Reply, nil
	}
	ent.Cmd = nil // the change's context is the Membership machine's
	ent.Event = uint32(len(res.Events))
	for _, o := range m.sorted() {
		vo, ok := o.(ViewObserver)
		if !ok || o.ID() == Membership {
			continue
		}
		mt, err := machineTx(tx, o.ID())
		if err != nil {
			return nil, err
		}
		vr, err := vo.ApplyView(mt, ent, view)
		if err != nil {
			return nil, fmt.Errorf("rsm: machine %d: apply view of entry %d: %w", o.ID(), ent.Index, err)
		}
		m.queue(ent, vr.Events)
		ent.Event += uint32(len(vr.Events))
	}
	return res.Reply, nil
}

// CheckConfChange implements clusterlog.ConfChecker by asking the
// Membership machine, if it is registered and a ConfChecker.
func (m *Mux) CheckConfChange(tx *clusterlog.AppTx, e clusterlog.Entry) error {
	ck, ok := m.machine(Membership).(ConfChecker)
	if !ok {
		return nil
	}
	mt, err := machineTx(tx, Membership)
	if err != nil {
		return err
	}
	return ck.CheckConf(mt, confEntry(e))
}

// Committed implements clusterlog.Applier: it publishes the events of the
// entries the committed transaction applied.
func (m *Mux) Committed(uint64) {
	if len(m.pending) == 0 {
		return
	}
	m.publish(m.pending)
	clear(m.pending) // the events' data is not kept alive
	m.pending = m.pending[:0]
}

// Snapshot implements clusterlog.Applier: the composite snapshot of
// SPEC.md, every registered machine in id order, then the request table.
func (m *Mux) Snapshot(tx *clusterlog.AppTx, w io.Writer) error {
	if err := writeSnapshotHeader(w); err != nil {
		return err
	}
	for _, mc := range m.sorted() {
		mt, err := machineTx(tx, mc.ID())
		if err != nil {
			return err
		}
		sw, err := newSectionWriter(w, mc.ID())
		if err != nil {
			return err
		}
		if err := mc.Snapshot(mt, sw); err != nil {
			return fmt.Errorf("rsm: machine %d: snapshot: %w", mc.ID(), err)
		}
		if err := sw.Close(); err != nil {
			return err
		}
	}
	dd, err := tx.Bucket(bucketDedupe)
	if err != nil {
		return err
	}
	sw, err := newSectionWriter(w, idDedupe)
	if err != nil {
		return err
	}
	if err := writeDedupe(dd, sw); err != nil {
		return err
	}
	if err := sw.Close(); err != nil {
		return err
	}
	_, err = w.Write([]byte{byte(idEnd)})
	return err
}

// Restore implements clusterlog.Applier. The key space is empty; every
// machine in the snapshot restores its section, every registered machine
// missing from it is restored empty, and a section of an unregistered id
// fails with ErrUnknownMachine.
func (m *Mux) Restore(tx *clusterlog.AppTx, s clusterlog.SnapshotMeta, r io.Reader) error {
	m.pending = m.pending[:0]
	restored := make(map[ID]bool)
	err := DecodeSnapshot(r, func(id ID, sr io.Reader) error {
		if id == idDedupe {
			dd, err := tx.Bucket(bucketDedupe)
			if err != nil {
				return err
			}
			return readDedupe(sr, func(p, q, index uint64, reply []byte) error {
				if index == 0 {
					return raiseFloor(dd, p, q) // a floor record
				}
				return recordRequest(dd, p, q, index, reply)
			})
		}
		mc := m.machine(id)
		if mc == nil {
			return &SnapshotError{Offset: -1, Reason: fmt.Sprintf("section for machine %d", id), Err: ErrUnknownMachine}
		}
		mt, err := machineTx(tx, id)
		if err != nil {
			return err
		}
		restored[id] = true
		if err := mc.Restore(mt, sr); err != nil {
			return fmt.Errorf("rsm: machine %d: restore snapshot %d: %w", id, s.Index, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, mc := range m.sorted() {
		if restored[mc.ID()] {
			continue
		}
		mt, err := machineTx(tx, mc.ID())
		if err != nil {
			return err
		}
		if err := mc.Restore(mt, bytes.NewReader(nil)); err != nil {
			return fmt.Errorf("rsm: machine %d: restore empty: %w", mc.ID(), err)
		}
	}
	return nil
}
