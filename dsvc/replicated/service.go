package replicated

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/clusterlog"
	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/internal/wireconv"
	"github.com/corralhq/corral/internal/attempt"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/service"
	"github.com/corralhq/corral/transport"
)

// Config bounds the service. Zero fields take the defaults below.
type Config struct {
	// MaxInFlight bounds the requests of all links being served at once;
	// one more is refused at once with CodeTryAgain, so the agent's memory
	// and goroutines stay bounded however many clients ask.
	MaxInFlight int
	// Attempt bounds one proposal of a write; one not applied by then is
	// proposed again under the same request id, which the log applies
	// once (a proposal forwarded to a lost leader is dropped silently).
	Attempt time.Duration
	// MaxReadIndexes bounds the read indexes being confirmed at once for
	// linearizable reads; reads arriving meanwhile share the next one.
	MaxReadIndexes int
}

// Defaults of Config.
const (
	DefaultMaxInFlight    = 1024
	DefaultAttempt        = 3 * time.Second
	DefaultMaxReadIndexes = 2
)

// ErrNoDedupe is returned by NewService for a proposer without request ids.
var ErrNoDedupe = errors.New("replicated: the cluster proposer has no request ids")

// requestProposer is the part of rsm.NodeProposer the service needs.
type requestProposer interface {
	NextRequest() uint64
	ProposeRequest(ctx context.Context, id rsm.ID, request uint64, cmd []byte) (uint64, []byte, error)
	ReadIndex(ctx context.Context) (uint64, error)
}

// Service is the data service of one agent: the machine on the cluster
// log and the client opcodes of the data-service range, which the
// cluster module (package dsvc/cluster) speaks.
type Service struct {
	cfg   Config
	log   *slog.Logger
	m     *Machine
	prop  requestProposer
	met   *metrics
	sem   chan struct{} // one token per request being served
	reads readBatcher

	mu      sync.Mutex // guards ctx, stopped; wg.Go only under it
	ctx     context.Context
	stopped bool
	wg      sync.WaitGroup

	// writes hands a write to an idle writer goroutine (see writer).
	writes chan writeJob
}

// writeJob is one write being served.
type writeJob struct {
	l     *transport.Link
	hdr   proto.Header
	req   wire.DSRequest
	start time.Time
}

// writerIdle is how long an idle writer goroutine waits for another write
// before it ends.
const writerIdle = 10 * time.Second

// NewService returns the service; d.Cluster must be an *rsm.NodeProposer
// (or anything with request ids).
func NewService(d service.Deps, cfg Config) (*Service, error) {
	prop, ok := d.Cluster.(requestProposer)
	if !ok {
		return nil, ErrNoDedupe
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.Attempt <= 0 {
		cfg.Attempt = DefaultAttempt
	}
	if cfg.MaxReadIndexes <= 0 {
		cfg.MaxReadIndexes = DefaultMaxReadIndexes
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: d.Log, m: New(), prop: prop, sem: make(chan struct{}, cfg.MaxInFlight),
		met: newMetrics(), writes: make(chan writeJob)}
	if d.Metrics != nil {
		if err := s.met.register(d.Metrics); err != nil {
			return nil, fmt.Errorf("replicated: %w", err)
		}
	}
	return s, nil
}

// Name implements service.Service.
func (s *Service) Name() string { return "dsvc" }

// Machine implements service.Replicated.
func (s *Service) Machine() rsm.Machine { return s.m }

// ClientOps implements service.ClientServer: the data-service range.
func (s *Service) ClientOps() (lo, hi uint16) { return 0x0300, 0x03FF }

// ClientHandler implements service.ClientServer.
func (s *Service) ClientHandler() transport.Handler { return s.handle }

// Run implements service.Service: it serves until ctx is done, then waits
// for the requests being served (they fail with ctx).
func (s *Service) Run(ctx context.Context) error {
	s.mu.Lock()
	s.ctx = ctx
	s.mu.Unlock()
	<-ctx.Done()
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// handle serves one frame of the data-service range on a client link's
// reader goroutine. It never waits on the network: a DSLocal lookup or
// count is answered here from the machine's state (short, under its read
// lock); a linearizable read joins the next read-index batch; a write is
// served on a goroutine of its own. Batched reads and writes are bounded
// by MaxInFlight; a local read holds the reader while it is answered, so
// a link has at most one. An error it returns ends the link.
func (s *Service) handle(l *transport.Link, f *proto.Frame) error {
	name := wire.Ops().Name(f.Opcode)
	switch {
	case f.Flags&(proto.FlagReply|proto.FlagAbort) != 0:
		return proto.Errorf(proto.CodeState, "a client sent a %s reply (flags %#x); clients send requests", name, f.Flags)
	case f.Flags != proto.FlagCreate|proto.FlagDelete:
		return proto.Errorf(proto.CodeField, "%s request with flags %#x, want CREATE|DELETE", name, f.Flags)
	}
	req, err := wire.ParseDSRequest(f.Opcode, f.Body)
	if err != nil {
		return err
	}
	start := time.Now()
	if isLocalRead(&req) {
		s.mu.Lock()
		ctx, stopped := s.ctx, s.stopped || s.ctx == nil
		s.mu.Unlock()
		if stopped {
			return l.Abort(context.Background(), f, proto.Errorf(proto.CodeShutdown, "agent shutting down"))
		}
		rep := s.lookup(&req, wireconv.FromKind(req.Target.Kind), s.m.Applied())
		s.answer(ctx, l, f.Header, &req, start, &rep)
		return nil
	}
	select {
	case s.sem <- struct{}{}:
	default:
		s.met.refused.Inc()
		return l.Abort(context.Background(), f, proto.Errorf(proto.CodeTryAgain,
			"%d data-service requests in flight on this agent; try again", s.cfg.MaxInFlight))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || s.ctx == nil {
		<-s.sem
		return l.Abort(context.Background(), f, proto.Errorf(proto.CodeShutdown, "agent shutting down"))
	}
	ctx, hdr := s.ctx, f.Header
	if isRead(&req) {
		s.addRead(ctx, &pendingRead{l: l, hdr: hdr, req: req, start: start})
		return nil
	}
	j := writeJob{l: l, hdr: hdr, req: req, start: start}
	select {
	case s.writes <- j:
	default:
		s.wg.Go(func() { s.writer(ctx, j) })
	}
	return nil
}

// writer serves j, then the writes handed to it while it waits idle, up
// to writerIdle, until ctx ends. Writers outlive a write so that a busy
// agent does not start a goroutine (and grow its stack) per write; they
// are at most MaxInFlight, since every write holds a token of s.sem.
// Each has its own context under ctx, so that the attempts' timeouts of
// hundreds of writes at once do not all register with ctx, under its one
// lock.
func (s *Service) writer(ctx context.Context, j writeJob) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	at := attempt.New(wctx, s.cfg.Attempt)
	defer at.Close()
	idle := time.NewTimer(writerIdle)
	defer idle.Stop()
	for {
		rep := s.serve(wctx, at, &j.req)
		s.answer(wctx, j.l, j.hdr, &j.req, j.start, &rep)
		<-s.sem
		j = writeJob{}
		idle.Reset(writerIdle)
		select {
		case j = <-s.writes:
		case <-idle.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// replyWait bounds how long an answer waits for room in a link's queue.
const replyWait = 10 * time.Second

// serve answers one write (reads are served by readAt); at times its
// proposals.
func (s *Service) serve(ctx context.Context, at *attempt.Deadlines, req *wire.DSRequest) wire.DSReply {
	t := &req.Target
	kind := wireconv.FromKind(t.Kind)
	switch req.Op {
	case wire.OpDSOpen:
		c := Command{Op: OpCreate, Loc: t.Location, Kind: kind, Container: t.Container}
		if kind == dsvc.Network {
			c.Prefix = wireconv.FromPrefix(req.Prefix)
		}
		return s.write(ctx, at, &c, kind)
	case wire.OpDSMkLoc:
		return s.write(ctx, at, &Command{Op: OpMkLoc, Loc: t.Location}, kind)
	case wire.OpDSRemove:
		return s.write(ctx, at, &Command{Op: OpRemove, Loc: t.Location, Kind: kind, Container: t.Container}, kind)
	case wire.OpDSAdd, wire.OpDSModify, wire.OpDSDelete, wire.OpDSImport:
		c := Command{Loc: t.Location, Kind: kind, Container: t.Container,
			DT: wireconv.FromDTs(req.DT), DN: wireconv.FromDNs(req.DN)}
		switch req.Op {
		case wire.OpDSAdd:
			c.Op = OpAdd
		case wire.OpDSModify:
			c.Op = OpModify
		case wire.OpDSDelete:
			c.Op = OpDelete
		default:
			c.Op = OpImport
		}
		return s.write(ctx, at, &c, kind)
	}
	return reply(dsvc.Errorf(dsvc.CodeUnsupported, "opcode %#04x", req.Op), 0)
}

func reply(err error, idx uint64) wire.DSReply {
	return wire.DSReply{Result: wireconv.Result(err, idx)}
}

// lookup answers DS_LOOKUP and DS_COUNT from the machine's state.
func (s *Service) lookup(req *wire.DSRequest, kind dsvc.Kind, idx uint64) wire.DSReply {
	t := &req.Target
	q, count := dsvc.Query(req.Query), int(req.Count)
	var rep wire.DSReply
	var err error
	switch kind {
	case dsvc.DHCPTab:
		var target *dsvc.DTRecord
		if req.HasTarget && len(req.DT) == 1 {
			r := wireconv.FromDT(&req.DT[0])
			target = &r
		}
		if req.Op == wire.OpDSCount {
			var n int
			n, err = s.m.CountDT(t.Location, t.Container, q, target)
			rep.Count = uint64(n)
		} else {
			var rs []dsvc.DTRecord
			rs, err = s.m.LookupDT(t.Location, t.Container, q, count, target)
			rep.DT = wireconv.DTs(rs)
		}
	default:
		var target *dsvc.DNRecord
		if req.HasTarget && len(req.DN) == 1 {
			r := wireconv.FromDN(&req.DN[0])
			target = &r
		}
		if req.Op == wire.OpDSCount {
			var n int
			n, err = s.m.CountDN(t.Location, t.Container, q, target)
			rep.Count = uint64(n)
		} else {
			var rs []dsvc.DNRecord
			rs, err = s.m.LookupDN(t.Location, t.Container, q, count, target)
			rep.DN = wireconv.DNs(rs)
		}
	}
	rep.Result = wireconv.Result(err, idx)
	return rep
}

// read makes the machine's state current for a read: it waits until this
// node has applied every entry committed before the call (read index), so
// the read is linearizable. It returns the index read at.
func (s *Service) read(ctx context.Context) (uint64, error) {
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, s.cfg.Attempt)
		idx, err := s.prop.ReadIndex(actx)
		cancel()
		if err == nil {
			return idx, nil
		}
		if ctx.Err() != nil {
			return 0, dsvc.Errorf(dsvc.CodeUnavailable, "agent shutting down")
		}
		if attempt == 1 || attempt%10 == 0 {
			s.log.Info("read index not confirmed yet; asking again", "attempt", attempt, "err", err.Error())
		}
		if !sleepCtx(ctx, retryWait(attempt)) {
			return 0, dsvc.Errorf(dsvc.CodeUnavailable, "agent shutting down")
		}
	}
}

// write proposes c and waits until it is applied; a proposal not applied
// within Attempt is proposed again under the same request id, so it
// applies once however often it is sent.
func (s *Service) write(ctx context.Context, at *attempt.Deadlines, c *Command, kind dsvc.Kind) wire.DSReply {
	if c.Op == OpAdd || c.Op == OpImport {
		// The generation of new signatures is drawn here, by the
		// proposer, so that every node's Apply computes the same one.
		c.Gen = uint16(rand.Uint32())
	}
	cmd, err := AppendCommand(nil, c)
	if err != nil {
		return reply(err, 0)
	}
	req := s.prop.NextRequest()
	for attempt := 1; ; attempt++ {
		idx, out, err := s.prop.ProposeRequest(at.Start(), rsm.DataSvc, req, cmd)
		at.Stop()
		if err == nil {
			r, err := ParseReply(out)
			if err != nil {
				return reply(dsvc.Errorf(dsvc.CodeInternal, "the machine's reply: %v", err), idx)
			}
			rep := wire.DSReply{Result: wire.DSResult{Code: uint8(r.Code), Index: idx, Message: r.Message}, Sig: r.Sig}
			if r.Code == dsvc.CodeSuccess && c.Op == OpCreate && kind == dsvc.Network {
				rep.Prefix = wireconv.Prefix(r.Prefix)
			}
			return rep
		}
		switch {
		case ctx.Err() != nil:
			// The outcome is unknown: the entry may still commit.
			return reply(dsvc.Errorf(dsvc.CodeUnavailable, "agent shutting down; the write may or may not apply"), 0)
		case errors.Is(err, rsm.ErrRequestExpired):
			// An earlier attempt may have applied before the log forgot
			// the request id: the outcome is unknown.
			return reply(dsvc.Errorf(dsvc.CodeUnavailable, "the write may or may not have applied: %v", err), 0)
		case errors.Is(err, clusterlog.ErrRejected):
			return reply(dsvc.Errorf(dsvc.CodeInternal, "the log refused the command: %v", err), 0)
		}
		if attempt == 1 || attempt%10 == 0 {
			s.log.Info("data-service write not applied yet; proposing it again", "attempt", attempt, "err", err.Error())
		}
		if !sleepCtx(ctx, retryWait(attempt)) {
			return reply(dsvc.Errorf(dsvc.CodeUnavailable, "agent shutting down; the write may or may not apply"), 0)
		}
	}
}

func retryWait(attempt int) time.Duration {
	return min(time.Duration(attempt)*20*time.Millisecond, 500*time.Millisecond)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func opName(op uint16) string {
	switch op {
	case wire.OpDSStatus:
		return "status"
	case wire.OpDSMkLoc:
		return "mklocation"
	case wire.OpDSList:
		return "list"
	case wire.OpDSOpen:
		return "open"
	case wire.OpDSRemove:
		return "remove"
	case wire.OpDSLookup:
		return "lookup"
	case wire.OpDSCount:
		return "count"
	case wire.OpDSAdd:
		return "add"
	case wire.OpDSModify:
		return "modify"
	case wire.OpDSDelete:
		return "delete"
	case wire.OpDSImport:
		return "import"
	}
	return strconv.Itoa(int(op))
}

func codeLabel(c uint8) string {
	if c == 0 {
		return "ok"
	}
	return dsvc.Code(c).String()
}

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// ops caches the series of each data-service opcode (index op -
	// OpDSStatus): WithLabelValues hashes the labels and looks the series
	// up under the vector's lock, for every request.
	ops     [wire.OpDSImport - wire.OpDSStatus + 1]opMetrics
	refused prometheus.Counter
	// readBatches counts read indexes asked for batches of linearizable
	// reads: requests over it is the batching's gain.
	readBatches prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "corral_dsvc_requests_total",
			Help: "Data-service requests served, by operation and result code."}, []string{"op", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "corral_dsvc_request_seconds",
			Help:    "Time to serve a data-service request: writes until applied on this node, reads including the read index.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"op"}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_dsvc_refused_total",
			Help: "Data-service requests refused with CodeTryAgain because MaxInFlight were being served."}),
		readBatches: prometheus.NewCounter(prometheus.CounterOpts{Name: "corral_dsvc_read_batches_total",
			Help: "Read indexes asked for batches of linearizable data-service reads (all reads arriving while one is confirmed share the next)."}),
	}
}

// opMetrics are one opcode's series, made at its first request.
type opMetrics struct {
	latency atomic.Pointer[prometheus.Observer]
	codes   [dsvc.CodeTableExists + 1]atomic.Pointer[prometheus.Counter]
}

// served counts a request of op answered with code after d.
func (m *metrics) served(op uint16, code uint8, d time.Duration) {
	i := int(op) - int(wire.OpDSStatus)
	if i < 0 || i >= len(m.ops) || int(code) >= len(m.ops[i].codes) {
		m.requests.WithLabelValues(opName(op), codeLabel(code)).Inc()
		m.latency.WithLabelValues(opName(op)).Observe(d.Seconds())
		return
	}
	o := &m.ops[i]
	c := o.codes[code].Load()
	if c == nil {
		v := m.requests.WithLabelValues(opName(op), codeLabel(code))
		c = &v
		o.codes[code].Store(c) // a racing request stores the same series
	}
	(*c).Inc()
	h := o.latency.Load()
	if h == nil {
		v := m.latency.WithLabelValues(opName(op))
		h = &v
		o.latency.Store(h)
	}
	(*h).Observe(d.Seconds())
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.refused, m.readBatches} {
		if err := r.Register(c); err != nil {
			return err
		}
	}
	return nil
}
