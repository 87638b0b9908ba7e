package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/netlab"
)

// labCluster runs n agents, one per host of a network-namespace lab, node 1
// founding the cluster, and waits for the full view. Needs root.
func labCluster(t *testing.T, n int, extra ...string) (*netlab.Lab, []*node) {
	lab := netlab.New(t, n)
	var addrs []string
	for i := 1; i <= n; i++ {
		addrs = append(addrs, lab.Addr(i)+":7946")
	}
	nodes := nodesAt(t, addrs, func(i int, args []string) *exec.Cmd { return lab.Command(i, binary, args...) }, extra...)
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	return lab, nodes
}

func has(name string) func(e event) bool { return func(e event) bool { return e.Event == name } }

// The minority side of a partition suspects its membership; a short cut
// heals into RECOVERED, a long one gets the node removed, and it is
// EVICTED when it returns, then joins again.
func TestPartitionSuspectRecoverEvict(t *testing.T) {
	lab, nodes := labCluster(t, 5, "--remove-after", "4s")
	streams := map[int]*stream{}
	for _, nd := range nodes {
		streams[nd.id] = nd.watch()
	}
	// Short: {4,5} cut off from {1,2,3}, healed before the removal delay.
	lab.Partition([]int{4, 5}) // the majority stays where it is
	for _, id := range []int{4, 5} {
		streams[id].wait(10*time.Second, "SUSPECT in the minority", has("SUSPECT"))
	}
	lab.Heal()
	for _, id := range []int{4, 5} {
		streams[id].wait(15*time.Second, "RECOVERED after the heal", has("RECOVERED"))
	}
	for _, id := range []int{1, 2, 3} {
		streams[id].mu.Lock()
		for _, e := range streams[id].evs {
			if e.Event == "SUSPECT" {
				t.Errorf("n%d in the majority suspected: %s", id, e.raw)
			}
		}
		streams[id].mu.Unlock()
	}

	// Long: node 5 cut off past the removal delay.
	lab.Cut(5)
	streams[5].wait(10*time.Second, "INTERFACE_FAILED on the cut host", has("INTERFACE_FAILED"))
	for _, id := range []int{1, 2, 3, 4} {
		streams[id].wait(20*time.Second, "NEWVIEW without n5", func(e event) bool { return leftHas(e, 5) })
	}
	lab.Restore(5)
	streams[5].wait(20*time.Second, "EVICTED on return", has("EVICTED"))
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 30*time.Second)
	}
	compareSequences(t, streams)
}

// After a random run of kills, restarts and partitions, every node has
// delivered the same cluster-wide events.
func TestRandomFaultsSameSequence(t *testing.T) {
	lab, nodes := labCluster(t, 5)
	streams := map[int]*stream{}
	for _, nd := range nodes {
		streams[nd.id] = nd.watch()
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CORRAL_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64) // replay a failed run
	}
	t.Logf("seed %d (replay with CORRAL_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	down := map[int]bool{}
	for step := 0; step < 10; step++ {
		switch a := rng.IntN(3); {
		case a == 0 && len(down) < 2:
			victim := 1 + rng.IntN(5)
			if down[victim] {
				continue
			}
			t.Logf("step %d: kill -9 n%d", step, victim)
			nodes[victim-1].kill()
			down[victim] = true
		case a == 1 && len(down) > 0:
			for id := range down {
				t.Logf("step %d: restart n%d", step, id)
				nodes[id-1].start()
				delete(down, id)
				break
			}
		default:
			cut := 1 + rng.IntN(5)
			other := 1 + rng.IntN(5)
			t.Logf("step %d: partition {n%d, n%d} off for a while", step, cut, other)
			minority := []int{cut}
			if other != cut {
				minority = append(minority, other)
			}
			lab.Partition(minority)
			time.Sleep(time.Duration(300+rng.IntN(1500)) * time.Millisecond)
			lab.Heal()
		}
		time.Sleep(time.Duration(200+rng.IntN(1500)) * time.Millisecond)
	}
	lab.Heal()
	for id := range down {
		nodes[id-1].start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), 60*time.Second)
	}
	// Wait until every stream has caught up with the last view, then
	// compare.
	_, inst, err := nodes[0].memberIDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range streams {
		s.wait(30*time.Second, fmt.Sprintf("NEWVIEW %d", inst), func(e event) bool { return e.Seq != nil && e.index() >= inst })
	}
	compareSequences(t, streams)
}
