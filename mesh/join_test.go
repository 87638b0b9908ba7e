package mesh

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestJoin(t *testing.T) {
	lns := listeners(t, 3)
	dead := lns[2].Addr().String()
	lns[2].Close()
	a := start(t, 1, lns[0], nil)
	b := start(t, 2, lns[1], nil)
	eventually(t, 5*time.Second, "running", func() bool { return a.m.AddPeer(lns[1].Addr().String()) == nil })

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	err := a.m.Join(ctx, dead)
	cancel()
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Join of a closed port: %v, want ErrUnreachable naming the refusal", err)
	}
	for _, s := range a.m.States() {
		if s.Addr == dead {
			t.Fatalf("the address a failed join named stays in the table: %+v", s)
		}
	}
	if a.m.tab.configured(dead) {
		t.Fatal("the address a failed join named is still dialed")
	}

	ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.m.Join(ctx, lns[1].Addr().String()); err != nil {
		t.Fatalf("Join of a live peer: %v", err)
	}
	if a.m.Link(2) == nil {
		t.Fatal("Join returned before the link was up")
	}
	_ = b
}

func TestForgetAfter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tab := newTable(1, []string{"static:1"}, func() time.Time { return now }, slog.New(slog.DiscardHandler))
	tab.forgetAfter = 24 * time.Hour
	tab.configure("joined:1")
	tab.configure("recent:1")
	tab.byID[2] = &node{id: 2, name: "n2", addr: "joined:1", since: now.Add(-25 * time.Hour)}
	tab.byID[3] = &node{id: 3, name: "n3", addr: "static:1", since: now.Add(-25 * time.Hour)}
	tab.byID[4] = &node{id: 4, name: "n4", addr: "recent:1", since: now.Add(-23 * time.Hour)}
	var got []string
	for _, s := range tab.all() {
		got = append(got, s.Addr)
		if s.ID == 2 || s.ID == 3 {
			t.Errorf("node %d gone for 25h is still in the table: %+v", s.ID, s)
		}
	}
	// n4 stays (23h); static:1 stays as an address no node answered from.
	if strings.Join(got, ",") != "static:1,recent:1" {
		t.Errorf("rows %v, want static:1 (address only) and recent:1", got)
	}
	if tab.configured("joined:1") || !tab.configured("static:1") || !tab.configured("recent:1") {
		t.Error("forgetting stops the dialer of a run-time address only")
	}
	tab.forgetAfter = 0
	tab.byID[5] = &node{id: 5, addr: "recent:1", since: now.Add(-1000 * time.Hour)}
	if len(tab.all()) != 3 {
		t.Error("ForgetAfter 0 forgets")
	}
}
