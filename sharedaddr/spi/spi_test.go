package spi_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/ctl"
	"github.com/corralhq/corral/sharedaddr/spi"
	"github.com/corralhq/corral/types/event"
)

type memTx map[string][]byte

func (t memTx) Get(k []byte) []byte { return bytes.Clone(t[string(k)]) }
func (t memTx) Put(k, v []byte) error {
	t[string(k)] = bytes.Clone(v)
	return nil
}
func (t memTx) Delete(k []byte) error {
	delete(t, string(k))
	return nil
}
func (t memTx) Scan(prefix []byte, fn func(k, v []byte) error) error {
	for _, k := range slices.Sorted(maps.Keys(t)) {
		if strings.HasPrefix(k, string(prefix)) {
			if err := fn([]byte(k), bytes.Clone(t[k])); err != nil {
				return err
			}
		}
	}
	return nil
}

const stack = sharedaddr.StackID(0xf0000001)

// entry is one entry of the log: a command, or a view of members.
type entry struct {
	cmd  *ctl.Cmd
	view []uint64
}

// cluster is three nodes, each with its machine fed the same log.
type cluster struct {
	t   *testing.T
	log []entry
	m   [4]*ctl.Machine
	tx  [4]memTx
}

func newCluster(t *testing.T) *cluster {
	c := &cluster{t: t}
	for i := 1; i <= 3; i++ {
		c.m[i], c.tx[i] = ctl.NewMachine(nil, ctl.Options{TableSize: 7}), memTx{}
	}
	c.view(1, 2, 3)
	return c
}

func apply(t *testing.T, m *ctl.Machine, tx memTx, index uint64, e entry) ctl.Reply {
	t.Helper()
	if e.view != nil {
		v := &events.Membership{Instance: index}
		for _, n := range e.view {
			v.Members = append(v.Members, event.Node{ID: n, BornOn: n})
		}
		if _, err := m.ApplyView(tx, rsm.Entry{Index: index}, v); err != nil {
			t.Fatal(err)
		}
		return ctl.Reply{}
	}
	res, err := m.Apply(tx, rsm.Entry{Index: index, Cmd: ctl.AppendCmd(nil, *e.cmd)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ctl.ParseReply(res.Reply)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// commit appends e to the log and applies it on every node; it returns
// node 1's reply (all are the same).
func (c *cluster) commit(e entry) ctl.Reply {
	c.t.Helper()
	c.log = append(c.log, e)
	var r ctl.Reply
	for i := 3; i >= 1; i-- {
		r = apply(c.t, c.m[i], c.tx[i], uint64(len(c.log)), e)
	}
	return r
}

func (c *cluster) view(members ...uint64) { c.commit(entry{view: members}) }

// leaseSPI leases an SPI block of the stack to node and returns it.
func (c *cluster) leaseSPI(node uint64) spi.Block {
	c.t.Helper()
	r := c.commit(entry{cmd: &ctl.Cmd{Op: ctl.OpLease, Kind: ctl.SPI, Node: node, Addr: ctl.Addr{Stack: uint64(stack)}}})
	if r.Code != ctl.OK {
		c.t.Fatalf("LEASE spi for node %d: %v %s", node, r.Code, r.Text)
	}
	return spi.Block{First: r.First, Last: r.Last}
}

func in(v uint32, bs []spi.Block) bool {
	return slices.ContainsFunc(bs, func(b spi.Block) bool { return b.First <= v && v <= b.Last })
}

// TestGet: 10k Gets on each of three nodes, from their blocks leased
// through the log, give 30k distinct SPIs, each in its node's blocks and
// none reserved; Check refuses other nodes' blocks, reserved values and
// SPIs in use; Delete frees.
func TestGet(t *testing.T) {
	c := newCluster(t)
	own := map[uint64][]spi.Block{}
	for _, n := range []uint64{1, 2, 3, 1} { // node 1 holds two blocks
		own[n] = append(own[n], c.leaseSPI(n))
	}
	var al [4]*spi.Allocator
	seen := map[uint32]uint64{}
	for n := uint64(1); n <= 3; n++ {
		al[n] = spi.New(n, c.m[n], nil)
		for range 10000 {
			s, err := al[n].Get(stack)
			if err != nil {
				t.Fatal(err)
			}
			if o, dup := seen[s]; dup {
				t.Fatalf("SPI %#x from node %d and node %d", s, o, n)
			}
			seen[s] = n
			if s < spi.Reserved || !in(s, own[n]) {
				t.Fatalf("node %d got SPI %#x outside its blocks %v", n, s, own[n])
			}
		}
		if got := al[n].InUse(stack); got != 10000 {
			t.Errorf("node %d: %d in use, want 10000", n, got)
		}
	}
	// Random: node 1's Gets fall in both of its blocks.
	var first, second int
	for s, n := range seen {
		if n == 1 && in(s, own[1][:1]) {
			first++
		} else if n == 1 {
			second++
		}
	}
	if first < 4000 || second < 4000 {
		t.Errorf("node 1's 10000 SPIs: %d in its first block, %d in its second", first, second)
	}
	if _, err := al[1].Get(stack + 1); !errors.Is(err, spi.ErrNoBlock) {
		t.Errorf("Get of a stack with no block = %v, want ErrNoBlock", err)
	}

	foreign := own[2][0].First + 12345
	for name, s := range map[string]uint32{"other node's block": foreign, "reserved": 7, "zero": 0, "no block": own[1][1].Last + 1} {
		err := al[1].Check(stack, s)
		if !errors.Is(err, sharedaddr.ErrSPIInUse) || !errors.Is(err, spi.ErrNotOurs) {
			t.Errorf("Check(%s %#x) = %v, want ErrSPIInUse and ErrNotOurs", name, s, err)
		}
	}
	var got uint32
	for s, n := range seen {
		if n == 1 {
			got = s
			break
		}
	}
	if err := al[1].Check(stack, got); !errors.Is(err, sharedaddr.ErrSPIInUse) || errors.Is(err, spi.ErrNotOurs) {
		t.Errorf("Check of an SPI Get gave = %v, want ErrSPIInUse only", err)
	}
	free := own[1][0].First + 1
	for free == got || seen[free] != 0 {
		free++
	}
	if err := al[1].Check(stack, free); err != nil {
		t.Errorf("Check of a free SPI of its own block = %v", err)
	}
	if err := al[1].Check(stack, free); !errors.Is(err, sharedaddr.ErrSPIInUse) {
		t.Errorf("second Check = %v, want ErrSPIInUse", err)
	}
	al[1].Delete(stack, free)
	if err := al[1].Check(stack, free); err != nil {
		t.Errorf("Check after Delete = %v", err)
	}
}

// TestLeasesSurviveRestart: the machine's SPI leases come back from a
// snapshot and from a replay of the log, and an allocator over the
// restored machine hands out SPIs from the same blocks.
func TestLeasesSurviveRestart(t *testing.T) {
	c := newCluster(t)
	own := []spi.Block{c.leaseSPI(2), c.leaseSPI(2)}
	c.leaseSPI(1)
	want := c.m[2].SPILeases()

	var snap bytes.Buffer
	if err := c.m[2].Snapshot(c.tx[2], &snap); err != nil {
		t.Fatal(err)
	}
	restored, rtx := ctl.NewMachine(nil, ctl.Options{TableSize: 7}), memTx{}
	if err := restored.Restore(rtx, bytes.NewReader(snap.Bytes())); err != nil {
		t.Fatal(err)
	}
	replayed, ptx := ctl.NewMachine(nil, ctl.Options{TableSize: 7}), memTx{}
	for i, e := range c.log {
		apply(t, replayed, ptx, uint64(i+1), e)
	}
	loaded := ctl.NewMachine(nil, ctl.Options{TableSize: 7})
	if err := loaded.Load(c.tx[2]); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]*ctl.Machine{"restored": restored, "replayed": replayed, "loaded": loaded} {
		if got := m.SPILeases(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: leases %v, want %v", name, got, want)
		}
		a := spi.New(2, m, nil)
		for range 1000 {
			s, err := a.Get(stack)
			if err != nil || !in(s, own) {
				t.Fatalf("%s: Get = %#x, %v; want an SPI of %v", name, s, err, own)
			}
		}
	}
}

// TestEviction: a node cut off keeps its block until the log releases
// it: until then the others lease past it and never hand out its SPIs;
// after the view without it, its block is free, the evicted node has
// none, and a new lease may take the block.
func TestEviction(t *testing.T) {
	c := newCluster(t)
	c.leaseSPI(1)
	c.leaseSPI(2)
	b3 := c.leaseSPI(3)
	a1, a2, a3 := spi.New(1, c.m[1], nil), spi.New(2, c.m[2], nil), spi.New(3, c.m[3], nil)
	// Node 3 is cut off; the others want more SPIs before the view
	// changes: their new blocks are past node 3's.
	if b := c.leaseSPI(1); b == b3 {
		t.Fatalf("node 1 leased node 3's block %v while node 3 holds it", b)
	}
	for _, a := range []*spi.Allocator{a1, a2} {
		for range 5000 {
			s, err := a.Get(stack)
			if err != nil {
				t.Fatal(err)
			}
			if in(s, []spi.Block{b3}) {
				t.Fatalf("SPI %#x of node 3's block handed out while node 3 holds it", s)
			}
		}
	}
	if err := a1.Check(stack, b3.First+1); !errors.Is(err, spi.ErrNotOurs) {
		t.Errorf("Check of node 3's SPI = %v, want ErrNotOurs", err)
	}
	c.view(1, 2) // the log's release of node 3's leases
	if _, err := a3.Get(stack); !errors.Is(err, spi.ErrNoBlock) {
		t.Errorf("evicted node's Get = %v, want ErrNoBlock", err)
	}
	if _, ok := a1.Holder(stack, b3.First+1); ok {
		t.Error("node 3's block still held after the view without it")
	}
	if b := c.leaseSPI(2); b != b3 {
		t.Errorf("lease after the release = %v, want node 3's old block %v (the lowest free)", b, b3)
	}
	if n, ok := a1.Holder(stack, b3.First+1); !ok || n != 2 {
		t.Errorf("Holder of the re-leased block = %d, %v; want node 2", n, ok)
	}
}

// TestHooks: the hook methods over the allocator and the machine:
// GetSPI writes a fresh SPI big endian, CheckSPI and DeleteSPI follow
// the allocator, IdleSA reports the SA's active node, and IPIdent counts
// through the user part of the node's ident block, apart from the
// kernel's part and from every other node's block.
func TestHooks(t *testing.T) {
	c := newCluster(t)
	c.leaseSPI(1)
	b2 := c.leaseSPI(2)
	vip := netip.MustParseAddr("10.251.0.100")
	addr := ctl.Addr{Stack: uint64(stack), IP: vip}
	if r := c.commit(entry{cmd: &ctl.Cmd{Op: ctl.OpAdd, Addr: addr, Policy: ctl.Weighted}}); r.Code != ctl.OK {
		t.Fatalf("ADD: %v %s", r.Code, r.Text)
	}
	ident := map[uint64]spi.Block{}
	for n := uint64(1); n <= 3; n++ {
		r := c.commit(entry{cmd: &ctl.Cmd{Op: ctl.OpLease, Kind: ctl.Ident, Node: n, Addr: addr}})
		if r.Code != ctl.OK {
			t.Fatalf("LEASE ident: %v %s", r.Code, r.Text)
		}
		ident[n] = spi.Block{First: r.First, Last: r.Last}
	}
	var idles []spi.Idle
	var h [4]*spi.Hooks
	for n := uint64(1); n <= 3; n++ {
		h[n] = &spi.Hooks{Self: n, SPI: spi.New(n, c.m[n], nil), Addrs: c.m[n], OnIdle: func(i spi.Idle) { idles = append(idles, i) }}
	}

	buf := make([]byte, 4)
	h[1].GetSPI(stack, sharedaddr.ProtoESP, buf, nil)
	s := binary.BigEndian.Uint32(buf)
	if s == 0 || h[1].SPI.InUse(stack) != 1 {
		t.Fatalf("GetSPI wrote %#x, in use %d", s, h[1].SPI.InUse(stack))
	}
	if err := h[1].CheckSPI(stack, sharedaddr.ProtoESP, s, nil); !errors.Is(err, sharedaddr.ErrSPIInUse) {
		t.Errorf("CheckSPI of the SPI GetSPI gave = %v", err)
	}
	h[1].DeleteSPI(stack, sharedaddr.ProtoESP, s, nil)
	if err := h[1].CheckSPI(stack, sharedaddr.ProtoESP, s, nil); err != nil {
		t.Errorf("CheckSPI after DeleteSPI = %v", err)
	}
	h[3].GetSPI(stack, sharedaddr.ProtoESP, buf, nil)
	if got := binary.BigEndian.Uint32(buf); got != 0 {
		t.Errorf("GetSPI on a node without a block wrote %#x, want 0", got)
	}
	src := netip.MustParseAddr("192.0.2.1")
	h[3].IdleSA(stack, sharedaddr.ProtoESP, b2.First+9, src, vip, nil)
	want := spi.Idle{Stack: stack, Proto: sharedaddr.ProtoESP, SPI: b2.First + 9, Src: src, Dst: vip, Node: 2}
	if len(idles) != 1 || idles[0] != want {
		t.Errorf("IdleSA reported %v, want %v", idles, want)
	}

	seen := map[uint32]uint64{}
	for n := uint64(1); n <= 3; n++ {
		kern, user := spi.SplitIdent(ident[n])
		if kern.First != ident[n].First || user.Last != ident[n].Last || kern.Last+1 != user.First || user.Len() != 512 {
			t.Fatalf("SplitIdent(%v) = %v, %v", ident[n], kern, user)
		}
		for k := range 2 * user.Len() { // twice round: the counter wraps
			id := h[n].IPIdent(stack, sharedaddr.ProtoUDP, vip, src, nil)
			if want := user.First + k%user.Len(); id != want {
				t.Fatalf("node %d: IPIdent #%d = %d, want %d", n, k, id, want)
			}
			if o, dup := seen[id]; dup && o != n {
				t.Fatalf("ident %d from nodes %d and %d", id, o, n)
			}
			seen[id] = n
		}
	}
	if id := h[1].IPIdent(stack, sharedaddr.ProtoUDP, netip.MustParseAddr("10.251.0.101"), src, nil); id != 0 {
		t.Errorf("IPIdent of an address with no block = %d, want 0", id)
	}
	var _ interface {
		GetSPI(sharedaddr.StackID, sharedaddr.Proto, []byte, *sharedaddr.Args)
		CheckSPI(sharedaddr.StackID, sharedaddr.Proto, uint32, *sharedaddr.Args) error
		DeleteSPI(sharedaddr.StackID, sharedaddr.Proto, uint32, *sharedaddr.Args)
		IdleSA(sharedaddr.StackID, sharedaddr.Proto, uint32, netip.Addr, netip.Addr, *sharedaddr.Args)
		IPIdent(sharedaddr.StackID, sharedaddr.Proto, netip.Addr, netip.Addr, *sharedaddr.Args) uint32
	} = h[1]
}
