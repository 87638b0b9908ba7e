package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// These tests run a real Agent in the test process, publish into its event
// hub and receive through client.Client and the events API, or through raw
// client-protocol links. The agents are not bootstrapped, so they never
// apply a view; their own side still publishes local events (interface
// events): the tests publish group events, far above any sequence number
// of the agent's, and look at those.

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

// subscribers returns how many clients the hub serves.
func (h *eventHub) subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// groupEvent returns a BROADCAST with seq seqBase+i (0 for a local event)
// and a payload of n bytes.
func groupEvent(i int, local bool, n int) events.Event {
	seq := uint64(seqBase + i)
	if local {
		seq = 0
	}
	return events.Event{Seq: seq, Desc: events.GSBroadcast, Data: &events.Group{
		Name: "test", Node: events.Node{ID: 7, Name: "n7"}, MsgID: uint64(i), Payload: bytes.Repeat([]byte{byte(i)}, n),
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

// conns is a client dialer whose connections the test can cut, stall and
// hold back.
type conns struct {
	mu    sync.Mutex // guards the fields below
	all   []*stallConn
	gate  chan struct{} // when not nil, dials wait for it to close
	stall bool          // new connections start stalled
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
	sc := &stallConn{Conn: c, open: make(chan struct{})}
	close(sc.open)
	cs.mu.Lock()
	cs.all = append(cs.all, sc)
	cs.mu.Unlock()
	return sc, nil
}

func (cs *conns) last() *stallConn {
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

// stallConn is a connection whose reads can be stopped: a client that
// does not read its socket.
type stallConn struct {
	net.Conn
	mu   sync.Mutex    // guards open
	open chan struct{} // reads wait until it is closed
}

func (c *stallConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	open := c.open
	c.mu.Unlock()
	<-open
	return c.Conn.Read(p)
}

func (c *stallConn) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open = make(chan struct{})
}

func (c *stallConn) resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	close(c.open)
}

func TestEventsInOrder(t *testing.T) {
	a := startAgent(t, "", nil)
	ap := newApp(t, a, client.Options{}, events.ClassGroup)
	const n = 200
	var want []events.Event
	for i := 1; i <= n; i++ {
		ev := groupEvent(i, i%50 == 0, i)
		want = append(want, ev)
		a.hub.Publish(ev)
	}
	got := ap.mine(n)
	if len(got) != n {
		t.Fatalf("got %d events, want %d: %v", len(got), n, seqs(got))
	}
	for i := range want {
		w, g := want[i], got[i]
		if g.Seq != w.Seq || g.Desc != w.Desc || !bytes.Equal(g.Group().Payload, w.Group().Payload) || g.Group().MsgID != w.Group().MsgID || g.Group().Node != w.Group().Node {
			t.Fatalf("event %d: got %v %+v, want %v %+v", i, g, g.Group(), w, w.Group())
		}
	}
	if last := ap.c.LastSeq(); last != seqBase+n-1 {
		t.Fatalf("LastSeq %d, want %d (the last cluster-wide event; event %d is local)", last, seqBase+n-1, n)
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
		a.hub.Publish(groupEvent(i, false, 100))
	}
	ap.mine(20)
	release := cs.hold()
	cs.last().Close() // the link drops under the client
	for i := 51; i <= 100; i++ {
		a.hub.Publish(groupEvent(i, false, 100))
	}
	release()
	a.hub.Publish(groupEvent(101, false, 100))
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
		a.hub.Publish(groupEvent(i, false, 100))
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

// TestEventsGap: a client away while its events leave the agent's history
// is told so on its return, and gets what the history still holds.
func TestEventsGap(t *testing.T) {
	a := startAgent(t, "", func(a *Agent) {
		lim := defaultHubLimits
		lim.histEvents, lim.histKeepBytes = 8, 0
		a.hub.setLimits(lim)
	})
	var cs conns
	ap := newApp(t, a, client.Options{Dial: cs.dial}, events.ClassGroup)
	for i := 1; i <= 3; i++ {
		a.hub.Publish(groupEvent(i, false, 10))
	}
	ap.mine(3)
	release := cs.hold()
	cs.last().Close()
	for i := 4; i <= 30; i++ {
		a.hub.Publish(groupEvent(i, false, 10))
	}
	// The agent's own events may share the history; the floor says what
	// left it.
	a.hub.mu.Lock()
	floor := a.hub.floor
	a.hub.mu.Unlock()
	if floor < seqBase+20 {
		t.Fatalf("floor %d after 30 events through a history of 8", floor)
	}
	release()
	want := append(span(1, 3), span(int(floor-seqBase)+1, 30)...)
	got := ap.mine(len(want))
	if !slices.Equal(seqs(got), want) {
		t.Fatalf("events after the gap: %v, want %v", seqs(got), want)
	}
	if g, want := ap.gapsSeen(), (client.Gap{After: seqBase + 3, Floor: floor, Latest: seqBase + 30}); len(g) != 1 || g[0] != want {
		t.Fatalf("gaps %+v, want %+v", g, want)
	}
}

// TestEventsSlowClient: a client that stops reading is disconnected with
// GOODBYE CodeBehind while a fast one keeps receiving; the slow one then
// resumes and gets every event once.
func TestEventsSlowClient(t *testing.T) {
	a := startAgent(t, "", func(a *Agent) {
		lim := defaultHubLimits
		lim.lagEvents = 4
		a.hub.setLimits(lim)
	})
	fast := newApp(t, a, client.Options{}, events.ClassGroup)
	var cs conns
	slow := newApp(t, a, client.Options{Dial: cs.dial}, events.ClassGroup)
	if n := a.hub.subscribers(); n != 2 {
		t.Fatalf("%d subscribers, want 2", n)
	}
	cs.last().stop()
	// 512 KiB events: the link's send queue (8 MiB) and the socket fill
	// after a few dozen. The fast client gets each before the next is
	// published, so only the slow one falls behind.
	const n = 64
	kicked := 0
	for i := 1; i <= n; i++ {
		a.hub.Publish(groupEvent(i, false, 512<<10))
		// Publish decides at once. The agent keeps the link open for a
		// second to deliver the GOODBYE: read again, to receive it.
		if kicked == 0 && a.hub.subscribers() == 1 {
			kicked = i
			cs.last().resume()
		}
		fast.mine(i)
	}
	if kicked == 0 {
		t.Fatalf("the slow client was not disconnected after %d events of 512 KiB", n)
	}
	t.Logf("slow client disconnected at event %d", kicked)
	got := slow.mine(n)
	if !slices.Equal(seqs(got), span(1, n)) {
		t.Fatalf("slow client after resuming: %v", seqs(got))
	}
	errs := slow.disconnects()
	if len(errs) == 0 || !errors.Is(errs[0], proto.ErrBehind) || !strings.Contains(errs[0].Error(), "fell behind") {
		t.Fatalf("slow client's link ended with %v, want GOODBYE code %d (fell behind)", errs, proto.CodeBehind)
	}
	if errs := fast.disconnects(); len(errs) != 0 {
		t.Fatalf("fast client was disconnected: %v", errs)
	}
	if cs.count() < 2 {
		t.Fatal("the slow client did not reconnect")
	}
}

// TestEventsClassFilter: each client gets the classes it subscribed to,
// and only those.
func TestEventsClassFilter(t *testing.T) {
	a := startAgent(t, "", nil)
	groups := newApp(t, a, client.Options{}, events.ClassGroup)
	others := newApp(t, a, client.Options{}, events.ClassMemb, events.ClassComm)
	view := &events.Membership{Instance: 777, Members: []events.Node{{ID: 1, Name: "n1", BornOn: 1}}}
	conn := &events.Connectivity{Interface: events.Interface{Name: "test0"}}
	for i := 1; i <= 30; i++ {
		switch i % 3 {
		case 0:
			a.hub.Publish(groupEvent(i, false, 1))
		case 1:
			a.hub.Publish(events.Event{Seq: seqBase + uint64(i), Desc: events.MSNewView, Data: view})
		case 2:
			a.hub.Publish(events.Event{Desc: events.CSInterfaceAdded, Data: conn}) // local
		}
	}
	a.hub.Publish(groupEvent(31, false, 1))
	a.hub.Publish(events.Event{Seq: seqBase + 32, Desc: events.MSRecovered, Data: view})

	got := groups.mine(11)
	for _, c := range groups.rec.Calls() {
		if c.Event.Desc.Class() != events.ClassGroup {
			t.Fatalf("the group subscriber got %v", c.Event)
		}
	}
	if !slices.Equal(seqs(got), []int{3, 6, 9, 12, 15, 18, 21, 24, 27, 30, 31}) {
		t.Fatalf("group events: %v", seqs(got))
	}
	// The other subscriber: the test's NEWVIEWs and INTERFACE_ADDEDs, in
	// publish order, and nothing of the group class.
	var mine []string
	deadline := time.Now().Add(waitFor)
	for n := 1; ; n++ {
		calls := others.rec.Wait(t, n, time.Until(deadline))
		mine = mine[:0]
		done := false
		for _, c := range calls {
			ev := c.Event
			switch {
			case ev.Desc.Class() == events.ClassGroup:
				t.Fatalf("the membership and connectivity subscriber got %v", ev)
			case ev.Seq > seqBase:
				mine = append(mine, fmt.Sprintf("%v/%d", ev.Desc, ev.Seq-seqBase))
				done = done || ev.Desc == events.MSRecovered
			case ev.Desc == events.CSInterfaceAdded && ev.Connectivity().Interface.Name == "test0":
				mine = append(mine, "INTERFACE_ADDED")
			}
		}
		if done {
			break
		}
		n = len(calls)
	}
	var want []string
	for i := 1; i <= 30; i++ {
		switch i % 3 {
		case 1:
			want = append(want, fmt.Sprintf("NEWVIEW/%d", i))
		case 2:
			want = append(want, "INTERFACE_ADDED")
		}
	}
	want = append(want, "RECOVERED/32")
	if !slices.Equal(mine, want) {
		t.Fatalf("membership and connectivity events:\n got %v\nwant %v", mine, want)
	}
}

// TestLocalEventsOnlyToSubscribers: a local event reaches the clients
// subscribed when it is published; a client resuming later gets the
// cluster-wide history but not it.
func TestLocalEventsOnlyToSubscribers(t *testing.T) {
	a := startAgent(t, "", nil)
	early := newApp(t, a, client.Options{}, events.ClassGroup)
	a.hub.Publish(groupEvent(1, false, 1))
	a.hub.Publish(groupEvent(2, true, 1))
	a.hub.Publish(groupEvent(3, false, 1))
	if got := early.mine(3); !slices.Equal(seqs(got), []int{1, -1, 3}) {
		t.Fatalf("early client: %v", seqs(got))
	}
	late := newApp(t, a, client.Options{Resume: true, After: seqBase}, events.ClassGroup)
	a.hub.Publish(groupEvent(4, true, 1))
	a.hub.Publish(groupEvent(5, false, 1))
	if got := late.mine(4); !slices.Equal(seqs(got), []int{1, 3, -1, 5}) {
		t.Fatalf("late client resuming after seq 0 of the test: %v", seqs(got))
	}
	// Only new events: nothing of the history.
	fresh := newApp(t, a, client.Options{}, events.ClassGroup)
	a.hub.Publish(groupEvent(6, false, 1))
	if got := fresh.mine(1); !slices.Equal(seqs(got), []int{6}) {
		t.Fatalf("new client: %v", seqs(got))
	}
}

// rawLink opens a client-protocol link to the agent without the client
// library, to send what a client library would not.
func rawLink(t *testing.T, a *testAgent, h transport.Handler) *transport.Link {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", ClientSocket(a.dir))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &transport.Config{NodeName: "raw", Protocols: protos.All(), HeartbeatInterval: time.Second, HeartbeatTimeout: 10 * time.Second}
	l, err := transport.Connect(ctx, conn, cfg, proto.ReasonClient)
	if err != nil {
		t.Fatal(err)
	}
	if h == nil {
		h = func(*transport.Link, *proto.Frame) error { return nil }
	}
	l.Start(h)
	t.Cleanup(func() { l.Close(proto.CodeShutdown, "test done") })
	return l
}

func waitDone(t *testing.T, l *transport.Link) error {
	t.Helper()
	select {
	case <-l.Done():
		return l.Err()
	case <-time.After(waitFor):
		t.Fatal("the agent did not close the link")
		return nil
	}
}

// TestBadClientFrames: each malformed frame ends its own link with a
// GOODBYE carrying a typed error; the agent and a subscribed client go on.
func TestBadClientFrames(t *testing.T) {
	a := startAgent(t, "", nil)
	good := newApp(t, a, client.Options{}, events.ClassGroup)
	req := func(op uint16, flags proto.Flags, body []byte) *proto.Frame {
		return &proto.Frame{Header: proto.Header{Opcode: op, Flags: flags, MsgID: 9}, Body: body}
	}
	cd := proto.FlagCreate | proto.FlagDelete
	sub := wire.AppendSubscribe(nil, &wire.Subscribe{Classes: wire.AllClasses})
	for _, tc := range []struct {
		name string
		f    *proto.Frame
		code proto.Code
		text string
	}{
		{"empty class mask", req(wire.OpSubscribe, cd, wire.AppendSubscribe(nil, &wire.Subscribe{})), proto.CodeField, "class mask selects no class"},
		{"short subscribe", req(wire.OpSubscribe, cd, sub[:10]), proto.CodeField, "SUBSCRIBE: truncated"},
		{"unknown class", req(wire.OpSubscribe, cd, wire.AppendSubscribe(nil, &wire.Subscribe{Classes: 1 << 9})), proto.CodeField, "unknown classes"},
		{"query with body", req(wire.OpQueryMembership, cd, []byte{1}), proto.CodeField, "QUERY_MEMBERSHIP request: 1 unexpected bytes"},
		{"event from a client", req(wire.OpEvent, cd, mustBody(groupEvent(1, false, 1))), proto.CodeState, "events flow from the agent"},
		{"a reply", req(wire.OpSubscribe, cd|proto.FlagReply, wire.AppendSubscribeReply(nil, &wire.SubscribeReply{})), proto.CodeState, "clients send requests"},
		{"streaming flags", req(wire.OpSubscribe, proto.FlagCreate, sub), proto.CodeField, "want CREATE|DELETE"},
		{"unassigned opcode", req(0x0105, cd, nil), proto.CodeOpcode, "no opcode 0x0105"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := rawLink(t, a, nil)
			if err := l.Send(context.Background(), tc.f); err != nil {
				t.Fatal(err)
			}
			err := waitDone(t, l)
			var pe *proto.Error
			if !errors.As(err, &pe) || pe.Code != tc.code || !strings.Contains(err.Error(), tc.text) || !strings.Contains(err.Error(), "peer said goodbye") {
				t.Fatalf("link ended with %v, want a GOODBYE with code %d (%s) saying %q", err, tc.code, tc.code, tc.text)
			}
		})
	}
	// The good client is still subscribed and receiving.
	a.hub.Publish(groupEvent(1, false, 1))
	if got := good.mine(1); !slices.Equal(seqs(got), []int{1}) {
		t.Fatalf("good client: %v", seqs(got))
	}
	if errs := good.disconnects(); len(errs) != 0 {
		t.Fatalf("good client disconnected: %v", errs)
	}
}

func mustBody(ev events.Event) []byte {
	b, err := wire.AppendEvent(nil, &ev)
	if err != nil {
		panic(err)
	}
	return b
}

// TestSecondSubscribeRefused: a second SUBSCRIBE on a link is answered
// with ABORT; the link and its first subscription stay.
func TestSecondSubscribeRefused(t *testing.T) {
	a := startAgent(t, "", nil)
	frames := make(chan proto.Frame, 16)
	l := rawLink(t, a, func(_ *transport.Link, f *proto.Frame) error {
		g := *f
		g.Body = bytes.Clone(f.Body)
		frames <- g
		return nil
	})
	next := func() proto.Frame {
		select {
		case f := <-frames:
			return f
		case <-time.After(waitFor):
			t.Fatal("no frame from the agent")
			return proto.Frame{}
		}
	}
	sub := func(id uint64) {
		f := proto.Frame{Header: proto.Header{Opcode: wire.OpSubscribe, Flags: proto.FlagCreate | proto.FlagDelete, MsgID: id},
			Body: wire.AppendSubscribe(nil, &wire.Subscribe{Classes: wire.MaskOf(events.ClassGroup)})}
		if err := l.Send(context.Background(), &f); err != nil {
			t.Fatal(err)
		}
	}
	sub(1)
	if f := next(); f.Opcode != wire.OpSubscribe || f.MsgID != 1 || f.Flags != proto.FlagCreate|proto.FlagDelete|proto.FlagReply {
		t.Fatalf("answer to SUBSCRIBE: %+v", f.Header)
	}
	sub(2)
	f := next()
	st, err := proto.ParseStatus(f.Body, "ABORT")
	if f.MsgID != 2 || f.Flags&proto.FlagAbort == 0 || err != nil || st.Code != proto.CodeState || !strings.Contains(st.Text, "already subscribed") {
		t.Fatalf("answer to a second SUBSCRIBE: %+v %+v %v", f.Header, st, err)
	}
	a.hub.Publish(groupEvent(1, false, 1))
	f = next()
	ev, err := wire.ParseEvent(f.Body)
	if f.Opcode != wire.OpEvent || f.MsgID != 1 || err != nil || ev.Seq != seqBase+1 {
		t.Fatalf("EVENT after the refused SUBSCRIBE: %+v %v %v", f.Header, ev, err)
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
		a.hub.SetProviders(func() events.Membership { return view }, func() events.Connectivity { return conn })
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
	a.hub.SetProviders(nil, nil)
	if _, err := ap.c.Membership(ctx); !errors.Is(err, proto.ErrState) {
		t.Fatalf("Membership without a provider: %v, want code %d", err, proto.CodeState)
	}
	a.hub.SetProviders(func() events.Membership { return view }, nil)
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
	a.hub.Publish(groupEvent(1, false, 1))
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
	b.hub.Publish(groupEvent(2, false, 1))
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

// TestHubHistory checks the history bounds and the floor without links.
func TestHubHistory(t *testing.T) {
	h := newEventHub(slog.New(slog.DiscardHandler))
	lim := defaultHubLimits
	lim.histEvents, lim.histKeepBytes, lim.histMaxBytes = 4, 0, 1<<20
	h.setLimits(lim)
	for i := 1; i <= 10; i++ {
		h.Publish(groupEvent(i, i == 9, 10))
	}
	h.Publish(groupEvent(10, false, 10)) // not above the last seq: dropped
	if len(h.hist) != 4 || h.base != 7 || h.next != 11 || h.latest != seqBase+10 || h.floor != seqBase+6 {
		t.Fatalf("history of %d from %d to %d, latest %d, floor %d", len(h.hist), h.base, h.next, h.latest-seqBase, h.floor-seqBase)
	}
	// The byte bounds: keep more than histEvents while under
	// histKeepBytes, never more than histMaxBytes.
	size := len(mustBody(groupEvent(1, false, 1000)))
	lim.histEvents, lim.histKeepBytes, lim.histMaxBytes = 2, 5*size, 8*size
	h.setLimits(lim)
	for i := 11; i <= 30; i++ {
		h.Publish(groupEvent(i, false, 1000))
	}
	if len(h.hist) != 5 {
		t.Fatalf("history of %d events of %d bytes, want 5 (keep %d bytes)", len(h.hist), size, lim.histKeepBytes)
	}
	lim.histEvents, lim.histKeepBytes = 100, 100*size
	h.setLimits(lim)
	for i := 31; i <= 50; i++ {
		h.Publish(groupEvent(i, false, 1000))
	}
	if len(h.hist) != 8 {
		t.Fatalf("history of %d events of %d bytes, want 8 (at most %d bytes)", len(h.hist), size, lim.histMaxBytes)
	}
	// An event that cannot be encoded is dropped.
	h.Publish(events.Event{Seq: seqBase + 51, Desc: events.GSJoin, Data: &events.Group{Name: strings.Repeat("x", 300)}})
	if h.latest != seqBase+50 {
		t.Fatalf("an event too large to send moved latest to %d", h.latest-seqBase)
	}
	h.Close()
	h.Publish(groupEvent(52, false, 1))
	if h.latest != seqBase+50 {
		t.Fatal("published after Close")
	}
}
