package service

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/mesh"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/rsm"
	"github.com/corralhq/corral/transport"
)

// Deps is what the agent gives every service.
type Deps struct {
	Self uint64       // this node's id
	Log  *slog.Logger // scoped to the service: subsystem=<name>
	// Cluster proposes to the log; it stays valid across the node's lives.
	Cluster rsm.Proposer
	// Mesh sends to other nodes by id.
	Mesh *mesh.Mesh
	// Publish publishes a local-only event (Seq 0). Cluster-wide events
	// come from a machine's rsm.Result, never from here.
	Publish func(events.Event)
	// DataDir is the service's own directory, DATA-DIR/<name>.
	DataDir string
	// Metrics is the agent's registry; never the process-global one.
	Metrics prometheus.Registerer
	Now     func() time.Time
}

// Service is one part of the agent.
type Service interface {
	Name() string
	// Run serves until ctx is done and returns after every goroutine the
	// service started has ended. An error stops the agent.
	Run(ctx context.Context) error
}

// Replicated is a service with a machine on the cluster log.
type Replicated interface {
	Machine() rsm.Machine
}

// PeerServer serves the peer opcodes Lo..Hi; ServePeer runs on the link's
// reader goroutine and must not block.
type PeerServer interface {
	PeerOps() (lo, hi uint16)
	ServePeer(l *transport.Link, f *proto.Frame) error
}

// ClientServer serves the client-protocol opcodes Lo..Hi. ClientHandler is
// called once for each client connection; the handler it returns runs on
// that connection's reader goroutine and must not block. A service that
// keeps state per connection watches the link's Done.
type ClientServer interface {
	ClientOps() (lo, hi uint16)
	ClientHandler() transport.Handler
}

// AdminServer is ClientServer for the admin protocol.
type AdminServer interface {
	AdminOps() (lo, hi uint16)
	AdminHandler() transport.Handler
}

// HTTPServer adds handlers to the agent's HTTP server (when it runs).
type HTTPServer interface {
	RegisterHTTP(handle func(pattern string, h http.Handler))
}
