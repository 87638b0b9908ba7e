package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// quorumRow is the quorum a node's own row of `members --json` carries.
type quorumRow struct {
	State     string `json:"state"`
	Quorate   *bool  `json:"quorate"`
	Voters    int    `json:"voters"`
	Reachable int    `json:"voters_reachable"`
	Need      int    `json:"quorum_need"`
}

func (nd *node) quorum() (quorumRow, error) {
	out, err := exec.Command(binary, "members", "--data-dir", nd.dir, "--json").Output()
	if err != nil {
		return quorumRow{}, fmt.Errorf("members on n%d: %w", nd.id, err)
	}
	var rows []quorumRow
	if err := json.Unmarshal(out, &rows); err != nil {
		return quorumRow{}, fmt.Errorf("members on n%d: %w: %s", nd.id, err, out)
	}
	for _, r := range rows {
		if r.State == "self" && r.Quorate != nil {
			return r, nil
		}
	}
	return quorumRow{}, fmt.Errorf("members on n%d: no quorum on the self row: %s", nd.id, out)
}

// corral runs the tool and returns its combined output.
func corral(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	return string(out), err
}

// Item 6: `corral members` says whether the cluster has quorum, and why
// not, in text and JSON.
func TestMembersSaysQuorate(t *testing.T) {
	// The leader must not remove the first node killed before the second.
	nodes := formed(t, 3, "--remove-after", "1h")
	eventually(t, 10*time.Second, "quorate", func() error {
		out, err := corral(t, "members", "--data-dir", nodes[0].dir)
		if err != nil || !strings.Contains(out, "Quorate: yes (3 of 3 voters reachable, need 2)") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	nodes[1].kill()
	nodes[2].kill()
	eventually(t, 10*time.Second, "not quorate", func() error {
		out, err := corral(t, "members", "--data-dir", nodes[0].dir)
		if err != nil || !strings.Contains(out, "Quorate: no (1 of 3 voters reachable, need 2)") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	q, err := nodes[0].quorum()
	if err != nil {
		t.Fatal(err)
	}
	if *q.Quorate || q.Voters != 3 || q.Reachable != 1 || q.Need != 2 {
		t.Fatalf("members --json: %+v, want not quorate, 1 of 3 voters, need 2", q)
	}
}

// Item 6: `corral operator raft list-peers` names raft's voters and
// learners by node, never by raft id, and says which one leads.
func TestListRaftPeers(t *testing.T) {
	nodes := formed(t, 3, "--max-voters", "2")
	leader := leaderOf(t, nodes)
	var p struct {
		Leader  uint64 `json:"leader"`
		Term    uint64 `json:"term"`
		Applied uint64 `json:"applied"`
		Peers   []struct {
			ID     uint64 `json:"id"`
			Name   string `json:"name"`
			Role   string `json:"role"`
			Leader bool   `json:"leader"`
			Self   bool   `json:"self"`
			RaftID string `json:"raft_id"`
		} `json:"peers"`
	}
	eventually(t, 10*time.Second, "two voters and a learner", func() error {
		out, err := corral(t, "operator", "raft", "list-peers", "--data-dir", nodes[0].dir, "--json")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if err := json.Unmarshal([]byte(out), &p); err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		roles := map[string]int{}
		for _, x := range p.Peers {
			roles[x.Role]++
			if x.ID == 0 || x.Name != fmt.Sprintf("n%d", x.ID) || x.Leader != (x.ID == uint64(leader.id)) || x.Self != (x.ID == 1) {
				return fmt.Errorf("peer %+v (leader n%d): %s", x, leader.id, out)
			}
		}
		if roles["voter"] != 2 || roles["learner"] != 1 || p.Leader != uint64(leader.id) || p.Term == 0 || p.Applied == 0 {
			return fmt.Errorf("%+v: %s", roles, out)
		}
		return nil
	})
	out, err := corral(t, "operator", "raft", "list-peers", "--data-dir", nodes[0].dir)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if !strings.Contains(out, fmt.Sprintf("leader node %d, term %d", leader.id, p.Term)) || !strings.Contains(out, "n1 (this node)") ||
		strings.Count(out, "voter") != 2 || strings.Count(out, "learner") != 1 {
		t.Fatalf("list-peers:\n%s", out)
	}
	for _, x := range p.Peers {
		if strings.Contains(out, x.RaftID) || strings.Contains(out, strings.TrimLeft(x.RaftID, "0")) {
			t.Fatalf("list-peers shows raft id %s to people:\n%s", x.RaftID, out)
		}
	}
	t.Logf("list-peers:\n%s", out)
}

// Item 6: `corral members remove NODE` (and `force-leave`) has the leader
// take a dead member out of the view at once, through a follower or the
// leader itself; a node does not remove itself.
func TestMembersRemove(t *testing.T) {
	nodes := formed(t, 4, "--remove-after", "1h")
	leader := leaderOf(t, nodes)
	var others []*node
	for _, nd := range nodes {
		if nd != leader {
			others = append(others, nd)
		}
	}
	follower, victims := others[0], others[1:]
	if out, err := corral(t, "members", "remove", fmt.Sprint(follower.id), "--data-dir", follower.dir); err == nil || !strings.Contains(out, "is this node") || !strings.Contains(out, "corral leave") {
		t.Fatalf("removing the node itself: %v: %s", err, out)
	}
	if out, err := corral(t, "members", "remove", "9", "--data-dir", follower.dir); err == nil || !strings.Contains(out, `node "9" is not in view`) {
		t.Fatalf("removing a node not in the view: %v: %s", err, out)
	}
	for i, by := range []*node{follower, leader} {
		v := victims[i]
		v.kill()
		start := time.Now()
		args := []string{"members", "remove", fmt.Sprint(v.id)}
		if by == leader {
			args = []string{"force-leave", fmt.Sprintf("n%d", v.id)} // by name
		}
		out, err := corral(t, append(args, "--data-dir", by.dir)...)
		if err != nil || !strings.Contains(out, fmt.Sprintf("removed node %d (n%d)", v.id, v.id)) {
			t.Fatalf("%v on n%d: %v: %s", args, by.id, err, out)
		}
		took := time.Since(start)
		alive := []*node{leader, follower}
		if i == 0 {
			alive = append(alive, victims[1])
		}
		for _, nd := range alive {
			nd.waitView(ids(alive), 10*time.Second)
		}
		t.Logf("%v on n%d (leader n%d): committed after %v", args, by.id, leader.id, took)
	}
}

// Item 6: `corral join` to an address that does not answer fails within
// seconds with a clear message and leaves no row behind; a node gone for
// longer than forget-after leaves the members list.
func TestJoinUnreachableAndForget(t *testing.T) {
	nodes := formed(t, 3, "--forget-after", "2s")
	port := nodes[0].addr[strings.LastIndex(nodes[0].addr, ":"):]
	dead := "127.0.0.9" + port
	start := time.Now()
	out, err := corral(t, "join", "--data-dir", nodes[0].dir, dead)
	took := time.Since(start)
	if err == nil || !strings.Contains(out, "cannot reach "+dead) || !strings.Contains(out, "connection refused") || took > 8*time.Second {
		t.Fatalf("join of an address nobody answers: %v after %v: %s", err, took, out)
	}
	t.Logf("join of a dead address failed after %v: %s", took, strings.TrimSpace(out))
	ms, err := nodes[0].members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Addr == dead {
			t.Fatalf("a row for %s stays: %+v", dead, m)
		}
	}

	nodes[2].kill()
	killed := time.Now()
	eventually(t, 20*time.Second, "n3 forgotten", func() error {
		ms, err := nodes[0].members()
		if err != nil {
			return err
		}
		if m, ok := ms[3]; ok {
			return fmt.Errorf("n3 still listed: %+v", m)
		}
		return nil
	})
	t.Logf("n3 left the members list %v after it was killed (forget-after 2s)", time.Since(killed))
}

// Item 6, disaster recovery: a 3-node cluster loses two nodes for good
// (killed, their disks wiped); the survivor, restarted with
// --force-new-cluster, is a cluster of one from its own log; two fresh
// nodes join it, and all three share one view with a leader.
func TestForceNewClusterRecovers(t *testing.T) {
	nodes := formed(t, 3)
	nodes[1].kill()
	nodes[2].kill()
	for _, nd := range nodes[1:] {
		if err := os.RemoveAll(nd.dir); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "quorum lost", func() error {
		out, err := corral(t, "members", "--data-dir", nodes[0].dir)
		// The leader may have removed the first node killed before the
		// second went: then 1 of 2.
		if err != nil || !strings.Contains(out, "Quorate: no (1 of ") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	nodes[0].kill()

	survivor := nodes[0]
	plain := survivor.args
	survivor.args = append(append([]string(nil), plain...), "--force-new-cluster")
	start := time.Now()
	survivor.start()
	survivor.waitView([]uint64{1}, 20*time.Second)
	eventually(t, 10*time.Second, "the survivor leads alone", func() error {
		out, err := corral(t, "members", "--data-dir", survivor.dir)
		if err != nil || !strings.Contains(out, "Quorate: yes (1 of 1 voters reachable, need 1)") || !strings.Contains(out, "leader 1,") {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	t.Logf("the survivor led a cluster of one %v after it was restarted", time.Since(start))
	if !strings.Contains(survivor.log.String(), "disaster recovery") {
		t.Fatalf("no word of the recovery in the log:\n%s", survivor.log.String())
	}
	survivor.args = plain // done once: later restarts are ordinary

	for _, nd := range nodes[1:] {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	leaderOf(t, nodes)
	out, err := corral(t, "operator", "raft", "list-peers", "--data-dir", nodes[1].dir)
	if err != nil || strings.Count(out, "voter") != 3 {
		t.Fatalf("raft peers after the rejoin: %v:\n%s", err, out)
	}
	t.Logf("after recovery and rejoin, %v:\n%s", time.Since(start), out)
}
