package tx_test

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/corralhq/corral/mesh/tx"
	"github.com/corralhq/corral/proto"
)

// TestScripts runs the golden scripts under testdata/ (regenerate with
// go test ./mesh/tx -rewrite). Commands:
//
//	line a b            links a-(a+1)-…-b
//	link a b            links a and b
//	cut a b             link down: frames in flight lost, both ends told
//	route n t via       node n's route to t goes via (0: no route)
//	cap n k             node n relays at most k transactions per link
//	open a b name [parent=p] [close] [abort] [body=s]
//	send name at=n [body=s] [close]
//	close name at=n
//	abort name at=n [code=c]
//	deliver [n]         deliver n frames (default: until none is in flight)
//	tick [n]
//	txs n…              the tables
//	app n…              what the applications saw since the last app
//	inject from to name [reply] [abort] [create] [parent=p]  a stray frame
//	queue               frames in flight
//	unsent a b          the first frame in flight a->b was never written: a is told
//
// After every command the harness checks the invariants (net.check).
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		n := newNet(func(format string, args ...any) { t.Fatalf(format, args...) })
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			out := n.run(t, d)
			n.check()
			return out
		})
	})
}

func pos(d *datadriven.TestData, i int) string {
	if i < len(d.CmdArgs) && len(d.CmdArgs[i].Vals) == 0 {
		return d.CmdArgs[i].Key
	}
	return ""
}

func (n *net) run(t *testing.T, d *datadriven.TestData) string {
	var out strings.Builder
	id := func(i int) tx.NodeID {
		s := pos(d, i)
		if s == "" {
			d.Fatalf(t, "want a node id at argument %d", i+1)
		}
		return parseID(s)
	}
	at := func() tx.NodeID {
		var s string
		d.ScanArgs(t, "at", &s)
		return parseID(s)
	}
	key := func() tx.Key {
		k, ok := n.keys[pos(d, 0)]
		if !ok {
			d.Fatalf(t, "no transaction %q", pos(d, 0))
		}
		return k
	}
	body := func() []byte {
		var s string
		if d.MaybeScanArgs(t, "body", &s) {
			return []byte(s)
		}
		return nil
	}
	result := func(node tx.NodeID, err error) {
		if err != nil {
			fmt.Fprintf(&out, "error: %v\n", err)
		}
		n.collect(node, &out)
	}
	switch d.Cmd {
	case "line":
		for a := id(0); a < id(1); a++ {
			n.links[pair(a, a+1)] = true
			n.node(a)
			n.node(a + 1)
		}
	case "link":
		n.links[pair(id(0), id(1))] = true
		n.node(id(0))
		n.node(id(1))
	case "cut":
		n.cut(id(0), id(1), &out)
	case "route":
		n.override[[2]tx.NodeID{id(0), id(1)}] = id(2)
	case "cap":
		c, _ := strconv.Atoi(pos(d, 1))
		n.caps[id(0)] = c
		delete(n.tables, id(0))
		n.node(id(0))
	case "open":
		from, to, name := id(0), id(1), pos(d, 2)
		f := proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0100}, Body: body()}
		if d.HasArg("close") {
			f.Flags |= proto.FlagDelete
		}
		if d.HasArg("abort") {
			f.Flags |= proto.FlagAbort | proto.FlagDelete
			f.Body = proto.AppendStatus(nil, &proto.Status{Code: proto.CodeState, Text: "cancelled"})
		}
		var parent tx.Key
		var p string
		if d.MaybeScanArgs(t, "parent", &p) {
			parent = n.keys[p]
		}
		k, err := n.node(from).Open(to, f, parent)
		if err == nil {
			n.names[k], n.keys[name], n.targets[k] = name, k, to
		}
		result(from, err)
	case "send":
		f := proto.Frame{Body: body()}
		if d.HasArg("close") {
			f.Flags |= proto.FlagDelete
		}
		result(at(), n.node(at()).Send(key(), f))
	case "close":
		result(at(), n.node(at()).Close(key()))
	case "abort":
		code := 8
		d.MaybeScanArgs(t, "code", &code)
		result(at(), n.node(at()).Abort(key(), proto.Code(code), "stop"))
	case "deliver":
		max := 100000
		if s := pos(d, 0); s != "" {
			max, _ = strconv.Atoi(s)
		}
		n.deliver(max, &out)
		if len(n.queue) > 0 && pos(d, 0) == "" {
			d.Fatalf(t, "frames still in flight after %d deliveries: the scenario does not settle", max)
		}
	case "tick":
		k := 1
		if s := pos(d, 0); s != "" {
			k, _ = strconv.Atoi(s)
		}
		for range k {
			for _, i := range n.ids() {
				n.tables[i].Tick()
			}
		}
	case "txs":
		for i := range d.CmdArgs {
			fmt.Fprintf(&out, "node %d:\n%s", id(i), n.txsString(id(i)))
		}
	case "app":
		for i := range d.CmdArgs {
			fmt.Fprintf(&out, "app %d:\n", id(i))
			for _, dl := range n.app[id(i)] {
				fmt.Fprintf(&out, "  %s\n", n.deliveryString(dl))
			}
			n.app[id(i)] = nil
		}
	case "inject":
		// inject from to name [reply] [abort] [create]: a frame of the
		// transaction that no table sent, arriving at to on link from.
		k, ok := n.keys[pos(d, 2)]
		if !ok {
			d.Fatalf(t, "no transaction %q", pos(d, 2))
		}
		f := proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0100, Hops: proto.HopLimit,
			MsgID: k.MsgID, Source: uint64(k.Initiator), Target: uint64(n.targets[k])}, Body: []byte("stray")}
		if d.HasArg("reply") {
			f.Flags |= proto.FlagReply
			f.Source, f.Target = f.Target, f.Source
		}
		if d.HasArg("create") {
			f.Flags |= proto.FlagCreate
		}
		var p string
		if d.MaybeScanArgs(t, "parent", &p) {
			pk := n.keys[p]
			f.Ext = proto.AppendTxExt(nil, proto.TxExt{Parent: proto.TxRef{Initiator: uint64(pk.Initiator), MsgID: pk.MsgID}})
		}
		if d.HasArg("abort") {
			f.Flags |= proto.FlagAbort
			f.Body = proto.AppendStatus(nil, &proto.Status{Code: proto.CodeState, Text: "stray"})
		}
		n.queue = append([]flight{{id(0), id(1), f}}, n.queue...)
	case "unsent":
		a, b := id(0), id(1)
		i := slices.IndexFunc(n.queue, func(fl flight) bool { return fl.from == a && fl.to == b })
		if i < 0 {
			d.Fatalf(t, "no frame in flight %d->%d", a, b)
		}
		fl := n.queue[i]
		n.queue = slices.Delete(n.queue, i, i+1)
		fmt.Fprintf(&out, "unsent %d->%d %s\n", a, b, n.frameString(&fl.f))
		n.node(a).Unsent(tx.LinkID(b), fl.f)
		n.collect(a, &out)
	case "queue":
		for _, fl := range n.queue {
			fmt.Fprintf(&out, "%d->%d %s\n", fl.from, fl.to, n.frameString(&fl.f))
		}
	default:
		d.Fatalf(t, "unknown command %q", d.Cmd)
	}
	if out.Len() == 0 {
		return "ok"
	}
	return out.String()
}
