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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/cluster"
	"github.com/corralhq/corral/dsvc/replicated"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/eventstream"
	"github.com/corralhq/corral/groups"
	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/internal/logkey"
	"github.com/corralhq/corral/membership"
	"github.com/corralhq/corral/mesh"
	"github.com/corralhq/corral/netmon"
	"github.com/corralhq/corral/obs"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/service"
	"github.com/corralhq/corral/sharedaddr"
	"github.com/corralhq/corral/sharedaddr/addrsvc"
	"github.com/corralhq/corral/sharedaddr/kernel"
	"github.com/corralhq/corral/transport"
)

// Agent is one running corral daemon: the parts below, built by New and
// run by Run.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	start time.Time

	peerCfg  *transport.Config // peer links (TLS, cluster key)
	localCfg *transport.Config // admin and client sockets (no TLS)

	mesh                *mesh.Mesh
	cluster             *cluster.Cluster
	ifaces              *netmon.Watch
	stream              *eventstream.Stream // events for local clients
	clients             *eventstream.Server // serves the event opcodes of client links
	groups              *groups.Service     // group messaging
	services            []service.Service   // in start order
	clientOps, adminOps opMux

	registry *prometheus.Registry // the agent's metrics; never the global registry
	metrics  *obs.Metrics
	http     *obs.Server // /metrics and /debug/pprof/; nil when off

	adminLn net.Listener
	cliLn   net.Listener

	stopReq  chan struct{} // closed to stop the agent: it left the cluster
	stopOnce sync.Once

	leaves sync.WaitGroup // admin LEAVE requests being carried out

	reloaded reloadState // what Reload changed (SIGHUP)

	mu    sync.Mutex // guards local
	local map[*transport.Link]bool

	sapath *dataPath      // the shared addresses' kernel data path; nil when off
	uspath *userspacePath // their user-space fallback; nil when off

	routedMu sync.Mutex          // guards routed
	routed   map[uint64]struct{} // nodes told P2P_ESTABLISHED by route, not by link
}

// New prepares an agent: it creates the data directory, loads the cluster
// key and the node id, opens the log and every socket, so that errors in
// the configuration surface before Run.
func New(cfg Config, log *slog.Logger) (a *Agent, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	sockMode, _ := cfg.clientSocketMode()
	sockGroup, err := lookupGroup(cfg.ClientSocketGroup)
	if err != nil {
		return nil, err
	}
	if err := openDataDir(cfg.DataDir, sockMode, sockGroup); err != nil {
		return nil, err
	}
	if err := checkKeyFile(cfg.ClusterKeyFile, cfg.AllowOpenKeyFile, log); err != nil {
		return nil, err
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
	a = &Agent{
		cfg:     cfg,
		log:     log,
		start:   time.Now(),
		local:   make(map[*transport.Link]bool),
		stopReq: make(chan struct{}),
		ifaces:  netmon.New(bindHost(cfg.Bind)),
	}
	var closers []func()
	defer func() {
		if err != nil {
			for i := len(closers) - 1; i >= 0; i-- {
				closers[i]()
			}
		}
	}()

	a.metrics = obs.NewMetrics(a.metricSources())
	a.registry = newRegistry(a.metrics)
	a.peerCfg = &transport.Config{
		Cluster: cfg.Cluster, NodeID: cfg.ID, NodeName: cfg.Name, Protocols: protos.All(), Ranges: ranges, Key: key,
		HandshakeTimeout: cfg.Handshake, HeartbeatInterval: cfg.Heartbeat, HeartbeatTimeout: cfg.DeadAfter,
		SourceIP: bindHost(cfg.Bind), Logger: logkey.WithSubsystem(log, "link"),
		ClusterID: a.clusterID,
	}
	a.localCfg = &transport.Config{
		Cluster: cfg.Cluster, NodeID: cfg.ID, NodeName: cfg.Name, Protocols: protos.All(), Ranges: ranges,
		Serve:            []proto.ProtoID{proto.ProtoAdmin, proto.ProtoClient},
		HandshakeTimeout: cfg.Handshake, HeartbeatInterval: time.Second, HeartbeatTimeout: 10 * time.Second,
		Logger: logkey.WithSubsystem(log, "local"),
	}

	txEpoch, err := nextTxEpoch(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	routeSeqno, err := nextRouteSeqno(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	meshLog := logkey.WithSubsystem(log, "mesh")
	ln, err := net.Listen("tcp", cfg.Bind)
	if err != nil {
		return nil, fmt.Errorf("agent: listen for peers: %w", err)
	}
	closers = append(closers, func() { ln.Close() })
	a.mesh = mesh.New(mesh.Config{
		Self: cfg.ID, Link: a.peerCfg, Listener: ln, Peers: cfg.Peers, ReconnectMax: cfg.ReconnectMax,
		MaxHandshakes: cfg.MaxHandshakes, MaxHandshakesPerIP: cfg.MaxHandshakesPerIP,
		ForgetAfter: cfg.ForgetAfter,
		OnLink:      a.onLink, OnRoute: a.onRoute, LinkCost: cfg.linkCostFunc(),
		TxEpoch: txEpoch, OnLinkFail: a.onLinkFail, ResumeWindow: cfg.resumeWindow(),
		RouteSeqno: &routeSeqno,
		OnRouteSeqno: func(s uint16) {
			if err := saveRouteSeqno(cfg.DataDir, s); err != nil {
				meshLog.Error("routing seqno not saved: a restart may advertise below it", "seqno", s, "err", err)
			}
		},
		Logger: meshLog,
	})

	// The stream starts at the index the log was applied to: those events
	// were published by an earlier run, and a client resuming below it is
	// told of a gap.
	lim := eventstream.DefaultLimits()
	lim.CallbackTimeout = cfg.CallbackTimeout
	a.stream = eventstream.New(lim, 0, logkey.WithSubsystem(log, "eventstream"))
	a.cluster, err = cluster.New(cluster.Config{
		Self: cfg.ID, Name: cfg.Name, Addr: ln.Addr().String(), DataDir: cfg.DataDir, Bootstrap: cfg.Bootstrap,
		Tick: cfg.Tick, ElectionTicks: cfg.ElectionTicks, Heartbeat: cfg.Heartbeat,
		HeartbeatTimeout: cfg.DeadAfter, RemoveAfter: cfg.RemoveAfter, MaxVoters: cfg.MaxVoters,
		SnapshotEvery: cfg.SnapshotEvery, SnapshotKeep: cfg.SnapshotKeep,
		Mesh: a.mesh, Events: a.stream, Connectivity: a.connectivityOf,
		OnFsync: a.metrics.ObserveSync, Logger: logkey.WithSubsystem(log, "cluster"),
	})
	if err != nil {
		return nil, err
	}

	// The services, in start order; each plugs in by its capabilities. A
	// new service is one line here: its constructor, given its Deps.
	a.clients = eventstream.NewServer(a.stream, a.deps("eventstream").Log)
	a.clients.SetProviders(a.membershipNow, a.connectivityNow)
	if a.groups, err = groups.New(a.deps("groups"), groups.Config{}); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.clients.SetLinkFilter(func(l *transport.Link) eventstream.Filter { return a.groups.LinkFilter(l) })
	a.clients.SetOnGap(a.groups.Gap)
	ds, err := replicated.NewService(a.deps("dsvc"), replicated.Config{})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var sa *addrsvc.Service
	scfg := ownStack(log, cfg.SharedStack)
	usBind, _ := userspaceBind(cfg.SharedUserspace) // checked by Validate
	if cfg.SharedUserspace != "" && scfg.Walk != nil {
		// The fallback's applications listen on the node's own address;
		// its flows are the proxy's, never moved: no exceptions.
		scfg.Walk = userspaceWalk(scfg.Walk, scfg.Stack, usBind, a.selfIP, a.agentPorts, func() *addrsvc.State { return sa.Source().State() })
		scfg.Recheck = -1
	}
	if sa, err = addrsvc.New(a.deps("sharedaddr"), scfg); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.services = []service.Service{a.clients, a.groups, ds, sa}
	if cfg.SharedIface != "" {
		a.sapath = a.newDataPath(sa)
	}
	if cfg.SharedUserspace != "" {
		a.uspath = a.newUserspacePath(sa, usBind)
	}
	for _, s := range a.services {
		if r, ok := s.(service.Replicated); ok {
			a.cluster.AddMachine(r.Machine())
		}
		if c, ok := s.(service.ClientServer); ok {
			lo, hi := c.ClientOps()
			a.clientOps.add(lo, hi, c.ClientHandler)
		}
		if c, ok := s.(service.AdminServer); ok {
			lo, hi := c.AdminOps()
			a.adminOps.add(lo, hi, c.AdminHandler)
		}
		if p, ok := s.(service.PeerServer); ok {
			lo, hi := p.PeerOps()
			a.mesh.Handle(lo, hi, p.ServePeer)
		}
	}
	a.serveEchoOn(a.mesh)
	if cfg.ForceNewCluster {
		if err := a.forceNewCluster(); err != nil {
			return nil, err
		}
	}
	if err := a.cluster.Open(); err != nil {
		return nil, err
	}
	closers = append(closers, func() { a.cluster.Close() })
	// Every event of the entries applied before start was published by an
	// earlier run: the stream starts above the last Seq they could have.
	a.stream.Skip(events.SeqOf(a.cluster.AppliedAtStart(), 1<<events.SeqShift-1))
	a.cluster.Register(a.mesh)
	// The shared-address service serves ADDR_ADD … ADDR_LIST, inside the
	// agent's own range.
	a.adminOps.add(0x0000, admin.OpAddrAdd-1, func() transport.Handler { return a.handleAdmin })
	a.adminOps.add(admin.OpAddrList+1, 0x01FF, func() transport.Handler { return a.handleAdmin })

	if a.adminLn, err = listenUnix(datadir.AdminSocket(cfg.DataDir), 0o600, noGroup); err != nil {
		return nil, err
	}
	closers = append(closers, func() { a.adminLn.Close() })
	if a.cliLn, err = listenUnix(datadir.ClientSocket(cfg.DataDir), sockMode, sockGroup); err != nil {
		return nil, err
	}
	closers = append(closers, func() { a.cliLn.Close() })
	if cfg.HTTPAddr != "" {
		if a.http, err = obs.Listen(cfg.HTTPAddr, a.registry, log); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		for _, s := range a.services {
			if h, ok := s.(service.HTTPServer); ok {
				h.RegisterHTTP(a.http.Handle)
			}
		}
	}
	return a, nil
}

// ownStack configures the shared-address service with the agent's
// network namespace: what a shared address of stack 0 means, and where it
// observes listeners. Where namespaces are not known, stack 0 and none.
// id, when not 0, is the stack id configured for the namespace.
func ownStack(log *slog.Logger, id uint64) addrsvc.Config {
	st, err := sharedaddr.Current(nil, log)
	if err != nil {
		log.Warn("shared addresses: no stack id for the agent's namespace", "err", err.Error())
		return addrsvc.Config{Stack: id}
	}
	if id == 0 {
		id = uint64(st.ID())
	}
	return addrsvc.Config{Stack: id, Bucket: kernel.Bucket, Walk: func(ctx context.Context, fn func(sharedaddr.TCPInfo) bool) error {
		return st.WalkTCP(ctx, fn, nil)
	}}
}

// deps are what the agent hands the service called name.
func (a *Agent) deps(name string) service.Deps {
	return service.Deps{
		Self:    a.cfg.ID,
		Log:     logkey.WithSubsystem(a.log, name),
		Cluster: a.cluster.Proposer(),
		Mesh:    a.mesh,
		Publish: a.publish,
		DataDir: filepath.Join(a.cfg.DataDir, name),
		Metrics: a.registry,
		Now:     time.Now,
	}
}

// Addr is the address peers reach this agent at.
func (a *Agent) Addr() net.Addr { return a.mesh.Addr() }

// ID is this node's id.
func (a *Agent) ID() uint64 { return a.cfg.ID }

func (a *Agent) clusterID() uint64 {
	if a.cluster == nil {
		return 0
	}
	return a.cluster.ClusterID()
}

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

// part is one thing Run starts; parts stop in the reverse order.
type part struct {
	name string
	run  func(ctx context.Context) error
	// stopping, if set, runs before the part's context is cancelled.
	stopping func()
}

// Run serves until ctx is done (or the node left the cluster), then stops
// every part in the reverse of the order it started them and returns. An
// error of a part (the log cannot be written, say) stops the agent too and
// is returned.
func (a *Agent) Run(ctx context.Context) error {
	a.log.Info("agent running", "cluster", a.cfg.Cluster, "bind", a.Addr().String(),
		"admin_socket", a.adminLn.Addr().String(), "client_socket", a.cliLn.Addr().String(), "peers", strings.Join(a.cfg.Peers, ","))
	parts := []part{
		{name: "netmon", run: func(ctx context.Context) error { a.ifaces.Run(ctx, a.publish); return nil }},
		{name: "cluster", run: a.cluster.Run},
		{name: "mesh", run: a.mesh.Run},
	}
	if a.http != nil {
		parts = append(parts, part{name: "http", run: a.http.Run})
	}
	for _, s := range a.services {
		parts = append(parts, part{name: s.Name(), run: s.Run})
	}
	if a.sapath != nil {
		parts = append(parts, part{name: "sharedaddr-kernel", run: a.sapath.run})
	}
	if a.uspath != nil {
		parts = append(parts, part{name: "sharedaddr-userspace", run: a.uspath.run})
	}
	parts = append(parts, part{name: "local", run: a.serveLocal, stopping: a.stopLocal})

	failed := make(chan error, len(parts))
	type running struct {
		part
		cancel context.CancelFunc
		done   chan struct{}
	}
	var rs []running
	for _, p := range parts {
		pctx, cancel := context.WithCancel(context.Background())
		r := running{part: p, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			if err := p.run(pctx); err != nil && pctx.Err() == nil {
				failed <- partError(p.name, err)
			}
		}()
		rs = append(rs, r)
	}
	var err error
	select {
	case <-ctx.Done():
	case <-a.stopReq:
		a.log.Info("left the cluster")
	case err = <-failed:
		// The error itself is Run's result, which the caller reports
		// (corral agent prints it as its last line): said once.
		a.log.Error("stopping: a part of the agent failed")
	}
	a.log.Info("agent shutting down")
	for i := len(rs) - 1; i >= 0; i-- {
		r := rs[i]
		if r.stopping != nil {
			r.stopping()
		}
		r.cancel()
		<-r.done
	}
	os.Remove(datadir.AdminSocket(a.cfg.DataDir))
	os.Remove(datadir.ClientSocket(a.cfg.DataDir))
	return err
}

// publish hands a local event to the clients.
func (a *Agent) publish(ev events.Event) { a.stream.Publish(ev) }

// onLink is told of every node's first link up and last link down.
func (a *Agent) onLink(ev mesh.LinkEvent) {
	d := events.CSP2PLost
	if ev.Up {
		d = events.CSP2PEstablished
	}
	if ev.Up {
		// The link's events take over from the route's.
		a.routedMu.Lock()
		delete(a.routed, ev.Peer.NodeID)
		a.routedMu.Unlock()
	}
	a.publishP2P(d, ev.Peer)
	a.cluster.OnLink(ev)
	if a.sapath != nil {
		a.sapath.poke()
	}
}

// onRoute is told when a node becomes reachable or unreachable by route.
func (a *Agent) onRoute(ev mesh.RouteEvent) {
	if a.cluster != nil {
		a.cluster.OnRoute(ev)
	}
	a.routeP2P(ev)
}

// stopLocal runs first at shutdown: SHUTDOWN to the clients, which get
// what was published before their links close.
func (a *Agent) stopLocal() {
	v := a.cluster.View()
	a.publish(events.Event{Desc: events.MSShutdown, Data: membership.ViewData(v)})
	a.stream.Close()
}

// partError names the part that failed unless its error starts with that
// name already ("cluster: …"), which would print it twice.
func partError(name string, err error) error {
	if strings.HasPrefix(err.Error(), name+": ") {
		return fmt.Errorf("agent: %w", err)
	}
	return fmt.Errorf("agent: %s: %w", name, err)
}
