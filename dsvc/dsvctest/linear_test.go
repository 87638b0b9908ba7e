package dsvctest

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/corralhq/corral/dsvc"
)

var (
	ipA = netip.MustParseAddr("10.9.0.1")
	ipB = netip.MustParseAddr("10.9.0.2")
)

const (
	s1  = uint64(0x1234)<<48 | 1 // an added record's signature
	s1b = uint64(0x4321)<<48 | 1 // another generation
)

func lookup(ip netip.Addr) LinInput { return LinInput{Op: LinLookup, CIP: ip} }
func add(ip netip.Addr, lease uint32) LinInput {
	return LinInput{Op: LinAdd, CIP: ip, Lease: lease}
}
func modify(ip netip.Addr, sig uint64, lease uint32) LinInput {
	return LinInput{Op: LinModify, CIP: ip, Sig: sig, Lease: lease}
}
func del(ip netip.Addr, sig uint64) LinInput { return LinInput{Op: LinDelete, CIP: ip, Sig: sig} }

func ok(sig uint64) LinOutput { return LinOutput{Result: LinOK, Sig: sig} }
func found(lease uint32, sig uint64) LinOutput {
	return LinOutput{Result: LinOK, Found: true, Lease: lease, Sig: sig}
}

var (
	absent    = LinOutput{Result: LinOK}
	done      = LinOutput{Result: LinOK}
	exists    = LinOutput{Result: LinExists}
	collision = LinOutput{Result: LinCollision}
	noent     = LinOutput{Result: LinNoEnt}
	unknown   = LinOutput{Result: LinUnknown}
)

// op is one operation of a hand-made history: client, input, call and
// return time (Never: unknown), output.
type op struct {
	c         int
	in        LinInput
	call, ret int64
	out       LinOutput
}

func history(ops ...op) *History {
	h := NewHistory()
	for _, o := range ops {
		h.Add(o.c, o.in, o.call, o.ret, o.out)
	}
	return h
}

func TestLinearIllegal(t *testing.T) {
	n2 := dsvc.NextSig(s1)
	for _, tc := range []struct {
		name string
		ops  []op
	}{
		{"lost acknowledged add", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{1, lookup(ipA), 20, 30, absent},
		}},
		{"lost acknowledged delete", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, del(ipA, s1), 20, 30, done},
			{1, lookup(ipA), 40, 50, found(10, s1)},
		}},
		{"stale read after an acknowledged modify", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, modify(ipA, s1, 20), 20, 30, ok(n2)},
			{1, lookup(ipA), 40, 50, found(10, s1)},
		}},
		{"a modify applied twice (read)", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, modify(ipA, s1, 20), 20, 30, ok(n2)},
			{1, lookup(ipA), 40, 50, found(20, dsvc.NextSig(n2))},
		}},
		{"a modify applied twice (two successes on one signature)", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, modify(ipA, s1, 20), 20, 30, ok(n2)},
			{1, modify(ipA, s1, 30), 40, 50, ok(n2)},
		}},
		{"two successful adds of one key, one after the other", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{1, add(ipA, 20), 20, 30, ok(s1b)},
		}},
		{"two successful adds of one key, concurrent", []op{
			{0, add(ipA, 10), 0, 30, ok(s1)},
			{1, add(ipA, 20), 10, 40, ok(s1b)},
		}},
		{"a collision reported while the signature matched", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{1, lookup(ipA), 20, 30, found(10, s1)},
			{1, modify(ipA, s1, 20), 40, 50, collision},
		}},
		{"a delete collision while the signature matched", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{1, del(ipA, s1), 20, 30, collision},
		}},
		{"an unconditional delete that collides", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{1, del(ipA, 0), 20, 30, collision},
		}},
		{"an add whose signature's counter is not 1", []op{
			{0, add(ipA, 10), 0, 10, ok(uint64(0x1234)<<48 | 2)},
		}},
		{"a modify whose new signature is not NextSig", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, modify(ipA, s1, 20), 20, 30, ok(s1b)},
		}},
		{"a modify that succeeds on a stale signature", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, modify(ipA, s1, 20), 20, 30, ok(n2)},
			{1, modify(ipA, s1b, 30), 40, 50, ok(dsvc.NextSig(s1b))},
		}},
		{"exists on an absent key", []op{
			{0, add(ipA, 10), 0, 10, exists},
		}},
		{"noent on a stored key", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{1, modify(ipA, s1, 20), 20, 30, noent},
		}},
		{"an unknown add read with two signatures", []op{
			{0, add(ipA, 10), 0, Never, unknown},
			{1, lookup(ipA), 20, 30, found(10, s1)},
			{1, lookup(ipA), 40, 50, found(10, s1b)},
		}},
		{"an unknown add read with a counter other than 1", []op{
			{0, add(ipA, 10), 0, Never, unknown},
			{1, lookup(ipA), 20, 30, found(10, n2)},
		}},
		{"an unknown modify read before it was called", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{1, lookup(ipA), 20, 30, found(20, n2)},
			{0, modify(ipA, s1, 20), 40, Never, unknown},
		}},
		{"a write undone (read new, then old)", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, modify(ipA, s1, 20), 20, 100, ok(n2)},
			{1, lookup(ipA), 30, 40, found(20, n2)},
			{2, lookup(ipA), 50, 60, found(10, s1)},
		}},
		{"illegal on one key, legal on another", []op{
			{0, add(ipB, 10), 0, 10, ok(s1)},
			{1, lookup(ipB), 20, 30, found(10, s1)},
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{1, lookup(ipA), 20, 30, absent},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, _ := Linearizable(history(tc.ops...), 10*time.Second)
			if res != porcupine.Illegal {
				t.Errorf("result %s, want Illegal", res)
			}
		})
	}
}

func TestLinearLegal(t *testing.T) {
	n2 := dsvc.NextSig(s1)
	for _, tc := range []struct {
		name string
		ops  []op
	}{
		{"empty", nil},
		{"sequential life of a record", []op{
			{0, lookup(ipA), 0, 5, absent},
			{0, add(ipA, 10), 10, 20, ok(s1)},
			{1, lookup(ipA), 30, 40, found(10, s1)},
			{1, modify(ipA, s1, 20), 50, 60, ok(n2)},
			{2, modify(ipA, s1, 30), 70, 80, collision},
			{2, del(ipA, s1), 90, 100, collision},
			{0, del(ipA, n2), 110, 120, done},
			{1, del(ipA, n2), 130, 140, noent},
			{1, modify(ipA, n2, 40), 150, 160, noent},
			{2, add(ipA, 50), 170, 180, ok(s1b)},
			{2, del(ipA, 0), 190, 200, done},
			{0, lookup(ipA), 210, 220, absent},
		}},
		{"concurrent adds: one wins", []op{
			{0, add(ipA, 10), 0, 30, exists},
			{1, add(ipA, 20), 10, 20, ok(s1)},
			{2, lookup(ipA), 40, 50, found(20, s1)},
		}},
		{"a read concurrent with a modify sees either", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, modify(ipA, s1, 20), 20, 100, ok(n2)},
			{1, lookup(ipA), 30, 40, found(20, n2)},
			{2, lookup(ipA), 25, 35, found(10, s1)},
			{2, lookup(ipA), 110, 120, found(20, n2)},
		}},
		{"concurrent modifies on one signature: one wins", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, modify(ipA, s1, 20), 20, 50, collision},
			{1, modify(ipA, s1, 30), 25, 40, ok(n2)},
			{2, lookup(ipA), 60, 70, found(30, n2)},
		}},
		{"an unknown add that never happened", []op{
			{0, add(ipA, 10), 0, Never, unknown},
			{1, lookup(ipA), 20, 30, absent},
			{1, lookup(ipA), 40, 50, absent},
		}},
		{"an unknown add that happens late, pinned by a read, then modified", []op{
			{0, add(ipA, 10), 0, Never, unknown},
			{1, lookup(ipA), 20, 30, absent},
			{1, lookup(ipA), 40, 50, found(10, s1b)},
			{1, modify(ipA, s1b, 20), 60, 70, ok(dsvc.NextSig(s1b))},
			{2, lookup(ipA), 80, 90, found(20, dsvc.NextSig(s1b))},
		}},
		{"an unknown add modified blind by a modify that knew the signature", []op{
			{0, add(ipA, 10), 0, Never, unknown},
			{1, modify(ipA, s1b, 20), 60, 70, ok(dsvc.NextSig(s1b))},
		}},
		{"an unknown add: a collision on a guessed signature", []op{
			{0, add(ipA, 10), 0, Never, unknown},
			{1, modify(ipA, s1, 20), 60, 70, collision},
			{2, lookup(ipA), 80, 90, found(10, s1b)},
		}},
		{"an unknown modify that took effect", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, modify(ipA, s1, 20), 20, Never, unknown},
			{1, lookup(ipA), 30, 40, found(10, s1)},
			{1, lookup(ipA), 50, 60, found(20, n2)},
			{1, modify(ipA, n2, 30), 70, 80, ok(dsvc.NextSig(n2))},
		}},
		{"an unknown delete that took effect, then an add", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, del(ipA, s1), 20, Never, unknown},
			{1, add(ipA, 30), 30, 40, ok(s1b)},
			{1, lookup(ipA), 50, 60, found(30, s1b)},
		}},
		{"an unknown delete that never happened", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{0, del(ipA, 0), 20, Never, unknown},
			{1, lookup(ipA), 50, 60, found(10, s1)},
		}},
		{"two keys, each legal", []op{
			{0, add(ipA, 10), 0, 10, ok(s1)},
			{1, add(ipB, 10), 0, 10, ok(s1b)},
			{0, lookup(ipB), 20, 30, found(10, s1b)},
			{1, lookup(ipA), 20, 30, found(10, s1)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if res, _ := Linearizable(history(tc.ops...), 10*time.Second); res != porcupine.Ok {
				t.Errorf("result %s, want Ok", res)
			}
		})
	}
}

// fakeTB records what a check reports instead of failing the test.
type fakeTB struct {
	testing.TB
	mu     sync.Mutex
	errors []string
	logs   []string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}
func (f *fakeTB) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logs = append(f.logs, fmt.Sprintf(format, args...))
}

func TestCheckLinearizableReports(t *testing.T) {
	illegal := history(op{0, add(ipA, 10), 0, 10, ok(s1)}, op{1, lookup(ipA), 20, 30, absent})
	f := &fakeTB{TB: t}
	if res := CheckLinearizable(f, illegal, 10*time.Second); res != porcupine.Illegal {
		t.Fatalf("result %s", res)
	}
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "visualization: ") {
		t.Fatalf("errors %q", f.errors)
	}
	path := f.errors[0][strings.LastIndex(f.errors[0], " ")+1:]
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if !strings.Contains(string(b), "lookup(10.9.0.1)") {
		t.Errorf("the visualization %s does not name the operations", path)
	}

	f = &fakeTB{TB: t}
	legal := history(op{0, add(ipA, 10), 0, 10, ok(s1)}, op{1, lookup(ipA), 20, 30, found(10, s1)})
	if res := CheckLinearizable(f, legal, 10*time.Second); res != porcupine.Ok || len(f.errors) != 0 || len(f.logs) != 1 {
		t.Errorf("legal: result %s, errors %q, logs %q", res, f.errors, f.logs)
	}

	// A check that timed out proved nothing: it fails.
	f = &fakeTB{TB: t}
	reportLinear(f, porcupine.Unknown, porcupine.LinearizationInfo{}, 7, time.Second, time.Second)
	if len(f.errors) != 1 || !strings.Contains(f.errors[0], "not shown") {
		t.Errorf("unknown: errors %q", f.errors)
	}
}

func TestHistoryRecorder(t *testing.T) {
	h := NewHistory()
	var wg sync.WaitGroup
	for c := range 8 {
		wg.Go(func() {
			ip := netip.AddrFrom4([4]byte{10, 9, 0, byte(c + 1)})
			p := h.Call(c, add(ip, 10))
			p.End(ok(uint64(c+1)<<48 | 1))
			h.Call(c, lookup(ip)).End(unknown) // left out
			h.Call(c, modify(ip, uint64(c+1)<<48|1, 20)).End(LinOutput{Result: LinUnknown, Sig: 99})
			h.Call(c, lookup(ip)).End(found(20, dsvc.NextSig(uint64(c+1)<<48|1)))
		})
	}
	wg.Wait()
	ops := h.Operations()
	if len(ops) != 24 {
		t.Fatalf("%d operations, want 24", len(ops))
	}
	for _, o := range ops {
		out := o.Output.(LinOutput)
		switch {
		case out.Result == LinUnknown && (o.Return != Never || out.Sig != 0):
			t.Errorf("unknown %v recorded as %+v returning %d", o.Input, out, o.Return)
		case out.Result != LinUnknown && o.Return < o.Call:
			t.Errorf("%v returned at %d before its call at %d", o.Input, o.Return, o.Call)
		}
	}
	c := h.Counts()
	if c[LinAdd][LinOK] != 8 || c[LinModify][LinUnknown] != 8 || c[LinLookup][LinOK] != 8 || c[LinLookup][LinUnknown] != 0 {
		t.Errorf("counts %v", c)
	}
	if res, _ := Linearizable(h, 10*time.Second); res != porcupine.Ok {
		t.Errorf("result %s", res)
	}
}

func TestLostWrites(t *testing.T) {
	n2 := dsvc.NextSig(s1)
	h := history(
		op{0, add(ipA, 10), 0, 10, ok(s1)},
		op{0, modify(ipA, s1, 20), 20, 30, ok(n2)},
		op{1, modify(ipA, s1, 30), 40, 50, collision},
		op{0, add(ipB, 10), 0, 10, ok(s1b)},
		op{1, del(ipB, s1b), 20, Never, unknown},
	)
	for _, tc := range []struct {
		name  string
		final map[netip.Addr]LinOutput
		lost  int
	}{
		{"the last writes", map[netip.Addr]LinOutput{ipA: found(20, n2), ipB: found(10, s1b)}, 0},
		{"an unknown delete after the last ack", map[netip.Addr]LinOutput{ipA: found(20, n2), ipB: absent}, 0},
		{"the modify lost", map[netip.Addr]LinOutput{ipA: found(10, s1), ipB: absent}, 1},
		{"the record lost", map[netip.Addr]LinOutput{ipA: absent, ipB: absent}, 1},
		{"another lease", map[netip.Addr]LinOutput{ipA: found(30, n2), ipB: found(11, s1b)}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := LostWrites(h, tc.final); len(got) != tc.lost {
				t.Errorf("%d complaints, want %d: %q", len(got), tc.lost, got)
			}
		})
	}
}
