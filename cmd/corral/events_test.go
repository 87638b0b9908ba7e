package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/events"
)

func TestParseClasses(t *testing.T) {
	for in, want := range map[string][]events.Class{
		"membership,connectivity,group": {events.ClassMemb, events.ClassComm, events.ClassGroup},
		"group":                         {events.ClassGroup},
		" MEMB , OC_EV_COMM_CLASS ":     {events.ClassMemb, events.ClassComm},
	} {
		got, err := parseClasses(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseClasses(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "membership,bogus", ","} {
		if _, err := parseClasses(in); err == nil {
			t.Errorf("parseClasses(%q) accepted", in)
		}
	}
}

// TestEventJSON pins the keys of corral events --json, a stable interface.
func TestEventJSON(t *testing.T) {
	n1 := events.Node{ID: 1, Name: "n1", Addr: netip.MustParseAddrPort("127.0.0.1:7946"), BornOn: 2}
	n2 := events.Node{ID: 2, Name: "n2"}
	for _, tc := range []struct {
		ev   events.Event
		want string
	}{
		{events.Event{Seq: 12, Desc: events.MSNewView, Data: &events.Membership{Instance: 3, Members: []events.Node{n1}, Left: []events.Node{n2}}},
			`{"seq":12,"class":"membership","event":"NEWVIEW","descriptor":8388609,"data":{"instance":3,"members":[{"id":1,"name":"n1","addr":"127.0.0.1:7946","born_on":2}],"joined":[],"left":[{"id":2,"name":"n2"}]}}`},
		{events.Event{Desc: events.MSShutdown},
			`{"class":"membership","event":"SHUTDOWN","descriptor":8388612,"data":{}}`},
		{events.Event{Desc: events.CSInterfaceFailed, Data: &events.Connectivity{
			Interface:  events.Interface{Name: "eth0", Addr: netip.MustParsePrefix("10.0.0.1/24")},
			Interfaces: []events.Interface{{Name: "eth0", Addr: netip.MustParsePrefix("10.0.0.1/24")}},
			Peers:      []events.Peer{{Node: n2, Eligible: true}},
		}},
			`{"class":"connectivity","event":"INTERFACE_FAILED","descriptor":4194306,"data":{"interface":{"name":"eth0","addr":"10.0.0.1/24","up":false},"nodes":[],"interfaces":[{"name":"eth0","addr":"10.0.0.1/24","up":false}],"peers":[{"id":2,"name":"n2","eligible":true,"connected":false}]}}`},
		{events.Event{Seq: 13, Desc: events.GSBroadcast, Data: &events.Group{Name: "g", From: events.GroupMember{Node: 2, Member: 9, Name: "w"}, MsgID: 5, Payload: []byte("hi")}},
			`{"seq":13,"class":"group","event":"BROADCAST","descriptor":12582915,"data":{"name":"g","from":{"node":2,"member":9,"name":"w"},"members":[],"msg_id":5,"payload":"aGk="}}`},
	} {
		b, err := json.Marshal(eventJSON(tc.ev))
		if err != nil || string(b) != tc.want {
			t.Errorf("%v:\n got %s (%v)\nwant %s", tc.ev, b, err, tc.want)
		}
	}
}

func TestEventText(t *testing.T) {
	n1 := events.Node{ID: 1, Name: "n1", Addr: netip.MustParseAddrPort("127.0.0.1:7946"), BornOn: 2}
	for _, tc := range []struct {
		ev   events.Event
		want string
	}{
		{events.Event{Seq: 12, Desc: events.MSNewView, Data: &events.Membership{Instance: 3, Members: []events.Node{n1}, Joined: []events.Node{n1}}},
			"seq=12 membership NEWVIEW view=3 members=[1:n1@127.0.0.1:7946] joined=[1:n1@127.0.0.1:7946]"},
		{events.Event{Desc: events.MSShutdown}, "seq=- membership SHUTDOWN"},
		{events.Event{Seq: 14, Desc: events.CSP2PLost, Data: &events.Connectivity{Nodes: []events.Node{{ID: 2, Name: "n2"}}, Peers: []events.Peer{{Node: n1, Eligible: true, Connected: true}}}},
			"seq=14 connectivity P2P_LOST nodes=[2:n2] peers=[1:n1@127.0.0.1:7946=connected]"},
		{events.Event{Seq: 15, Desc: events.GSReply, Data: &events.Group{Name: "g", From: events.GroupMember{Node: 1, Member: 8}, Target: 9, MsgID: 6, ReplyTo: 5, Payload: []byte("ok")}},
			`seq=15 group REPLY group="g" from=8@1 msg=6 target=9 reply_to=5 payload=2 bytes`},
	} {
		if got := eventText(tc.ev); got != tc.want {
			t.Errorf("\n got %s\nwant %s", got, tc.want)
		}
	}
}

// eventsProc is a running corral events.
type eventsProc struct {
	cmd   *exec.Cmd
	lines <-chan string // its stdout, line by line
	exit  chan error    // its exit status, once
}

// eventLines runs corral events and hands its stdout lines to a channel.
func eventLines(t *testing.T, args ...string) *eventsProc {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"events"}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := &syncBuf{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	p := &eventsProc{cmd: cmd, lines: lines, exit: make(chan error, 1)}
	go func(r io.Reader) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.exit <- cmd.Wait() // after the pipe is drained, as Wait wants
	}(stdout)
	t.Cleanup(func() {
		cmd.Process.Kill() // harmless once it exited: the process is kept until Wait
		<-p.exit
		if t.Failed() {
			t.Logf("corral events stderr:\n%s", stderr.String())
		}
	})
	return p
}

type eventLineJSON struct {
	Seq        *uint64         `json:"seq"`
	Class      string          `json:"class"`
	Event      string          `json:"event"`
	Descriptor uint32          `json:"descriptor"`
	Data       json.RawMessage `json:"data"`
}

type viewJSON struct {
	Instance uint64 `json:"instance"`
	Members  []struct {
		ID uint64 `json:"id"`
	} `json:"members"`
}

// nextEvent reads lines until one satisfies match.
func nextEvent(t *testing.T, lines <-chan string, what string, match func(eventLineJSON) bool) eventLineJSON {
	t.Helper()
	deadline := time.After(30 * time.Second)
	var seen []string
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("corral events ended before %s; it printed:\n%s", what, strings.Join(seen, "\n"))
			}
			seen = append(seen, line)
			var ev eventLineJSON
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("line %q is not JSON: %v", line, err)
			}
			if ev.Class == "" || ev.Event == "" || ev.Descriptor == 0 || len(ev.Data) == 0 || ev.Data[0] != '{' {
				t.Fatalf("line %q lacks class, event, descriptor or a data object", line)
			}
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s within 30s; corral events printed:\n%s", what, strings.Join(seen, "\n"))
		}
	}
}

func members(t *testing.T, ev eventLineJSON) []uint64 {
	var v viewJSON
	if err := json.Unmarshal(ev.Data, &v); err != nil {
		t.Fatal(err)
	}
	var ids []uint64
	for _, m := range v.Members {
		ids = append(ids, m.ID)
	}
	slices.Sort(ids)
	return ids
}

// TestEventsCommand runs corral events --json against real agents: the
// founding view from the agent's history, the view that adds a second
// node as it happens, and the local SHUTDOWN (without seq) when the agent
// stops; then it exits on SIGINT.
func TestEventsCommand(t *testing.T) {
	nodes := cluster(t, 2)
	nodes[0].args = append(nodes[0].args, "--bootstrap")
	nodes[0].start()
	nodes[0].waitState(1, "self", 15*time.Second)
	p := eventLines(t, "--json", "--data-dir", nodes[0].dir, "--since", "0", "--class", "membership")
	lines := p.lines
	first := nextEvent(t, lines, "the founding NEWVIEW", func(ev eventLineJSON) bool {
		return ev.Event == "NEWVIEW" && fmt.Sprint(members(t, ev)) == "[1]"
	})
	if first.Seq == nil || *first.Seq == 0 || first.Class != "membership" || first.Descriptor != uint32(events.MSNewView) {
		t.Fatalf("founding view: %+v", first)
	}
	nodes[1].start()
	second := nextEvent(t, lines, "the NEWVIEW with node 2", func(ev eventLineJSON) bool {
		return ev.Event == "NEWVIEW" && fmt.Sprint(members(t, ev)) == "[1 2]"
	})
	if second.Seq == nil || *second.Seq <= *first.Seq {
		t.Fatalf("second view's seq %v after %d", second.Seq, *first.Seq)
	}
	nodes[0].cmd.Process.Signal(syscall.SIGTERM)
	shutdown := nextEvent(t, lines, "SHUTDOWN", func(ev eventLineJSON) bool { return ev.Event == "SHUTDOWN" })
	if shutdown.Seq != nil {
		t.Fatalf("SHUTDOWN is local-only but has seq %d", *shutdown.Seq)
	}
	if err := <-nodes[0].exit; err != nil {
		t.Fatalf("agent exited with %v after SIGTERM", err)
	}
	nodes[0].cmd = nil
	// corral events keeps trying to reconnect until interrupted.
	p.cmd.Process.Signal(syscall.SIGINT)
	go func() {
		for range lines {
		}
	}()
	select {
	case err := <-p.exit:
		p.exit <- err // for the cleanup
		if err != nil {
			t.Fatalf("corral events exited with %v after SIGINT", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("corral events did not exit after SIGINT")
	}
}

// TestEventsCommandNoAgent: without an agent corral events fails at once
// and says where it looked.
func TestEventsCommandNoAgent(t *testing.T) {
	dir := t.TempDir()
	out, err := exec.Command(binary, "events", "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no agent at "+dir) {
		t.Fatalf("corral events without an agent: %v\n%s", err, out)
	}
	out, err = exec.Command(binary, "events", "--data-dir", dir, "--class", "gossip").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `"gossip" is not one of`) {
		t.Fatalf("corral events --class gossip: %v\n%s", err, out)
	}
}

// TestEventsCommandWaitsForAgent: with the socket of an agent that died,
// corral events waits and streams once the agent is back.
func TestEventsCommandWaitsForAgent(t *testing.T) {
	nodes := cluster(t, 1, "--bootstrap")
	nodes[0].start()
	nodes[0].waitState(1, "self", 15*time.Second)
	nodes[0].kill() // SIGKILL: the socket stays behind, nobody answers
	p := eventLines(t, "--json", "--data-dir", nodes[0].dir, "--since", "0")
	nodes[0].start()
	nextEvent(t, p.lines, "a NEWVIEW from the restarted agent", func(ev eventLineJSON) bool {
		return ev.Event == "NEWVIEW" && ev.Seq != nil && fmt.Sprint(members(t, ev)) == "[1]"
	})
}
