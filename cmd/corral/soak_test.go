package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSoak runs fault storms on a 3-node and a 5-node cluster in network
// namespaces: kill -9, SIGSTOP pauses, restarts on the same disk and on a
// fresh one, and partitions of a minority, at random for a while (20 s
// each in CI; CORRAL_SOAK=10m for the long form, CORRAL_SEED to replay).
// When the faults stop, within a minute: one leader and one view on every
// node with every node in it, raft's voters never diverged from the view,
// and every node's stream of cluster-wide events rose strictly, with the
// same content per seq as every other node's. Needs root.
func TestSoak(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d-nodes", n), func(t *testing.T) { soakCluster(t, n) })
	}
}

func soakCluster(t *testing.T, n int) {
	dur := soak(t, 20*time.Second)
	rng := seeded(t)
	lab, nodes := labCluster(t, n)
	streams := map[int]*stream{}
	for _, nd := range nodes {
		streams[nd.id] = nd.watch()
	}
	counts := map[string]int{}
	var logs []string // the logs of ended runs of the agents
	down := map[int]bool{}
	paused := 0
	restart := func(nd *node, fresh bool) {
		if nd.log != nil {
			logs = append(logs, nd.log.String())
		}
		if fresh {
			// Keep the node's id (it is a flag) but not its log or life.
			// A node on a fresh disk joins: with --bootstrap it would found
			// a second cluster, which is refused by design.
			nd.args = slices.DeleteFunc(nd.args, func(a string) bool { return a == "--bootstrap" })
			entries, _ := os.ReadDir(nd.dir)
			for _, e := range entries {
				os.RemoveAll(nd.dir + "/" + e.Name())
			}
		}
		nd.start()
	}
	minority := (n - 1) / 2
	for end := time.Now().Add(dur); time.Now().Before(end); {
		nd := nodes[rng.IntN(n)]
		switch k := rng.IntN(5); {
		case k == 0 && !down[nd.id] && len(down) < minority:
			nd.kill()
			down[nd.id] = true
			counts["kill -9"]++
		case k == 1 && !down[nd.id] && len(down) < minority:
			nd.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(time.Duration(300+rng.IntN(600)) * time.Millisecond)
			nd.cmd.Process.Signal(syscall.SIGCONT)
			paused++
			counts["SIGSTOP pause"]++
		case k == 2 && len(down) > 0:
			for id := range down {
				// Losing a node's disk is survivable while the others
				// hold a quorum; wiping one while they do not would lose
				// the cluster (raft's rule, not a fault of corral's).
				fresh := rng.IntN(2) == 0 && othersHealthy(nodes, id)
				restart(nodes[id-1], fresh)
				delete(down, id)
				if fresh {
					counts["restart on a fresh disk"]++
				} else {
					counts["restart"]++
				}
				break
			}
		case k == 3:
			var cut []int
			for len(cut) < 1+rng.IntN(minority) {
				id := 1 + rng.IntN(n)
				if !strings.Contains(fmt.Sprint(cut), fmt.Sprint(id)) {
					cut = append(cut, id)
				}
			}
			lab.Partition(cut)
			time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
			lab.Heal()
			counts["partition"]++
		}
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond)
	}
	lab.Heal()
	for id := range down {
		restart(nodes[id-1], false)
	}
	var a agreement
	eventually(t, 60*time.Second, "one leader and one view with every node", func() error {
		var err error
		if a, err = agreed(nodes); err != nil {
			return err
		}
		if got := len(strings.Fields(a.members)); got != n {
			return fmt.Errorf("view %d has %d members [%s], want %d", a.inst, got, a.members, n)
		}
		return nil
	})
	for _, s := range streams {
		s.wait(30*time.Second, fmt.Sprintf("NEWVIEW %d", a.inst), func(e event) bool { return e.Seq != nil && e.index() >= a.inst })
	}
	compareSequences(t, streams)
	noConfMismatch(t, nodes)
	for _, l := range logs {
		if strings.Contains(l, confMismatch) {
			t.Errorf("an earlier run of an agent logged that raft's voters and the view diverged")
		}
	}
	leaders := 0
	for _, l := range append(logs, logsOf(nodes)...) {
		leaders += strings.Count(l, "role=StateLeader")
	}
	var faults []string
	total := 0
	for k, v := range counts {
		faults = append(faults, fmt.Sprintf("%d %s", v, k))
		total += v
	}
	t.Logf("soak of %d nodes for %v: %d faults (%s); %d leaders elected; last view %d; violations: %d",
		n, dur, total, strings.Join(faults, ", "), leaders, a.inst, btoi(t.Failed()))
}

// othersHealthy reports whether every node but id runs and they agree on
// a view with a leader in which each of them is a member.
func othersHealthy(nodes []*node, id int) bool {
	var others []*node
	for _, nd := range nodes {
		if nd.id != id {
			others = append(others, nd)
		}
	}
	a, err := agreed(others)
	if err != nil {
		return false
	}
	for _, nd := range others {
		if !strings.Contains(" "+a.members, fmt.Sprintf(" %d@", nd.id)) {
			return false
		}
	}
	return true
}

func logsOf(nodes []*node) []string {
	var out []string
	for _, nd := range nodes {
		if nd.log != nil {
			out = append(out, nd.log.String())
		}
	}
	return out
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
