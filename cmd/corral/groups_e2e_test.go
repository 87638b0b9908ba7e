package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
)

// gev is a line of `corral group listen --json`.
type gev struct {
	Seq   uint64 `json:"seq"`
	Event string `json:"event"`
	Group string `json:"group"`
	From  struct {
		Node   uint64 `json:"node"`
		Member uint64 `json:"member"`
	} `json:"from"`
	Payload []byte `json:"payload"`
	ReplyTo uint64 `json:"reply_to"`
	Target  uint64 `json:"target"`
	Reason  string `json:"reason"`
	Members []struct {
		Node   uint64 `json:"node"`
		Member uint64 `json:"member"`
		BornOn uint64 `json:"born_on"`
	} `json:"members"`
	raw string
}

// listener is a running `corral group listen --json` process: one member.
type listener struct {
	nd     *node
	name   string
	cmd    *exec.Cmd
	stderr *syncBuf
	exited chan struct{}

	mu  sync.Mutex // guards evs
	evs []gev
}

// listen starts a member of group on nd and waits for its own JOIN.
func (nd *node) listen(group, name string) *listener {
	nd.t.Helper()
	ls := &listener{nd: nd, name: name, stderr: &syncBuf{}, exited: make(chan struct{}),
		cmd: exec.Command(binary, "group", "listen", group, "--json", "--data-dir", nd.dir)}
	ls.cmd.Stderr = ls.stderr
	out, err := ls.cmd.StdoutPipe()
	if err != nil {
		nd.t.Fatal(err)
	}
	if err := ls.cmd.Start(); err != nil {
		nd.t.Fatal(err)
	}
	go func() {
		defer close(ls.exited)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			var e gev
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				nd.t.Errorf("%s: bad line %q: %v", name, sc.Text(), err)
				continue
			}
			e.raw = sc.Text()
			ls.mu.Lock()
			ls.evs = append(ls.evs, e)
			ls.mu.Unlock()
		}
		ls.cmd.Wait()
	}()
	nd.t.Cleanup(func() {
		ls.cmd.Process.Kill()
		<-ls.exited
		if nd.t.Failed() {
			nd.t.Logf("stderr of %s:\n%s", name, ls.stderr.String())
		}
	})
	ls.wait(20*time.Second, "its own JOIN", func(e gev) bool { return e.Event == "JOIN" })
	return ls
}

// kill9 kills the member process with SIGKILL.
func (ls *listener) kill9() {
	ls.cmd.Process.Kill()
	<-ls.exited
}

// member returns the listener's first member id (from its first JOIN).
func (ls *listener) member() uint64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.evs[0].From.Member
}

func (ls *listener) snapshot() []gev {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return slices.Clone(ls.evs)
}

func (ls *listener) wait(within time.Duration, what string, ok func(e gev) bool) gev {
	ls.nd.t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, e := range ls.snapshot() {
			if ok(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			ls.nd.t.Fatalf("%s: no %s within %v; %d events, stderr:\n%s", ls.name, what, within, len(ls.snapshot()), ls.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitSeqs waits until the listener has delivered every seq in want.
func (ls *listener) waitSeqs(within time.Duration, want []uint64) {
	ls.nd.t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := map[uint64]bool{}
		for _, e := range ls.snapshot() {
			got[e.Seq] = true
		}
		missing := 0
		for _, s := range want {
			if !got[s] {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			ls.nd.t.Fatalf("%s: %d of %d messages not delivered within %v", ls.name, missing, len(want), within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkMembers asserts the delivery guarantees over the members' streams:
// each delivers in strictly increasing seq order, starts with its own
// JOIN (never a message from before it joined), and any two members
// deliver the same events of the group at every seq both were members at.
func checkMembers(t *testing.T, group string, ls []*listener) {
	t.Helper()
	type span struct {
		evs      []gev
		from, to uint64 // seqs the member was in the group for: (from, to]
	}
	spans := make([]span, len(ls))
	for i, l := range ls {
		evs := l.snapshot()
		var last uint64
		for _, e := range evs {
			if e.Seq <= last {
				t.Errorf("%s delivered seq %d after %d", l.name, e.Seq, last)
			}
			last = e.Seq
		}
		if len(evs) == 0 || evs[0].Event != "JOIN" {
			t.Errorf("%s: first event is not its JOIN: %v", l.name, evs)
			continue
		}
		me := evs[0].From.Member
		var own []gev
		for _, e := range evs {
			if e.Group == group && (e.Event == "JOIN" || e.Event == "LEAVE" || e.Event == "MULTICAST") {
				own = append(own, e)
			}
		}
		spans[i] = span{evs: own, from: evs[0].Seq, to: last}
		for _, e := range evs {
			if e.Event == "UNICAST" && e.Target != me {
				t.Errorf("%s (member %#x) got a unicast for %#x", l.name, me, e.Target)
			}
		}
	}
	for i := range ls {
		for j := i + 1; j < len(ls); j++ {
			lo, hi := max(spans[i].from, spans[j].from), min(spans[i].to, spans[j].to)
			pick := func(evs []gev) []string {
				var out []string
				for _, e := range evs {
					if e.Seq > lo && e.Seq <= hi {
						out = append(out, fmt.Sprintf("%d %s %d:%#x %q %s", e.Seq, e.Event, e.From.Node, e.From.Member, e.Payload, e.Reason))
					}
				}
				return out
			}
			a, b := pick(spans[i].evs), pick(spans[j].evs)
			if !slices.Equal(a, b) {
				t.Errorf("%s and %s differ over seqs (%d, %d]: %d vs %d events\n%s", ls[i].name, ls[j].name, lo, hi, len(a), len(b), firstDiff(a, b))
			}
		}
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("at %d: %s | %s", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("one is a prefix of the other (%d vs %d)", len(a), len(b))
}

// groupClient dials nd's agent as an application.
func groupClient(t *testing.T, nd *node, opts client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if opts.Classes == nil {
		opts.Classes = []events.Class{events.ClassGroup}
	}
	c, err := client.Dial(ctx, nd.dir, opts)
	if err != nil {
		t.Fatalf("n%d: dial: %v", nd.id, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendLoad sends count messages to group from a client on each node, all
// at once, and returns the seqs of those committed. Errors of a sender
// whose node is killed meanwhile end that sender only.
func sendLoad(t *testing.T, senders []*client.Client, group string, count int) []uint64 {
	t.Helper()
	seqs, _ := sendLoadPayloads(t, senders, group, count)
	return seqs
}

// sendLoadPayloads is sendLoad that also returns what was sent at each seq.
func sendLoadPayloads(t *testing.T, senders []*client.Client, group string, count int) ([]uint64, map[uint64]string) {
	t.Helper()
	var mu sync.Mutex
	var seqs []uint64
	sent := map[uint64]string{}
	var wg sync.WaitGroup
	for n, c := range senders {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var inner sync.WaitGroup
			for w := range 8 {
				inner.Go(func() {
					for i := w; i < count; i += 8 {
						p := fmt.Appendf(nil, "s%d-%d", n, i)
						r, err := c.SendGroup(ctx, group, p)
						if err != nil {
							return
						}
						mu.Lock()
						seqs = append(seqs, r.Seq)
						sent[r.Seq] = string(p)
						mu.Unlock()
					}
				})
			}
			inner.Wait()
		})
	}
	wg.Wait()
	slices.Sort(seqs)
	return seqs, sent
}

// Three agents, two members per node, a sender per node: every member
// delivers every message, and all of them the same sequence.
func TestGroupsSameSequence(t *testing.T) {
	nodes := formed(t, 3)
	var ls []*listener
	for _, nd := range nodes {
		for k := range 2 {
			ls = append(ls, nd.listen("g", fmt.Sprintf("n%d-m%d", nd.id, k)))
		}
	}
	var senders []*client.Client
	for _, nd := range nodes {
		senders = append(senders, groupClient(t, nd, client.Options{}))
	}
	seqs, sent := sendLoadPayloads(t, senders, "g", 300)
	if len(seqs) != 900 {
		t.Fatalf("%d of 900 sends committed", len(seqs))
	}
	for _, l := range ls {
		l.waitSeqs(30*time.Second, seqs)
		for _, e := range l.snapshot() {
			if p, ok := sent[e.Seq]; ok && (e.Event != "MULTICAST" || string(e.Payload) != p) {
				t.Errorf("%s: seq %d is %s %q, sent as MULTICAST %q", l.name, e.Seq, e.Event, e.Payload, p)
			}
		}
	}
	checkMembers(t, "g", ls)
	// Each member saw every other join after its own, with the same
	// member list: the last JOIN lists all six, oldest first.
	last := ls[len(ls)-1].snapshot()[0]
	if len(last.Members) != 6 {
		t.Fatalf("last JOIN lists %d members: %s", len(last.Members), last.raw)
	}
	for i := 1; i < len(last.Members); i++ {
		if last.Members[i-1].BornOn >= last.Members[i].BornOn {
			t.Errorf("members not oldest first: %s", last.raw)
		}
	}
}

// Members killed with kill -9 leave with one LEAVE each (process down), a
// member started during the load never gets a message from before its
// JOIN, a node killed and restarted loses its members (one LEAVE each)
// and the survivors still agree.
func TestGroupsKillsKeepViewSynchrony(t *testing.T) {
	nodes := formed(t, 3)
	var ls []*listener
	for _, nd := range nodes {
		for k := range 2 {
			ls = append(ls, nd.listen("g", fmt.Sprintf("n%d-m%d", nd.id, k)))
		}
	}
	var senders []*client.Client
	for _, nd := range nodes[:2] {
		senders = append(senders, groupClient(t, nd, client.Options{}))
	}
	done := make(chan []uint64)
	go func() { done <- sendLoad(t, senders, "g", 400) }()

	// A member of n1 dies mid-load; a new member of n2 joins mid-load.
	time.Sleep(300 * time.Millisecond)
	victim := ls[1]
	victimID := victim.member()
	victim.kill9()
	late := nodes[1].listen("g", "n2-late")
	// n3's agent dies and comes back: its members' sessions end with it.
	n3members := []uint64{ls[4].member(), ls[5].member()}
	nodes[2].kill()
	nodes[2].start()
	seqs := <-done

	survivors := []*listener{ls[0], ls[2], ls[3], late}
	for _, l := range survivors {
		l.waitSeqs(30*time.Second, seqs[len(seqs)-10:])
	}
	// Exactly one LEAVE of each gone member at every survivor.
	for _, l := range survivors[:3] {
		for _, gone := range append([]uint64{victimID}, n3members...) {
			l.wait(30*time.Second, fmt.Sprintf("LEAVE of %#x", gone), func(e gev) bool { return e.Event == "LEAVE" && e.From.Member == gone })
			n := 0
			for _, e := range l.snapshot() {
				if e.Event == "LEAVE" && e.From.Member == gone {
					n++
					if gone == victimID && e.Reason != "process down" {
						t.Errorf("%s: LEAVE of the killed member says %q", l.name, e.Reason)
					}
				}
			}
			if n != 1 {
				t.Errorf("%s: %d LEAVEs of member %#x", l.name, n, gone)
			}
		}
	}
	lateJoin := late.snapshot()[0].Seq
	for _, e := range late.snapshot() {
		if e.Event == "MULTICAST" && e.Seq < lateJoin {
			t.Errorf("late member got seq %d from before its JOIN at %d", e.Seq, lateJoin)
		}
	}
	// Members alive throughout got every committed message.
	for _, l := range survivors[:3] {
		l.waitSeqs(30*time.Second, seqs)
	}
	checkMembers(t, "g", append(survivors, victim))
	// n3's members found their sessions gone with the agent and joined
	// again as new members, delivering nothing twice.
	for _, l := range ls[4:6] {
		old := l.member()
		l.wait(30*time.Second, "a new JOIN after the agent restart", func(e gev) bool { return e.Event == "JOIN" && e.From.Member != old && e.Members != nil })
		var last uint64
		for _, e := range l.snapshot() {
			if e.Seq <= last {
				t.Errorf("%s delivered seq %d after %d", l.name, e.Seq, last)
			}
			last = e.Seq
		}
	}
}

// Unicast reaches only its target, a reply reaches only the sender of the
// message it answers and names it, an open-group send works without
// joining, a send to an empty group delivers to nobody, and an 8 MiB
// message arrives whole.
func TestGroupsAPI(t *testing.T) {
	nodes := formed(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a := groupClient(t, nodes[0], client.Options{GroupBuffer: 64})
	b := groupClient(t, nodes[1], client.Options{GroupBuffer: 64})
	cc := groupClient(t, nodes[2], client.Options{GroupBuffer: 64})
	next := func(c *client.Client, what string, ok func(events.Event) bool) events.Event {
		t.Helper()
		for {
			select {
			case ev := <-c.Deliveries():
				if ok(ev) {
					return ev
				}
			case <-ctx.Done():
				t.Fatalf("no %s", what)
			}
		}
	}
	ma, err := a.Join(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	mb, err := b.Join(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	mc, err := cc.Join(ctx, "api")
	if err != nil {
		t.Fatal(err)
	}
	// Unicast a → c only.
	if _, err := ma.SendTo(ctx, mc.ID(), []byte("for c")); err != nil {
		t.Fatal(err)
	}
	uc := next(cc, "UNICAST at c", func(e events.Event) bool { return e.Desc == events.GSUnicast })
	if string(uc.Group().Payload) != "for c" || uc.Group().From.Member != ma.ID() {
		t.Fatalf("unicast: %+v", uc.Group())
	}
	// b multicasts; a replies; only b gets the reply, naming b's seq.
	r, err := mb.Send(ctx, []byte("question"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Delivered != 3 {
		t.Errorf("multicast delivered to %d, want 3", r.Delivered)
	}
	q := next(a, "MULTICAST at a", func(e events.Event) bool { return e.Desc == events.GSMulticast && e.Seq == r.Seq })
	if _, err := ma.Reply(ctx, q, []byte("answer")); err != nil {
		t.Fatal(err)
	}
	rep := next(b, "REPLY at b", func(e events.Event) bool { return e.Desc == events.GSReply })
	if rep.Group().ReplyTo != r.Seq || string(rep.Group().Payload) != "answer" {
		t.Fatalf("reply: %+v, want reply_to %d", rep.Group(), r.Seq)
	}
	// Open group: an outsider sends without joining.
	out := groupClient(t, nodes[2], client.Options{})
	or, err := out.SendGroup(ctx, "api", []byte("from outside"))
	if err != nil {
		t.Fatal(err)
	}
	if or.Delivered != 3 {
		t.Errorf("open-group send delivered to %d, want 3", or.Delivered)
	}
	// A group with no members.
	er, err := out.SendGroup(ctx, "nobody-here", []byte("x"))
	if err != nil || er.Delivered != 0 {
		t.Errorf("send to an empty group: %+v, %v", er, err)
	}
	// 8 MiB, whole and identical at every member.
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	br, err := ma.Send(ctx, big)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{a, b, cc} {
		ev := next(c, "the 8 MiB message", func(e events.Event) bool { return e.Seq == br.Seq })
		if !slices.Equal(ev.Group().Payload, big) {
			t.Errorf("8 MiB message differs: %d bytes", len(ev.Group().Payload))
		}
	}
	// Nobody else got the unicast or the reply.
	for _, c := range []*client.Client{a, b} {
		for len(c.Deliveries()) > 0 {
			if ev := <-c.Deliveries(); ev.Desc == events.GSUnicast {
				t.Errorf("a unicast for c reached another member: %+v", ev.Group())
			}
		}
	}
}

// A partition: the minority node delivers nothing and commits none of its
// sends while cut off; after the heal it delivers everything the majority
// committed meanwhile, in the same order, and its sends complete.
func TestGroupsPartition(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	lab, nodes := labCluster(t, 3, "--remove-after", "60s")
	var ls []*listener
	for _, nd := range nodes {
		ls = append(ls, nd.listen("g", fmt.Sprintf("n%d", nd.id)))
	}
	var senders []*client.Client
	for _, nd := range nodes {
		senders = append(senders, groupClient(t, nd, client.Options{}))
	}
	before := sendLoad(t, senders, "g", 50)
	for _, l := range ls {
		l.waitSeqs(20*time.Second, before)
	}
	lab.Partition([]int{3})
	cutAt := len(ls[2].snapshot())
	// n3's send waits for the heal.
	minority := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err := senders[2].SendGroup(ctx, "g", []byte("from the minority"))
		minority <- err
	}()
	during := sendLoad(t, senders[:2], "g", 100)
	for _, l := range ls[:2] {
		l.waitSeqs(20*time.Second, during)
	}
	select {
	case err := <-minority:
		t.Fatalf("a send in the minority completed during the partition: %v", err)
	default:
	}
	if got := ls[2].snapshot(); len(got) != cutAt {
		t.Errorf("the minority member delivered %d events during the partition: %s", len(got)-cutAt, got[len(got)-1].raw)
	}
	lab.Heal()
	if err := <-minority; err != nil {
		t.Fatalf("the minority's send after the heal: %v", err)
	}
	ls[2].waitSeqs(30*time.Second, during)
	for _, l := range ls {
		l.wait(20*time.Second, "the minority's message", func(e gev) bool { return string(e.Payload) == "from the minority" })
	}
	checkMembers(t, "g", ls)
}

// rss returns the resident set of process pid in bytes.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS for %d", pid)
	return 0
}

// A member that stops reading while others send is disconnected as
// behind; the agent's memory stays bounded, the other members keep up,
// and what the slow member delivers when it reads again is in order,
// without a duplicate, and either everything or ends with its own LEAVE
// (reason behind): it never misses a message silently.
func TestGroupsSlowMember(t *testing.T) {
	d := soak(t, 10*time.Second)
	nodes := formed(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), d+120*time.Second)
	defer cancel()
	var dropped sync.Once
	sawDrop := make(chan struct{})
	// A reader blocked on a full Deliveries channel does not read the
	// GOODBYE: it sees the link end (heartbeat timeout), and the reason is
	// in the agent's log.
	var lost atomic.Bool
	slow := groupClient(t, nodes[0], client.Options{GroupBuffer: 16, OnDisconnect: func(err error) {
		dropped.Do(func() { close(sawDrop) })
	}, OnSessionLost: func(uint64, error) { lost.Store(true) }})
	ms, err := slow.Join(ctx, "slow")
	if err != nil {
		t.Fatal(err)
	}
	fast := nodes[1].listen("slow", "fast")
	sender := groupClient(t, nodes[2], client.Options{})
	pid := nodes[0].cmd.Process.Pid
	base := rss(t, pid)

	var seqs []uint64
	payload := make([]byte, 1000)
	start := time.Now()
	var peak int64
	samples := []int64{}
	// The senders offer a fixed rate that the fast member (a CLI printing
	// JSON, under -race) keeps up with: the slow member is the one that
	// must fall behind, not every reader the cluster outpaces.
	const rate = 2500 // messages a second
	sent := 0
	for time.Since(start) < d {
		time.Sleep(time.Until(start.Add(time.Duration(sent) * time.Second / rate)))
		sent += 64
		var wg sync.WaitGroup
		var mu sync.Mutex
		for range 64 {
			wg.Go(func() {
				r, err := sender.SendGroup(ctx, "slow", payload)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seqs = append(seqs, r.Seq)
				mu.Unlock()
			})
		}
		wg.Wait()
		if r := rss(t, pid); r > peak {
			peak = r
		}
		samples = append(samples, rss(t, pid))
	}
	slices.Sort(seqs)
	t.Logf("%d messages of 1000 B in %v; agent RSS %d MiB before, peak %d MiB", len(seqs), d, base>>20, peak>>20)
	select {
	case <-sawDrop:
	case <-time.After(15 * time.Second):
		t.Fatal("the slow member was never disconnected")
	}
	if !strings.Contains(nodes[0].log.String(), "disconnecting a subscriber that fell behind") {
		t.Error("the agent did not say it disconnected the slow member as behind")
	}
	if peak > base+400<<20 {
		t.Errorf("agent RSS grew from %d MiB to %d MiB", base>>20, peak>>20)
	}
	third := len(samples) / 3
	if third > 0 && slices.Max(samples[2*third:]) > slices.Max(samples[:third])+96<<20 {
		t.Errorf("agent RSS keeps growing: %d MiB in the first third, %d MiB in the last", slices.Max(samples[:third])>>20, slices.Max(samples[2*third:])>>20)
	}
	fast.waitSeqs(30*time.Second, seqs)

	// Now read: in order, no duplicate, identical to the fast member's.
	want := map[uint64]string{}
	for _, e := range fast.snapshot() {
		want[e.Seq] = string(e.Payload)
	}
	var last uint64
	got, leftBehind := 0, false
	for !leftBehind && got < len(seqs) {
		var ev events.Event
		select {
		case ev = <-slow.Deliveries():
		case <-time.After(5 * time.Second):
			if !lost.Load() {
				t.Fatalf("the slow member stopped after %d of %d messages, without a LEAVE or a lost session", got, len(seqs))
			}
		}
		if ev.Seq == 0 {
			break // told its session was lost, and nothing more came
		}
		if ev.Seq <= last {
			t.Fatalf("slow member delivered seq %d after %d", ev.Seq, last)
		}
		last = ev.Seq
		g := ev.Group()
		switch ev.Desc {
		case events.GSMulticast:
			got++
			if p, ok := want[ev.Seq]; !ok || p != string(g.Payload) {
				t.Fatalf("seq %d: the slow member got a message the fast one did not", ev.Seq)
			}
		case events.GSLeave:
			if g.From.Member == ms.ID() {
				if g.Reason != events.LeaveBehind {
					t.Errorf("own LEAVE with reason %v", g.Reason)
				}
				leftBehind = true
			}
		}
	}
	t.Logf("the slow member delivered %d of %d messages in order; own LEAVE (behind): %v; told its session was lost: %v", got, len(seqs), leftBehind, lost.Load())
	if got < len(seqs) && !leftBehind && !lost.Load() {
		t.Errorf("the slow member missed messages without being told")
	}
	if leftBehind {
		if slow.MemberID() != 0 {
			t.Errorf("the client still has a session after its own LEAVE")
		}
		// The fast member saw it leave, at the same seq.
		fast.wait(10*time.Second, "the slow member's LEAVE", func(e gev) bool { return e.Event == "LEAVE" && e.From.Member == ms.ID() && e.Seq == last })
	}
}

// A member that stops reading for a moment is disconnected as behind,
// attaches again and resumes after the last seq it delivered: it keeps
// its session and delivers every message exactly once, in order.
func TestGroupsSlowMemberResumes(t *testing.T) {
	nodes := formed(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var drops atomic.Int32
	slow := groupClient(t, nodes[0], client.Options{GroupBuffer: 16, OnDisconnect: func(error) { drops.Add(1) }})
	ms, err := slow.Join(ctx, "resume")
	if err != nil {
		t.Fatal(err)
	}
	sender := groupClient(t, nodes[1], client.Options{})
	// 2500 messages of 3000 B: past the agent's lag bound for one client
	// (4 MiB), within the history it keeps (4096 events, 16 MiB).
	var seqs []uint64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for i := w; i < 2500; i += 16 {
				r, err := sender.SendGroup(ctx, "resume", make([]byte, 3000))
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seqs = append(seqs, r.Seq)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	eventually(t, 20*time.Second, "the slow member's link dropped", func() error {
		if drops.Load() == 0 {
			return fmt.Errorf("no disconnect yet")
		}
		return nil
	})
	if !strings.Contains(nodes[0].log.String(), "disconnecting a subscriber that fell behind") {
		t.Fatal("the agent did not disconnect the slow member as behind")
	}
	want := map[uint64]bool{}
	for _, s := range seqs {
		want[s] = true
	}
	var last uint64
	for got := 0; got < len(seqs); {
		select {
		case ev := <-slow.Deliveries():
			if ev.Seq <= last {
				t.Fatalf("seq %d after %d", ev.Seq, last)
			}
			last = ev.Seq
			if ev.Desc == events.GSMulticast {
				if !want[ev.Seq] {
					t.Fatalf("seq %d was not sent", ev.Seq)
				}
				got++
			}
			if ev.Desc == events.GSLeave && ev.Group().From.Member == ms.ID() {
				t.Fatalf("the slow member was closed (%v) though the agent held its events", ev.Group().Reason)
			}
		case <-ctx.Done():
			t.Fatalf("the slow member delivered %d of %d", got, len(seqs))
		}
	}
	if slow.MemberID() != ms.ID() {
		t.Errorf("the member's session changed: %#x, was %#x", slow.MemberID(), ms.ID())
	}
	t.Logf("%d disconnects; all %d messages delivered once, in order, in one session", drops.Load(), len(seqs))
}

// The CLI: send prints each committed message's seq; members and list
// print the group as JSON.
func TestGroupCLI(t *testing.T) {
	nodes := formed(t, 3)
	ls := nodes[0].listen("cli", "n1-cli")
	out, err := exec.Command(binary, "group", "send", "cli", "--count", "3", "--size", "10", "--data-dir", nodes[1].dir).CombinedOutput()
	if err != nil {
		t.Fatalf("group send: %v\n%s", err, out)
	}
	var seqs []uint64
	for _, f := range strings.Fields(string(out)) {
		var s uint64
		if _, err := fmt.Sscan(f, &s); err != nil || s == 0 {
			t.Fatalf("group send printed %q, want one seq per line", out)
		}
		seqs = append(seqs, s)
	}
	if len(seqs) != 3 || !slices.IsSorted(seqs) {
		t.Fatalf("group send printed seqs %v, want 3 in order", seqs)
	}
	ls.waitSeqs(10*time.Second, seqs)
	out, err = exec.Command(binary, "group", "members", "cli", "--json", "--data-dir", nodes[2].dir).CombinedOutput()
	if err != nil {
		t.Fatalf("group members: %v\n%s", err, out)
	}
	var m struct {
		Group   string `json:"group"`
		Members []struct {
			Node   uint64 `json:"node"`
			Member uint64 `json:"member"`
			BornOn uint64 `json:"born_on"`
		} `json:"members"`
	}
	if err := json.Unmarshal(out, &m); err != nil || m.Group != "cli" || len(m.Members) != 1 || m.Members[0].Node != 1 || m.Members[0].Member != ls.member() {
		t.Fatalf("group members --json: %s (%v)", out, err)
	}
	out, err = exec.Command(binary, "group", "list", "--json", "--data-dir", nodes[2].dir).CombinedOutput()
	if err != nil {
		t.Fatalf("group list: %v\n%s", err, out)
	}
	var l []struct {
		Group   string `json:"group"`
		Members int    `json:"members"`
	}
	if err := json.Unmarshal(out, &l); err != nil || len(l) != 1 || l[0].Group != "cli" || l[0].Members != 1 {
		t.Fatalf("group list --json: %s (%v)", out, err)
	}
}
