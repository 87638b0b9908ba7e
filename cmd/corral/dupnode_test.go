package main

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDuplicateNodeIDRefused: a fourth agent started with --id 2 (its own
// data dir and address) is refused, both sides' logs name both
// addresses, and the real n2 stays in every view with the same life: no
// view changes for 5 s.
func TestDuplicateNodeIDRefused(t *testing.T) {
	nodes := formed(t, 3)
	type seen struct {
		inst, born uint64
	}
	look := func(nd *node) (seen, error) {
		rows, err := nd.view()
		if err != nil {
			return seen{}, err
		}
		var s seen
		for _, r := range rows {
			s.inst = r.View
			if r.ID == 2 && r.Member {
				s.born = r.BornOn
			}
		}
		return s, nil
	}
	before := make([]seen, len(nodes))
	for i, nd := range nodes {
		s, err := look(nd)
		if err != nil || s.born == 0 {
			t.Fatalf("n%d: view %+v, %v: n2 not a member", nd.id, s, err)
		}
		before[i] = s
	}

	port := nodes[0].addr[strings.LastIndex(nodes[0].addr, ":"):]
	dupAddr := "127.0.0.4" + port
	dup := &node{t: t, id: 4, addr: dupAddr, dir: filepath.Join(t.TempDir(), "dup")}
	dup.args = []string{"agent", "--id", "2", "--name", "n2", "--bind", dupAddr, "--peers", nodes[0].addr + "," + nodes[2].addr,
		"--data-dir", dup.dir, "--cluster-key-file", keyOf(nodes[0])}
	logFrom := len(nodes[1].log.String()) // n2's links while the impostor runs
	dup.start()
	t.Cleanup(func() {
		dup.kill()
		if t.Failed() {
			t.Logf("log of the second n2:\n%s", dup.log.String())
		}
	})

	names := func(log string) bool {
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "node id in use") && strings.Contains(line, nodes[1].addr) && strings.Contains(line, dupAddr) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(20 * time.Second)
	for !(names(dup.log.String()) && (names(nodes[0].log.String()) || names(nodes[2].log.String()))) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal naming %s and %s in both logs", nodes[1].addr, dupAddr)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The real n2 is not disturbed: the same view and the same life on
	// every node for 5 s.
	end := time.Now().Add(5 * time.Second)
	for time.Now().Before(end) {
		for i, nd := range nodes {
			s, err := look(nd)
			if err != nil || s != before[i] {
				t.Fatalf("n%d: view %+v (%v), was %+v before the second n2 started", nd.id, s, err, before[i])
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A link replaced by its duplicate while the cluster formed is a
	// handover, not a loss; anything else since the impostor started is.
	for _, l := range strings.Split(nodes[1].log.String()[logFrom:], "\n") {
		if strings.Contains(l, "link down") && !strings.Contains(l, "duplicate link") {
			t.Fatalf("the real n2 lost a link while the impostor ran: %s", l)
		}
	}
}
