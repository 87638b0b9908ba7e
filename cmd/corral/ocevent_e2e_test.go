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
// the named programs (c/examples/seed_example.c, c/test/e2e/*.c) against
// it. It returns the programs' paths by name.
func ocInstall(t *testing.T, progs ...string) map[string]string {
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
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stderr *syncBuf
	exited chan struct{}

	mu    sync.Mutex // guards lines
	lines []cline
}

// startC runs bin with args against nd's agent (CORRAL_DATA_DIR).
func startC(t *testing.T, nd *node, name, bin string, args ...string) *cproc {
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
