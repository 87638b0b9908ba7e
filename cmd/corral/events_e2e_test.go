package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
)

// event is a line of `corral events --json`.
type event struct {
	Seq   *uint64 `json:"seq"`
	Event string  `json:"event"`
	Data  struct {
		Instance uint64 `json:"instance"`
		Members  []struct {
			ID uint64 `json:"id"`
		} `json:"members"`
		Left []struct {
			ID uint64 `json:"id"`
		} `json:"left"`
		Nodes []struct {
			ID uint64 `json:"id"`
		} `json:"nodes"`
	} `json:"data"`
	raw string
	at  time.Time
}

// index is the log index of the entry the event came from (its Seq is a
// log position: index<<20 | place in the entry).
func (e event) index() uint64 { return events.SeqIndex(*e.Seq) }

// stream is a running `corral events --json` on one node.
type stream struct {
	nd  *node
	cmd *exec.Cmd
	mu  sync.Mutex
	evs []event
	// stderr is the command's log: reconnections, gaps.
	stderr *syncBuf
}

// watch starts streaming nd's events, from the oldest the agent holds, and
// waits until the stream has caught up with nd's view.
func (nd *node) watch() *stream {
	nd.t.Helper()
	s := nd.streamEvents()
	s.ready()
	return s
}

// streamEvents starts streaming nd's events, from the oldest the agent
// holds, without waiting for any.
func (nd *node) streamEvents() *stream {
	nd.t.Helper()
	s := &stream{nd: nd, cmd: exec.Command(binary, "events", "--json", "--since", "0", "--data-dir", nd.dir), stderr: &syncBuf{}}
	s.cmd.Stderr = s.stderr
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		nd.t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		nd.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) != nil {
				continue
			}
			e.raw, e.at = sc.Text(), time.Now()
			s.mu.Lock()
			s.evs = append(s.evs, e)
			s.mu.Unlock()
		}
	}()
	nd.t.Cleanup(func() { s.cmd.Process.Kill(); s.cmd.Wait() })
	return s
}

// ready waits until the stream has caught up with nd's current view: it is
// subscribed, and local events from now on reach it.
func (s *stream) ready() {
	s.nd.t.Helper()
	_, inst, err := s.nd.memberIDs()
	if err != nil {
		s.nd.t.Fatal(err)
	}
	s.wait(10*time.Second, fmt.Sprintf("NEWVIEW %d", inst), func(e event) bool { return e.Seq != nil && e.index() >= inst })
}

// wait returns the first event matching ok, waiting up to within.
func (s *stream) wait(within time.Duration, what string, ok func(e event) bool) event {
	s.nd.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s.mu.Lock()
		for _, e := range s.evs {
			if ok(e) {
				s.mu.Unlock()
				return e
			}
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			s.nd.t.Fatalf("n%d: no %s within %v; events:\n%s", s.nd.id, what, within, s.dump())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *stream) dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out string
	for _, e := range s.evs {
		out += e.raw + "\n"
	}
	return out
}

// seqd returns the cluster-wide events by seq.
func (s *stream) seqd() map[uint64]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[uint64]string{}
	for _, e := range s.evs {
		if e.Seq != nil {
			m[*e.Seq] = e.Event + " " + fmt.Sprint(e.Data)
		}
	}
	return m
}

func leftHas(e event, id int) bool {
	return e.Event == "NEWVIEW" && slices.ContainsFunc(e.Data.Left, func(n struct {
		ID uint64 `json:"id"`
	}) bool {
		return n.ID == uint64(id)
	})
}

func TestKillDeliversNewView(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-nodes", n), func(t *testing.T) {
			nodes := formed(t, n)
			streams := map[int]*stream{}
			for _, nd := range nodes {
				streams[nd.id] = nd.watch()
			}
			victim := 1 + (n-1)*int(time.Now().UnixNano()%2) // the founder, or the last
			killed := time.Now()
			nodes[victim-1].kill()
			for id, s := range streams {
				if id == victim {
					continue
				}
				e := s.wait(10*time.Second, fmt.Sprintf("NEWVIEW naming n%d in left", victim), func(e event) bool { return leftHas(e, victim) })
				d := e.at.Sub(killed)
				t.Logf("n%d delivered NEWVIEW %d without n%d %v after kill -9", id, *e.Seq, victim, d)
				if d > 3*time.Second {
					t.Errorf("n%d: NEWVIEW after %v", id, d)
				}
				// The connectivity class tells the same loss locally.
				for _, name := range []string{"P2P_LOST", "NODE_INELIGIBLE"} {
					s.wait(10*time.Second, name+" naming the victim", func(e event) bool {
						return e.Event == name && e.Seq == nil && len(e.Data.Nodes) == 1 && e.Data.Nodes[0].ID == uint64(victim)
					})
				}
			}
			delete(streams, victim) // it may have died before its stream caught up
			compareSequences(t, streams)
		})
	}
}

// compareSequences checks that every pair of nodes delivered the same
// event for every seq both delivered, and that each node's seqs rise.
func compareSequences(t *testing.T, streams map[int]*stream) {
	t.Helper()
	for a, sa := range streams {
		sa.mu.Lock()
		var last uint64
		for _, e := range sa.evs {
			if e.Seq != nil {
				if *e.Seq <= last {
					t.Errorf("n%d delivered seq %d after %d", a, *e.Seq, last)
				}
				last = *e.Seq
			}
		}
		sa.mu.Unlock()
		ma := sa.seqd()
		for b, sb := range streams {
			if b <= a {
				continue
			}
			common := 0
			for seq, ev := range sb.seqd() {
				if other, ok := ma[seq]; ok {
					common++
					if other != ev {
						t.Errorf("seq %d: n%d delivered %s, n%d delivered %s", seq, a, other, b, ev)
					}
				}
			}
			if common == 0 {
				t.Errorf("n%d and n%d share no cluster-wide event", a, b)
			}
		}
	}
}
