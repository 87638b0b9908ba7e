package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/events/eventstest"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/transport"
)

// These tests run a real Agent in the test process, publish into its event
// stream and receive through client.Client and the events API: the client
// library against the agent's socket. The stream itself is tested in
// package eventstream. The agent's own cluster side publishes too (a
// NEWVIEW when it founds its one-node cluster, interface events): the tests
// publish group events, far above its sequence numbers, and look at those.

const (
	waitFor = 20 * time.Second // deadline of every wait on a condition
	seqBase = 1 << 40          // the tests' sequence numbers start above it
)

// testLogger writes to the test log, so a failing test shows the agent's
// and the client's view.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

type testAgent struct {
	*Agent
	dir  string
	stop func() // stops the agent and waits for Run to return
}

// startAgent runs an agent on a fresh data dir (or dir, when not empty),
// alone, on 127.0.0.1. setup runs after New and before Run.
func startAgent(t *testing.T, dir string, setup func(*Agent)) *testAgent {
	t.Helper()
	return startAgentConfig(t, dir, nil, setup)
}

// startAgentConfig is startAgent with conf changing the config before New.
func startAgentConfig(t *testing.T, dir string, conf func(*Config), setup func(*Agent)) *testAgent {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	key := filepath.Join(dir, "cluster.key")
	if _, err := os.Stat(key); err != nil {
		k, err := transport.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := transport.WriteKeyFile(key, k); err != nil {
			t.Fatal(err)
		}
	}
	cfg := Defaults()
	cfg.Name, cfg.DataDir, cfg.Bind, cfg.ClusterKeyFile = "n1", dir, "127.0.0.1:0", key
	if conf != nil {
		conf(&cfg)
	}
	log := testLogger(t).With("node", "agent")
	a, err := New(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	ta := &testAgent{Agent: a, dir: dir}
	ta.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent Run: %v", err)
			}
		})
	}
	t.Cleanup(ta.stop)
	return ta
}

// groupEvent returns a BROADCAST with seq seqBase+i (0 for a local event)
// and a payload of n bytes.
func groupEvent(i int, local bool, n int) events.Event {
	seq := uint64(seqBase + i)
	if local {
		seq = 0
	}
	return events.Event{Seq: seq, Desc: events.GSBroadcast, Data: &events.Group{
		Name: "test", From: events.GroupMember{Node: 7, Member: 7, Name: "n7"}, MsgID: uint64(i), Payload: bytes.Repeat([]byte{byte(i)}, n),
	}}
}

// app is an application: a service with one handle whose callback for
// the given classes records what it gets, and a client feeding it.
type app struct {
	t       *testing.T
	c       *client.Client
	rec     *eventstest.Recorder
	svc     *events.Service
	mu      sync.Mutex // guards the fields below
	gaps    []client.Gap
	errs    []error       // OnDisconnect
	changed chan struct{} // closed and replaced when gaps or errs grow
}

func newApp(t *testing.T, a *testAgent, opts client.Options, classes ...events.Class) *app {
	t.Helper()
	ap := &app{t: t, rec: eventstest.NewRecorder(), svc: events.New(events.Options{}), changed: make(chan struct{})}
	h, err := ap.svc.Register()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range classes {
		if err := h.SetCallback(events.PriorityMed, c, ap.rec.Callback(c.String(), true)); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := h.ActivateChan()
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ch {
			h.HandleEvent()
		}
	}()
	opts.Service = ap.svc
	opts.Classes = classes
	if opts.Logger == nil {
		opts.Logger = testLogger(t).With("node", "client")
	}
	opts.MinBackoff, opts.MaxBackoff = 5*time.Millisecond, 50*time.Millisecond
	opts.OnGap = func(g client.Gap) {
		ap.mu.Lock()
		defer ap.mu.Unlock()
		ap.gaps = append(ap.gaps, g)
		close(ap.changed)
		ap.changed = make(chan struct{})
	}
	opts.OnDisconnect = func(err error) {
		ap.mu.Lock()
		defer ap.mu.Unlock()
		ap.errs = append(ap.errs, err)
		close(ap.changed)
		ap.changed = make(chan struct{})
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := client.Dial(ctx, a.dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ap.c = c
	t.Cleanup(func() {
		c.Close()
		ap.svc.Close()
	})
	return ap
}

// mine returns the recorded events the test published (seq above
// seqBase, or local group events).
func (ap *app) mine(n int) []events.Event {
	ap.t.Helper()
	var out []events.Event
	deadline := time.Now().Add(waitFor)
	for want := 1; ; want++ {
		calls := ap.rec.Wait(ap.t, want, time.Until(deadline))
		out = out[:0]
		for _, c := range calls {
			if c.Event.Seq > seqBase || (c.Event.Seq == 0 && c.Event.Desc.Class() == events.ClassGroup) {
				out = append(out, c.Event)
			}
		}
		if len(out) >= n {
			return out
		}
		want = len(calls)
	}
}

func (ap *app) disconnects() []error {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	return slices.Clone(ap.errs)
}

func (ap *app) gapsSeen() []client.Gap {
	ap.mu.Lock()
	defer ap.mu.Unlock()
	return slices.Clone(ap.gaps)
}

// waitDisconnects waits until OnDisconnect was called n times.
func (ap *app) waitDisconnects(n int) []error {
	ap.t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		ap.mu.Lock()
		errs, changed := slices.Clone(ap.errs), ap.changed
		ap.mu.Unlock()
		if len(errs) >= n {
			return errs
		}
		select {
		case <-changed:
		case <-deadline.C:
			ap.t.Fatalf("OnDisconnect called %d times, want %d", len(errs), n)
		}
	}
}

// seqs returns the events' seqs relative to seqBase (local events: -1).
func seqs(evs []events.Event) []int {
	out := make([]int, len(evs))
	for i, ev := range evs {
		out[i] = -1
		if ev.Seq != 0 {
			out[i] = int(ev.Seq - seqBase)
		}
	}
	return out
}

func span(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

// conns is a client dialer whose connections the test can cut and hold
// back.
type conns struct {
	mu   sync.Mutex // guards the fields below
	all  []net.Conn
	gate chan struct{} // when not nil, dials wait for it to close
}

func (cs *conns) dial(ctx context.Context, path string) (net.Conn, error) {
	cs.mu.Lock()
	gate := cs.gate
	cs.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	cs.mu.Lock()
	cs.all = append(cs.all, c)
	cs.mu.Unlock()
	return c, nil
}

func (cs *conns) last() net.Conn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.all[len(cs.all)-1]
}

func (cs *conns) count() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.all)
}

// hold makes later dials wait until the returned function is called.
func (cs *conns) hold() (release func()) {
	g := make(chan struct{})
	cs.mu.Lock()
	cs.gate = g
	cs.mu.Unlock()
	return func() {
		cs.mu.Lock()
		cs.gate = nil
		cs.mu.Unlock()
		close(g)
	}
}

// TestEventsExactlyOnceAcrossReconnect cuts the client's connection in
// the middle of the stream and holds its redial back while more events
// are published: it resumes from the agent's history and gets every
// cluster-wide event once, in order.
func TestEventsExactlyOnceAcrossReconnect(t *testing.T) {
	a := startAgent(t, "", nil)
	var cs conns
	ap := newApp(t, a, client.Options{Dial: cs.dial}, events.ClassGroup)
	for i := 1; i <= 50; i++ {
		a.stream.Publish(groupEvent(i, false, 100))
	}
	ap.mine(20)
	release := cs.hold()
	cs.last().Close() // the link drops under the client
	for i := 51; i <= 100; i++ {
		a.stream.Publish(groupEvent(i, false, 100))
	}
	release()
	a.stream.Publish(groupEvent(101, false, 100))
	got := ap.mine(101)
	if !slices.Equal(seqs(got), span(1, 101)) {
		t.Fatalf("events after a reconnect: %v", seqs(got))
	}
	if cs.count() < 2 {
		t.Fatal("the client never reconnected")
	}
	if errs := ap.disconnects(); len(errs) == 0 {
		t.Fatal("OnDisconnect was not called")
	}
	// Once more, without holding the redial back: cut while events flow.
	for i := 102; i <= 300; i++ {
		a.stream.Publish(groupEvent(i, false, 100))
		if i == 150 {
			cs.last().Close()
		}
	}
	got = ap.mine(300)
	if !slices.Equal(seqs(got), span(1, 300)) {
		t.Fatalf("events after a second reconnect: %v", seqs(got))
	}
	if gaps := ap.gapsSeen(); len(gaps) != 0 {
		t.Fatalf("gaps reported: %v", gaps)
	}
}

func TestQueries(t *testing.T) {
	view := events.Membership{Instance: 4, Members: []events.Node{
		{ID: 1, Name: "n1", BornOn: 1, Addr: netip.MustParseAddrPort("127.0.0.1:7946")},
		{ID: 2, Name: "n2", BornOn: 4, Addr: netip.MustParseAddrPort("127.0.0.2:7946")},
	}}
	view.Joined = view.Members[1:]
	conn := events.Connectivity{
		Interface:  events.Interface{Name: "subject, not in the reply"},
		Nodes:      view.Members, // not in the reply either
		Interfaces: []events.Interface{{Name: "lo", Addr: netip.MustParsePrefix("127.0.0.1/8"), Up: true}},
		Peers:      []events.Peer{{Node: view.Members[1], Eligible: true, Connected: true}},
	}
	a := startAgent(t, "", func(a *Agent) {
		a.clients.SetProviders(func() events.Membership { return view }, func() events.Connectivity { return conn })
	})
	ap := newApp(t, a, client.Options{}, events.ClassGroup)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	m, err := ap.c.Membership(ctx)
	if err != nil || m.Instance != 4 || !slices.Equal(m.Members, view.Members) || !slices.Equal(m.Joined, view.Joined) || len(m.Left) != 0 {
		t.Fatalf("Membership: %+v, %v", m, err)
	}
	c, err := ap.c.Connectivity(ctx)
	if err != nil || !slices.Equal(c.Interfaces, conn.Interfaces) || !slices.Equal(c.Peers, conn.Peers) || c.Interface != (events.Interface{}) || len(c.Nodes) != 0 {
		t.Fatalf("Connectivity: %+v, %v", c, err)
	}
	// Without providers the agent refuses, and the link stays.
	a.clients.SetProviders(nil, nil)
	if _, err := ap.c.Membership(ctx); !errors.Is(err, proto.ErrState) {
		t.Fatalf("Membership without a provider: %v, want code %d", err, proto.CodeState)
	}
	a.clients.SetProviders(func() events.Membership { return view }, nil)
	if m, err := ap.c.Membership(ctx); err != nil || m.Instance != 4 {
		t.Fatalf("Membership after a refusal: %+v, %v", m, err)
	}
}

// TestClientSurvivesAgentRestart: the agent stops (its clients get the
// SHUTDOWN event and a GOODBYE) and starts again on the same data dir; the
// client reconnects by itself and goes on receiving.
func TestClientSurvivesAgentRestart(t *testing.T) {
	a := startAgent(t, "", nil)
	ap := newApp(t, a, client.Options{}, events.ClassGroup, events.ClassMemb)
	a.stream.Publish(groupEvent(1, false, 1))
	ap.mine(1)
	a.stop()
	// The agent's last words: a local SHUTDOWN, then GOODBYE.
	deadline := time.Now().Add(waitFor)
	for n := 1; ; n++ {
		calls := ap.rec.Wait(t, n, time.Until(deadline))
		if slices.ContainsFunc(calls, func(c eventstest.Call) bool { return c.Event.Desc == events.MSShutdown && c.Event.Seq == 0 }) {
			break
		}
		n = len(calls)
	}
	if err := ap.waitDisconnects(1)[0]; !errors.Is(err, proto.ErrShutdown) {
		t.Fatalf("link ended with %v, want GOODBYE shutdown", err)
	}
	b := startAgent(t, a.dir, nil)
	// A query waits for the client's next link: it has reconnected and
	// subscribed when the answer comes.
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if _, err := ap.c.Membership(ctx); err != nil {
		t.Fatalf("the client did not reconnect to the restarted agent: %v", err)
	}
	b.stream.Publish(groupEvent(2, false, 1))
	if got := ap.mine(2); !slices.Equal(seqs(got), []int{1, 2}) {
		t.Fatalf("events across the agent's restart: %v", seqs(got))
	}
}

func TestDialNoAgent(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	_, err := client.Dial(ctx, t.TempDir(), client.Options{})
	if !errors.Is(err, proto.ErrSock) || !strings.Contains(err.Error(), client.SocketName) {
		t.Fatalf("Dial without an agent: %v", err)
	}
}

func TestSocketName(t *testing.T) {
	if filepath.Base(ClientSocket("x")) != client.SocketName {
		t.Fatalf("the agent listens on %s, the client library dials %s", ClientSocket("x"), client.SocketName)
	}
}

// TestResumeAfterAgentRestart is the regression test for the resume gap
// hidden after an agent restart: a client resuming after 0 from an agent
// restarted on the same data dir either gets the NEWVIEWs the first run
// published or is told of a gap; never silence.
func TestResumeAfterAgentRestart(t *testing.T) {
	bootstrap := func(c *Config) { c.Bootstrap = true }
	a := startAgentConfig(t, "", bootstrap, nil)
	first := newApp(t, a, client.Options{}, events.ClassMemb)
	var founded uint64 // the Seq of the first run's NEWVIEW
	deadline := time.Now().Add(waitFor)
	for n := 1; founded == 0; n++ {
		for _, c := range first.rec.Wait(t, n, time.Until(deadline)) {
			if c.Event.Desc == events.MSNewView && c.Event.Seq != 0 {
				founded = c.Event.Seq
			}
		}
	}
	first.c.Close()
	a.stop()

	b := startAgentConfig(t, a.dir, bootstrap, nil)
	ap := newApp(t, b, client.Options{Resume: true, After: 0}, events.ClassMemb)
	// Dial returns after the reply, and a gap is reported before it.
	if gaps := ap.gapsSeen(); len(gaps) > 0 {
		if g := gaps[0]; g.After != 0 || g.Floor < founded {
			t.Fatalf("gap %+v, want one after 0 covering the NEWVIEW at %d", g, founded)
		}
		return
	}
	deadline = time.Now().Add(waitFor)
	for n := 1; ; n++ {
		calls := ap.rec.Wait(t, n, time.Until(deadline))
		if slices.ContainsFunc(calls, func(c eventstest.Call) bool {
			return c.Event.Desc == events.MSNewView && c.Event.Seq == founded
		}) {
			return
		}
		n = len(calls)
	}
}
