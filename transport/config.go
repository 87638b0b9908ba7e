package transport

import (
	"crypto/tls"
	"github.com/corralhq/corral/internal/acceptloop"
	"log/slog"
	"time"

	"github.com/corralhq/corral/proto"
)

// Defaults for Config fields left zero.
const (
	DefaultHandshakeTimeout  = 5 * time.Second
	DefaultHeartbeatInterval = 100 * time.Millisecond
	DefaultHeartbeatTimeout  = 500 * time.Millisecond
	DefaultQueueBytes        = 8 << 20
)

// Config describes this end of a link. One Config is shared by every link
// of an agent and must not change after first use.
type Config struct {
	Cluster  string // cluster name; both ends must agree
	NodeID   uint64
	NodeName string
	Features uint64
	// Protocols are the sub-protocols this end speaks (proto/protos.All
	// lists this build's), filled by the caller so that this package
	// depends on none of them. A link of a sub-protocol missing here is
	// refused at the handshake.
	Protocols []*proto.OpSet
	// Ranges are the versions spoken; nil means those of Protocols. Tests
	// and the hidden agent flags narrow them to play an older or newer
	// agent.
	Ranges proto.Ranges

	// ClusterID returns this node's cluster id (0: not known yet). It is
	// read at each handshake, since a joining node learns the id later. A
	// peer of another non-zero id is refused (CodeClusterID). Nil means 0.
	ClusterID func() uint64

	// Key is the cluster key. A nil Key makes a local link: no TLS and no
	// proof, for unix sockets whose file mode authenticates the caller,
	// and for measuring the framing alone.
	Key []byte
	// Certificate is this node's TLS certificate; if nil a self-signed one
	// is made on first use.
	Certificate *tls.Certificate

	// ListenAddr is the peer address this node listens on, sent in its
	// HELLO (session extension ExtListenAddr) so that a peer tells its
	// restart from a second node started with its id. Empty sends none.
	ListenAddr string
	// Admit, if set, is asked about every peer-protocol link once its
	// HELLO passed the checks, on both sides, before the link is
	// returned. An error refuses the link with a REJECT that carries it
	// (its code if it is a *proto.Error); the mesh uses it to refuse a
	// node id held by another live node (proto.CodeDupNode).
	Admit func(PeerInfo) error

	// SourceIP, when set, is the local address Dial connects from, so
	// peers and firewalls see the node's own address.
	SourceIP string

	// Serve lists the sub-protocols an accepting end serves; a HELLO whose
	// reason selects another is refused. Nil means the peer protocol.
	Serve []proto.ProtoID

	HandshakeTimeout  time.Duration
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	MaxPayload        int // largest payload accepted; 0 means proto.DefaultMaxPayload
	QueueBytes        int // send queue limit before Send blocks

	// Sessions, if set, keeps the sessions of peer links (version 4) so
	// that a link that reconnects resumes without loss (session.go). Make
	// it with NewSessions(QueueBytes). Nil: links stay unsequenced.
	Sessions *Sessions

	Logger *slog.Logger
	// Refusals, when set, carries the "refusing link" lines, keyed by the
	// peer's host, so a peer that keeps retrying a refused link (a wrong
	// key, say) logs one line a period with a count instead of one per try.
	Refusals *acceptloop.KeyedRateLog
}

func (c *Config) ranges() proto.Ranges {
	if c.Ranges != nil {
		return c.Ranges
	}
	rs := make(proto.Ranges, len(c.Protocols))
	for i, s := range c.Protocols {
		rs[i] = s.Range()
	}
	return rs
}

// opSet returns the opcode table of sub-protocol p, or nil if this end
// does not speak it.
func (c *Config) opSet(p proto.ProtoID) *proto.OpSet {
	for _, s := range c.Protocols {
		if s.Proto() == p {
			return s
		}
	}
	return nil
}

func (c *Config) serves(p proto.ProtoID) bool {
	if c.Serve == nil {
		return p == proto.ProtoPeer
	}
	for _, s := range c.Serve {
		if s == p {
			return true
		}
	}
	return false
}

func (c *Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (c *Config) handshakeTimeout() time.Duration {
	return orDefault(c.HandshakeTimeout, DefaultHandshakeTimeout)
}
func (c *Config) heartbeatInterval() time.Duration {
	return orDefault(c.HeartbeatInterval, DefaultHeartbeatInterval)
}
func (c *Config) heartbeatTimeout() time.Duration {
	return orDefault(c.HeartbeatTimeout, DefaultHeartbeatTimeout)
}

func (c *Config) queueBytes() int {
	if c.QueueBytes > 0 {
		return c.QueueBytes
	}
	return DefaultQueueBytes
}
