package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/transport"
)

// routesOf runs corral routes --json on nd.
func (nd *node) routesOf() (map[uint64]routeJSON, error) {
	out, err := exec.Command(binary, "routes", "--data-dir", nd.dir, "--json").Output()
	if err != nil {
		return nil, fmt.Errorf("routes on n%d: %w", nd.id, err)
	}
	var rs []routeJSON
	if err := json.Unmarshal(out, &rs); err != nil {
		return nil, fmt.Errorf("routes on n%d: %w: %s", nd.id, err, out)
	}
	m := make(map[uint64]routeJSON)
	for _, r := range rs {
		m[r.ID] = r
	}
	return m, nil
}

// TestRoutesThreeNodes: on a full mesh of three agents every node lists
// the two others as direct, one hop of the default cost, named;
// members says direct for each; /metrics has the mesh's numbers.
func TestRoutesThreeNodes(t *testing.T) {
	nodes := cluster(t, 3)
	httpPort := freePortOn(t, 3)
	for i, nd := range nodes {
		nd.args = append(nd.args, "--http-addr", fmt.Sprintf("127.0.0.%d:%d", i+1, httpPort))
		nd.start()
	}
	for _, nd := range nodes {
		var last map[uint64]routeJSON
		var lastErr error
		ok := false
		for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(50 * time.Millisecond) {
			last, lastErr = nd.routesOf()
			ok = lastErr == nil && len(last) == 2
			for _, other := range nodes {
				if other == nd {
					continue
				}
				id := uint64(other.id)
				r := last[id]
				if !r.Direct || r.Path != "direct" || r.State != "up" || r.NextHop != id || r.Metric != 100 || r.Hops != 1 ||
					r.Name != fmt.Sprintf("n%d", other.id) || r.NextHopName != r.Name || r.RTTms == nil || r.Since == "" {
					ok = false
				}
			}
		}
		if !ok {
			t.Fatalf("n%d: routes not 2 direct peers of metric 100, 1 hop: %+v, %v", nd.id, last, lastErr)
		}
	}

	// members: the self row says self, the others direct.
	out, err := exec.Command(binary, "members", "--data-dir", nodes[0].dir, "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var ms []memberJSON
	if err := json.Unmarshal(out, &ms); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	for _, m := range ms {
		want := "direct"
		if m.ID == 1 {
			want = "self"
		}
		if m.Path != want || m.Direct != (want == "direct") || m.Via != 0 {
			t.Errorf("members on n1: node %d path %q direct %v via %d, want %s", m.ID, m.Path, m.Direct, m.Via, want)
		}
	}
	if len(ms) != 3 {
		t.Errorf("members on n1: %d rows, want 3: %s", len(ms), out)
	}
	text, err := exec.Command(binary, "members", "--data-dir", nodes[0].dir).Output()
	if err != nil || !strings.Contains(string(text), "PATH") || strings.Count(string(text), " direct ") != 2 {
		t.Errorf("members table on n1 (%v):\n%s", err, text)
	}
	text, err = exec.Command(binary, "routes", "--data-dir", nodes[0].dir).Output()
	if err != nil || !strings.Contains(string(text), "2 (n2)  direct  2 (n2)") {
		t.Errorf("routes table on n1 (%v):\n%s", err, text)
	}
	t.Logf("corral routes on n1:\n%s", text)

	// The mesh's numbers on /metrics: two routes, adverts both ways, no
	// frame dropped for its hop count.
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", httpPort)
	vals := scrapeValues(t, url)
	for name, check := range map[string]func(float64) bool{
		"corral_mesh_routes":                 func(v float64) bool { return v == 2 },
		"corral_mesh_adverts_sent_total":     func(v float64) bool { return v > 0 },
		"corral_mesh_adverts_received_total": func(v float64) bool { return v > 0 },
		"corral_mesh_hop_limit_drops_total":  func(v float64) bool { return v == 0 },
		"corral_mesh_route_changes_total":    func(v float64) bool { return v >= 2 },
		"corral_mesh_relayed_frames_total":   func(v float64) bool { return v >= 0 },
		"corral_mesh_relayed_bytes_total":    func(v float64) bool { return v >= 0 },
		"corral_mesh_no_route_drops_total":   func(v float64) bool { return v >= 0 },
		"corral_mesh_relay_drops_total":      func(v float64) bool { return v == 0 },
	} {
		v, ok := vals[name]
		if !ok || !check(v) {
			t.Errorf("%s = %v (present %v)", name, v, ok)
		}
	}
}

// v2Admin is the admin opcode table of an agent of admin version 2, before
// ROUTES.
var v2Admin = proto.NewOpSet(proto.ProtoAdmin, 1, 2, map[uint16]proto.Op{
	admin.OpPing:      {Name: "PING", Since: 1},
	admin.OpPong:      {Name: "PONG", Since: 1},
	admin.OpVersion:   {Name: "VERSION", Since: 1},
	admin.OpMembers:   {Name: "MEMBERS", Since: 1},
	admin.OpView:      {Name: "VIEW", Since: 1},
	admin.OpJoin:      {Name: "JOIN", Since: 1},
	admin.OpLeave:     {Name: "LEAVE", Since: 1},
	admin.OpQuorum:    {Name: "QUORUM", Since: 2},
	admin.OpRaftPeers: {Name: "RAFT-PEERS", Since: 2},
	admin.OpRemove:    {Name: "REMOVE", Since: 2},
})

// oldAgent serves the admin socket of dir as an agent of admin version 2
// would: MEMBERS, VIEW and QUORUM of a one-node cluster; ROUTES is not an
// opcode it knows.
func oldAgent(t *testing.T, dir string) {
	t.Helper()
	fakeAdminAgent(t, dir, "old", v2Admin, func(ctx context.Context, l *transport.Link, f *proto.Frame) {
		switch f.Opcode {
		case admin.OpMembers:
			l.Reply(ctx, f, admin.AppendMembers(nil, []admin.Member{{ID: 1, State: admin.StateSelf, Name: "old", Addr: "127.0.0.1:1"}}))
		case admin.OpView:
			l.Reply(ctx, f, admin.AppendViewInfo(nil, &admin.ViewInfo{Instance: 1, Leader: 1, Members: []admin.ViewMember{{ID: 1, Voter: true, Name: "old", Addr: "127.0.0.1:1"}}}))
		case admin.OpQuorum:
			l.Reply(ctx, f, admin.AppendQuorumInfo(nil, admin.QuorumInfo{Member: true, Quorate: true, Voters: 1, Reachable: 1}))
		}
	})
}

// fakeAdminAgent serves the admin socket of dir with the opcode table ops
// as agent name, handing every request to serve, one connection at a time
// (the tool makes them one after another), until the test ends.
func fakeAdminAgent(t *testing.T, dir, name string, ops *proto.OpSet, serve func(ctx context.Context, l *transport.Link, f *proto.Frame)) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", datadir.AdminSocket(dir))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := &transport.Config{NodeID: 1, NodeName: name, Protocols: []*proto.OpSet{peer.Ops(), client.Ops(), ops},
		Serve: []proto.ProtoID{proto.ProtoAdmin}, HandshakeTimeout: 5 * time.Second}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			l, err := transport.Accept(ctx, conn, cfg)
			if err != nil {
				continue
			}
			l.Start(func(l *transport.Link, f *proto.Frame) error {
				serve(ctx, l, f)
				return nil
			})
			select {
			case <-l.Done():
			case <-ctx.Done():
				l.Close(proto.CodeShutdown, "done")
				<-l.Done()
				return
			}
		}
	}()
}

// TestRoutesOldAgent: against an agent of admin version 2, corral routes
// says the agent is too old and exits 2; corral members still works and
// leaves the path out.
func TestRoutesOldAgent(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	oldAgent(t, dir)
	cmd := exec.Command(binary, "routes", "--data-dir", dir)
	out, err := cmd.CombinedOutput()
	var xe *exec.ExitError
	if !errors.As(err, &xe) || xe.ExitCode() != exitTooOld || !strings.Contains(string(out), "agent too old for routes") {
		t.Fatalf("routes against a v2 agent: %v, output:\n%s", err, out)
	}
	out, err = exec.Command(binary, "members", "--data-dir", dir, "--json").Output()
	if err != nil {
		t.Fatalf("members against a v2 agent: %v\n%s", err, out)
	}
	var ms []memberJSON
	if err := json.Unmarshal(out, &ms); err != nil || len(ms) != 1 || ms[0].Path != "" || ms[0].QuorumJSON == nil {
		t.Fatalf("members against a v2 agent: %v: %s", err, out)
	}
}

// setPeers replaces nd's --peers.
func (nd *node) setPeers(peers ...*node) {
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, p.addr)
	}
	for i, a := range nd.args {
		if a == "--peers" {
			nd.args[i+1] = strings.Join(addrs, ",")
		}
	}
}

// TestRoutesLine: on a line n1–n2–n3 of agents configured with their
// neighbours only, n1 reaches n3 through n2, two hops of the default cost;
// members on n1 has a row for n3, routed via 2. (No cluster is founded:
// the members of a view link to each other, making a full mesh.)
func TestRoutesLine(t *testing.T) {
	nodes := cluster(t, 3)
	nodes[0].setPeers(nodes[1])
	nodes[2].setPeers(nodes[1])
	for _, nd := range nodes {
		nd.start()
	}
	var last map[uint64]routeJSON
	var err error
	ok := false
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline) && !ok; time.Sleep(50 * time.Millisecond) {
		last, err = nodes[0].routesOf()
		r2, r3 := last[2], last[3]
		ok = err == nil && r2.Path == "direct" && r2.Metric == 100 && r2.Hops == 1 &&
			r3.Path == "routed" && !r3.Direct && r3.State == "up" && r3.NextHop == 2 && r3.NextHopName == "n2" &&
			r3.Metric == 200 && r3.Hops == 2 && r3.RTTms == nil
	}
	if !ok {
		t.Fatalf("n1: routes %+v, %v; want n2 direct, n3 via n2 at metric 200, 2 hops", last, err)
	}
	text, _ := exec.Command(binary, "routes", "--data-dir", nodes[0].dir).Output()
	t.Logf("corral routes on n1:\n%s", text)
	var ms []memberJSON
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		out, err := exec.Command(binary, "members", "--data-dir", nodes[0].dir, "--json").Output()
		if err != nil {
			t.Fatal(err)
		}
		ms = nil
		if err := json.Unmarshal(out, &ms); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		got := map[uint64]memberJSON{}
		for _, m := range ms {
			got[m.ID] = m
		}
		if got[2].Path == "direct" && got[2].Direct && got[3].Path == "routed" && !got[3].Direct && got[3].Via == 2 && got[3].State == "down" {
			text, _ := exec.Command(binary, "members", "--data-dir", nodes[0].dir).Output()
			if !strings.Contains(string(text), "via 2") {
				t.Errorf("members table on n1 has no \"via 2\":\n%s", text)
			}
			t.Logf("corral members on n1:\n%s", text)
			return
		}
	}
	t.Fatalf("members on n1: %+v; want n2 direct, n3 routed via 2", ms)
}
