package groups

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/service"
	"github.com/corralhq/corral/transport"
)

// Config bounds the service. Zero fields take the defaults below.
type Config struct {
	// Window and WindowBytes bound the sends of one client link that are
	// in flight (accepted, not yet answered). A send beyond them is
	// refused with CodeTryAgain; a link with nothing in flight may always
	// send one message up to MaxPayload.
	Window      int
	WindowBytes int
	// TotalBytes bounds the payload of every link's sends in flight
	// together, so the agent's memory stays bounded however many clients
	// send.
	TotalBytes int
	// BatchBytes and BatchCmds bound one log entry.
	BatchBytes int
	BatchCmds  int
	// Grace is how long the session of a client whose link ended while
	// its process lives (it fell behind, or reconnects) waits for the
	// client to attach again before it is closed.
	Grace time.Duration
	// Pipeline is how many batches may be in flight at once.
	Pipeline int
	// Attempt bounds one proposal of a batch; a batch not applied by then
	// is proposed again under the same request id, which the log applies
	// once (a proposal forwarded to a lost leader is dropped silently).
	Attempt time.Duration
}

// Defaults of Config.
const (
	DefaultWindow      = 4096
	DefaultWindowBytes = 16 << 20
	DefaultTotalBytes  = 64 << 20
	DefaultBatchBytes  = MaxEntryPayload
	DefaultBatchCmds   = 8192
	DefaultGrace       = 5 * time.Second
	DefaultAttempt     = 3 * time.Second
	DefaultPipeline    = 4
)

func (c Config) withDefaults() Config {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Window, DefaultWindow)
	def(&c.WindowBytes, DefaultWindowBytes)
	def(&c.TotalBytes, DefaultTotalBytes)
	def(&c.BatchBytes, DefaultBatchBytes)
	def(&c.BatchCmds, DefaultBatchCmds)
	def(&c.Pipeline, DefaultPipeline)
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	if c.Attempt <= 0 {
		c.Attempt = DefaultAttempt
	}
	return c
}

// requestProposer is the part of rsm.NodeProposer the service needs: a
// batch retried after a lost proposal keeps its request id, so it is
// applied once.
type requestProposer interface {
	NextRequest() uint64
	ProposeRequest(ctx context.Context, id rsm.ID, request uint64, cmd []byte) (uint64, []byte, error)
}

// ErrNoDedupe is returned by New for a proposer without request ids.
var ErrNoDedupe = errors.New("groups: the cluster proposer has no request ids")

// Service is the group messaging service of one agent: the machine on the
// cluster log, and the client opcodes of the group range. Commands of all
// local clients are gathered into batches, one log entry each, proposed
// one at a time so every client's commands apply in the order it sent
// them.
type Service struct {
	deps service.Deps
	cfg  Config
	log  *slog.Logger
	m    *Machine
	prop requestProposer
	met  *metrics

	wake chan struct{} // cap 1: the queue has work
	run  uint64        // this run's id in the batch order (random)
	// nextN is the number of the last batch made; the batcher's only.
	nextN uint64
	wg    sync.WaitGroup

	goMu      sync.Mutex // guards goStopped; taken after mu, never before it
	goStopped bool       // Run is waiting for the goroutines: start no more

	mu sync.Mutex // guards the fields below and every session's and link's mutable fields
	// queue holds the commands waiting for the next batch, in arrival
	// order.
	queue []*pending
	// inflightBytes is the payload of every accepted send not yet answered.
	inflightBytes int
	sessions      map[uint64]*memberSession // by key
	links         map[*transport.Link]*link
	stopped       bool
}

// New returns the service; d.Cluster must be an *rsm.NodeProposer (or
// anything with request ids).
func New(d service.Deps, cfg Config) (*Service, error) {
	prop, ok := d.Cluster.(requestProposer)
	if !ok {
		return nil, ErrNoDedupe
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Service{
		deps:     d,
		cfg:      cfg.withDefaults(),
		log:      d.Log,
		m:        NewMachine(d.Log),
		prop:     prop,
		wake:     make(chan struct{}, 1),
		run:      newKey(),
		sessions: make(map[uint64]*memberSession),
		links:    make(map[*transport.Link]*link),
	}
	s.m.SetSelf(d.Self)
	s.met = newMetrics(s)
	if d.Metrics != nil {
		if err := s.met.register(d.Metrics); err != nil {
			return nil, fmt.Errorf("groups: %w", err)
		}
	}
	// The agent's previous run may have left sessions in the log whose
	// clients are gone with it: the first batch closes them.
	s.queue = append(s.queue, &pending{cmd: Cmd{Op: OpReset}, done: func(CmdResult, error) {}})
	return s, nil
}

// Name implements service.Service.
func (s *Service) Name() string { return "groups" }

// Machine implements service.Replicated.
func (s *Service) Machine() rsm.Machine { return s.m }

// ClientOps implements service.ClientServer: the group range.
func (s *Service) ClientOps() (lo, hi uint16) { return 0x0200, 0x02FF }

// ClientHandler implements service.ClientServer.
func (s *Service) ClientHandler() transport.Handler { return s.handle }

// Run implements service.Service: it proposes batches until ctx is done,
// then fails what is still queued and waits for its goroutines.
func (s *Service) Run(ctx context.Context) error {
	s.wg.Go(func() { s.batcher(ctx) })
	<-ctx.Done()
	s.mu.Lock()
	s.stopped = true
	for _, ss := range s.sessions {
		if ss.timer != nil {
			ss.timer.Stop()
		}
	}
	s.mu.Unlock()
	s.goMu.Lock()
	s.goStopped = true
	s.goMu.Unlock()
	s.wg.Wait()
	s.failQueued(proto.Errorf(proto.CodeShutdown, "agent shutting down"))
	return nil
}

// newKey draws a session key: random, so keys of this run never meet
// keys an earlier run of this agent left in the log.
func newKey() uint64 {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			panic(fmt.Sprintf("groups: system random source: %v", err))
		}
		if k := binary.LittleEndian.Uint64(b[:]); k != 0 {
			return k
		}
	}
}

// session is a member session: one client process connection, which
// outlives a link that ends while the process lives, for Grace.
type memberSession struct {
	key   uint64
	token uint64
	pid   uint32
	name  string

	member atomic.Uint64 // the member id once OPEN applied; 0 before

	// Guarded by Service.mu.
	link   *link       // nil while detached
	timer  *time.Timer // closes a detached session after Grace
	closed bool        // CLOSE queued: no further commands
}

// link is the service's state of one client link.
type link struct {
	l *transport.Link
	// sess is the link's session, set on its first JOIN or SEND or by
	// ATTACH; the event filter reads it without the service's lock.
	sess atomic.Pointer[memberSession]

	// Guarded by Service.mu.
	inflight      int
	inflightBytes int
	refused       uint64
}

// linkOf returns the state of l, creating it (and the goroutine that
// watches it end) on first use.
func (s *Service) linkOf(l *transport.Link) *link {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.linkOfLocked(l)
}

func (s *Service) linkOfLocked(l *transport.Link) *link {
	if k := s.links[l]; k != nil {
		return k
	}
	k := &link{l: l}
	s.links[l] = k
	if !s.stopped {
		s.wg.Go(func() { s.watch(k) })
	}
	return k
}

// watch waits for the link to end and then detaches or closes its session.
func (s *Service) watch(k *link) {
	<-k.l.Done()
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.links, k.l)
	ss := k.sess.Load()
	if ss == nil || ss.link != k || ss.closed {
		return
	}
	ss.link = nil
	reason := events.LeaveProcDown
	if errors.Is(k.l.Err(), proto.ErrBehind) {
		reason = events.LeaveBehind
	}
	if s.stopped || ss.pid == 0 || !processAlive(int(ss.pid)) {
		s.closeSessionLocked(ss, reason)
		return
	}
	// The process lives: it may attach again (a client that fell behind
	// reconnects and resumes).
	s.log.Debug("member detached; waiting for it to attach again", "member", ss.member.Load(), "pid", ss.pid, "grace", s.cfg.Grace)
	ss.timer = time.AfterFunc(s.cfg.Grace, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if ss.link == nil && !ss.closed && !s.stopped {
			s.log.Info("member did not attach again; closing its session", "member", ss.member.Load(), "pid", ss.pid)
			s.closeSessionLocked(ss, reason)
		}
	})
}

// closeSessionLocked queues the CLOSE of ss.
func (s *Service) closeSessionLocked(ss *memberSession, reason events.LeaveReason) {
	if ss.closed {
		return
	}
	ss.closed = true
	if ss.timer != nil {
		ss.timer.Stop()
	}
	s.enqueueLocked(&pending{cmd: Cmd{Op: OpClose, Key: ss.key, Reason: reason}, done: func(r CmdResult, err error) {
		s.mu.Lock()
		delete(s.sessions, ss.key)
		s.mu.Unlock()
	}})
}

// Gap is told of a link whose subscription resumed after events the
// agent no longer holds. If the link's member session is attached there,
// the member missed messages it was owed, so its session is closed
// (LEAVE, reason behind): a member never silently misses a message of its
// group.
func (s *Service) Gap(l *transport.Link) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.links[l]
	if k == nil {
		return
	}
	if ss := k.sess.Load(); ss != nil && ss.link == k && !ss.closed {
		s.log.Warn("member resumed after events it missed; closing its session", "member", ss.member.Load(), "pid", ss.pid)
		s.closeSessionLocked(ss, events.LeaveBehind)
	}
}

// LinkFilter returns the filter of group events for a subscription on l:
// a group event passes if it is a BROADCAST or names l's member among its
// recipients. Events of other classes pass. The eventstream calls it with
// its lock held; it takes only the machine's lock.
func (s *Service) LinkFilter(l *transport.Link) func(*events.Event) bool {
	k := s.linkOf(l)
	v2 := l.Peer().Version >= 2
	return func(ev *events.Event) bool {
		if ev.Desc.Class() != events.ClassGroup {
			return true
		}
		if !v2 {
			return false // the v1 client protocol has no group events
		}
		if ev.Desc == events.GSBroadcast {
			return true
		}
		ss := k.sess.Load()
		if ss == nil {
			return false
		}
		id := ss.member.Load()
		if id == 0 {
			// OPEN has applied before any event naming the member is
			// published, but the reply that records its id may come later.
			var ok bool
			if id, ok = s.m.Session(s.deps.Self, ss.key); !ok {
				return false
			}
			ss.member.Store(id)
		}
		g := ev.Group()
		return g != nil && contains(g.To, id)
	}
}

// contains reports whether the sorted ids hold id.
func contains(ids []uint64, id uint64) bool {
	lo, hi := 0, len(ids)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch {
		case ids[m] == id:
			return true
		case ids[m] < id:
			lo = m + 1
		default:
			hi = m
		}
	}
	return false
}

// metrics are the service's Prometheus collectors.
type metrics struct {
	groups, members        prometheus.GaugeFunc
	delivered, bytes       prometheus.CounterFunc
	sent                   prometheus.Counter
	refused                prometheus.Counter
	batches, batchCommands prometheus.Counter
	batchLatency           prometheus.Histogram
}

func newMetrics(s *Service) *metrics {
	return &metrics{
		groups: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "corral_groups", Help: "Groups with at least one member."},
			func() float64 { return float64(len(s.m.Groups())) }),
		members: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "corral_group_members", Help: "Members of all groups, counted once per group."},
			func() float64 {
				n := 0
				for _, g := range s.m.Groups() {
					n += g.Members
				}
				return float64(n)
			}),
		delivered: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "corral_group_messages_delivered_total",
			Help: "Group messages (multicast, unicast, reply) applied for members on this node, once per member; broadcasts are not counted."},
			func() float64 { n, _ := s.m.Delivered(); return float64(n) }),
		bytes: prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "corral_group_bytes_delivered_total",
			Help: "Payload bytes of those messages, once per member."},
			func() float64 { _, b := s.m.Delivered(); return float64(b) }),
		sent: prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_group_messages_sent_total",
			Help: "Group messages local clients sent that were committed."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_group_send_window_waits_total",
			Help: "Sends refused with try-again because the sender's window (or the agent's) was full."}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_group_batches_total",
			Help: "Log entries of group commands this agent proposed."}),
		batchCommands: prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_group_batch_commands_total",
			Help: "Group commands in the batches this agent proposed."}),
		batchLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "corral_group_batch_seconds",
			Help:    "Time from proposing a batch to its being applied on this node.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.groups, m.members, m.delivered, m.bytes, m.sent, m.refused, m.batches, m.batchCommands, m.batchLatency} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
