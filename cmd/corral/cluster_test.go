package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// viewRow is a row of `corral members --json`.
type viewRow struct {
	ID     uint64 `json:"id"`
	State  string `json:"state"`
	View   uint64 `json:"view"`
	Member bool   `json:"member"`
	BornOn uint64 `json:"born_on"`
	Role   string `json:"role"`
	Leader bool   `json:"leader"`
}

func (nd *node) view() ([]viewRow, error) {
	out, err := exec.Command(binary, "members", "--data-dir", nd.dir, "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("members on n%d: %w", nd.id, err)
	}
	var rows []viewRow
	if err := json.Unmarshal(out, &rows); err != nil {
		return nil, fmt.Errorf("members on n%d: %w: %s", nd.id, err, out)
	}
	return rows, nil
}

// memberIDs returns the ids in nd's view and its instance.
func (nd *node) memberIDs() ([]uint64, uint64, error) {
	rows, err := nd.view()
	if err != nil {
		return nil, 0, err
	}
	var ids []uint64
	var inst uint64
	for _, r := range rows {
		inst = r.View
		if r.Member {
			ids = append(ids, r.ID)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	return ids, inst, nil
}

// waitView waits until nd's view holds exactly want, and returns the
// instance and how long it took.
func (nd *node) waitView(want []uint64, within time.Duration) (uint64, time.Duration) {
	nd.t.Helper()
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
	start := time.Now()
	var got []uint64
	var err error
	for time.Since(start) < within {
		var inst uint64
		got, inst, err = nd.memberIDs()
		if err == nil && fmt.Sprint(got) == fmt.Sprint(want) {
			return inst, time.Since(start)
		}
		time.Sleep(10 * time.Millisecond)
	}
	nd.t.Fatalf("n%d: view %v (err %v), want %v within %v", nd.id, got, err, want, within)
	return 0, 0
}

func ids(nodes []*node) []uint64 {
	var out []uint64
	for _, nd := range nodes {
		out = append(out, uint64(nd.id))
	}
	return out
}

// formed starts a cluster of n agents, node 1 founding it, and waits until
// every node's view holds all of them.
func formed(t testing.TB, n int, extra ...string) []*node {
	nodes := cluster(t, n, extra...)
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	return nodes
}

func TestClusterFormsOneView(t *testing.T) {
	nodes := formed(t, 3)
	var first []viewRow
	for i, nd := range nodes {
		rows, err := nd.view()
		if err != nil {
			t.Fatal(err)
		}
		leaders, voters := 0, 0
		for _, r := range rows {
			if r.Leader {
				leaders++
			}
			if r.Role == "voter" {
				voters++
			}
		}
		if leaders != 1 || voters != 3 {
			t.Errorf("n%d: %d leaders, %d voters in %+v", nd.id, leaders, voters, rows)
		}
		byID := func(rs []viewRow) map[uint64]viewRow {
			m := map[uint64]viewRow{}
			for _, r := range rs {
				m[r.ID] = r
			}
			return m
		}
		if i == 0 {
			first = rows
			continue
		}
		// Same instance, same born-on (age order) everywhere.
		a, b := byID(first), byID(rows)
		for id, r := range a {
			if b[id].View != r.View || b[id].BornOn != r.BornOn {
				t.Errorf("n1 and n%d disagree on node %d: %+v vs %+v", nd.id, id, r, b[id])
			}
		}
	}
}

// killAndWatch kills victim with SIGKILL and returns how long each
// survivor took to drop it from its view.
func killAndWatch(t *testing.T, nodes []*node, victim int) map[int]time.Duration {
	var rest []*node
	for _, nd := range nodes {
		if nd.id != victim {
			rest = append(rest, nd)
		}
	}
	killed := time.Now()
	nodes[victim-1].kill()
	var mu sync.Mutex
	took := map[int]time.Duration{}
	var wg sync.WaitGroup
	for _, nd := range rest {
		wg.Go(func() {
			nd.waitView(ids(rest), 15*time.Second)
			mu.Lock()
			took[nd.id] = time.Since(killed)
			mu.Unlock()
		})
	}
	wg.Wait()
	return took
}

func TestKillRemovesFromView(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-nodes", n), func(t *testing.T) {
			nodes := formed(t, n)
			victim := 2 + rand.IntN(n-1)
			took := killAndWatch(t, nodes, victim)
			t.Logf("kill -9 n%d: survivors dropped it after %v", victim, took)
			// Then the leader, whoever it is now.
			rows, _ := nodes[0].view()
			for _, r := range rows {
				if r.Leader && int(r.ID) != victim && r.ID != 0 {
					var alive []*node
					for _, nd := range nodes {
						if nd.id != victim {
							alive = append(alive, nd)
						}
					}
					if n == 3 {
						return // two voters left: losing one more loses the quorum
					}
					took := killAndWatch(t, alive, int(r.ID))
					t.Logf("kill -9 leader n%d: survivors dropped it after %v", r.ID, took)
				}
			}
		})
	}
}

func TestRestartedNodeIsEvictedAndRejoins(t *testing.T) {
	nodes := formed(t, 3)
	killAndWatch(t, nodes, 3)
	nodes[2].start()
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	if !strings.Contains(nodes[2].log.String(), "evicted from the cluster") {
		t.Fatalf("restarted node did not learn it was evicted:\n%s", nodes[2].log.String())
	}
}

func TestLeaveGracefully(t *testing.T) {
	nodes := formed(t, 3)
	out, err := exec.Command(binary, "leave", "--data-dir", nodes[2].dir).CombinedOutput()
	if err != nil {
		t.Fatalf("corral leave: %v %s", err, out)
	}
	if want := "node n3 (id 3) left the cluster; its agent stopped"; !strings.Contains(string(out), want) {
		t.Errorf("corral leave printed %q, want %q", out, want)
	}
	select {
	case err := <-nodes[2].exit:
		if err != nil {
			t.Fatalf("agent exited with %v after leaving", err)
		}
		nodes[2].cmd = nil
	case <-time.After(15 * time.Second):
		t.Fatal("agent still running after corral leave")
	}
	for _, nd := range nodes[:2] {
		nd.waitView([]uint64{1, 2}, 10*time.Second)
	}
	if strings.Contains(nodes[0].log.String(), "removing unreachable member") {
		t.Fatal("a graceful leave was taken for a failure")
	}
}

func TestJoinByCommand(t *testing.T) {
	nodes := formed(t, 2)
	extra := cluster(t, 3)[2] // a third node whose peers list is replaced below
	extra.args = []string{"agent", "--id", "3", "--name", "n3", "--bind", nodes[0].addr[:strings.LastIndex(nodes[0].addr, ".")] + ".3" + nodes[0].addr[strings.LastIndex(nodes[0].addr, ":"):],
		"--data-dir", extra.dir, "--cluster-key-file", keyOf(nodes[0])}
	extra.start()
	extra.waitState(3, "self", 10*time.Second)
	if ids, _, _ := extra.memberIDs(); len(ids) != 0 {
		t.Fatalf("a node with no peers and no --bootstrap founded a cluster: %v", ids)
	}
	out, err := exec.Command(binary, "join", "--data-dir", extra.dir, nodes[1].addr).CombinedOutput()
	if err != nil {
		t.Fatalf("corral join: %v %s", err, out)
	}
	all := append(nodes, extra)
	for _, nd := range all {
		nd.waitView(ids(all), 20*time.Second)
	}
}

func keyOf(nd *node) string {
	for i, a := range nd.args {
		if a == "--cluster-key-file" {
			return nd.args[i+1]
		}
	}
	return ""
}

func TestNonVotersGrowTheCluster(t *testing.T) {
	nodes := formed(t, 5, "--max-voters", "3")
	roles := func() map[uint64]string {
		rows, err := nodes[0].view()
		if err != nil {
			t.Fatal(err)
		}
		m := map[uint64]string{}
		for _, r := range rows {
			if r.Member {
				m[r.ID] = r.Role
			}
		}
		return m
	}
	count := func(m map[uint64]string, role string) (n int) {
		for _, r := range m {
			if r == role {
				n++
			}
		}
		return n
	}
	if r := roles(); count(r, "voter") != 3 || count(r, "non-voter") != 2 {
		t.Fatalf("roles %v, want 3 voters and 2 non-voters", r)
	}
	// A voter dies: a non-voter takes its place.
	var victim int
	for id, role := range roles() {
		if role == "voter" && id != 1 {
			victim = int(id)
		}
	}
	killAndWatch(t, nodes, victim)
	deadline := time.Now().Add(10 * time.Second)
	for r := roles(); count(r, "voter") != 3; r = roles() {
		if time.Now().After(deadline) {
			t.Fatalf("roles %v after losing voter %d, want 3 voters", r, victim)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The whole cluster goes down at once and comes back: the log on disk
// brings back one view with every node in it.
func TestWholeClusterRestart(t *testing.T) {
	nodes := formed(t, 3)
	_, before, err := nodes[0].memberIDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, nd := range nodes {
		nd.kill()
	}
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	_, after, _ := nodes[0].memberIDs()
	if after < before {
		t.Fatalf("view went back from %d to %d", before, after)
	}
}

// Nodes killed and started again on an empty data dir, over and over,
// join again each time and are never taken out of the view once back.
func TestRepeatedRestartsOnFreshDisks(t *testing.T) {
	nodes := formed(t, 3)
	for i := 0; i < 10; i++ {
		v := 2 + i%2
		killAndWatch(t, nodes, v)
		if err := os.RemoveAll(nodes[v-1].dir); err != nil {
			t.Fatal(err)
		}
		nodes[v-1].start()
		for _, nd := range nodes {
			nd.waitView(ids(nodes), 10*time.Second)
		}
	}
	for _, nd := range nodes[:1] {
		// Every removal the leader made was of a killed node: one per kill.
		if n := strings.Count(nd.log.String(), "removing unreachable member"); n > 10 {
			t.Errorf("n%d removed members %d times for 10 kills", nd.id, n)
		}
	}
}

// A node given its own address among its peers does not keep dialing
// itself.
func TestOwnAddressInPeers(t *testing.T) {
	nodes := cluster(t, 2)
	nodes[0].args = append(nodes[0].args, "--bootstrap", "--peers", nodes[0].addr+","+nodes[1].addr)
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	time.Sleep(time.Second) // a busy redial would log many refusals by now
	if n := strings.Count(nodes[0].log.String(), "refused peer connection"); n > 1 {
		t.Fatalf("n1 refused itself %d times", n)
	}
	if !strings.Contains(nodes[0].log.String(), "not dialing a peer with this node's id") {
		t.Fatal("n1 did not say it stopped dialing itself")
	}
}
