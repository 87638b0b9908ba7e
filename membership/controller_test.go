package membership

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
)

// harness runs one node's controller against a real machine (with the raft
// configuration model of machine_test.go), a script clock, links and raft
// status the script sets.
type harness struct {
	t      testing.TB
	n      *node
	c      *Controller
	in     Input
	t0     time.Time
	index  uint64
	joined map[uint64]time.Time
	replay bool // entries applied by an earlier run: no join times here
}

func (h *harness) since(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return "+" + t.Sub(h.t0).String()
}

func parseU64(t testing.TB, s string) uint64 {
	v, err := strconv.ParseUint(s, 0, 64)
	if err != nil {
		t.Fatalf("number %q: %v", s, err)
	}
	return v
}

func parseCluster(t testing.TB, s string) ClusterID {
	v, err := strconv.ParseUint(s, 16, 64)
	if err != nil {
		t.Fatalf("cluster id %q", s)
	}
	return ClusterID(v)
}

// parseCmd reads "join ID INC [learner]", "leave ID INC CAUSE",
// "promote ID INC" or "cluster HEX".
func parseCmd(t testing.TB, line string) Command {
	f := strings.Fields(line)
	if len(f) < 2 {
		t.Fatalf("command %q", line)
	}
	if f[0] == "cluster" {
		return Command{Op: OpSetClusterID, ID: 1, Cluster: parseCluster(t, f[1])}
	}
	var inc uint64
	if len(f) > 2 {
		inc = parseU64(t, f[2])
	}
	id := parseU64(t, f[1])
	switch f[0] {
	case "join":
		cmd := jn(id, inc, !slices.Contains(f, "learner"))
		for _, a := range f[3:] {
			if v, ok := strings.CutPrefix(a, "addr="); ok {
				cmd.Addr = v
			}
		}
		return cmd
	case "leave":
		cause := map[string]Cause{"graceful": CauseGraceful, "failed": CauseFailed, "removed": CauseRemoved}[f[3]]
		return lv(id, inc, cause)
	case "promote":
		return Command{Op: OpPromote, ID: id, Incarnation: inc, Voter: true}
	}
	t.Fatalf("command %q", line)
	return Command{}
}

// apply delivers cmd to the machine at the next index, as the log would.
func (h *harness) apply(cmd Command) (uint64, string) {
	h.index++
	res, ch, refused := h.n.apply(h.t, h.index, cmd)
	switch {
	case refused != nil:
		return h.index, fmt.Sprintf("entry %d %s: refused by CheckConf: %v (raft no-op)", h.index, cmd, refused)
	case ch.Index == 0:
		return h.index, fmt.Sprintf("entry %d %s: ignored: %s", h.index, cmd, res.Reply)
	}
	for _, m := range ch.Joined {
		if !h.replay {
			h.joined[m.ID] = h.in.Now // applied here now
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "entry %d %s: applied", h.index, cmd)
	for _, ev := range res.Events {
		fmt.Fprintf(&b, "; %v instance=%d", ev.Desc, ev.Membership().Instance)
	}
	return h.index, b.String()
}

func (h *harness) run(t testing.TB, d *datadriven.TestData) string {
	h.t = t
	arg := func(key string) (string, bool) {
		for _, a := range d.CmdArgs {
			if a.Key == key {
				if len(a.Vals) == 0 {
					return "", true
				}
				return a.Vals[0], true
			}
		}
		return "", false
	}
	dur := func(key string, def time.Duration) time.Duration {
		s, ok := arg(key)
		if !ok {
			return def
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		return v
	}
	num := func(key string) uint64 {
		s, ok := arg(key)
		if !ok {
			t.Fatalf("%s: missing %s=", d.Cmd, key)
		}
		return parseU64(t, s)
	}
	var out []string
	switch d.Cmd {
	case "init":
		// init self=ID inc=INC [heartbeat=D] [remove=D] [max-voters=N]
		mv := 3
		if s, ok := arg("max-voters"); ok {
			mv = int(parseU64(t, s))
		}
		h.c = NewController(ControllerConfig{HeartbeatTimeout: dur("heartbeat", time.Second), RemoveAfter: dur("remove", 0), MaxVoters: mv})
		h.n = newNode()
		h.t0 = time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
		h.index = 0
		h.joined = map[uint64]time.Time{}
		self := num("self")
		h.in = Input{Now: h.t0, Self: self, Incarnation: num("inc"), Name: fmt.Sprintf("n%d", self), Addr: fmt.Sprintf("127.0.0.%d:7946", self), Links: map[uint64]LinkState{}}
		return "ok"
	case "new-life":
		h.in.Incarnation = num("inc")
		h.n = newNode() // the log is dropped with the old life
		h.joined = map[uint64]time.Time{}
		h.index = 0
		return "ok"
	case "advance":
		h.in.Now = h.in.Now.Add(dur("by", 0))
		return "now " + h.since(h.in.Now)
	case "leader":
		h.in.Raft = RaftStatus{Leader: true, LeaderID: h.in.Self, LeaderSince: h.in.Now}
		return "leader since " + h.since(h.in.Now)
	case "follower":
		h.in.Raft = RaftStatus{}
		if _, ok := arg("leader"); ok {
			h.in.Raft.LeaderID = num("leader")
		}
		return fmt.Sprintf("follower of %d", h.in.Raft.LeaderID)
	case "link":
		// link ID up|down|dup|forget
		id := parseU64(t, d.CmdArgs[0].Key)
		l := h.in.Links[id]
		switch d.CmdArgs[1].Key {
		case "up":
			l = LinkState{Up: true}
		case "down":
			l = LinkState{DownSince: h.in.Now}
		case "dup":
			l = LinkState{DownSince: h.in.Now, Duplicate: true}
		}
		h.in.Links[id] = l
		return "ok"
	case "leaving":
		h.in.Leaving = true
		return "ok"
	case "candidate":
		h.in.ClusterIDCandidate = parseCluster(t, d.CmdArgs[0].Key)
		return "ok"
	case "apply":
		// apply [replayed] with one command a line
		_, h.replay = arg("replayed")
		defer func() { h.replay = false }()
		for _, line := range strings.Split(strings.TrimSpace(d.Input), "\n") {
			_, s := h.apply(parseCmd(t, line))
			out = append(out, s)
		}
	case "commit":
		// The proposal in flight commits: the log applies it, and its
		// outcome goes into the next step.
		seq, cmd, ok := h.c.InFlight()
		if !ok {
			t.Fatal("commit: no proposal in flight")
		}
		idx, s := h.apply(cmd)
		h.in.Outcome = &Outcome{Seq: seq, Index: idx}
		out = append(out, s)
	case "fail":
		seq, _, ok := h.c.InFlight()
		if !ok {
			t.Fatal("fail: no proposal in flight")
		}
		_, nl := arg("notleader")
		h.in.Outcome = &Outcome{Seq: seq, Err: "proposal failed", NotLeader: nl}
		return fmt.Sprintf("proposal #%d failed", seq)
	case "request":
		// request ref=N from=ID [source=ID] with the command as input
		r := Request{Ref: num("ref"), From: num("from"), Cmd: parseCmd(t, strings.TrimSpace(d.Input))}
		if _, ok := arg("source"); ok {
			r.Source = num("source")
		}
		r.Join = r.Cmd.Op == OpJoin
		h.in.Requests = append(h.in.Requests, r)
		return "ok"
	case "notmember":
		h.in.Notices = append(h.in.Notices, Notice{From: num("from"), Instance: num("instance")})
		return "ok"
	case "removed":
		// A peer answered this life's JOIN with ResultRemoved.
		h.in.Removed = true
		return "ok"
	case "step":
		h.in.Now = h.in.Now.Add(dur("after", 0))
		h.in.State = h.n.m.State()
		h.in.Joined = maps.Clone(h.joined)
		acts := h.c.Step(h.in)
		h.in.Requests, h.in.Notices, h.in.Outcome, h.in.Removed = nil, nil, nil, false
		out = append(out, "at "+h.since(h.in.Now)+":")
		for _, a := range acts {
			out = append(out, "  "+a.String())
		}
		if len(acts) == 0 {
			out = append(out, "  (nothing)")
		}
	case "state":
		out = append(out, h.n.m.State().String())
		out = append(out, fmt.Sprintf("raft voters %s learners %s", hexIDs(h.n.voters), hexIDs(h.n.learners)))
	default:
		t.Fatalf("unknown command %q", d.Cmd)
	}
	return strings.Join(out, "\n")
}

func hexIDs(ids []uint64) string {
	ids = slices.Sorted(slices.Values(ids))
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = fmt.Sprintf("%#x", id)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func TestControllerScripts(t *testing.T) {
	datadriven.Walk(t, "testdata/controller", func(t *testing.T, path string) {
		h := &harness{}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string { return h.run(t, d) })
	})
}
