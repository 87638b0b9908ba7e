package addrsvctest

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/types/event"
)

// ErrDead is what a killed node's Propose returns.
var ErrDead = errors.New("addrsvctest: node is dead")

// Tx is an rsm.Tx in memory. Get and Scan return copies and Put keeps
// one, as bbolt would.
type Tx map[string][]byte

// Get implements rsm.Tx.
func (t Tx) Get(k []byte) []byte { return bytes.Clone(t[string(k)]) }

// Put implements rsm.Tx.
func (t Tx) Put(k, v []byte) error {
	t[string(k)] = bytes.Clone(v)
	return nil
}

// Delete implements rsm.Tx.
func (t Tx) Delete(k []byte) error {
	delete(t, string(k))
	return nil
}

// Scan implements rsm.Tx, in key order.
func (t Tx) Scan(prefix []byte, fn func(k, v []byte) error) error {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if strings.HasPrefix(k, string(prefix)) {
			if err := fn([]byte(k), bytes.Clone(t[k])); err != nil {
				return err
			}
		}
	}
	return nil
}

// Log is the in-process log of a cluster of nodes, one machine each.
type Log struct {
	mu       sync.Mutex // guards every field below; held while applying
	index    uint64
	nodes    map[uint64]*node
	proposed int
	byOp     map[ctl.Op]int // proposals by command
	refuse   error
}

type node struct {
	m    rsm.Machine
	tx   Tx
	dead bool
	born uint64 // the view instance it joined in; 0 until a view has it
}

// NewLog returns a log with no nodes.
func NewLog() *Log { return &Log{nodes: map[uint64]*node{}} }

// Join adds node id with its machine; the next View has it.
func (l *Log) Join(id uint64, m rsm.Machine) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nodes[id] = &node{m: m, tx: Tx{}}
}

// Kill makes node id dead: it applies nothing more and cannot propose.
// Commit a View for the survivors to see it leave.
func (l *Log) Kill(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.nodes[id]; n != nil {
		n.dead = true
	}
}

// Refuse makes every Propose fail with err (nil: accept again), as a log
// without a leader would.
func (l *Log) Refuse(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.refuse = err
}

// Proposals counts the Propose calls so far, refused ones included.
func (l *Log) Proposals() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.proposed
}

// ProposalsOf counts the Propose calls of the given commands so far.
func (l *Log) ProposalsOf(ops ...ctl.Op) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, op := range ops {
		n += l.byOp[op]
	}
	return n
}

// Proposer returns node id's rsm.Proposer.
func (l *Log) Proposer(id uint64) rsm.Proposer { return proposer{l, id} }

// View commits a NEWVIEW of the live nodes (oldest first) to each of
// their machines that is an rsm.ViewObserver.
func (l *Log) View() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.viewLocked()
}

// Do runs fn with the log held: proposals wait until fn returns, and fn
// commits through commit, so the commands it makes are the only ones.
func (l *Log) Do(fn func(commit func(proposer uint64, cmd []byte) []byte)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fn(func(p uint64, cmd []byte) []byte {
		r, err := l.commitLocked(p, cmd)
		if err != nil {
			panic(err)
		}
		return r
	})
}

// Commit applies cmd as proposed by proposer, which need not be a live
// node and is not refused; it returns the proposer's reply, if live.
func (l *Log) Commit(proposer uint64, cmd []byte) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.commitLocked(proposer, cmd)
}

func (l *Log) ids() []uint64 { return slices.Sorted(maps.Keys(l.nodes)) }

func (l *Log) viewLocked() error {
	l.index++
	v := &events.Membership{Instance: l.index}
	for _, id := range l.ids() {
		if n := l.nodes[id]; !n.dead {
			if n.born == 0 {
				n.born = l.index
			}
			v.Members = append(v.Members, event.Node{ID: id, BornOn: n.born})
		}
	}
	slices.SortStableFunc(v.Members, func(a, b event.Node) int { return cmp.Compare(a.BornOn, b.BornOn) })
	for _, id := range l.ids() {
		n := l.nodes[id]
		if o, ok := n.m.(rsm.ViewObserver); ok && !n.dead {
			if _, err := o.ApplyView(n.tx, rsm.Entry{Index: l.index}, v); err != nil {
				return fmt.Errorf("addrsvctest: view on node %d: %w", id, err)
			}
		}
	}
	return nil
}

func (l *Log) commitLocked(proposer uint64, cmd []byte) ([]byte, error) {
	l.index++
	var reply []byte
	for _, id := range l.ids() {
		n := l.nodes[id]
		if n.dead {
			continue
		}
		res, err := n.m.Apply(n.tx, rsm.Entry{Index: l.index, Proposer: proposer, Cmd: cmd})
		if err != nil {
			return nil, fmt.Errorf("addrsvctest: entry %d on node %d: %w", l.index, id, err)
		}
		if id == proposer {
			reply = res.Reply
		}
	}
	return reply, nil
}

type proposer struct {
	l    *Log
	node uint64
}

// Propose implements rsm.Proposer; the machine id is not checked (every
// node has one machine).
func (p proposer) Propose(ctx context.Context, _ rsm.ID, cmd []byte) (uint64, []byte, error) {
	l := p.l
	l.mu.Lock()
	defer l.mu.Unlock()
	l.proposed++
	if c, err := ctl.ParseCmd(cmd); err == nil {
		if l.byOp == nil {
			l.byOp = map[ctl.Op]int{}
		}
		l.byOp[c.Op]++
	}
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if l.refuse != nil {
		return 0, nil, l.refuse
	}
	if n := l.nodes[p.node]; n == nil || n.dead {
		return 0, nil, ErrDead
	}
	r, err := l.commitLocked(p.node, cmd)
	return l.index, r, err
}

// ReadIndex implements rsm.Proposer: everything committed is applied.
func (p proposer) ReadIndex(context.Context) (uint64, error) {
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	return p.l.index, nil
}
