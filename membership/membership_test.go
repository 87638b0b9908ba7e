package membership

import (
	"errors"
	"reflect"
	"testing"

	"github.com/corralhq/corral/proto"
)

func join(id uint64, name string, voter bool) Command {
	return Command{Op: OpJoin, ID: id, Incarnation: 100 + id, Name: name, Addr: "127.0.0.1:7946", Voter: voter}
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range []Command{
		join(1, "n1", true),
		join(1<<63, "a-long-name", false),
		{Op: OpLeave, Cause: CauseFailed, ID: 9},
		{Op: OpLeave, Cause: CauseGraceful, ID: 2},
	} {
		got, err := ParseCommand(c.Marshal())
		if err != nil || !reflect.DeepEqual(got, c) {
			t.Errorf("round trip %+v: got %+v, %v", c, got, err)
		}
	}
}

func TestCommandRejects(t *testing.T) {
	good := join(1, "n1", true).Marshal()
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, tc := range map[string]struct {
		b    []byte
		code proto.Code
	}{
		"empty":         {nil, proto.CodeField},
		"version":       {mut(func(b []byte) []byte { b[0] = 2; return b }), proto.CodeVersion},
		"op":            {mut(func(b []byte) []byte { b[1] = 9; return b }), proto.CodeOpcode},
		"flags":         {mut(func(b []byte) []byte { b[3] = 0x80; return b }), proto.CodeField},
		"id0":           {mut(func(b []byte) []byte { clear(b[4:12]); return b }), proto.CodeField},
		"incarnation0":  {mut(func(b []byte) []byte { clear(b[12:20]); return b }), proto.CodeField},
		"truncated":     {good[:len(good)-1], proto.CodeField},
		"trailing":      {append(append([]byte(nil), good...), 0), proto.CodeField},
		"join-cause":    {mut(func(b []byte) []byte { b[2] = 1; return b }), proto.CodeField},
		"leave-nocause": {(&Command{Op: OpLeave, ID: 3}).Marshal(), proto.CodeField},
		"cluster-zero":  {(&Command{Op: OpSetClusterID, ID: 3}).Marshal(), proto.CodeField},
		"cluster-short": {(&Command{Op: OpSetClusterID, ID: 3, Cluster: 1}).Marshal()[:30], proto.CodeField},
		"cluster-inc":   {(&Command{Op: OpSetClusterID, ID: 3, Incarnation: 1, Cluster: 1}).Marshal(), proto.CodeField},
	} {
		_, err := ParseCommand(tc.b)
		var pe *proto.Error
		if !errors.As(err, &pe) || pe.Code != tc.code {
			t.Errorf("%s: %v, want code %s", name, err, tc.code)
		}
	}
}

// TestClusterIDText pins the text form: the 16 hex digits transport prints
// for the id of a HELLO, and nothing else parses.
func TestClusterIDText(t *testing.T) {
	id := ClusterID(0xc022a10000000001)
	if s := id.String(); s != "c022a10000000001" {
		t.Fatalf("String %q", s)
	}
	if s := ClusterID(0xc1).String(); s != "00000000000000c1" {
		t.Fatalf("String %q, want leading zeros", s)
	}
	if s := ClusterID(0).String(); s != "none" {
		t.Fatalf("zero String %q", s)
	}
	if got, err := ParseClusterID("c022a10000000001"); err != nil || got != id {
		t.Fatalf("parse: %v %v", got, err)
	}
	if got, err := ParseClusterID("C022A10000000001"); err != nil || got != id {
		t.Fatalf("parse upper case: %v %v", got, err)
	}
	for _, s := range []string{"", "c1", "none", "c022a1000000000", "c022a100000000011", "0xc022a100000001", "+c022a1000000001", "c022a1000000000g", "000000000000000000000000000000c1"} {
		if _, err := ParseClusterID(s); !errors.Is(err, ErrCommand) {
			t.Errorf("ParseClusterID(%q): %v, want ErrCommand", s, err)
		}
	}
}

func TestViewApply(t *testing.T) {
	var v View
	ch, ok := v.Apply(3, join(1, "n1", true))
	if !ok || v.Instance != 3 || len(ch.Joined) != 1 || ch.Joined[0].BornOn != 3 {
		t.Fatalf("first join: %+v %v", ch, ok)
	}
	v.Apply(5, join(3, "n3", true))
	v.Apply(8, join(2, "n2", false))
	// Age order is join order, not id order.
	if ids := []uint64{v.Members[0].ID, v.Members[1].ID, v.Members[2].ID}; !reflect.DeepEqual(ids, []uint64{1, 3, 2}) {
		t.Fatalf("age order %v", ids)
	}
	if !reflect.DeepEqual(v.Voters(), []uint64{1, 3}) {
		t.Fatalf("voters %v", v.Voters())
	}
	if _, ok := v.Apply(9, join(3, "n3", true)); ok || v.Instance != 8 {
		t.Fatal("a JOIN of a member changed the view")
	}
	ch, ok = v.Apply(10, Command{Op: OpLeave, Cause: CauseFailed, ID: 3})
	if !ok || v.Instance != 10 || len(ch.Left) != 1 || ch.Left[0].ID != 3 || ch.Cause != CauseFailed || v.Has(3) {
		t.Fatalf("leave: %+v", ch)
	}
	// The change holds a copy: later changes do not alter it.
	v.Apply(11, join(4, "n4", true))
	if len(ch.View.Members) != 2 {
		t.Fatal("Change.View aliases the live view")
	}
	if _, ok := v.Apply(12, Command{Op: OpLeave, Cause: CauseFailed, ID: 3}); ok {
		t.Fatal("a LEAVE of a non-member changed the view")
	}
	// A LEAVE of an earlier life of a member is stale.
	if _, ok := v.Apply(13, Command{Op: OpLeave, Cause: CauseFailed, ID: 4, Incarnation: 5}); ok || !v.HasLife(4, 104) {
		t.Fatal("a LEAVE of an earlier incarnation removed the member")
	}
	got, err := ParseView(v.Marshal())
	if err != nil || !reflect.DeepEqual(got, v) {
		t.Fatalf("view round trip: %+v %v", got, err)
	}
	if _, err := ParseView(v.Marshal()[:20]); !errors.Is(err, proto.ErrField) {
		t.Fatalf("truncated view: %v", err)
	}
}

func TestPromote(t *testing.T) {
	var v View
	v.Apply(1, join(1, "n1", true))
	v.Apply(2, join(2, "n2", false))
	if _, ok := v.Apply(3, Command{Op: OpPromote, ID: 2, Incarnation: 102, Voter: true}); ok {
		t.Fatal("a promotion made a new view")
	}
	if m, _ := v.Member(2); !m.Voter || v.Instance != 2 {
		t.Fatalf("promotion: %+v in view %d", m, v.Instance)
	}
	c := Command{Op: OpPromote, ID: 2, Incarnation: 102, Voter: true}
	if got, err := ParseCommand(c.Marshal()); err != nil || got != c {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	c.Voter = false
	if _, err := ParseCommand(c.Marshal()); err == nil {
		t.Fatal("a PROMOTE to non-voter parsed")
	}
}

func TestContact(t *testing.T) {
	var v View
	for i, id := range []uint64{1, 2, 3, 4, 5} {
		v.Apply(uint64(i+1), join(id, "n", true))
	}
	v.Apply(6, join(6, "learner", false))
	up := map[uint64]bool{2: true, 3: true}
	f := func(id uint64) bool { return up[id] }
	var c Contact
	if s := c.Update(&v, 1, f); s != SignalNone {
		t.Fatalf("3 of 5 voters reachable: %v", s)
	}
	up[3] = false
	if s := c.Update(&v, 1, f); s != SignalSuspect || !c.Suspect() {
		t.Fatalf("2 of 5: %v", s)
	}
	if s := c.Update(&v, 1, f); s != SignalNone {
		t.Fatalf("suspect again: %v", s)
	}
	up[4] = true
	if s := c.Update(&v, 1, f); s != SignalRecovered {
		t.Fatalf("regained: %v", s)
	}
	up[4] = false
	c.Update(&v, 1, f)
	v.Apply(7, Command{Op: OpLeave, Cause: CauseFailed, ID: 5})
	up[4] = true
	if s := c.Update(&v, 1, f); s != SignalNone || c.Suspect() {
		t.Fatalf("regained after a view change: %v", s)
	}
	// A learner counts nobody but voters, and a single voter never suspects.
	var solo View
	solo.Apply(1, join(1, "n1", true))
	if s := (&Contact{}).Update(&solo, 1, func(uint64) bool { return false }); s != SignalNone {
		t.Fatalf("single node: %v", s)
	}
}

func FuzzParseCommand(f *testing.F) {
	f.Add(join(1, "n1", true).Marshal())                                              // a JOIN
	f.Add((&Command{Op: OpLeave, Cause: CauseFailed, ID: 2}).Marshal())               // a LEAVE
	f.Add([]byte{1, 1, 0, 0})                                                         // truncated after the flags
	f.Add((&Command{Op: OpSetClusterID, ID: 1, Cluster: testCluster}).Marshal())      // a SET-CLUSTER-ID
	f.Add((&Command{Op: OpSetClusterID, ID: 1, Cluster: testCluster}).Marshal()[:32]) // truncated inside the id
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseCommand(b)
		if err != nil {
			var pe *proto.Error
			if !errors.As(err, &pe) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if again, err := ParseCommand(c.Marshal()); err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-encode of %x: %+v %v", b, again, err)
		}
	})
}

func FuzzParseView(f *testing.F) {
	var v View
	v.Apply(4, join(1, "n1", true))
	v.Apply(9, join(2, "n2", false))
	f.Add(v.Marshal())         // two members
	f.Add((&View{}).Marshal()) // the empty view
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseView(b)
		if err != nil {
			return
		}
		if again, err := ParseView(v.Marshal()); err != nil || !reflect.DeepEqual(again, v) {
			t.Fatalf("re-encode: %+v %v", again, err)
		}
	})
}
