package sharedaddr_test

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/sharedaddrtest"
)

// Two stacks (two network namespaces) use one shared address
// independently: the same address and port listen in both, each hook call
// carries its own stack's id, and each walk sees only its own sockets.
func TestTwoStacks(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	lab := netlab.New(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rec := sharedaddrtest.New(sharedIP)
	var stacks [2]*sharedaddr.Stack
	var lns [2]net.Listener
	for i := range stacks {
		st, err := sharedaddr.Open("/var/run/netns/"+lab.Namespace(i+1), rec, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		stacks[i] = st
		ln, err := st.Listen(ctx, "tcp4", "127.0.0.100:8080")
		if err != nil {
			t.Fatalf("stack %d: %v", i+1, err)
		}
		lns[i] = ln
	}
	if stacks[0].ID() == stacks[1].ID() {
		t.Fatalf("both namespaces have stack id %d", stacks[0].ID())
	}
	// A connection inside stack 1 only.
	c, err := stacks[0].DialFrom(ctx, "tcp4", plainIP, "127.0.0.100:8080")
	if err != nil {
		t.Fatal(err)
	}
	s := accept(t, lns[0])
	for i, st := range stacks {
		established := 0
		err := st.WalkTCP(ctx, func(ti sharedaddr.TCPInfo) bool {
			if ti.Stack != st.ID() {
				t.Errorf("stack %d walk: %v has stack %d", i+1, ti, ti.Stack)
			}
			if ti.State == sharedaddr.StateEstablished {
				established++
			}
			return true
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := []int{2, 0}[i]; established != want {
			t.Errorf("stack %d: %d established sockets, want %d", i+1, established, want)
		}
	}
	c.Close()
	s.Close()
	for _, ln := range lns {
		ln.Close()
	}
	var perStack [2][]string
	for _, e := range rec.Events() {
		for i, st := range stacks {
			if e.Stack == st.ID() {
				perStack[i] = append(perStack[i], strings.Fields(e.String())[0])
			}
		}
	}
	want := [2]string{"listen connect disconnect unlisten", "listen unlisten"}
	for i := range perStack {
		if got := strings.Join(perStack[i], " "); got != want[i] {
			t.Errorf("stack %d hook calls: %s, want %s", i+1, got, want[i])
		}
	}
	checkContract(t, rec)
	if n := len(rec.Events()); n != 6 {
		t.Errorf("%d hook calls in all, want 6: %v", n, rec.Strings())
	}
}
