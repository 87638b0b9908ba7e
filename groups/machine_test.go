package groups_test

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/groups"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/types/event"
)

// memTx is an rsm.Tx in memory. Get returns a copy, so a machine that
// kept it past the call would not see later writes (bbolt's values are
// valid only until the call returns; a copy is the safe side here).
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

// twin is a machine and its Tx; scripts may run a second twin restored
// from a snapshot, which must then answer everything the same.
type twin struct {
	m  *groups.Machine
	tx memTx
}

func seqText(s uint64) string {
	if s == 0 {
		return "0"
	}
	return fmt.Sprintf("%d.%d", event.SeqIndex(s), s&(1<<event.SeqShift-1))
}

func memberText(m event.GroupMember) string {
	s := fmt.Sprintf("%s@n%d", seqText(m.Member), m.Node)
	if m.Name != "" {
		s += ":" + m.Name
	}
	if m.BornOn != 0 {
		s += "/" + seqText(m.BornOn)
	}
	return s
}

func idsText(ids []uint64) string {
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = seqText(id)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

func eventText(ev events.Event) string {
	g := ev.Group()
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %q from=%s", seqText(ev.Seq), strings.TrimPrefix(ev.Desc.String(), "GROUP "), g.Name, memberText(g.From))
	if g.Reason != 0 {
		fmt.Fprintf(&b, " reason=%q", g.Reason)
	}
	if g.Members != nil {
		ms := make([]string, len(g.Members))
		for i, m := range g.Members {
			ms[i] = memberText(m)
		}
		fmt.Fprintf(&b, " members=[%s]", strings.Join(ms, " "))
	}
	if g.Target != 0 {
		fmt.Fprintf(&b, " target=%s", seqText(g.Target))
	}
	if g.MsgID != 0 {
		fmt.Fprintf(&b, " msg=%d", g.MsgID)
	}
	if g.ReplyTo != 0 {
		fmt.Fprintf(&b, " reply-to=%s", seqText(g.ReplyTo))
	}
	if len(g.Payload) > 0 {
		if len(g.Payload) <= 32 {
			fmt.Fprintf(&b, " payload=%q", g.Payload)
		} else {
			fmt.Fprintf(&b, " payload=%d bytes", len(g.Payload))
		}
	}
	if ev.Desc != events.GSBroadcast {
		fmt.Fprintf(&b, " to=%s", idsText(g.To))
	} else if g.To != nil {
		fmt.Fprintf(&b, " to=%s (must be nil)", idsText(g.To))
	}
	return b.String()
}

var kinds = map[string]uint8{"broadcast": 3, "multicast": 4, "unicast": 5, "reply": 6}

// parseCmd reads "op key=v …". seq-valued fields (target, reply-to) are
// written index.k.
func parseCmd(t *testing.T, line string) groups.Cmd {
	f := strings.Fields(line)
	var c groups.Cmd
	ops := map[string]groups.Op{"open": groups.OpOpen, "close": groups.OpClose, "join": groups.OpJoin, "leave": groups.OpLeave,
		"send": groups.OpSend, "part": groups.OpPart, "reset": groups.OpReset}
	op, ok := ops[f[0]]
	if !ok {
		t.Fatalf("unknown op in %q", line)
	}
	c.Op = op
	num := func(v string) uint64 {
		if i, k, ok := strings.Cut(v, "."); ok {
			a, _ := strconv.ParseUint(i, 10, 64)
			b, _ := strconv.ParseUint(k, 10, 32)
			return event.SeqOf(a, uint32(b))
		}
		n, err := strconv.ParseUint(v, 0, 64)
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		return n
	}
	for _, kv := range f[1:] {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "key":
			c.Key = num(v)
		case "pid":
			c.Pid = uint32(num(v))
		case "name":
			c.Name = v
		case "reason":
			c.Reason = event.LeaveReason(num(v))
		case "group":
			c.Group = v
		case "kind":
			c.Kind, ok = kinds[v]
			if !ok {
				c.Kind = uint8(num(v))
			}
		case "assembled":
			c.Flags |= groups.FlagAssembled
		case "flags":
			c.Flags = uint8(num(v))
		case "target":
			c.Target = num(v)
		case "reply-to":
			c.ReplyTo = num(v)
		case "msg":
			c.MsgID = num(v)
		case "xfer":
			c.Xfer = num(v)
		case "payload":
			c.Payload = []byte(v)
		case "size":
			c.Payload = bytes.Repeat([]byte{'x'}, int(num(v)))
		case "namelen":
			c.Name = strings.Repeat("n", int(num(v)))
		case "grouplen":
			c.Group = strings.Repeat("g", int(num(v)))
		default:
			t.Fatalf("unknown field %q in %q", k, line)
		}
	}
	return c
}

func resultsText(rs []groups.CmdResult) string {
	var b strings.Builder
	for i, r := range rs {
		if r.Status != 0 {
			fmt.Fprintf(&b, "%d: error %d: %s\n", i, r.Status, r.Text)
			continue
		}
		fmt.Fprintf(&b, "%d: ok", i)
		if r.Member != 0 {
			fmt.Fprintf(&b, " member=%s", seqText(r.Member))
		}
		if r.Seq != 0 {
			fmt.Fprintf(&b, " seq=%s", seqText(r.Seq))
		}
		if r.Delivered != 0 {
			fmt.Fprintf(&b, " delivered=%d", r.Delivered)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func restored(t *testing.T, from *twin) *twin {
	t.Helper()
	var buf bytes.Buffer
	if err := from.m.Snapshot(from.tx, &buf); err != nil {
		t.Fatal(err)
	}
	tw := &twin{groups.NewMachine(nil), memTx{}}
	if err := tw.m.Restore(tw.tx, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("restore: %v", err)
	}
	var again bytes.Buffer
	if err := tw.m.Snapshot(tw.tx, &again); err != nil || !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Fatalf("snapshot of the restored machine differs (%v)", err)
	}
	return tw
}

func stateText(m *groups.Machine) string {
	var b strings.Builder
	fmt.Fprintf(&b, "applied=%s\n", seqText(m.Applied()))
	for _, g := range m.Groups() {
		seq, ms := m.Members(g.Name)
		parts := make([]string, len(ms))
		for i, x := range ms {
			parts[i] = memberText(x)
		}
		fmt.Fprintf(&b, "%q (%d) at %s: %s\n", g.Name, g.Members, seqText(seq), strings.Join(parts, " "))
	}
	return b.String()
}

// TestScripts runs testdata/machine/*: batches applied to the machine,
// and to a twin restored from its snapshot (after "restart"), which must
// answer the same.
func TestScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/machine", func(t *testing.T, path string) {
		tws := []*twin{{groups.NewMachine(nil), memTx{}}}
		next := map[uint64]uint64{} // each node's next batch number, unless a batch names its own
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			var index, node, n, runID uint64
			runID = 1
			var out []string
			for _, a := range d.CmdArgs {
				switch a.Key {
				case "index":
					index, _ = strconv.ParseUint(a.Vals[0], 10, 64)
				case "node":
					node, _ = strconv.ParseUint(a.Vals[0], 10, 64)
				case "n":
					n, _ = strconv.ParseUint(a.Vals[0], 10, 64)
				case "run":
					runID, _ = strconv.ParseUint(a.Vals[0], 10, 64)
				}
			}
			run := func(f func(tw *twin) string) string {
				for i, tw := range tws {
					got := f(tw)
					if i == 0 {
						out = append(out, got)
					} else if got != out[0] {
						t.Fatalf("restored twin answers\n%s\nthe machine\n%s", got, out[0])
					}
				}
				return out[0]
			}
			switch d.Cmd {
			case "batch":
				var cmds []groups.Cmd
				for _, l := range strings.Split(strings.TrimSpace(d.Input), "\n") {
					if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
						cmds = append(cmds, parseCmd(t, l))
					}
				}
				if n == 0 {
					next[node]++
					n = next[node]
				}
				b, err := groups.AppendBatch(nil, groups.Header{Node: node, Run: runID, N: n}, cmds)
				if err != nil {
					t.Fatal(err)
				}
				return run(func(tw *twin) string {
					res, err := tw.m.Apply(tw.tx, rsm.Entry{Index: index, Term: 1, Proposer: node, Cmd: b})
					if err != nil {
						t.Fatal(err)
					}
					rs, refused, err := groups.ParseReply(res.Reply)
					if err != nil {
						t.Fatal(err)
					}
					if refused != nil {
						if len(res.Events) != 0 {
							t.Fatalf("a refused batch made events: %v", res.Events)
						}
						return fmt.Sprintf("refused %d: %s\n", refused.Status, refused.Text)
					}
					return eventsText(index, 0, res.Events) + resultsText(rs)
				})
			case "view":
				var v events.Membership
				for _, a := range d.CmdArgs {
					if a.Key == "nodes" {
						for _, n := range a.Vals {
							id, _ := strconv.ParseUint(n, 10, 64)
							v.Members = append(v.Members, events.Node{ID: id})
						}
					}
				}
				return run(func(tw *twin) string {
					res, err := tw.m.ApplyView(tw.tx, rsm.Entry{Index: index, Event: 1}, &v)
					if err != nil {
						t.Fatal(err)
					}
					return eventsText(index, 1, res.Events)
				})
			case "state":
				return run(func(tw *twin) string { return stateText(tw.m) })
			case "session":
				var key uint64
				d.ScanArgs(t, "key", &key)
				return run(func(tw *twin) string {
					member, ok := tw.m.Session(node, key)
					return fmt.Sprintf("%s %v\n", seqText(member), ok)
				})
			case "keys":
				// The machine's Tx by key kind (SPEC.md, "State").
				n := map[byte]int{}
				for k := range tws[0].tx {
					n[k[0]]++
				}
				return fmt.Sprintf("applied=%d sessions=%d memberships=%d transfers=%d\n", n['a'], n['s'], n['g'], n['p'])
			case "restart":
				// A twin restored from the snapshot, and one loaded from
				// the Tx, as a restarted node would.
				loaded := &twin{groups.NewMachine(nil), tws[0].tx}
				if err := loaded.m.Load(loaded.tx); err != nil {
					t.Fatal(err)
				}
				if a, b := stateText(loaded.m), stateText(tws[0].m); a != b {
					t.Fatalf("loaded state\n%s\nwant\n%s", a, b)
				}
				tws = append(tws[:1], restored(t, tws[0]))
				return stateText(tws[1].m)
			}
			t.Fatalf("unknown directive %q", d.Cmd)
			return ""
		})
	})
}

// eventsText prints the events with the Seqs the Mux gives them, and
// checks the machine's invariants on each: To sorted, Members oldest
// first.
func eventsText(index uint64, first uint32, evs []events.Event) string {
	var b strings.Builder
	for i := range evs {
		evs[i].Seq = event.SeqOf(index, first+uint32(i))
		g := evs[i].Group()
		if !slices.IsSorted(g.To) {
			fmt.Fprintf(&b, "BUG: To not sorted\n")
		}
		if !slices.IsSortedFunc(g.Members, func(a, b event.GroupMember) int {
			return cmp.Or(cmp.Compare(a.BornOn, b.BornOn), cmp.Compare(a.Member, b.Member))
		}) {
			fmt.Fprintf(&b, "BUG: Members not oldest first\n")
		}
		b.WriteString(eventText(evs[i]) + "\n")
	}
	return b.String()
}

func groupsEntry(b []byte) rsm.Entry { return rsm.Entry{Index: 1, Proposer: 1, Cmd: b} }

// Delivered counts the messages applied for members on the SetSelf node,
// once per member.
func TestDeliveredCountsLocalMembers(t *testing.T) {
	m, tx := groups.NewMachine(nil), memTx{}
	m.SetSelf(1)
	apply := func(index, node, n uint64, cmds ...groups.Cmd) {
		t.Helper()
		b, err := groups.AppendBatch(nil, groups.Header{Node: node, Run: 1, N: n}, cmds)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Apply(tx, rsm.Entry{Index: index, Cmd: b}); err != nil {
			t.Fatal(err)
		}
	}
	apply(1, 1, 1, groups.Cmd{Op: groups.OpOpen, Key: 1}, groups.Cmd{Op: groups.OpOpen, Key: 2},
		groups.Cmd{Op: groups.OpJoin, Key: 1, Group: "g"}, groups.Cmd{Op: groups.OpJoin, Key: 2, Group: "g"})
	apply(2, 2, 1, groups.Cmd{Op: groups.OpOpen, Key: 1}, groups.Cmd{Op: groups.OpJoin, Key: 1, Group: "g"},
		groups.Cmd{Op: groups.OpSend, Key: 1, Kind: 4, Group: "g", Payload: make([]byte, 10)})
	if n, b := m.Delivered(); n != 2 || b != 20 {
		t.Errorf("Delivered() = %d, %d; want 2 messages, 20 bytes (two members on node 1)", n, b)
	}
}
