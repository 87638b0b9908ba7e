package ctl_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/sharedaddr/ctl"
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

// scriptTable is the table size of the scripts: small, so a table's
// shares print as bucket counts.
const scriptTable = 251

// node is a machine and its Tx, as every node of a cluster has one.
type node struct {
	m  *ctl.Machine
	tx memTx
}

func newNode(size int) *node {
	return &node{ctl.NewMachine(nil, ctl.Options{TableSize: size}), memTx{}}
}

func (n *node) apply(t testing.TB, index uint64, c ctl.Cmd) ctl.Reply {
	t.Helper()
	return n.applyRaw(t, index, ctl.AppendCmd(nil, c))
}

func (n *node) applyRaw(t testing.TB, index uint64, b []byte) ctl.Reply {
	t.Helper()
	res, err := n.m.Apply(n.tx, rsm.Entry{Index: index, Cmd: b})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if len(res.Events) != 0 {
		t.Fatalf("Apply returned events %v", res.Events)
	}
	r, err := ctl.ParseReply(res.Reply)
	if err != nil {
		t.Fatalf("ParseReply(%x): %v", res.Reply, err)
	}
	return r
}

func (n *node) view(t testing.TB, index, instance uint64, members ...[2]uint64) {
	t.Helper()
	v := &events.Membership{Instance: instance}
	for _, m := range members {
		v.Members = append(v.Members, event.Node{ID: m[0], BornOn: m[1]})
	}
	res, err := n.m.ApplyView(n.tx, rsm.Entry{Index: index}, v)
	if err != nil || len(res.Events) != 0 {
		t.Fatalf("ApplyView = %v, %v", res, err)
	}
}

func replyText(r ctl.Reply) string {
	if r.Code != ctl.OK {
		return fmt.Sprintf("%v: %s", r.Code, r.Text)
	}
	if r.First != 0 || r.Last != 0 || r.Index != 0 {
		return fmt.Sprintf("ok block=%d range=%d-%d", r.Index, r.First, r.Last)
	}
	return "ok"
}

func protoText(p uint8) string {
	switch p {
	case ctl.TCP:
		return "tcp"
	case ctl.UDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// stateText prints everything the queries answer.
func (n *node) stateText() string {
	var b strings.Builder
	inst, members := n.m.View()
	fmt.Fprintf(&b, "view %d: %v\n", inst, members)
	for _, a := range n.m.Addrs() {
		fmt.Fprintf(&b, "%v %v affinity=%v weights=%v owner=%d\n", a.Addr, a.Policy, a.Affinity, a.Weights, a.Owner)
		for _, l := range a.Listeners {
			fmt.Fprintf(&b, "  listen %s/%d node %d\n", protoText(l.Proto), l.Port, l.Node)
		}
		for _, l := range a.Leases {
			p := ""
			if l.Kind == ctl.Slice {
				p = " " + protoText(l.Proto)
			}
			h := ""
			if len(l.Holes) > 0 {
				h = fmt.Sprintf(" holes %v ports %v", l.Holes, l.Ports())
			}
			fmt.Fprintf(&b, "  %v%s %d [%d-%d] node %d%s\n", l.Kind, p, l.Index, l.First, l.Last, l.Node, h)
		}
		if a.Gen != 0 || len(a.Reports) > 0 {
			fmt.Fprintf(&b, "  gen %d reports %v\n", a.Gen, a.Reports)
		}
		for _, e := range a.Exceptions {
			fmt.Fprintf(&b, "  except %s/%d %v node %d\n", protoText(e.Proto), e.Port, e.Client, e.Node)
		}
	}
	for _, l := range n.m.SPILeases() {
		fmt.Fprintf(&b, "stack %#x spi %d [%#x-%#x] node %d\n", l.Stack, l.Index, l.First, l.Last, l.Node)
	}
	return b.String()
}

func parseCmd(t *testing.T, d *datadriven.TestData) ctl.Cmd {
	c := ctl.Cmd{}
	switch d.Cmd {
	case "add":
		c.Op = ctl.OpAdd
	case "del":
		c.Op = ctl.OpDel
	case "listen":
		c.Op = ctl.OpListen
	case "unlisten":
		c.Op = ctl.OpUnlisten
	case "lease":
		c.Op = ctl.OpLease
	case "release":
		c.Op = ctl.OpRelease
	case "except":
		c.Op = ctl.OpExcept
	case "unexcept":
		c.Op = ctl.OpUnexcept
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
	}
	c.Policy = ctl.Weighted
	for _, a := range d.CmdArgs {
		v := ""
		if len(a.Vals) > 0 {
			v = a.Vals[0]
		}
		num := func() uint64 {
			n, err := strconv.ParseUint(v, 0, 64)
			if err != nil {
				d.Fatalf(t, "%s: %v", a.Key, err)
			}
			return n
		}
		switch a.Key {
		case "ip":
			c.Addr.IP = netip.MustParseAddr(v)
		case "stack":
			c.Addr.Stack = num()
		case "policy":
			if p, err := ctl.ParsePolicy(v); err == nil {
				c.Policy = p
			} else {
				c.Policy = ctl.Policy(num())
			}
		case "affinity":
			dur, err := time.ParseDuration(v)
			if err != nil {
				d.Fatalf(t, "%v", err)
			}
			c.Affinity = dur
		case "replace":
			c.Replace = true
		case "weights":
			for _, w := range a.Vals {
				nd, wt, _ := strings.Cut(w, ":")
				nn, _ := strconv.ParseUint(nd, 10, 64)
				ww, _ := strconv.ParseUint(wt, 10, 32)
				c.Weights = append(c.Weights, ctl.Weight{Node: nn, Weight: uint32(ww)})
			}
			ctl.SortWeights(c.Weights)
		case "node":
			c.Node = num()
		case "proto":
			switch v {
			case "tcp":
				c.Proto = ctl.TCP
			case "udp":
				c.Proto = ctl.UDP
			default:
				c.Proto = uint8(num())
			}
		case "port":
			c.Port = uint16(num())
		case "kind":
			switch v {
			case "slice":
				c.Kind = ctl.Slice
			case "ident":
				c.Kind = ctl.Ident
			case "spi":
				c.Kind = ctl.SPI
			default:
				c.Kind = ctl.Kind(num())
			}
		case "index":
			c.Index = uint16(num())
		case "gen":
			c.Gen = num()
		case "partial":
			c.Partial = true
		case "flows":
			// flows=(tcp/80/192.0.2.1:5000,...)
			for _, f := range a.Vals {
				parts := strings.SplitN(f, "/", 3)
				if len(parts) != 3 {
					d.Fatalf(t, "flow %q", f)
				}
				fl := ctl.Flow{Proto: ctl.TCP, Client: netip.MustParseAddrPort(parts[2])}
				if parts[0] == "udp" {
					fl.Proto = ctl.UDP
				}
				p, _ := strconv.ParseUint(parts[1], 10, 16)
				fl.Port = uint16(p)
				c.Flows = append(c.Flows, fl)
			}
			c.Flows = ctl.SortFlows(c.Flows)
		default:
			d.Fatalf(t, "unknown argument %q", a.Key)
		}
	}
	return c
}

// tableText prints a table's buckets per node.
func tableText(tb []uint64) string {
	if tb == nil {
		return "no table"
	}
	counts := map[uint64]int{}
	for _, n := range tb {
		counts[n]++
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(counts)) {
		parts = append(parts, fmt.Sprintf("%d:%d", n, counts[n]))
	}
	return strings.Join(parts, " ")
}

func TestMachineScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/machine", func(t *testing.T, path string) {
		n := newNode(scriptTable)
		index := uint64(0)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			index++
			switch d.Cmd {
			case "view":
				// view instance=N members=id:bornOn,...
				var inst uint64
				var ms [][2]uint64
				for _, a := range d.CmdArgs {
					switch a.Key {
					case "instance":
						inst, _ = strconv.ParseUint(a.Vals[0], 10, 64)
					case "members":
						for _, v := range a.Vals {
							id, born, _ := strings.Cut(v, ":")
							i, _ := strconv.ParseUint(id, 10, 64)
							bo, _ := strconv.ParseUint(born, 10, 64)
							ms = append(ms, [2]uint64{i, bo})
						}
					}
				}
				n.view(t, index, inst, ms...)
				return n.stateText()
			case "state":
				return n.stateText()
			case "raw":
				b, err := hex.DecodeString(strings.TrimSpace(d.Input))
				if err != nil {
					d.Fatalf(t, "%v", err)
				}
				return replyText(n.applyRaw(t, index, b)) + "\n"
			case "table":
				// table ip=... [stack=] proto= port=
				c := parseCmd(t, &datadriven.TestData{Cmd: "listen", CmdArgs: d.CmdArgs})
				return tableText(n.m.Table(c.Addr, c.Proto, c.Port)) + "\n"
			case "owner":
				c := parseCmd(t, &datadriven.TestData{Cmd: "del", CmdArgs: d.CmdArgs})
				o, ok := n.m.Owner(c.Addr)
				return fmt.Sprintf("%d %v\n", o, ok)
			case "portowner":
				c := parseCmd(t, &datadriven.TestData{Cmd: "listen", CmdArgs: d.CmdArgs})
				o, ok := n.m.PortOwner(c.Addr, c.Proto, c.Port)
				return fmt.Sprintf("%d %v\n", o, ok)
			case "snapshot":
				// The snapshot restored into a fresh machine, and a
				// machine loaded from the restored Tx, answer the same.
				var buf bytes.Buffer
				if err := n.m.Snapshot(n.tx, &buf); err != nil {
					t.Fatal(err)
				}
				r := newNode(scriptTable)
				r.tx["junk"] = []byte("x") // not the machine's prefix: stays
				if err := r.m.Restore(r.tx, bytes.NewReader(buf.Bytes())); err != nil {
					t.Fatal(err)
				}
				l := newNode(scriptTable)
				l.tx = r.tx
				if err := l.m.Load(l.tx); err != nil {
					t.Fatal(err)
				}
				want := n.stateText()
				for _, o := range []*node{r, l} {
					if got := o.stateText(); got != want {
						t.Fatalf("restored state:\n%s\nwant:\n%s", got, want)
					}
				}
				n = r
				return fmt.Sprintf("%d bytes, restored\n", buf.Len())
			}
			return replyText(n.apply(t, index, parseCmd(t, d))) + "\n"
		})
	})
}
