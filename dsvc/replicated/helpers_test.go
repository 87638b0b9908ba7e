package replicated_test

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/replicated"
	"github.com/corralhq/corral/rsm"
)

// memTx is an rsm.Tx in memory, scanned in key order. Get and Scan return
// copies and Put keeps one: a machine that kept a value past the call, or
// reused a buffer it put, would see it differ here as it would in bbolt.
type memTx struct {
	m       map[string][]byte
	keys    []string // m's keys in order, when !dirty
	dirty   bool
	failPut error // Put fails with it when set
}

func newTx() *memTx { return &memTx{m: map[string][]byte{}} }

func (t *memTx) Get(k []byte) []byte {
	if v, ok := t.m[string(k)]; ok {
		return bytes.Clone(v)
	}
	return nil
}

func (t *memTx) Put(k, v []byte) error {
	if t.failPut != nil {
		return t.failPut
	}
	if _, ok := t.m[string(k)]; !ok {
		t.dirty = true
	}
	t.m[string(k)] = bytes.Clone(v)
	return nil
}

func (t *memTx) Delete(k []byte) error {
	if _, ok := t.m[string(k)]; ok {
		t.dirty = true
	}
	delete(t.m, string(k))
	return nil
}

func (t *memTx) Scan(prefix []byte, fn func(k, v []byte) error) error {
	if t.dirty || t.keys == nil {
		t.keys, t.dirty = slices.Sorted(maps.Keys(t.m)), false
	}
	i, _ := slices.BinarySearch(t.keys, string(prefix))
	for _, k := range t.keys[i:] {
		if !strings.HasPrefix(k, string(prefix)) {
			break
		}
		if err := fn([]byte(k), bytes.Clone(t.m[k])); err != nil {
			return err
		}
	}
	return nil
}

// pair is two machines fed the same entries; every reply must be the same
// bytes on both.
type pair struct {
	t     testing.TB
	ms    [2]*replicated.Machine
	txs   [2]*memTx
	index uint64
}

func newPair(t testing.TB) *pair {
	return &pair{t: t, ms: [2]*replicated.Machine{replicated.New(), replicated.New()}, txs: [2]*memTx{newTx(), newTx()}}
}

func (p *pair) raw(cmd []byte) replicated.Reply {
	p.t.Helper()
	p.index++
	var replies [2][]byte
	for i, m := range p.ms {
		res, err := m.Apply(p.txs[i], rsm.Entry{Index: p.index, Term: 1, Proposer: 1, Cmd: bytes.Clone(cmd)})
		if err != nil {
			p.t.Fatalf("entry %d: Apply: %v", p.index, err)
		}
		replies[i] = res.Reply
	}
	if !bytes.Equal(replies[0], replies[1]) {
		p.t.Fatalf("entry %d: replies differ: %x and %x", p.index, replies[0], replies[1])
	}
	r, err := replicated.ParseReply(replies[0])
	if err != nil {
		p.t.Fatalf("entry %d: reply %x: %v", p.index, replies[0], err)
	}
	return r
}

func (p *pair) do(c replicated.Command) replicated.Reply {
	p.t.Helper()
	b, err := replicated.AppendCommand(nil, &c)
	if err != nil {
		p.t.Fatalf("AppendCommand(%+v): %v", c, err)
	}
	return p.raw(b)
}

// want applies c and checks the reply's code.
func (p *pair) want(code dsvc.Code, c replicated.Command) replicated.Reply {
	p.t.Helper()
	r := p.do(c)
	if r.Code != code {
		p.t.Fatalf("%v %s: code %v (%q), want %v", c.Op, c.Container, r.Code, r.Message, code)
	}
	if (code == dsvc.CodeSuccess) != (r.Message == "") {
		p.t.Fatalf("%v: code %v with message %q", c.Op, r.Code, r.Message)
	}
	return r
}

func (p *pair) m() *replicated.Machine { return p.ms[0] }

const (
	loc = "/srv/dhcp"
	tab = "cluster1_dhcptab"
	net = "cluster1_10.0.0.0"
)

var net24 = netip.MustParsePrefix("10.0.0.0/24")

func mkloc(l string) replicated.Command { return replicated.Command{Op: replicated.OpMkLoc, Loc: l} }

func create(kind dsvc.Kind, name string, p netip.Prefix) replicated.Command {
	return replicated.Command{Op: replicated.OpCreate, Loc: loc, Kind: kind, Container: name, Prefix: p}
}

func dtCmd(op replicated.Op, gen uint16, rs ...dsvc.DTRecord) replicated.Command {
	return replicated.Command{Op: op, Loc: loc, Kind: dsvc.DHCPTab, Container: tab, Gen: gen, DT: rs}
}

func dnCmd(op replicated.Op, gen uint16, rs ...dsvc.DNRecord) replicated.Command {
	return replicated.Command{Op: op, Loc: loc, Kind: dsvc.Network, Container: net, Gen: gen, DN: rs}
}

func dt(typ dsvc.DTType, key, value string, sig uint64) dsvc.DTRecord {
	return dsvc.DTRecord{Key: key, Type: typ, Value: value, Sig: sig}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func dn(cip string, cid string, sig uint64) dsvc.DNRecord {
	return dsvc.DNRecord{CID: []byte(cid), CIP: ip(cip), SIP: ip("10.0.0.1"), Lease: 1000, Macro: "m1", Comment: "c", Sig: sig}
}

// dump renders every read of the locations: equal dumps are equal states
// as the service sees them.
func dump(t testing.TB, m *replicated.Machine, locs ...string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range locs {
		if err := m.Status(l); err != nil {
			fmt.Fprintf(&b, "%s: %v\n", l, err)
			continue
		}
		fmt.Fprintf(&b, "location %s\n", l)
		names, _ := m.List(l, dsvc.DHCPTab)
		for _, n := range names {
			rs, err := m.LookupDT(l, n, 0, -1, nil)
			fmt.Fprintf(&b, " dhcptab %s (%v)\n", n, err)
			for _, r := range rs {
				fmt.Fprintf(&b, "  %c %q %q %#x\n", r.Type, r.Key, r.Value, r.Sig)
			}
		}
		names, _ = m.List(l, dsvc.Network)
		for _, n := range names {
			p, _ := m.Container(l, dsvc.Network, n)
			rs, err := m.LookupDN(l, n, 0, -1, nil)
			fmt.Fprintf(&b, " network %s %v (%v)\n", n, p, err)
			for _, r := range rs {
				fmt.Fprintf(&b, "  %v %x %#x %v %d %q %q %#x\n", r.CIP, r.CID, r.Flags, r.SIP, r.Lease, r.Macro, r.Comment, r.Sig)
			}
		}
	}
	return b.String()
}

func snapshot(t testing.TB, m *replicated.Machine, tx rsm.Tx) []byte {
	t.Helper()
	var w bytes.Buffer
	if err := m.Snapshot(tx, &w); err != nil {
		t.Fatal(err)
	}
	return w.Bytes()
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
