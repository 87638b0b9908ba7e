package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
)

// These tests build liboc_event.so (c/), install it into a temporary
// prefix, compile C programs against the installed header and library
// with gcc, and run them against real agents.

// ocInstall installs the C library under a temporary prefix and compiles
// the named programs (c/examples/seed_example.c, c/test/e2e/*.c, or a
// path under c/ without ".c", named by its base) against it. It returns
// the programs' paths by name.
func ocInstall(t testing.TB, progs ...string) map[string]string {
	t.Helper()
	for _, tool := range []string{"gcc", "make"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the C library tests need %s, which is not installed (apt-get install gcc make)", tool)
		}
	}
	src, err := filepath.Abs("../../c")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	prefix := filepath.Join(tmp, "prefix")
	out, err := exec.Command("make", "-s", "-C", src, "B="+filepath.Join(tmp, "build"), "install", "PREFIX="+prefix).CombinedOutput()
	if err != nil {
		t.Fatalf("make install: %v\n%s", err, out)
	}
	for _, f := range []string{"include/ocf/oc_event.h", "lib/liboc_event.so.1.0.0", "lib/liboc_event.so.1", "lib/liboc_event.so",
		"lib/lib_oc_event.so", "lib/pkgconfig/oc_event.pc", "share/man/man3/oc_event.3"} {
		if _, err := os.Stat(filepath.Join(prefix, f)); err != nil {
			t.Fatalf("make install: %v", err)
		}
	}
	bins := map[string]string{}
	for _, p := range progs {
		file := filepath.Join(src, "test", "e2e", p+".c")
		if p == "seed_example" {
			file = filepath.Join(src, "examples", p+".c")
		}
		if strings.Contains(p, "/") {
			file, p = filepath.Join(src, p+".c"), filepath.Base(p)
		}
		bin := filepath.Join(tmp, p)
		lib := filepath.Join(prefix, "lib")
		out, err := exec.Command("gcc", "-Wall", "-o", bin, file, "-I"+filepath.Join(prefix, "include"),
			"-L"+lib, "-l_oc_event", "-Wl,-rpath,"+lib).CombinedOutput()
		if err != nil {
			t.Fatalf("gcc %s: %v\n%s", p, err, out)
		}
		bins[p] = bin
	}
	return bins
}

// cline is a line a C program printed, with when the test read it.
type cline struct {
	text string
	at   time.Time
}

// cproc is a running C program whose stdout lines are collected.
type cproc struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	stderr *syncBuf
	exited chan struct{}

	mu    sync.Mutex // guards lines
	lines []cline
}

// startC runs bin with args against nd's agent (CORRAL_DATA_DIR).
func startC(t testing.TB, nd *node, name, bin string, args ...string) *cproc {
	t.Helper()
	p := &cproc{t: t, name: name, stderr: &syncBuf{}, exited: make(chan struct{}), cmd: exec.Command(bin, args...)}
	p.cmd.Env = append(os.Environ(), "CORRAL_DATA_DIR="+nd.dir)
	p.cmd.Stderr = p.stderr
	// Its own process group, so that a forked child is killed with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, cline{sc.Text(), time.Now()})
			p.mu.Unlock()
		}
		p.cmd.Wait()
	}()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
		if t.Failed() {
			t.Logf("%s stdout:\n%s\nstderr:\n%s", name, p.dump(), p.stderr.String())
		}
	})
	return p
}

func (p *cproc) snapshot() []cline {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.lines)
}

func (p *cproc) dump() string {
	var b strings.Builder
	for _, l := range p.snapshot() {
		b.WriteString(l.text + "\n")
	}
	return b.String()
}

// wait returns the first line that ok accepts, waiting up to within.
func (p *cproc) wait(within time.Duration, what string, ok func(string) bool) string {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, l := range p.snapshot() {
			if ok(l.text) {
				return l.text
			}
		}
		select {
		case <-p.exited:
			p.t.Fatalf("%s exited before %s; stderr: %s", p.name, what, p.stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: no %s within %v", p.name, what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// has reports whether some line contains every one of subs.
func (p *cproc) has(subs ...string) bool {
	for _, l := range p.snapshot() {
		if containsAll(l.text, subs...) {
			return true
		}
	}
	return false
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// field returns the value of " key=value" in an event line.
func field(line, key string) string {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return ""
}

var seqRE = regexp.MustCompile(` seq=(\d+)`)

// eventSeqs returns the seqs of the event lines of p that contain subs.
func (p *cproc) eventSeqs(subs ...string) []uint64 {
	var out []uint64
	for _, l := range p.snapshot() {
		if !strings.Contains(l.text, "event ") || !containsAll(l.text, subs...) {
			continue
		}
		if m := seqRE.FindStringSubmatch(l.text); m != nil {
			s, _ := strconv.ParseUint(m[1], 10, 64)
			out = append(out, s)
		}
	}
	return out
}

func ocGroupClient(t *testing.T, nd *node, name string) *client.Client {
	return groupClient(t, nd, client.Options{Name: name, Classes: []events.Class{events.ClassGroup}})
}

func bcast(t *testing.T, c *client.Client, payload string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := c.Broadcast(ctx, "oc", []byte(payload))
	if err != nil {
		t.Fatalf("broadcast %s: %v", payload, err)
	}
	return r.Seq
}

// TestOcEventStyles runs the seed's example in each activation style on
// node 1: each sees node 3 leave the view, and group events reach it as
// a member (JOIN, MULTICAST, LEAVE) or as a non-member (BROADCAST).
func TestOcEventStyles(t *testing.T) {
	bins := ocInstall(t, "seed_example")
	nodes := formed(t, 3)
	styles := []string{"noreturn", "fd", "signal"}
	procs := map[string]*cproc{}
	for _, s := range styles {
		p := startC(t, nodes[0], "example-"+s, bins["seed_example"], s)
		p.wait(10*time.Second, "ready", func(l string) bool { return l == "ready style="+s })
		procs[s] = p
	}
	nodes[2].kill()
	for _, s := range styles {
		l := procs[s].wait(15*time.Second, "NEWVIEW with n3 left", func(l string) bool {
			return strings.Contains(l, "name=NEWVIEW") && slices.Contains(strings.Split(field(l, "left"), ","), "n3")
		})
		t.Logf("%s: %s", s, l)
		if m := field(l, "members"); m != "n1,n2" {
			t.Errorf("%s: members %q after n3 left, want n1,n2", s, m)
		}
	}

	// A C member of group "cg" in each style; a Go member joins,
	// multicasts and leaves; a broadcast reaches every process.
	members := map[string]*cproc{}
	for _, s := range styles {
		p := startC(t, nodes[0], "member-"+s, bins["seed_example"], s, "cg", "c-"+s)
		p.wait(15*time.Second, "its own JOIN", func(l string) bool { return containsAll(l, "name=JOIN", "group=cg") })
		members[s] = p
	}
	gc := ocGroupClient(t, nodes[1], "go-member")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := gc.Join(ctx, "cg")
	if err != nil {
		t.Fatal(err)
	}
	goID := fmt.Sprint(m.ID())
	mc, err := m.Send(ctx, []byte("hello-multicast"))
	if err != nil {
		t.Fatal(err)
	}
	bseq := bcast(t, gc, "hello-broadcast")
	if err := m.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	for _, s := range styles {
		p := members[s]
		p.wait(15*time.Second, "the Go member's LEAVE", func(l string) bool { return containsAll(l, "name=LEAVE", "from="+goID) })
		for _, want := range [][]string{{"name=JOIN", "from=" + goID}, {"name=MULTICAST", fmt.Sprintf("seq=%d ", mc.Seq), "payload=hello-multicast"},
			{"name=BROADCAST", fmt.Sprintf("seq=%d ", bseq), "payload=hello-broadcast"}} {
			if !p.has(want...) {
				t.Errorf("member %s: no line with %q", s, want)
			}
		}
		np := procs[s]
		np.wait(15*time.Second, "the broadcast", func(l string) bool { return containsAll(l, "name=BROADCAST", "payload=hello-broadcast") })
		if np.has("name=MULTICAST") || np.has("name=JOIN") {
			t.Errorf("non-member %s received member events:\n%s", s, np.dump())
		}
		checkRising(t, "member-"+s, p.eventSeqs())
		checkRising(t, "example-"+s, np.eventSeqs())
	}
}

// checkRising fails unless the cluster-wide seqs (non-zero) strictly
// increase: no event twice, none out of order.
func checkRising(t *testing.T, who string, seqs []uint64) {
	t.Helper()
	var last uint64
	for _, s := range seqs {
		if s == 0 {
			continue
		}
		if s <= last {
			t.Errorf("%s: seq %d after %d", who, s, last)
		}
		last = s
	}
}

// TestOcEventAgentRestart restarts the agent under a C process: it
// reconnects, resumes after the last seq it received and gets every
// event the restarted agent holds (here: those committed while it was
// down) exactly once, in order.
func TestOcEventAgentRestart(t *testing.T) {
	bins := ocInstall(t, "seed_example")
	nodes := formed(t, 3)
	p := startC(t, nodes[0], "example-fd", bins["seed_example"], "fd")
	p.wait(10*time.Second, "ready", func(l string) bool { return l == "ready style=fd" })
	gc := ocGroupClient(t, nodes[1], "sender")

	// Before: retry until the subscription is surely in place.
	var want []uint64
	for i := 0; ; i++ {
		s := bcast(t, gc, fmt.Sprintf("before-%d", i))
		if p.has("payload=before-") {
			want = append(want, s)
			break
		}
		if i > 200 {
			t.Fatal("the example receives no broadcast")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 5 {
		want = append(want, bcast(t, gc, fmt.Sprintf("up-%d", i)))
	}
	p.wait(10*time.Second, "up-4", func(l string) bool { return strings.Contains(l, "payload=up-4") })

	nodes[0].kill()
	for i := range 5 {
		want = append(want, bcast(t, gc, fmt.Sprintf("down-%d", i)))
	}
	nodes[0].start()
	for i := range 5 {
		want = append(want, bcast(t, gc, fmt.Sprintf("after-%d", i)))
	}
	p.wait(30*time.Second, "after-4", func(l string) bool { return strings.Contains(l, "payload=after-4") })
	got := p.eventSeqs("name=BROADCAST")
	checkRising(t, "example", got)
	for _, s := range want {
		if !slices.Contains(got, s) {
			t.Errorf("broadcast seq %d not received", s)
		}
	}
	// Exactly once: the first wanted broadcast on, nothing extra.
	i := slices.Index(got, want[0])
	if i < 0 || !slices.Equal(got[i:], want) {
		t.Errorf("received %v, want %v at the end", got, want)
	}
}

// TestOcEventFork: after fork the parent keeps receiving on its handle;
// the child cannot use it, registers afresh and receives too.
func TestOcEventFork(t *testing.T) {
	bins := ocInstall(t, "fork")
	nodes := formed(t, 1)
	p := startC(t, nodes[0], "fork", bins["fork"], "fg")
	p.wait(15*time.Second, "child ready", func(l string) bool { return strings.HasPrefix(l, "child ready") })
	l := p.wait(time.Second, "child's old-handle line", func(l string) bool { return strings.HasPrefix(l, "child old") })
	if l != "child old handle_event=-1 set_callback=-1 join=-1" {
		t.Errorf("the child could use the parent's handle: %q", l)
	}
	gc := ocGroupClient(t, nodes[0], "go")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	for i := range 3 {
		r, err := gc.SendGroup(ctx, "fg", []byte(fmt.Sprintf("m%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if r.Delivered != 2 {
			t.Errorf("multicast %d delivered to %d members, want 2 (parent, child)", i, r.Delivered)
		}
	}
	for _, who := range []string{"parent", "child"} {
		p.wait(10*time.Second, who+" m2", func(l string) bool { return containsAll(l, who+" event", "name=MULTICAST", "payload=m2") })
		checkRising(t, who, p.eventSeqs(who+" event"))
		for i := range 3 {
			if !p.has(who+" event", fmt.Sprintf("payload=m%d", i)) {
				t.Errorf("%s did not receive m%d", who, i)
			}
		}
	}
}

// prioLog collects the start and done times of callbacks, by participant
// and seq.
type prioLog struct {
	mu    sync.Mutex // guards start, done
	start map[string]map[uint64]int64
	done  map[string]map[uint64]int64
}

func (l *prioLog) add(kind, who string, seq uint64, ns int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.start
	if kind == "done" {
		m = l.done
	}
	if m[who] == nil {
		m[who] = map[uint64]int64{}
	}
	if _, ok := m[who][seq]; !ok {
		m[who][seq] = ns
	}
}

func (l *prioLog) get(kind, who string, seq uint64) (int64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.start
	if kind == "done" {
		m = l.done
	}
	ns, ok := m[who][seq]
	return ns, ok
}

// collect reads the "start NAME SEQ NS" / "done NAME SEQ NS" lines of p.
func (l *prioLog) collect(p *cproc) {
	for _, ln := range p.snapshot() {
		f := strings.Fields(ln.text)
		if len(f) != 4 || (f[0] != "start" && f[0] != "done") {
			continue
		}
		seq, _ := strconv.ParseUint(f[2], 10, 64)
		ns, _ := strconv.ParseInt(f[3], 10, 64)
		l.add(f[0], f[1], seq, ns)
	}
}

// TestOcEventPriorities: two C processes and a Go client on one node, at
// priorities 10 (C), 100 (Go) and 200 (C), get each group event in that
// order, each only after the one before has completed it, and the next
// event only after all three. A fourth process at priority 50 that never
// completes holds the dispatch up for the --callback-timeout, is then
// disconnected, and the others go on.
func TestOcEventPriorities(t *testing.T) {
	bins := ocInstall(t, "prio")
	const hold = 200 * time.Millisecond
	nodes := formed(t, 1, "--callback-timeout", "3s")
	nd := nodes[0]
	lg := &prioLog{start: map[string]map[uint64]int64{}, done: map[string]map[uint64]int64{}}
	ca := startC(t, nd, "prio-ca", bins["prio"], "ca", "10", fmt.Sprint(hold.Milliseconds()))
	cb := startC(t, nd, "prio-cb", bins["prio"], "cb", "200", fmt.Sprint(hold.Milliseconds()))
	for _, p := range []*cproc{ca, cb} {
		p.wait(10*time.Second, "ready", func(l string) bool { return strings.HasPrefix(l, "ready ") })
	}

	// The Go participant: an events.Service handle at priority 100.
	svc := events.New(events.Options{})
	t.Cleanup(func() { svc.Close() })
	h, _ := svc.Register()
	h.SetCallback(100, events.ClassGroup, func(ev events.Event, c events.Cookie) {
		lg.add("start", "go", ev.Seq, time.Now().UnixNano())
		time.AfterFunc(hold, func() {
			lg.add("done", "go", ev.Seq, time.Now().UnixNano())
			events.CallbackDone(c)
		})
	})
	if err := h.ActivateNoReturn(); err != nil {
		t.Fatal(err)
	}
	go h.HandleEvent() // returns on Close
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gc, err := client.Dial(ctx, nd.dir, client.Options{Service: svc, Classes: []events.Class{events.ClassGroup}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gc.Close() })
	sender := ocGroupClient(t, nd, "sender")

	all := []string{"ca", "go", "cb"}
	seen := func(seq uint64, who ...string) bool {
		lg.collect(ca)
		lg.collect(cb)
		for _, w := range who {
			if _, ok := lg.get("done", w, seq); !ok {
				return false
			}
		}
		return true
	}
	waitSeen := func(seq uint64, who ...string) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !seen(seq, who...) {
			if time.Now().After(deadline) {
				t.Fatalf("seq %d not completed by %v within 20s", seq, who)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Warm up until every participant takes part.
	for i := 0; ; i++ {
		s := bcast(t, sender, fmt.Sprintf("warm-%d", i))
		deadline := time.Now().Add(3 * time.Second)
		for !seen(s, all...) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if seen(s, all...) {
			break
		}
		if i > 5 {
			t.Fatal("the participants do not all receive broadcasts")
		}
	}
	// order checks that seq went band by band: each start after the
	// band before completed; it returns the gaps between bands.
	order := func(seq uint64, bands []string) []time.Duration {
		t.Helper()
		var gaps []time.Duration
		for i := 1; i < len(bands); i++ {
			done, _ := lg.get("done", bands[i-1], seq)
			start, ok := lg.get("start", bands[i], seq)
			if !ok {
				t.Fatalf("seq %d: %s never started", seq, bands[i])
			}
			if start < done {
				t.Errorf("seq %d: %s started %v before %s completed", seq, bands[i], time.Duration(done-start), bands[i-1])
			}
			gaps = append(gaps, time.Duration(start-done))
		}
		return gaps
	}
	var seqs []uint64
	for i := range 3 {
		seqs = append(seqs, bcast(t, sender, fmt.Sprintf("p-%d", i)))
	}
	waitSeen(seqs[2], all...)
	for i, s := range seqs {
		t.Logf("seq %d: gaps between bands %v", s, order(s, all))
		if i > 0 {
			prev, _ := lg.get("done", "cb", seqs[i-1])
			next, _ := lg.get("start", "ca", s)
			if next < prev {
				t.Errorf("seq %d started before seq %d was completed by all", s, seqs[i-1])
			}
		}
	}

	// A process that never completes, at priority 50.
	cn := startC(t, nd, "prio-never", bins["prio"], "never", "50", "0", "never")
	cn.wait(10*time.Second, "ready", func(l string) bool { return strings.HasPrefix(l, "ready ") })
	var stalled uint64
	for i := 0; stalled == 0; i++ {
		bcast(t, sender, fmt.Sprintf("n-%d", i))
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) {
			lg.collect(cn)
			lg.mu.Lock()
			for s := range lg.start["never"] {
				stalled = s
			}
			lg.mu.Unlock()
			if stalled != 0 {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if i > 5 && stalled == 0 {
			t.Fatal("the never-completing process receives nothing")
		}
	}
	waitSeen(stalled, all...)
	caDone, _ := lg.get("done", "ca", stalled)
	nStart, _ := lg.get("start", "never", stalled)
	goStart, _ := lg.get("start", "go", stalled)
	t.Logf("seq %d with a process that never completes: it started %v after the first band completed, the Go band %v after",
		stalled, time.Duration(nStart-caDone), time.Duration(goStart-caDone))
	if nStart < caDone {
		t.Errorf("seq %d: the priority 50 process started before priority 10 completed", stalled)
	}
	if d := time.Duration(goStart - caDone); d < 2500*time.Millisecond {
		t.Errorf("the Go band started %v after the first band completed; want the 3s callback timeout", d)
	}
	nd.waitLog(10*time.Second, "callback not completed within")
	// The others go on, without waiting for it again.
	var after []uint64
	for i := range 3 {
		after = append(after, bcast(t, sender, fmt.Sprintf("a-%d", i)))
	}
	waitSeen(after[2], all...)
	for _, s := range after {
		g := order(s, all)
		for _, d := range g {
			if d > time.Second {
				t.Errorf("seq %d waited %v between bands after the late process was disconnected", s, d)
			}
		}
	}
}
