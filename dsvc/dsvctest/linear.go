package dsvctest

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/corralhq/corral/dsvc"
)

// This file is the linearizability checker of one network container:
// a porcupine model of its records, a history recorder for concurrent
// clients, and the checks a test runs at the end (linearizable; no
// acknowledged write lost).

// sigCounter is the counter part of a signature (dsvc's layout: a 16-bit
// generation above a 48-bit counter).
const sigCounter = 1<<48 - 1

// Never is the Return time of an operation whose outcome is unknown (a
// timeout, CodeUnavailable, a link or an agent that died): it may take
// effect at any time after its call.
const Never int64 = math.MaxInt64

// LinOp is the kind of an operation in a history.
type LinOp uint8

const (
	LinLookup LinOp = iota + 1 // Lookup by CIP
	LinAdd                     // Add(CIP, Lease)
	LinModify                  // Modify the record Sig names to Lease (same CIP)
	LinDelete                  // Delete(CIP, Sig); Sig 0: unconditional
)

func (o LinOp) String() string {
	switch o {
	case LinLookup:
		return "lookup"
	case LinAdd:
		return "add"
	case LinModify:
		return "modify"
	case LinDelete:
		return "delete"
	}
	return fmt.Sprintf("op%d", uint8(o))
}

// LinResult is an operation's outcome.
type LinResult uint8

const (
	LinOK        LinResult = iota // success (a lookup: found or not, see LinOutput.Found)
	LinExists                     // add: the key is stored
	LinCollision                  // modify, delete: the stored signature differs
	LinNoEnt                      // modify, delete: no such record
	LinUnknown                    // no answer: it may or may not have taken effect
)

func (r LinResult) String() string {
	switch r {
	case LinOK:
		return "ok"
	case LinExists:
		return "exists"
	case LinCollision:
		return "collision"
	case LinNoEnt:
		return "noent"
	case LinUnknown:
		return "unknown"
	}
	return fmt.Sprintf("result%d", uint8(r))
}

// ResultOf maps a dsvc error to an outcome: nil, ErrExists, ErrCollision
// and ErrNoEnt are answers; anything else (unavailable, a timeout, a dead
// link) is LinUnknown, which never makes a history illegal by itself.
func ResultOf(err error) LinResult {
	switch dsvc.CodeOf(err) {
	case dsvc.CodeSuccess:
		return LinOK
	case dsvc.CodeExists:
		return LinExists
	case dsvc.CodeCollision:
		return LinCollision
	case dsvc.CodeNoEnt:
		return LinNoEnt
	}
	return LinUnknown
}

// LinInput is an operation's input.
type LinInput struct {
	Op    LinOp
	CIP   netip.Addr
	Lease uint32 // add, modify: the record's new lease
	Sig   uint64 // modify: the original record's signature; delete: the signature, 0 unconditional
}

func (in LinInput) String() string {
	switch in.Op {
	case LinLookup:
		return fmt.Sprintf("lookup(%s)", in.CIP)
	case LinAdd:
		return fmt.Sprintf("add(%s, lease %d)", in.CIP, in.Lease)
	case LinModify:
		return fmt.Sprintf("modify(%s, sig %s, lease %d)", in.CIP, sigString(in.Sig), in.Lease)
	case LinDelete:
		return fmt.Sprintf("delete(%s, sig %s)", in.CIP, sigString(in.Sig))
	}
	return fmt.Sprintf("%v(%s)", in.Op, in.CIP)
}

// LinOutput is an operation's outcome: the result, and for a successful
// lookup whether the record was found and its lease and signature, for a
// successful add or modify the new signature.
type LinOutput struct {
	Result LinResult
	Found  bool
	Lease  uint32
	Sig    uint64
}

func (out LinOutput) String() string {
	switch {
	case out.Result != LinOK:
		return out.Result.String()
	case out.Found:
		return fmt.Sprintf("found lease %d sig %s", out.Lease, sigString(out.Sig))
	case out.Sig != 0:
		return "ok sig " + sigString(out.Sig)
	}
	return "ok"
}

func sigString(s uint64) string { return fmt.Sprintf("%04x:%d", s>>48, s&sigCounter) }

// linState is one key's state. A record added by an operation that never
// answered has a signature whose generation nobody has seen: SigKnown is
// false and Sig holds only the counter, until an observation pins it.
// The state of an absent record is the zero value, so == compares states.
type linState struct {
	Exists   bool
	Lease    uint32
	Sig      uint64
	SigKnown bool
}

func (s linState) String() string {
	if !s.Exists {
		return "absent"
	}
	if !s.SigKnown {
		return fmt.Sprintf("lease %d sig ????:%d", s.Lease, s.Sig&sigCounter)
	}
	return fmt.Sprintf("lease %d sig %s", s.Lease, sigString(s.Sig))
}

// mayMatch: the stored signature may be sig.
func (s linState) mayMatch(sig uint64) bool {
	if s.SigKnown {
		return s.Sig == sig
	}
	return s.Sig&sigCounter == sig&sigCounter
}

// mayDiffer: the stored signature may differ from sig.
func (s linState) mayDiffer(sig uint64) bool { return !s.SigKnown || s.Sig != sig }

func record(lease uint32, sig uint64) linState {
	return linState{Exists: true, Lease: lease, Sig: sig, SigKnown: true}
}

// linStep is the sequential specification of one key: the states after
// in with outcome out from state s (none: impossible).
func linStep(s linState, in LinInput, out LinOutput) []linState {
	unknown := out.Result == LinUnknown
	switch in.Op {
	case LinLookup:
		switch {
		case unknown:
			return []linState{s}
		case out.Result != LinOK:
		case !out.Found && !s.Exists:
			return []linState{s}
		case out.Found && s.Exists && s.Lease == out.Lease && s.mayMatch(out.Sig):
			return []linState{record(s.Lease, out.Sig)} // the read pins the signature
		}
	case LinAdd:
		switch {
		case unknown && s.Exists:
			return []linState{s} // it failed with exists, or never ran
		case unknown:
			return []linState{s, {Exists: true, Lease: in.Lease, Sig: 1}}
		case out.Result == LinOK && !s.Exists && out.Sig&sigCounter == 1:
			return []linState{record(in.Lease, out.Sig)}
		case out.Result == LinExists && s.Exists:
			return []linState{s}
		}
	case LinModify:
		applies := s.Exists && s.mayMatch(in.Sig)
		switch {
		case unknown && applies:
			return []linState{s, record(in.Lease, dsvc.NextSig(in.Sig))}
		case unknown:
			return []linState{s}
		case out.Result == LinOK && applies && out.Sig == dsvc.NextSig(in.Sig):
			return []linState{record(in.Lease, out.Sig)}
		case out.Result == LinCollision && s.Exists && s.mayDiffer(in.Sig):
			return []linState{s}
		case out.Result == LinNoEnt && !s.Exists:
			return []linState{s}
		}
	case LinDelete:
		applies := s.Exists && (in.Sig == 0 || s.mayMatch(in.Sig))
		switch {
		case unknown && applies:
			return []linState{s, {}}
		case unknown:
			return []linState{s}
		case out.Result == LinOK && applies:
			return []linState{{}}
		case out.Result == LinCollision && s.Exists && in.Sig != 0 && s.mayDiffer(in.Sig):
			return []linState{s}
		case out.Result == LinNoEnt && !s.Exists:
			return []linState{s}
		}
	}
	return nil
}

// LinModel is the porcupine model of one network container, partitioned
// by client IP; every key starts absent.
func LinModel() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
			by := map[netip.Addr][]porcupine.Operation{}
			var keys []netip.Addr
			for _, op := range h {
				k := op.Input.(LinInput).CIP
				if _, ok := by[k]; !ok {
					keys = append(keys, k)
				}
				by[k] = append(by[k], op)
			}
			sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, by[k])
			}
			return out
		},
		Init: func() []any { return []any{linState{}} },
		Step: func(state, input, output any) []any {
			next := linStep(state.(linState), input.(LinInput), output.(LinOutput))
			out := make([]any, len(next))
			for i, s := range next {
				out[i] = s
			}
			return out
		},
		Hash: func(state any) uint64 {
			s := state.(linState)
			h := s.Sig*0x9e3779b97f4a7c15 ^ uint64(s.Lease)<<1
			if s.Exists {
				h ^= 1
			}
			if s.SigKnown {
				h ^= 1 << 63
			}
			return h
		},
		DescribeOperation: func(input, output any) string {
			return fmt.Sprintf("%v → %v", input, output)
		},
		DescribeState: func(state any) string { return state.(linState).String() },
	}
	return nm.ToModel()
}

// History records the operations of concurrent clients, timed by one
// monotonic clock. Safe for concurrent use.
type History struct {
	start time.Time // its monotonic reading is the clock

	mu  sync.Mutex // guards ops
	ops []porcupine.Operation
}

// NewHistory returns an empty history whose clock starts now.
func NewHistory() *History { return &History{start: time.Now()} }

func (h *History) now() int64 { return int64(time.Since(h.start)) }

// Pending is an operation called and not yet returned.
type Pending struct {
	h      *History
	client int
	in     LinInput
	call   int64
}

// Call notes that client (a small number from 0) calls in, now. Call it
// just before the operation starts, and End just after it returns.
func (h *History) Call(client int, in LinInput) *Pending {
	return &Pending{h: h, client: client, in: in, call: h.now()}
}

// End records the call's outcome, returned now; with LinUnknown it is
// recorded as returning Never. A lookup with no answer is left out: it
// changed nothing and constrains nothing, and would only widen the search.
func (p *Pending) End(out LinOutput) {
	ret := p.h.now()
	if out.Result == LinUnknown {
		if p.in.Op == LinLookup {
			return
		}
		ret = Never
		out = LinOutput{Result: LinUnknown}
	}
	p.h.add(porcupine.Operation{ClientId: p.client, Input: p.in, Call: p.call, Output: out, Return: ret})
}

func (h *History) add(op porcupine.Operation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// Add records a whole operation (hand-made histories in tests); ret
// Never for an unknown outcome.
func (h *History) Add(client int, in LinInput, call, ret int64, out LinOutput) {
	h.add(porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// Operations returns a copy of the recorded operations.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// LinCounts counts a history's operations by kind and outcome.
type LinCounts map[LinOp]map[LinResult]int

// Counts counts the recorded operations (unanswered lookups are not
// recorded, so not counted).
func (h *History) Counts() LinCounts {
	c := LinCounts{}
	for _, op := range h.Operations() {
		in, out := op.Input.(LinInput), op.Output.(LinOutput)
		if c[in.Op] == nil {
			c[in.Op] = map[LinResult]int{}
		}
		c[in.Op][out.Result]++
	}
	return c
}

func (c LinCounts) String() string {
	var b strings.Builder
	for _, op := range []LinOp{LinLookup, LinAdd, LinModify, LinDelete} {
		m := c[op]
		if b.Len() > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%v:", op)
		for _, r := range []LinResult{LinOK, LinExists, LinCollision, LinNoEnt, LinUnknown} {
			if m[r] > 0 {
				fmt.Fprintf(&b, " %v %d", r, m[r])
			}
		}
	}
	return b.String()
}

// Linearizable checks h against LinModel within timeout (0: none).
func Linearizable(h *History, timeout time.Duration) (porcupine.CheckResult, porcupine.LinearizationInfo) {
	return porcupine.CheckOperationsVerbose(LinModel(), h.Operations(), timeout)
}

// CheckLinearizable fails t unless h is linearizable: on Illegal it writes
// porcupine's visualization to a file named in the message; a check that
// times out (Unknown) fails too, saying so, since it proved nothing.
func CheckLinearizable(t testing.TB, h *History, timeout time.Duration) porcupine.CheckResult {
	t.Helper()
	start := time.Now()
	res, info := Linearizable(h, timeout)
	reportLinear(t, res, info, len(h.Operations()), time.Since(start), timeout)
	return res
}

func reportLinear(t testing.TB, res porcupine.CheckResult, info porcupine.LinearizationInfo, n int, took, timeout time.Duration) {
	t.Helper()
	switch res {
	case porcupine.Ok:
		t.Logf("porcupine: %d operations linearizable (checked in %v)", n, took.Round(time.Millisecond))
	case porcupine.Illegal:
		path, err := writeVisualization(info)
		if err != nil {
			t.Errorf("porcupine: the history of %d operations is not linearizable (and its visualization could not be written: %v)", n, err)
			return
		}
		t.Errorf("porcupine: the history of %d operations is not linearizable; visualization: %s", n, path)
	default:
		t.Errorf("porcupine: no answer within %v for %d operations (result %s): linearizability not shown", timeout, n, res)
	}
}

func writeVisualization(info porcupine.LinearizationInfo) (string, error) {
	f, err := os.CreateTemp("", "corral-dsvc-linear-*.html")
	if err != nil {
		return "", err
	}
	verr := porcupine.Visualize(LinModel(), info, f)
	cerr := f.Close()
	if err := errors.Join(verr, cerr); err != nil {
		return f.Name(), err
	}
	return f.Name(), nil
}

// LostWrites returns, for each key of final (its record as every node
// reads it at the end, after all operations of h: Found false if absent),
// a complaint if the last acknowledged write to it is not visible: final
// must be its effect, or the effect of a write that may come after it (one
// not returned before it was called, acknowledged or unknown).
func LostWrites(h *History, final map[netip.Addr]LinOutput) []string {
	byKey := map[netip.Addr][]porcupine.Operation{}
	for _, op := range h.Operations() {
		in := op.Input.(LinInput)
		if in.Op != LinLookup {
			byKey[in.CIP] = append(byKey[in.CIP], op)
		}
	}
	var keys []netip.Addr
	for k := range final {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	var bad []string
	for _, k := range keys {
		f := final[k]
		var last *porcupine.Operation
		for i, op := range byKey[k] {
			if op.Output.(LinOutput).Result == LinOK && (last == nil || op.Return > last.Return) {
				last = &byKey[k][i]
			}
		}
		if last == nil || explains(*last, f) {
			continue
		}
		ok := false
		for _, op := range byKey[k] {
			if op.Return > last.Call && writeMayLeave(op, f) {
				ok = true
				break
			}
		}
		if !ok {
			bad = append(bad, fmt.Sprintf("%s: finally %v, but the last acknowledged write %v → %v (returned at %v) and no write after it leaves that",
				k, f, last.Input, last.Output, time.Duration(last.Return)))
		}
	}
	return bad
}

// explains: an acknowledged write op leaves the record as f.
func explains(op porcupine.Operation, f LinOutput) bool {
	in, out := op.Input.(LinInput), op.Output.(LinOutput)
	if in.Op == LinDelete {
		return !f.Found
	}
	return f.Found && f.Lease == in.Lease && f.Sig == out.Sig
}

// writeMayLeave: write op, if it took effect, leaves the record as f.
func writeMayLeave(op porcupine.Operation, f LinOutput) bool {
	in, out := op.Input.(LinInput), op.Output.(LinOutput)
	switch out.Result {
	case LinOK:
		return explains(op, f)
	case LinUnknown:
		switch in.Op {
		case LinDelete:
			return !f.Found
		case LinAdd:
			return f.Found && f.Lease == in.Lease && f.Sig&sigCounter == 1
		case LinModify:
			return f.Found && f.Lease == in.Lease && f.Sig == dsvc.NextSig(in.Sig)
		}
	}
	return false
}

// CheckNoLostWrites fails t with LostWrites' complaints.
func CheckNoLostWrites(t testing.TB, h *History, final map[netip.Addr]LinOutput) {
	t.Helper()
	for _, s := range LostWrites(h, final) {
		t.Errorf("acknowledged write lost: %s", s)
	}
}
