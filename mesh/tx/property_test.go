package tx_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/mesh/tx"
	"github.com/corralhq/corral/proto"
)

var (
	seedFlag = flag.Uint64("seed", 0, "seed of TestRandom (0: from the clock)")
	runsFlag = flag.Int("runs", 30, "runs of TestRandom")
)

// TestRandom drives random graphs with random operations in random
// orders: opens (some stacked), sends, closes, aborts, partial deliveries,
// cuts, new links and ticks. After every step the harness invariants
// hold, no application hears of a transaction after it closed there, and
// local calls fail only with the documented errors. At the end, once
// every application closes what it holds, every table is empty; and the
// same seed gives the same trace.
func TestRandom(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun with -seed=%d)", seed, seed)
	for i := range *runsFlag {
		s := seed + uint64(i)
		a := randomRun(t, s)
		if b := randomRun(t, s); a != b {
			t.Fatalf("seed %d: the same inputs gave another trace", s)
		}
	}
}

func randomRun(t *testing.T, seed uint64) string {
	r := rand.New(rand.NewPCG(seed, 0))
	var trace strings.Builder
	n := newNet(func(format string, args ...any) {
		t.Fatalf("seed %d: %s\ntrace:\n%s", seed, fmt.Sprintf(format, args...), tail(trace.String(), 60))
	})
	n.tomb = 2
	nodes := 4 + r.IntN(4)
	for i := 2; i <= nodes; i++ { // a random tree, then extra links
		n.links[pair(tx.NodeID(i), tx.NodeID(1+r.IntN(i-1)))] = true
	}
	for range r.IntN(nodes) {
		a, b := tx.NodeID(1+r.IntN(nodes)), tx.NodeID(1+r.IntN(nodes))
		if a != b {
			n.links[pair(a, b)] = true
		}
	}
	if r.IntN(3) == 0 {
		n.caps[tx.NodeID(1+r.IntN(nodes))] = 1 + r.IntN(3)
	}
	for i := 1; i <= nodes; i++ {
		n.node(tx.NodeID(i))
	}
	var keys []tx.Key
	node := func() tx.NodeID { return tx.NodeID(1 + r.IntN(nodes)) }
	local := func(op string, at tx.NodeID, err error) {
		fmt.Fprintf(&trace, "%s at %d: %v\n", op, at, err)
		var pe *proto.Error
		switch {
		case err == nil, errors.Is(err, tx.ErrUnknown), errors.Is(err, tx.ErrClosed), errors.Is(err, tx.ErrParent):
		case errors.As(err, &pe) && (pe.Code == proto.CodeLinkFail || pe.Code == proto.CodeNoRoute || pe.Code == proto.CodeHopLimit || pe.Code == proto.CodeBusy):
		default:
			n.fail("%s at %d: unexpected error %v", op, at, err)
		}
		n.collect(at, &trace)
	}
	pick := func() (tx.Key, tx.NodeID, bool) {
		if len(keys) == 0 {
			return tx.Key{}, 0, false
		}
		k := keys[r.IntN(len(keys))]
		if r.IntN(2) == 0 {
			return k, k.Initiator, true
		}
		return k, n.targets[k], true
	}
	for step := 0; step < 300; step++ {
		switch x := r.IntN(100); {
		case x < 25:
			a, b := node(), node()
			if a == b {
				continue
			}
			var parent tx.Key
			if k, at, ok := pick(); ok && r.IntN(4) == 0 {
				parent, a = k, at
				b = n.targets[k]
				if at == b {
					b = k.Initiator
				}
			}
			f := proto.Frame{Header: proto.Header{Proto: proto.ProtoPeer, Version: 1, Opcode: 0x0100}, Body: []byte{byte(step)}}
			if r.IntN(4) == 0 {
				f.Flags = proto.FlagDelete
			}
			k, err := n.node(a).Open(b, f, parent)
			if err == nil {
				keys = append(keys, k)
				n.names[k], n.targets[k] = fmt.Sprintf("k%d", len(keys)), b
			}
			local("open", a, err)
		case x < 45:
			if k, at, ok := pick(); ok {
				f := proto.Frame{Body: []byte{byte(step)}}
				if r.IntN(5) == 0 {
					f.Flags = proto.FlagDelete
				}
				local("send", at, n.node(at).Send(k, f))
			}
		case x < 55:
			if k, at, ok := pick(); ok {
				local("close", at, n.node(at).Close(k))
			}
		case x < 60:
			if k, at, ok := pick(); ok {
				local("abort", at, n.node(at).Abort(k, proto.CodeState, "stop"))
			}
		case x < 88:
			n.deliver(1+r.IntN(6), &trace)
		case x < 93:
			var up [][2]tx.NodeID
			for _, l := range sortedLinks(n) {
				if n.links[l] {
					up = append(up, l)
				}
			}
			if len(up) > 0 {
				l := up[r.IntN(len(up))]
				fmt.Fprintf(&trace, "cut %d %d\n", l[0], l[1])
				n.cut(l[0], l[1], &trace)
			}
		case x < 97:
			a, b := node(), node()
			if a != b {
				fmt.Fprintf(&trace, "link %d %d\n", a, b)
				n.links[pair(a, b)] = true
			}
		default:
			for _, id := range n.ids() {
				n.tables[id].Tick()
			}
		}
		n.check()
	}
	// Settle: deliver everything, then every application closes what it
	// holds, until nothing is open; tombstones age out.
	for round := 0; ; round++ {
		n.deliver(1<<20, &trace)
		open := 0
		for _, id := range n.ids() {
			for _, e := range n.tables[id].Entries() {
				open++
				if e.Role == tx.RoleRelay {
					continue
				}
				local("close", id, n.tables[id].Close(e.Key))
			}
		}
		n.deliver(1<<20, &trace)
		if open == 0 {
			break
		}
		if round == 5 {
			for _, id := range n.ids() {
				t.Logf("node %d:\n%s", id, n.txsString(id))
			}
			n.fail("transactions still open after %d rounds of closing", round)
		}
	}
	for range n.tomb + 1 {
		for _, id := range n.ids() {
			n.tables[id].Tick()
		}
	}
	for _, id := range n.ids() {
		if tb := n.tables[id]; tb.Len() != 0 || tb.Tombstones() != 0 {
			n.fail("node %d after settling:\n%s", id, n.txsString(id))
		}
	}
	return trace.String()
}

func sortedLinks(n *net) [][2]tx.NodeID {
	var out [][2]tx.NodeID
	for l := range n.links {
		out = append(out, l)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && (out[j][0] < out[j-1][0] || (out[j][0] == out[j-1][0] && out[j][1] < out[j-1][1])); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}
