package main

// Clusters whose links are not a full mesh: real agents on netlab graph
// labs, where a host reaches only its neighbours, each agent given only
// its neighbours as peers. Raft, membership and their replies go hop by
// hop through the mesh's routes. Needs root (network namespaces).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/corralhq/corral/internal/netlab"
)

// graphCluster runs an agent on every host of lab, each configured with
// its neighbours only, node 1 founding, and waits until every node's view
// holds all of them.
func graphCluster(t *testing.T, lab *netlab.Lab, within time.Duration, extra ...string) []*node {
	t.Helper()
	var addrs []string
	for i := 1; i <= lab.N(); i++ {
		addrs = append(addrs, lab.Addr(i)+":7946")
	}
	nodes := nodesAt(t, addrs, func(i int, args []string) *exec.Cmd { return lab.Command(i, binary, args...) }, extra...)
	for i, nd := range nodes {
		var peers []string
		for _, j := range lab.Neighbours(i + 1) {
			peers = append(peers, addrs[j-1])
		}
		k := slices.Index(nd.args, "--peers")
		nd.args[k+1] = strings.Join(peers, ",")
	}
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	for _, nd := range nodes {
		nd.start()
	}
	for _, nd := range nodes {
		nd.waitView(ids(nodes), within)
	}
	return nodes
}

// leave runs corral leave on nd and waits for its agent to stop.
func leave(t *testing.T, nd *node) {
	t.Helper()
	out, err := exec.Command(binary, "leave", "--data-dir", nd.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("corral leave on n%d: %v\n%s", nd.id, err, out)
	}
	select {
	case err := <-nd.exit:
		if err != nil {
			t.Fatalf("n%d exited with %v after leaving", nd.id, err)
		}
		nd.cmd = nil
	case <-time.After(15 * time.Second):
		t.Fatalf("n%d still running after corral leave", nd.id)
	}
}

func needRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: graph labs are network namespaces, which need root (CI runs as root)")
	}
}

// A line 1-2-3-4-5 forms one cluster: node 5 joins through node 4,
// four hops from the founder, and every node applies the same views.
func TestMeshLineCluster(t *testing.T) {
	needRoot(t)
	lab := netlab.Line(t, 5)
	nodes := graphCluster(t, lab, 90*time.Second)
	// Nothing but neighbours: node 1 has one link, to node 2.
	ms, err := nodes[0].members()
	if err != nil {
		t.Fatal(err)
	}
	for id, m := range ms {
		if id != 1 && id != 2 && m.State == "connected" {
			t.Errorf("node 1 has a direct link to node %d on a line: %+v", id, m)
		}
	}
	// corral routes on node 1, against its golden output (the SINCE
	// column and sequence numbers vary from run to run).
	var text, raw string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		out, err := exec.Command(binary, "routes", "--data-dir", nodes[0].dir).Output()
		if err != nil {
			t.Fatalf("corral routes on n1: %v", err)
		}
		raw = string(out)
		if text = routesMasked(raw); text == routesLine5Golden {
			break
		}
	}
	if text != routesLine5Golden {
		t.Errorf("corral routes on n1 of a line of 5:\n%s\nwant:\n%s", text, routesLine5Golden)
	}
	t.Logf("corral routes on n1:\n%s", raw)
	// The log keeps working end to end: node 5 leaves, and node 1, four
	// hops away, applies the view without it.
	s1 := nodes[0].watch()
	leave(t, nodes[4])
	nodes[0].waitView([]uint64{1, 2, 3, 4}, 30*time.Second)
	nodes[3].waitView([]uint64{1, 2, 3, 4}, 30*time.Second)
	// Node 1 reached node 5 through relays only: its P2P events follow
	// the route, so the route's loss is its P2P_LOST, once.
	lost := func(e event) bool {
		return e.Event == "P2P_LOST" && e.Seq == nil && len(e.Data.Nodes) == 1 && e.Data.Nodes[0].ID == 5
	}
	s1.wait(15*time.Second, "P2P_LOST naming node 5, reached by route", lost)
	s1.mu.Lock()
	n := 0
	for _, e := range s1.evs {
		if lost(e) {
			n++
		}
	}
	s1.mu.Unlock()
	if n != 1 {
		t.Errorf("node 1 told P2P_LOST for node 5 %d times, want 1:\n%s", n, s1.dump())
	}
}

// A ring of 5 keeps its view through a silent cut: the two ends of the cut
// reach each other the other way round, within the removal delay, so no
// member is removed; the heal changes nothing either.
func TestMeshRingCut(t *testing.T) {
	needRoot(t)
	lab := netlab.Ring(t, 5)
	const removeAfter = 3 * time.Second
	nodes := graphCluster(t, lab, 90*time.Second, "--remove-after", removeAfter.String())
	inst, _ := nodes[0].waitView(ids(nodes), 10*time.Second)

	lab.CutEdge(1, 2) // the founder, likely the leader, and its neighbour
	// Watch past the heartbeat timeout plus the removal delay, twice over:
	// a member taken for lost would be removed within that.
	deadline := time.Now().Add(2 * (removeAfter + 2*time.Second))
	for time.Now().Before(deadline) {
		for _, nd := range nodes {
			got, i, err := nd.memberIDs()
			if err == nil && (i != inst || fmt.Sprint(got) != fmt.Sprint(ids(nodes))) {
				t.Fatalf("n%d's view changed after the cut: instance %d (was %d), members %v", nd.id, i, inst, got)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	lab.RestoreEdge(1, 2)
	for _, nd := range nodes {
		if got, _ := nd.waitView(ids(nodes), 10*time.Second); got != inst {
			t.Errorf("n%d: view %d after the heal, want %d", nd.id, got, inst)
		}
	}
	// The cluster still commits: node 3 leaves and everyone sees it.
	leave(t, nodes[2])
	for _, i := range []int{0, 1, 3, 4} {
		nodes[i].waitView([]uint64{1, 2, 4, 5}, 30*time.Second)
	}
}

// routesLine5Golden is corral routes on node 1 of a line 1-2-3-4-5, the
// SEQNO and SINCE columns masked: node 2 direct, the others through it, one
// hop and one link cost more each, no feasible alternate on a line.
const routesLine5Golden = `DEST    PATH    NEXT_HOP  ALT  METRIC  HOPS  SEQNO  STATE  SINCE
2 (n2)  direct  2 (n2)    -    100     1     *      up     *
3 (n3)  routed  2 (n2)    -    200     2     *      up     *
4 (n4)  routed  2 (n2)    -    300     3     *      up     *
5 (n5)  routed  2 (n2)    -    400     4     *      up     *
`

// routesMasked replaces the SEQNO and SINCE cells of a corral routes
// table with *, keeping the alignment of the header's columns.
func routesMasked(table string) string {
	lines := strings.Split(strings.TrimRight(table, "\n"), "\n")
	if len(lines) == 0 {
		return table
	}
	head := lines[0]
	seq, since := strings.Index(head, "SEQNO"), strings.Index(head, "SINCE")
	out := head + "\n"
	for _, l := range lines[1:] {
		if seq < 0 || since < 0 || len(l) < since {
			out += l + "\n"
			continue
		}
		end := seq + strings.IndexByte(l[seq:]+" ", ' ')
		out += l[:seq] + "*" + strings.Repeat(" ", end-seq-1) + l[end:since] + "*\n"
	}
	return out
}

// scrapeIn reads host i's agent metrics (counters and gauges without
// labels) (served inside the host on
// :9100) from within the host's namespace.
func scrapeIn(t *testing.T, lab *netlab.Lab, i int) map[string]float64 {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return lab.Dial(ctx, i, network, addr)
		},
	}}
	resp, err := c.Get("http://" + lab.Addr(i) + ":9100/metrics")
	if err != nil {
		t.Fatalf("metrics of n%d: %v", i, err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("metrics of n%d: %v", i, err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch {
			case len(m.GetLabel()) != 0:
			case m.Counter != nil:
				out[name] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name] = m.Gauge.GetValue()
			}
		}
	}
	return out
}

// A link reset with resets at both ends (not a silent cut) resumes its
// session within the window: on a ring of 5 with real agents, the two
// ends of the reset edge count a resume and no resume failure, no
// transaction is failed and the view does not change. The removal delay
// is above the resume window (the default, 1s): with the default removal
// (0) the leader removes a member as soon as its link or route goes
// down, resumed or not.
func TestMeshRingResetResumes(t *testing.T) {
	needRoot(t)
	lab := netlab.Ring(t, 5)
	nodes := graphCluster(t, lab, 90*time.Second, "--http-addr", "0.0.0.0:9100", "--remove-after", "3s")
	inst, _ := nodes[0].waitView(ids(nodes), 10*time.Second)
	before := map[int]map[string]float64{1: scrapeIn(t, lab, 1), 2: scrapeIn(t, lab, 2)}
	if n := lab.ResetEdge(1, 2); n == 0 {
		t.Fatal("ResetEdge(1, 2) closed no socket: the kernel lacks SOCK_DESTROY")
	}
	for _, i := range []int{1, 2} {
		var m map[string]float64
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if m = scrapeIn(t, lab, i); m["corral_mesh_resumes_total"] > before[i]["corral_mesh_resumes_total"] {
				break
			}
		}
		if m["corral_mesh_resumes_total"] <= before[i]["corral_mesh_resumes_total"] {
			t.Errorf("n%d: no resume after the reset: resumes %v, failures %v", i, m["corral_mesh_resumes_total"], m["corral_mesh_resume_failures_total"])
		}
		if f := m["corral_mesh_resume_failures_total"] - before[i]["corral_mesh_resume_failures_total"]; f != 0 {
			t.Errorf("n%d: %v resume failures after one reset", i, f)
		}
		if l := m["corral_mesh_linkfails_total"] - before[i]["corral_mesh_linkfails_total"]; l != 0 {
			t.Errorf("n%d: %v transactions failed by the reset", i, l)
		}
	}
	for _, nd := range nodes {
		if got, _ := nd.waitView(ids(nodes), 10*time.Second); got != inst {
			t.Errorf("n%d: view %d after the reset, want %d", nd.id, got, inst)
		}
	}
}

// echoRun is a corral mesh echo running against one node's agent.
type echoRun struct {
	cmd           *exec.Cmd
	stdout, stder bytes.Buffer
	err           error         // the command's, once done is closed
	done          chan struct{} // closed when the command has exited
}

// startEcho starts corral mesh echo on nd with args; the test's end
// kills it if it is still running.
func startEcho(t *testing.T, nd *node, args ...string) *echoRun {
	t.Helper()
	e := &echoRun{done: make(chan struct{})}
	e.cmd = exec.Command(binary, append([]string{"mesh", "echo", "--data-dir", nd.dir}, args...)...)
	e.cmd.Stdout, e.cmd.Stderr = &e.stdout, &e.stder
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("corral mesh echo on n%d: %v", nd.id, err)
	}
	go func() {
		e.err = e.cmd.Wait()
		close(e.done)
	}()
	t.Cleanup(func() {
		select {
		case <-e.done:
		default:
			e.cmd.Process.Kill()
			<-e.done
		}
	})
	return e
}

func (e *echoRun) running() bool {
	select {
	case <-e.done:
		return false
	default:
		return true
	}
}

// wait waits for the echo's end and returns its exit status.
func (e *echoRun) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-e.done:
	case <-time.After(within):
		t.Fatalf("corral mesh echo still running after %v", within)
	}
	var xe *exec.ExitError
	switch {
	case e.err == nil:
		return 0
	case errors.As(e.err, &xe):
		return xe.ExitCode()
	}
	t.Fatalf("corral mesh echo: %v", e.err)
	return -1
}

// result decodes the --json summary of an ended echo.
func (e *echoRun) result(t *testing.T) echoJSON {
	t.Helper()
	var j echoJSON
	if err := json.Unmarshal(e.stdout.Bytes(), &j); err != nil {
		t.Fatalf("corral mesh echo --json: %v\nstdout: %s\nstderr: %s", err, e.stdout.String(), e.stder.String())
	}
	return j
}

// waitCounter waits until counter name of host i reaches at least want.
func waitCounter(t *testing.T, lab *netlab.Lab, i int, name string, want float64, within time.Duration) map[string]float64 {
	t.Helper()
	var m map[string]float64
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m = scrapeIn(t, lab, i); m[name] >= want {
			return m
		}
	}
	t.Fatalf("n%d: %s is %v after %v, want at least %v", i, name, m[name], within, want)
	return nil
}

const (
	metricOpenTx    = "corral_mesh_open_transactions"
	metricHopLimit  = "corral_mesh_hop_limit_drops_total"
	metricRelayed   = "corral_mesh_relayed_frames_total"
	metricLinkFails = "corral_mesh_linkfails_total"
	metricResumes   = "corral_mesh_resumes_total"
	metricResumeErr = "corral_mesh_resume_failures_total"
)

// A stream through four relays on a line of 5: every frame comes back
// once, in order, and in steady state no frame ever meets the hop limit
// (the routes have no loop for it to break).
func TestMeshEchoLine(t *testing.T) {
	needRoot(t)
	lab := netlab.Line(t, 5)
	// A removal delay: with none, a route that flaps while the line
	// forms can have a joining node removed and joining again.
	nodes := graphCluster(t, lab, 90*time.Second, "--http-addr", "0.0.0.0:9100", "--remove-after", "3s")
	e := startEcho(t, nodes[0], "--to", "5", "--count", "3000", "--interval", "1ms", "--json")
	code := e.wait(t, 90*time.Second)
	j := e.result(t)
	if code != 0 || !j.OK || j.Sent != 3000 || j.Received != 3000 || j.Lost != 0 || j.OutOfOrder != 0 || j.Duplicates != 0 || j.Code != 0 {
		t.Fatalf("echo 1 -> 5 on a line: exit %d, %+v\nstderr: %s", code, j, e.stder.String())
	}
	t.Logf("echo 1 -> 5: %+v", j)
	for i := 1; i <= 5; i++ {
		// The ends and every relay let the transaction go.
		waitGauge(t, lab, i, metricOpenTx, 0, 10*time.Second)
		m := scrapeIn(t, lab, i)
		if v, ok := m[metricHopLimit]; !ok || v != 0 {
			t.Errorf("n%d: %s = %v (exported %v), want 0 in steady state", i, metricHopLimit, v, ok)
		}
		// Each relay forwarded every frame of the stream both ways.
		if v := m[metricRelayed]; i > 1 && i < 5 && v < 2*3000 {
			t.Errorf("relay n%d: %s = %v, want at least the stream's 2×3000 frames", i, metricRelayed, v)
		}
	}
}

// waitGauge waits until gauge name of host i is want.
func waitGauge(t *testing.T, lab *netlab.Lab, i int, name string, want float64, within time.Duration) {
	t.Helper()
	var m map[string]float64
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m = scrapeIn(t, lab, i); m[name] == want {
			return
		}
	}
	t.Fatalf("n%d: %s is %v after %v, want %v", i, name, m[name], within, want)
}

// A stream across a link that is reset (both ends see a reset) resumes
// within the window: on a ring of 5, an echo 1 -> 3 through node 2, the
// edge 1-2 reset mid-stream, completes with nothing lost, duplicated or
// reordered, and both ends of the edge count a resume.
func TestMeshEchoRingResetResumes(t *testing.T) {
	needRoot(t)
	lab := netlab.Ring(t, 5)
	nodes := graphCluster(t, lab, 90*time.Second, "--http-addr", "0.0.0.0:9100", "--remove-after", "3s")
	before := map[int]map[string]float64{1: scrapeIn(t, lab, 1), 2: scrapeIn(t, lab, 2)}
	e := startEcho(t, nodes[0], "--to", "3", "--count", "5000", "--interval", "1ms", "--json")
	// The stream goes through node 2 (1-2-3 is the shorter way round).
	waitCounter(t, lab, 2, metricOpenTx, 1, 30*time.Second)
	if !e.running() {
		t.Fatalf("the echo ended before the reset: %s %s", e.stdout.String(), e.stder.String())
	}
	if n := lab.ResetEdge(1, 2); n == 0 {
		t.Fatal("ResetEdge(1, 2) closed no socket: the kernel lacks SOCK_DESTROY")
	}
	code := e.wait(t, 90*time.Second)
	j := e.result(t)
	if code != 0 || !j.OK || j.Sent != 5000 || j.Received != 5000 || j.Lost != 0 || j.OutOfOrder != 0 || j.Duplicates != 0 || j.Code != 0 {
		t.Fatalf("echo 1 -> 3 across a reset: exit %d, %+v\nstderr: %s", code, j, e.stder.String())
	}
	t.Logf("echo 1 -> 3 across a reset: %+v", j)
	for _, i := range []int{1, 2} {
		m := waitCounter(t, lab, i, metricResumes, before[i][metricResumes]+1, 10*time.Second)
		if f := m[metricResumeErr] - before[i][metricResumeErr]; f != 0 {
			t.Errorf("n%d: %v resume failures after one reset", i, f)
		}
		if l := m[metricLinkFails] - before[i][metricLinkFails]; l != 0 {
			t.Errorf("n%d: %v transactions failed by the reset", i, l)
		}
	}
}

// A stream whose only path is cut silently, past the resume window, ends
// with LINKFAIL at both ends: node 1's corral mesh echo exits 1 naming
// LINKFAIL (code 44), and node 5, the other end and an end of the cut
// link, counts the transaction it failed.
func TestMeshEchoLineCutLinkFail(t *testing.T) {
	needRoot(t)
	lab := netlab.Line(t, 5)
	// No removal while node 5 is cut off: its agent keeps running and
	// answering scrapes.
	// Node 5, cut off, cannot hear of its removal: its agent keeps
	// running and answering scrapes.
	nodes := graphCluster(t, lab, 90*time.Second, "--http-addr", "0.0.0.0:9100", "--remove-after", "3s")
	before5 := scrapeIn(t, lab, 5)
	e := startEcho(t, nodes[0], "--to", "5", "--count", "60000", "--interval", "1ms")
	waitCounter(t, lab, 4, metricOpenTx, 1, 30*time.Second)
	if !e.running() {
		t.Fatalf("the echo ended before the cut: %s %s", e.stdout.String(), e.stder.String())
	}
	lab.CutEdge(4, 5)
	defer lab.RestoreEdge(4, 5)
	// The heartbeat timeout plus the resume window, well within a minute.
	code := e.wait(t, 60*time.Second)
	if code != 1 || !strings.Contains(e.stder.String(), "code 44, LINKFAIL") || !strings.Contains(e.stdout.String(), "echo to node 5: sent") {
		t.Fatalf("echo 1 -> 5 over a cut: exit %d, want 1 naming LINKFAIL (code 44)\nstdout: %s\nstderr: %s", code, e.stdout.String(), e.stder.String())
	}
	t.Logf("echo 1 -> 5 over a cut: %s%s", e.stdout.String(), e.stder.String())
	m := waitCounter(t, lab, 5, metricLinkFails, before5[metricLinkFails]+1, 10*time.Second)
	if n := m[metricLinkFails] - before5[metricLinkFails]; n != 1 {
		t.Errorf("n5 counted %v LINKFAILs, want 1: the echo's transaction", n)
	}
}
