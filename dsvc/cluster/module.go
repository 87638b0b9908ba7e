package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/corralhq/corral/dsvc"
	"github.com/corralhq/corral/dsvc/internal/wireconv"
	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/proto"
	wire "github.com/corralhq/corral/proto/client"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// The module's name and container version.
const (
	Name    = "cluster"
	Version = 1
)

// MaxLocation is the longest location, in bytes (the wire's limit).
const MaxLocation = wire.DSMaxLocation

// ErrNotSent is wrapped in the error of a request that never reached the
// agent (no agent at the socket, a failed handshake): unlike any other
// CodeUnavailable, the request certainly did not apply.
var ErrNotSent = errors.New("cluster: request not sent")

// importBatch is how many records one DS_IMPORT carries.
const importBatch = 4096

// Module is the cluster module. Its zero value is not usable; call New.
type Module struct {
	log   *slog.Logger
	local atomic.Bool // reads=local: lookups without read index

	mu     sync.Mutex      // guards the fields below
	socket string          // the agent's client socket
	link   *transport.Link // the current link; nil before the first call or after it ended
	cfg    *transport.Config
}

var _ dsvc.Module = (*Module)(nil)

// New returns the module, speaking to the agent of the default data
// directory ($CORRAL_DATA_DIR, else /var/lib/corral) until Configure says
// otherwise.
func New(log *slog.Logger) *Module {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir := datadir.Dir()
	log = log.With("subsystem", "dsvc/cluster")
	return &Module{log: log, socket: datadir.ClientSocket(dir),
		cfg: &transport.Config{NodeName: "dsvc", Protocols: protos.All(), HandshakeTimeout: 5 * time.Second,
			HeartbeatInterval: time.Second, HeartbeatTimeout: 10 * time.Second, Logger: log}}
}

func (m *Module) Name() string          { return Name }
func (m *Module) Version() int          { return Version }
func (m *Module) APIVersion() int       { return dsvc.APIVersion }
func (m *Module) Synch() dsvc.SynchType { return dsvc.SynchNone } // the log orders every write

// Configure takes comma-separated settings: socket=PATH (the agent's
// client socket), data-dir=DIR (the agent's data directory: its socket),
// reads=local (lookups read this agent's replica without a read index:
// faster, and may miss writes committed elsewhere moments ago) or
// reads=linearizable (the default).
func (m *Module) Configure(config string) error {
	socket, local := "", false
	for _, kv := range strings.Split(config, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		switch {
		case !ok || v == "":
			return dsvc.Errorf(dsvc.CodeModuleConfig, "cluster: config %q: want key=value", kv)
		case k == "socket":
			socket = v
		case k == "data-dir":
			socket = datadir.ClientSocket(v)
		case k == "reads" && (v == "local" || v == "linearizable"):
			local = v == "local"
		default:
			return dsvc.Errorf(dsvc.CodeModuleConfig, "cluster: config %q: keys are socket, data-dir, reads=local|linearizable", kv)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if socket != "" && socket != m.socket {
		m.socket = socket
		if m.link != nil {
			m.link.Close(proto.CodeShutdown, "module reconfigured")
			m.link = nil
		}
	}
	m.local.Store(local)
	return nil
}

// Close ends the module's link to the agent.
func (m *Module) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.link != nil {
		m.link.Close(proto.CodeShutdown, "module closed")
		m.link = nil
	}
}

// clean is the canonical spelling of a location: a name in the cluster
// store, cleaned like a slash-separated path.
func clean(location string) (string, error) {
	l := strings.TrimSpace(location)
	if l == "" {
		return "", dsvc.Errorf(dsvc.CodeBadPath, "empty location")
	}
	if strings.ContainsRune(l, 0) {
		return "", dsvc.Errorf(dsvc.CodeBadPath, "location holds a NUL byte")
	}
	l = path.Clean(l)
	if len(l) > MaxLocation {
		return "", dsvc.Errorf(dsvc.CodeBadPath, "location of %d bytes (at most %d)", len(l), MaxLocation)
	}
	return l, nil
}

// LocToken implements dsvc.Module.
func (m *Module) LocToken(location string) (string, error) { return clean(location) }

// linkNow returns the current link, dialling one if there is none.
func (m *Module) linkNow(ctx context.Context) (*transport.Link, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.link != nil {
		select {
		case <-m.link.Done():
			m.link = nil
		default:
			return m.link, nil
		}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", m.socket)
	if err != nil {
		return nil, &dsvc.Error{Code: dsvc.CodeUnavailable, Detail: "no cluster agent at " + m.socket, Err: errors.Join(ErrNotSent, err)}
	}
	l, err := transport.Connect(ctx, conn, m.cfg, proto.ReasonClient)
	if err != nil {
		return nil, &dsvc.Error{Code: dsvc.CodeUnavailable, Detail: "handshake with the agent at " + m.socket, Err: errors.Join(ErrNotSent, err)}
	}
	if l.Peer().Version < 4 {
		l.Close(proto.CodeVersion, "the data service needs client protocol version 4")
		return nil, &dsvc.Error{Code: dsvc.CodeUnavailable, Err: ErrNotSent,
			Detail: fmt.Sprintf("the agent at %s speaks client protocol version %d; the data service needs 4", m.socket, l.Peer().Version)}
	}
	l.Start(func(_ *transport.Link, f *proto.Frame) error {
		return proto.Errorf(proto.CodeState, "unexpected %s from the agent", wire.Ops().Name(f.Opcode))
	})
	m.link = l
	return l, nil
}

// call sends req and returns the agent's reply. A read that fails with
// the link is asked again once on a new link; a write is not (it may have
// applied): it fails with CodeUnavailable, outcome unknown.
func (m *Module) call(ctx context.Context, op string, req *wire.DSRequest) (wire.DSReply, error) {
	buf := getBuf()
	defer putBuf(buf)
	body, err := wire.AppendDSRequest((*buf)[:0], req)
	*buf = body
	if err != nil {
		return wire.DSReply{}, &dsvc.Error{Code: dsvc.CodeInval, Op: op, Detail: "encode request", Err: err}
	}
	read := req.Op == wire.OpDSLookup || req.Op == wire.OpDSCount || req.Op == wire.OpDSStatus ||
		req.Op == wire.OpDSList || req.Op == wire.OpDSOpen && req.Target.Flags&uint8(dsvc.Create) == 0
	for try := 0; ; try++ {
		l, err := m.linkNow(ctx)
		if err != nil {
			return wire.DSReply{}, err
		}
		rf, err := l.Call(ctx, &proto.Frame{Header: proto.Header{Opcode: req.Op}, Body: body})
		if err != nil {
			if errors.Is(err, transport.ErrClosed) && read && try == 0 && ctx.Err() == nil {
				continue
			}
			if ctx.Err() != nil {
				return wire.DSReply{}, &dsvc.Error{Code: dsvc.CodeUnavailable, Op: op, Detail: "no answer from the agent in time", Err: ctx.Err()}
			}
			return wire.DSReply{}, wireconv.FromProto(op, err)
		}
		rep, err := wire.ParseDSReply(req.Op, req.Target.Kind, rf.Body)
		if err != nil {
			l.Close(proto.CodeField, "bad data-service reply")
			return wire.DSReply{}, &dsvc.Error{Code: dsvc.CodeInternal, Op: op, Detail: "the agent's reply", Err: err}
		}
		return rep, wireconv.Err(op, rep.Result)
	}
}

// bufPool recycles request bodies: a link copies a frame into its send
// queue before Call returns, so the body is free again once call is done.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// maxPooled bounds the bodies kept: an import's are not worth holding.
const maxPooled = 16 << 10

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= maxPooled {
		bufPool.Put(b)
	}
}

func target(kind dsvc.Kind, flags uint8, loc, container string) (wire.DSTarget, error) {
	l, err := clean(loc)
	return wire.DSTarget{Kind: wireconv.Kind(kind), Flags: flags, Location: l, Container: container}, err
}

// Status implements dsvc.Module.
func (m *Module) Status(ctx context.Context, location string) error {
	t, err := target(0, 0, location, "")
	if err != nil {
		return err
	}
	_, err = m.call(ctx, "status", &wire.DSRequest{Op: wire.OpDSStatus, Target: t})
	return err
}

// MkLocation implements dsvc.Module.
func (m *Module) MkLocation(ctx context.Context, location string) error {
	t, err := target(0, 0, location, "")
	if err != nil {
		return err
	}
	_, err = m.call(ctx, "mklocation", &wire.DSRequest{Op: wire.OpDSMkLoc, Target: t})
	return err
}

func (m *Module) list(ctx context.Context, kind dsvc.Kind, location string) ([]string, error) {
	t, err := target(kind, 0, location, "")
	if err != nil {
		return nil, err
	}
	rep, err := m.call(ctx, "list", &wire.DSRequest{Op: wire.OpDSList, Target: t})
	return rep.Names, err
}

func (m *Module) remove(ctx context.Context, kind dsvc.Kind, location, container string) error {
	t, err := target(kind, 0, location, container)
	if err != nil {
		return err
	}
	_, err = m.call(ctx, "remove", &wire.DSRequest{Op: wire.OpDSRemove, Target: t})
	return err
}

// ListDT implements dsvc.Module.
func (m *Module) ListDT(ctx context.Context, location string) ([]string, error) {
	return m.list(ctx, dsvc.DHCPTab, location)
}

// ListDN implements dsvc.Module.
func (m *Module) ListDN(ctx context.Context, location string) ([]string, error) {
	return m.list(ctx, dsvc.Network, location)
}

// RemoveDT implements dsvc.Module.
func (m *Module) RemoveDT(ctx context.Context, location, container string) error {
	return m.remove(ctx, dsvc.DHCPTab, location, container)
}

// RemoveDN implements dsvc.Module.
func (m *Module) RemoveDN(ctx context.Context, location, container string) error {
	return m.remove(ctx, dsvc.Network, location, container)
}

// open checks the container exists, or creates it (Create).
func (m *Module) open(ctx context.Context, kind dsvc.Kind, location, container string, p netip.Prefix, f dsvc.OpenFlags) (*handle, error) {
	t, err := target(kind, uint8(f&dsvc.Create), location, container)
	if err != nil {
		return nil, err
	}
	req := wire.DSRequest{Op: wire.OpDSOpen, Target: t}
	if kind == dsvc.Network {
		req.Prefix = wireconv.Prefix(p)
	}
	rep, err := m.call(ctx, "open", &req)
	if err != nil {
		return nil, err
	}
	h := &handle{m: m, t: t}
	h.t.Flags = 0
	if kind == dsvc.Network {
		h.net = wireconv.FromPrefix(rep.Prefix)
		if f&dsvc.Create != 0 {
			h.net = p
		}
	}
	return h, nil
}

// OpenDT implements dsvc.Module.
func (m *Module) OpenDT(ctx context.Context, location, container string, f dsvc.OpenFlags) (dsvc.DTHandle, error) {
	h, err := m.open(ctx, dsvc.DHCPTab, location, container, netip.Prefix{}, f)
	if err != nil {
		return nil, err
	}
	return (*dtHandle)(h), nil
}

// OpenDN implements dsvc.Module.
func (m *Module) OpenDN(ctx context.Context, location, container string, p netip.Prefix, f dsvc.OpenFlags) (dsvc.DNHandle, error) {
	h, err := m.open(ctx, dsvc.Network, location, container, p, f)
	if err != nil {
		return nil, err
	}
	return (*dnHandle)(h), nil
}

// String names the module and its agent, for logs.
func (m *Module) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return fmt.Sprintf("cluster(%s)", m.socket)
}
