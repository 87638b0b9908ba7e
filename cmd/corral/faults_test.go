package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Regression tests of faults: processes paused and resumed, a join through
// a follower, a node founding a second cluster, and the upgrade of a data
// dir of the previous release.

// confMismatch is what an agent logs when raft's voters and its view
// diverge, which happens when a removed incarnation is added back.
const confMismatch = "raft's voters and the view disagree"

// soak returns how long a fault test injects faults: the duration in
// CORRAL_SOAK, or def.
func soak(t *testing.T, def time.Duration) time.Duration {
	t.Helper()
	v := os.Getenv("CORRAL_SOAK")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("CORRAL_SOAK=%q: %v", v, err)
	}
	return d
}

// seeded returns a random source seeded from CORRAL_SEED, or from the
// clock; the seed is logged so a failure can be replayed.
func seeded(t *testing.T) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CORRAL_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CORRAL_SEED=%q: %v", v, err)
		}
		seed = s
	}
	t.Logf("seed %d (replay with CORRAL_SEED=%d)", seed, seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

// eventually calls f until it returns nil, failing the test with f's last
// error if that does not happen within d.
func eventually(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, within, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holds calls f for d, failing the test at the first error: a condition
// that must stay true for a while, not one waited for.
func holds(t *testing.T, d time.Duration, what string, f func() error) {
	t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if err := f(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
}

// alive reports an error if nd's process has exited.
func (nd *node) alive() error {
	if nd.cmd == nil {
		return fmt.Errorf("n%d is not running", nd.id)
	}
	select {
	case err := <-nd.exit:
		nd.exit <- err // for kill
		return fmt.Errorf("n%d exited: %v", nd.id, err)
	default:
		return nil
	}
}

// stop stops nd with SIGTERM and waits for it to exit.
func (nd *node) stop() {
	nd.t.Helper()
	nd.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-nd.exit:
		if err != nil {
			nd.t.Fatalf("n%d exited with %v after SIGTERM", nd.id, err)
		}
	case <-time.After(15 * time.Second):
		nd.t.Fatalf("n%d did not exit after SIGTERM", nd.id)
	}
	nd.cmd = nil
}

// agreement is what a node says of the view: its instance, members (with
// born-on) and leader.
type agreement struct {
	inst    uint64
	members string
	leader  uint64
}

// agreed returns the view every node shows, or an error if a node is
// down, shows no single leader, or disagrees with another.
func agreed(nodes []*node) (agreement, error) {
	var first agreement
	for i, nd := range nodes {
		if err := nd.alive(); err != nil {
			return first, err
		}
		rows, err := nd.view()
		if err != nil {
			return first, err
		}
		var a agreement
		var ms []string
		leaders := 0
		for _, r := range rows {
			a.inst = r.View
			if r.Member {
				ms = append(ms, fmt.Sprintf("%d@%d", r.ID, r.BornOn))
			}
			if r.Leader {
				leaders++
				a.leader = r.ID
			}
		}
		sort.Strings(ms)
		a.members = strings.Join(ms, " ")
		if leaders != 1 {
			return first, fmt.Errorf("n%d shows %d leaders: %+v", nd.id, leaders, rows)
		}
		if i == 0 {
			first = a
		} else if a != first {
			return first, fmt.Errorf("n%d shows view %d [%s] leader %d, n%d view %d [%s] leader %d",
				nodes[0].id, first.inst, first.members, first.leader, nd.id, a.inst, a.members, a.leader)
		}
	}
	return first, nil
}

// noConfMismatch fails the test if a node logged that raft's voters and
// its view disagree.
func noConfMismatch(t *testing.T, nodes []*node) {
	t.Helper()
	for _, nd := range nodes {
		for _, l := range strings.Split(nd.log.String(), "\n") {
			if strings.Contains(l, confMismatch) {
				t.Errorf("n%d: raft's voters and the view diverged (a removed incarnation added back?): %s", nd.id, l)
				break
			}
		}
	}
}

// Fault F1: nodes paused (SIGSTOP) and resumed, one at a time, over and
// over. Once it stops the cluster has one leader and one view again with
// every node in it. Before the fix this could leave it without a leader
// for good.
func TestPausesKeepALeader(t *testing.T) {
	dur := soak(t, 20*time.Second)
	rng := seeded(t)
	nodes := formed(t, 3)
	t.Cleanup(func() { // a failure must not leave a process stopped
		for _, nd := range nodes {
			if nd.cmd != nil {
				nd.cmd.Process.Signal(syscall.SIGCONT)
			}
		}
	})
	pauses := 0
	for end := time.Now().Add(dur); time.Now().Before(end); {
		nd := nodes[rng.IntN(len(nodes))]
		pause := time.Duration(300+rng.IntN(601)) * time.Millisecond
		gap := time.Duration(rng.IntN(501)) * time.Millisecond
		if err := nd.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP n%d: %v", nd.id, err)
		}
		time.Sleep(pause) // the fault itself: how long the node is frozen
		if err := nd.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatalf("SIGCONT n%d: %v", nd.id, err)
		}
		pauses++
		time.Sleep(gap)
	}
	t.Logf("%d pauses in %v", pauses, dur)
	var a agreement
	eventually(t, 15*time.Second, "one leader and one view of all three after the pauses", func() error {
		var err error
		if a, err = agreed(nodes); err != nil {
			return err
		}
		if strings.Count(a.members, "@") != len(nodes) {
			return fmt.Errorf("view %d is [%s], want all three", a.inst, a.members)
		}
		return nil
	})
	t.Logf("view %d [%s], leader n%d", a.inst, a.members, a.leader)
	noConfMismatch(t, nodes)
}

// leaderOf returns the node every node names as leader.
func leaderOf(t *testing.T, nodes []*node) *node {
	t.Helper()
	var a agreement
	eventually(t, 10*time.Second, "a leader", func() (err error) {
		a, err = agreed(nodes)
		return err
	})
	for _, nd := range nodes {
		if uint64(nd.id) == a.leader {
			return nd
		}
	}
	t.Fatalf("leader %d is not one of the nodes", a.leader)
	return nil
}

// joiner makes node id on 127.0.0.id, at the cluster's port and with its
// key, listing only peers; it is killed at the end of the test, and its
// log shown on failure.
func joiner(t *testing.T, nodes []*node, id int, peers ...*node) *node {
	t.Helper()
	port := nodes[0].addr[strings.LastIndex(nodes[0].addr, ":"):]
	nd := &node{t: t, id: id, addr: fmt.Sprintf("127.0.0.%d%s", id, port), dir: filepath.Join(filepath.Dir(nodes[0].dir), fmt.Sprintf("n%d", id))}
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, p.addr)
	}
	nd.args = []string{"agent", "--id", fmt.Sprint(id), "--name", fmt.Sprintf("n%d", id), "--bind", nd.addr,
		"--peers", strings.Join(addrs, ","), "--data-dir", nd.dir, "--cluster-key-file", keyOf(nodes[0])}
	t.Cleanup(func() {
		nd.kill()
		if t.Failed() && nd.log != nil {
			t.Logf("log of n%d:\n%s", nd.id, nd.log.String())
		}
	})
	return nd
}

// Fault F2: a node that joins through a follower is added once and stays.
// Before the fix it was removed in the same millisecond it was added, and
// the view flapped for several changes.
func TestJoinThroughFollowerNoFlap(t *testing.T) {
	nodes := formed(t, 3)
	leader := leaderOf(t, nodes)
	var follower *node
	for _, nd := range nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	t.Logf("leader n%d; n4 joins through n%d", leader.id, follower.id)
	s := leader.watch()
	n4 := joiner(t, nodes, 4, follower)
	n4.start()
	all := append(slices.Clone(nodes), n4)
	want := fmt.Sprint(ids(all))
	var inst uint64
	eventually(t, 10*time.Second, "n4 in the view on every node", func() error {
		inst = 0
		for _, nd := range all {
			got, i, err := nd.memberIDs()
			if err != nil {
				return err
			}
			if fmt.Sprint(got) != want {
				return fmt.Errorf("n%d: view %d %v, want %s", nd.id, i, got, want)
			}
			if inst != 0 && i != inst {
				return fmt.Errorf("n%d: view %d, another node %d", nd.id, i, inst)
			}
			inst = i
		}
		return nil
	})
	noRemoval := func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, e := range s.evs {
			if leftHas(e, 4) {
				return fmt.Errorf("the leader delivered a NEWVIEW removing n4: %s", e.raw)
			}
			if e.Event == "NEWVIEW" && e.Seq != nil && e.index() > inst {
				return fmt.Errorf("the view changed after n4 joined (view %d): %s", inst, e.raw)
			}
		}
		return nil
	}
	if err := noRemoval(); err != nil {
		t.Fatalf("%v\nevents:\n%s", err, s.dump())
	}
	holds(t, 5*time.Second, "after n4 joined", func() error {
		if err := noRemoval(); err != nil {
			return fmt.Errorf("%v\nevents:\n%s", err, s.dump())
		}
		for _, nd := range all {
			got, i, err := nd.memberIDs()
			if err != nil {
				return err
			}
			if fmt.Sprint(got) != want || i != inst {
				return fmt.Errorf("n%d: view %d %v, was %d %s", nd.id, i, got, inst, want)
			}
		}
		return nil
	})
	noConfMismatch(t, all)
}

// rejectText is the text of a REJECT for a cluster id mismatch
// (transport/handshake.go).
var rejectText = regexp.MustCompile(`is of cluster ([0-9a-f]{16}), this node of cluster ([0-9a-f]{16})`)

// ownClusterID is this node's cluster id as its handshake log lines name
// it (the cluster_id attribute), or "".
var ownClusterID = regexp.MustCompile(`(?:^|\s)cluster_id=([0-9a-f]{16})`)

// One cluster, one identity: a node whose data dir was wiped and that
// founds a new cluster at the old one's address is refused by the old
// cluster's members, and each side logs both cluster ids.
//
// n1 keeps its address and --id; its whole data dir goes, so its new life
// shares nothing on disk with the old one.
func TestFoundedTwiceRefused(t *testing.T) {
	nodes := formed(t, 2)
	n1, n2 := nodes[0], nodes[1]
	before, err := agreed(nodes)
	if err != nil {
		t.Fatal(err)
	}
	n1.stop()
	if err := os.RemoveAll(n1.dir); err != nil {
		t.Fatal(err)
	}
	n1.start() // still --bootstrap: it founds a new cluster

	// What n2 and n1 show from now on, checked until the end.
	var mu sync.Mutex // guards bad
	var bad []string
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var why []string
			if rows, err := n2.view(); err == nil {
				a := agreement{}
				var ms []string
				for _, r := range rows {
					a.inst = r.View
					if r.Member {
						ms = append(ms, fmt.Sprintf("%d@%d", r.ID, r.BornOn))
					}
				}
				sort.Strings(ms)
				if a.inst != before.inst || strings.Join(ms, " ") != before.members {
					why = append(why, fmt.Sprintf("n2 shows view %d [%s], before n1's new life %d [%s]", a.inst, strings.Join(ms, " "), before.inst, before.members))
				}
			}
			if got, inst, err := n1.memberIDs(); err == nil && slices.Contains(got, 2) {
				why = append(why, fmt.Sprintf("n1's new cluster (view %d) has n2: %v", inst, got))
			}
			if len(why) > 0 {
				mu.Lock()
				bad = append(bad, why...)
				mu.Unlock()
			}
		}
	})
	stopWatching := func() {
		close(done)
		wg.Wait()
	}
	defer func() {
		if done != nil {
			stopWatching()
		}
	}()

	n1.waitView([]uint64{1}, 15*time.Second)
	// Both sides log the REJECT, naming both ids.
	own := map[int]string{}
	named := map[int][2]string{}
	eventually(t, 15*time.Second, "both nodes log the cluster id REJECT", func() error {
		for _, nd := range nodes {
			log := nd.log.String() // n1's: of its new life only
			m := rejectText.FindStringSubmatch(log)
			if m == nil {
				return fmt.Errorf("n%d logs no REJECT naming two cluster ids", nd.id)
			}
			named[nd.id] = [2]string{m[1], m[2]}
			for _, l := range strings.Split(log, "\n") {
				if rejectText.MatchString(l) {
					if o := ownClusterID.FindStringSubmatch(l); o != nil {
						own[nd.id] = o[1]
					}
				}
			}
			if own[nd.id] == "" {
				return fmt.Errorf("n%d: no REJECT line with its own cluster_id", nd.id)
			}
		}
		return nil
	})
	if own[1] == own[2] {
		t.Fatalf("n1 and n2 both say they are of cluster %s: the new life did not found a new cluster", own[1])
	}
	for id, ids := range named {
		got := []string{ids[0], ids[1]}
		want := []string{own[1], own[2]}
		sort.Strings(got)
		sort.Strings(want)
		if !slices.Equal(got, want) {
			t.Errorf("n%d's REJECT names clusters %v, want n1's %s and n2's %s", id, ids, own[1], own[2])
		}
	}
	t.Logf("n1's new cluster %s, the old one %s", own[1], own[2])
	// A while more of redialing: still refused, still apart.
	holds(t, 3*time.Second, "n1 and n2 kept apart", func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(bad) > 0 {
			return errors.New(strings.Join(bad, "\n"))
		}
		return nil
	})
	stopWatching()
	done = nil
	if got, _, _ := n1.memberIDs(); fmt.Sprint(got) != "[1]" {
		t.Errorf("n1's view %v, want [1]", got)
	}
}

// oldRelease is the last commit whose agent keeps DATA-DIR/state and a
// version 1 log.db.
const oldRelease = "ba06173"

var oldBinary struct {
	once sync.Once
	path string
	skip string // why the test cannot run
	err  error
}

// buildOld builds the agent of oldRelease, once per test binary, next to
// the current one.
func buildOld(t *testing.T) string {
	t.Helper()
	oldBinary.once.Do(func() {
		if _, err := exec.LookPath("git"); err != nil {
			oldBinary.skip = "no git to build the previous release with"
			return
		}
		root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
		if err != nil {
			oldBinary.skip = fmt.Sprintf("not in a git checkout: %v", err)
			return
		}
		repo := strings.TrimSpace(string(root))
		if err := exec.Command("git", "-C", repo, "cat-file", "-e", oldRelease+"^{commit}").Run(); err != nil {
			oldBinary.skip = fmt.Sprintf("commit %s is not in this clone (shallow?)", oldRelease)
			return
		}
		src := filepath.Join(filepath.Dir(binary), "old-src")
		if err := os.MkdirAll(src, 0o755); err != nil {
			oldBinary.err = err
			return
		}
		archive := exec.Command("git", "-C", repo, "archive", oldRelease)
		untar := exec.Command("tar", "-x", "-C", src)
		pipe, err := archive.StdoutPipe()
		if err != nil {
			oldBinary.err = err
			return
		}
		untar.Stdin = pipe
		if err := untar.Start(); err != nil {
			oldBinary.err = fmt.Errorf("tar: %w", err)
			return
		}
		if err := archive.Run(); err != nil {
			oldBinary.err = fmt.Errorf("git archive %s: %w", oldRelease, err)
			untar.Wait()
			return
		}
		if err := untar.Wait(); err != nil {
			oldBinary.err = fmt.Errorf("tar: %w", err)
			return
		}
		path := filepath.Join(filepath.Dir(binary), "corral-old")
		build := exec.Command("go", "build", "-o", path, "./cmd/corral")
		build.Dir = src
		if out, err := build.CombinedOutput(); err != nil {
			oldBinary.err = fmt.Errorf("build the agent of %s: %v\n%s", oldRelease, err, out)
			return
		}
		oldBinary.path = path
	})
	if oldBinary.skip != "" {
		t.Skip(oldBinary.skip)
	}
	if oldBinary.err != nil {
		t.Fatal(oldBinary.err)
	}
	return oldBinary.path
}

// appliedIndex reads the applied index from `corral members` of bin.
func appliedIndex(bin string, nd *node) (uint64, error) {
	out, err := exec.Command(bin, "members", "--data-dir", nd.dir).Output()
	if err != nil {
		return 0, fmt.Errorf("members on n%d: %w", nd.id, err)
	}
	m := regexp.MustCompile(`applied (\d+)`).FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("members on n%d: no applied index in %q", nd.id, out)
	}
	return strconv.ParseUint(string(m[1]), 10, 64)
}

// A data dir of the previous release (DATA-DIR/state, a version 1 log.db)
// is taken over by the new agent: the same view, without joining again,
// the state file imported into the life file, and the old events not
// delivered again.
func TestMigratesOldStateFile(t *testing.T) {
	old := buildOld(t)
	nodes := cluster(t, 3)
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	pair := nodes[:2]
	for _, nd := range pair {
		nd.wrap = func(args []string) *exec.Cmd { return exec.Command(old, args...) }
		nd.start()
	}
	for _, nd := range pair {
		nd.waitView(ids(pair), 30*time.Second)
	}
	var before agreement
	eventually(t, 10*time.Second, "the old agents agree", func() (err error) {
		before, err = agreed(pair)
		return err
	})
	var applied uint64
	for _, nd := range pair {
		a, err := appliedIndex(old, nd)
		if err != nil {
			t.Fatal(err)
		}
		applied = max(applied, a)
	}
	t.Logf("old agents: view %d [%s], applied %d", before.inst, before.members, applied)
	for _, nd := range pair {
		nd.stop()
		if _, err := os.Stat(filepath.Join(nd.dir, "state")); err != nil {
			t.Fatalf("the old agent left no state file: %v", err)
		}
	}

	for _, nd := range pair {
		nd.wrap = nil
		nd.start()
	}
	var after agreement
	eventually(t, 20*time.Second, "the new agents show the imported view", func() (err error) {
		after, err = agreed(pair)
		if err == nil && (after.inst != before.inst || after.members != before.members) {
			err = fmt.Errorf("view %d [%s], the old agents' %d [%s]", after.inst, after.members, before.inst, before.members)
		}
		return err
	})
	for _, nd := range pair {
		if _, err := os.Stat(filepath.Join(nd.dir, "state")); !os.IsNotExist(err) {
			t.Errorf("n%d: state file still there after the upgrade (%v)", nd.id, err)
		}
		if _, err := os.Stat(filepath.Join(nd.dir, "life")); err != nil {
			t.Errorf("n%d: no life file after the upgrade: %v", nd.id, err)
		}
	}

	// The events from the oldest the new agent holds, until a new node's
	// JOIN: nothing at or below the old applied index is a NEWVIEW again.
	s := nodes[0].streamEvents()
	nodes[2].start()
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 20*time.Second)
	}
	s.wait(10*time.Second, "NEWVIEW with n3", func(e event) bool {
		return e.Event == "NEWVIEW" && e.Seq != nil && e.index() > applied && len(e.Data.Members) == 3
	})
	s.mu.Lock()
	var seqs []uint64
	for _, e := range s.evs {
		if e.Seq == nil {
			continue
		}
		seqs = append(seqs, *e.Seq)
		if e.index() <= applied {
			t.Errorf("the new agent delivered an event of the old one again (seq %d, of entry %d ≤ applied %d): %s", *e.Seq, e.index(), applied, e.raw)
		}
	}
	s.mu.Unlock()
	t.Logf("the new agent's events up to n3's JOIN: seqs %v", seqs)
	if t.Failed() {
		t.Logf("events:\n%s\nstream log:\n%s", s.dump(), s.stderr.String())
	}
	noConfMismatch(t, nodes)
}
