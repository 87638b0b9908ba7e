package agent

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/eventstream"
	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/internal/logkey"
	"github.com/corralhq/corral/obs"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/peer"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// Agent is one running corral daemon.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	start time.Time

	peerCfg  *transport.Config // peer links (TLS, cluster key)
	localCfg *transport.Config // admin and client sockets (no TLS)
	nodes    *nodes
	cluster  *cluster
	pending  pending // JOIN and LEAVE requests awaiting answers
	ifaces   *ifaceWatch

	stream   *eventstream.Stream  // events for local clients
	clients  *eventstream.Server  // serves the client socket's links
	registry *prometheus.Registry // the agent's metrics; never the global registry
	metrics  *obs.Metrics
	http     *obs.Server // /metrics and /debug/pprof/; nil when off

	ln      net.Listener // peer listener
	adminLn net.Listener
	cliLn   net.Listener

	wg sync.WaitGroup // every goroutine the agent started

	dialCtx context.Context // Run's context, for dialers added later (corral join)

	stopReq  chan struct{} // closed to stop the agent: it left the cluster
	stopOnce sync.Once

	mu    sync.Mutex // guards local and dialCtx
	local map[*transport.Link]bool
}

// New prepares an agent: it creates the data directory, loads the cluster
// key and the node id, and opens every socket, so that errors in the
// configuration surface before Run.
func New(cfg Config, log *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: data dir: %w", err)
	}
	key, err := transport.ReadKeyFile(cfg.ClusterKeyFile)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.ID == 0 {
		if cfg.ID, err = loadNodeID(cfg.DataDir); err != nil {
			return nil, err
		}
	}
	ranges, _ := cfg.ranges()
	log = log.With(logkey.Node, cfg.Name, logkey.NodeID, cfg.ID)
	a := &Agent{
		cfg:     cfg,
		log:     log,
		start:   time.Now(),
		local:   make(map[*transport.Link]bool),
		stopReq: make(chan struct{}),
		nodes:   newNodes(cfg.ID, cfg.Peers, log),
	}
	// The events up to the recorded applied index were published by an
	// earlier run: the stream starts there, so that a client resuming
	// below it is told of a gap.
	state, _, err := readState(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	a.stream = eventstream.New(eventstream.DefaultLimits(), state.Applied, log)
	a.clients = eventstream.NewServer(a.stream, log)
	a.clients.SetProviders(a.membershipNow, a.connectivityNow)
	a.cluster = newCluster(a)
	a.ifaces = newIfaceWatch(bindHost(cfg.Bind))
	a.metrics = obs.NewMetrics(a.metricSources())
	a.registry = newRegistry(a.metrics)
	a.peerCfg = &transport.Config{
		Cluster: cfg.Cluster, NodeID: cfg.ID, NodeName: cfg.Name, Protocols: protos.All(), Ranges: ranges, Key: key,
		HandshakeTimeout: cfg.Handshake, HeartbeatInterval: cfg.Heartbeat, HeartbeatTimeout: cfg.DeadAfter,
		SourceIP: bindHost(cfg.Bind), Logger: logkey.WithSubsystem(log, "link"),
	}
	a.localCfg = &transport.Config{
		Cluster: cfg.Cluster, NodeID: cfg.ID, NodeName: cfg.Name, Protocols: protos.All(), Ranges: ranges,
		Serve:            []proto.ProtoID{proto.ProtoAdmin, proto.ProtoClient},
		HandshakeTimeout: cfg.Handshake, HeartbeatInterval: time.Second, HeartbeatTimeout: 10 * time.Second,
		Logger: logkey.WithSubsystem(log, "local"),
	}
	if a.ln, err = net.Listen("tcp", cfg.Bind); err != nil {
		return nil, fmt.Errorf("agent: listen for peers: %w", err)
	}
	if a.adminLn, err = listenUnix(AdminSocket(cfg.DataDir), 0o600); err != nil {
		a.ln.Close()
		return nil, err
	}
	if a.cliLn, err = listenUnix(ClientSocket(cfg.DataDir), 0o660); err != nil {
		a.ln.Close()
		a.adminLn.Close()
		return nil, err
	}
	if err := a.cluster.start(cfg.Bootstrap); err != nil {
		a.ln.Close()
		a.adminLn.Close()
		a.cliLn.Close()
		return nil, err
	}
	if cfg.HTTPAddr != "" {
		if a.http, err = obs.Listen(cfg.HTTPAddr, a.registry, log); err != nil {
			a.cluster.stop()
			a.ln.Close()
			a.adminLn.Close()
			a.cliLn.Close()
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	return a, nil
}

// Addr is the address peers reach this agent at.
func (a *Agent) Addr() net.Addr { return a.ln.Addr() }

// ID is this node's id.
func (a *Agent) ID() uint64 { return a.cfg.ID }

func bindHost(bind string) string {
	host, _, _ := net.SplitHostPort(bind)
	return host
}

// loadNodeID reads the node id kept in the data directory, making one up
// on first start.
func loadNodeID(dir string) (uint64, error) {
	path := datadir.NodeIDFile(dir)
	b, err := os.ReadFile(path)
	if err == nil {
		id, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || id == 0 {
			return 0, fmt.Errorf("%w: %s does not hold a node id", ErrConfig, path)
		}
		return id, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("agent: %w", err)
	}
	var buf [8]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return 0, fmt.Errorf("agent: node id: %w", err)
	}
	id := binary.LittleEndian.Uint64(buf[:])>>1 | 1 // never 0
	if err := os.WriteFile(path, []byte(strconv.FormatUint(id, 10)+"\n"), 0o600); err != nil {
		return 0, fmt.Errorf("agent: save node id: %w", err)
	}
	return id, nil
}

// Run serves until ctx is done, then says goodbye on every link, removes
// the sockets and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent running", "cluster", a.cfg.Cluster, "bind", a.ln.Addr().String(),
		"admin_socket", a.adminLn.Addr().String(), "client_socket", a.cliLn.Addr().String(), "peers", strings.Join(a.cfg.Peers, ","))
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	a.spawn(func() { a.cluster.run(runCtx) })
	a.spawn(func() { a.ifaces.run(runCtx, a.publish) })
	a.spawn(func() { a.acceptPeers(runCtx) })
	a.spawn(func() { a.acceptLocal(runCtx, a.adminLn) })
	a.spawn(func() { a.acceptLocal(runCtx, a.cliLn) })
	if a.http != nil {
		a.spawn(func() {
			if err := a.http.Run(runCtx); err != nil {
				a.log.Error("http server stopped", "err", err)
			}
		})
	}
	a.mu.Lock()
	a.dialCtx = runCtx
	a.mu.Unlock()
	for _, p := range a.cfg.Peers {
		a.spawn(func() { a.dialLoop(runCtx, p) })
	}
	select {
	case <-ctx.Done():
	case <-a.stopReq:
		a.log.Info("left the cluster")
	}
	stopRun()
	a.log.Info("agent shutting down")
	a.publish(events.Event{Desc: events.MSShutdown, Data: viewData(a.cluster.currentView())})
	a.stream.Close() // hands subscribed clients what was published, SHUTDOWN included, then says goodbye
	a.ln.Close()
	a.adminLn.Close()
	a.cliLn.Close()
	var closing sync.WaitGroup
	for _, l := range a.nodes.links() {
		closing.Go(func() { l.Close(proto.CodeShutdown, "agent shutting down") })
	}
	a.mu.Lock()
	for l := range a.local {
		closing.Go(func() { l.Close(proto.CodeShutdown, "agent shutting down") })
	}
	a.mu.Unlock()
	closing.Wait()
	a.cluster.stop()
	a.wg.Wait()
	os.Remove(AdminSocket(a.cfg.DataDir))
	os.Remove(ClientSocket(a.cfg.DataDir))
	return nil
}

func (a *Agent) spawn(f func()) {
	a.wg.Go(f)
}

func (a *Agent) acceptPeers(ctx context.Context) {
	for {
		conn, err := a.ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				a.log.Error("peer listener failed", "err", err)
			}
			return
		}
		a.spawn(func() {
			l, err := transport.Accept(ctx, conn, a.peerCfg)
			if err != nil {
				a.log.Warn("refused peer connection", "remote", conn.RemoteAddr().String(), "err", err.Error())
				return
			}
			a.runPeer(ctx, l, l.Peer().NodeID, "")
		})
	}
}

// runPeer registers a peer link and serves it until it ends.
func (a *Agent) runPeer(ctx context.Context, l *transport.Link, initiator uint64, addr string) *transport.Link {
	if addr == "" {
		addr = l.Peer().Addr.String()
	}
	kept, fresh := a.nodes.add(l, initiator, addr)
	if kept != l {
		l.Close(proto.CodeDup, "a link opened by the node with the smaller id is kept")
		return kept
	}
	if ctx.Err() != nil {
		l.Close(proto.CodeShutdown, "agent shutting down")
		return l
	}
	l.Start(a.handlePeer)
	if fresh {
		a.publishP2P(events.CSP2PEstablished, l.Peer())
		a.cluster.linksChanged()
	}
	<-l.Done()
	if a.nodes.remove(l) {
		a.publishP2P(events.CSP2PLost, l.Peer())
		a.cluster.linksChanged()
	}
	return l
}

// handlePeer receives peer protocol frames (PING and PONG are answered by
// the link). It runs on the link's reader goroutine.
func (a *Agent) handlePeer(l *transport.Link, f *proto.Frame) error {
	switch f.Opcode {
	case peer.OpRaft:
		return a.cluster.onRaft(l.Peer().NodeID, f.Body)
	case peer.OpJoin, peer.OpLeave:
		if f.Flags&proto.FlagReply != 0 {
			r, err := peer.ParseMemberReply(f.Body)
			if err != nil {
				return err
			}
			a.pending.done(f.MsgID, r)
			return nil
		}
		g := proto.Frame{Header: f.Header, Body: append([]byte(nil), f.Body...)}
		go a.cluster.onMemberRequest(l, &g)
		return nil
	case peer.OpNotMember:
		n, err := peer.ParseNotMember(f.Body)
		if err != nil {
			return err
		}
		a.cluster.onNotMember(l.Peer().NodeID, n)
		return nil
	}
	return proto.Errorf(proto.CodeOpcode, "peer opcode %#04x has no handler", f.Opcode)
}

// publish hands an event to the local clients. The stream is the one
// place that refuses (and logs) a cluster-wide event at or below the
// latest it has; after an eviction the log replays entries this node told
// in its earlier life, and those are refused there too.
func (a *Agent) publish(ev events.Event) {
	a.stream.Publish(ev)
}

// dialLoop keeps a link to the peer at addr, redialing with backoff.
func (a *Agent) dialLoop(ctx context.Context, addr string) {
	bo := transport.Backoff{Base: 50 * time.Millisecond, Max: a.cfg.ReconnectMax}
	reason := proto.ReasonJoin
	failing := false
	for ctx.Err() == nil {
		l, err := transport.Dial(ctx, addr, a.peerCfg, reason)
		if errors.Is(err, proto.ErrNoPeer) {
			// The node there has this node's id: it is this node itself
			// (its own address in --peers) or a copy; dialing again
			// cannot help.
			a.log.Warn("not dialing a peer with this node's id", "addr", addr, "err", err.Error())
			return
		}
		if err != nil {
			if !failing && ctx.Err() == nil {
				a.log.Warn("cannot reach peer", "addr", addr, "err", err.Error())
			}
			failing = true
			sleep(ctx, bo.Next())
			continue
		}
		if failing {
			a.log.Info("peer reachable again", "addr", addr)
		}
		failing = false
		bo.Reset()
		reason = proto.ReasonRejoin
		kept := a.runPeer(ctx, l, a.cfg.ID, addr)
		// Whichever link serves the node, wait for it to end before
		// dialing again.
		select {
		case <-kept.Done():
		case <-ctx.Done():
			return
		}
		sleep(ctx, bo.Next())
	}
}

// addPeer starts keeping a link to addr (corral join).
func (a *Agent) addPeer(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%w: peer %q: %v", ErrConfig, addr, err)
	}
	if !a.nodes.configure(addr) {
		return nil // already a peer
	}
	a.mu.Lock()
	ctx := a.dialCtx
	a.mu.Unlock()
	if ctx == nil {
		return errors.New("agent: not running")
	}
	a.spawn(func() { a.dialLoop(ctx, addr) })
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
