package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/corralhq/corral/eventstream"
	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/mesh"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/protos"
	"github.com/corralhq/corral/transport"
)

// Config is an agent's configuration. Each field is also a flag of
// `corral agent`, and a key of the TOML config file with the flag's name.
type Config struct {
	Cluster string   `toml:"cluster"`
	Name    string   `toml:"name"`
	ID      uint64   `toml:"id"`
	Bind    string   `toml:"bind"`
	Peers   []string `toml:"peers"`
	// LinkCost sets the routing cost of the links to some peers, as
	// "ID=COST" (1..65534); the others cost mesh.DefaultLinkCost. A
	// cheaper path is preferred; the links need not form a full mesh.
	LinkCost       []string      `toml:"link-cost"`
	DataDir        string        `toml:"data-dir"`
	ClusterKeyFile string        `toml:"cluster-key-file"`
	Heartbeat      time.Duration `toml:"heartbeat-interval"`
	DeadAfter      time.Duration `toml:"heartbeat-timeout"`
	Handshake      time.Duration `toml:"handshake-timeout"`
	ReconnectMax   time.Duration `toml:"reconnect-max"`
	// ResumeWindow is how long the transactions over a lost peer link
	// wait for it to reconnect and resume (mesh.Config.ResumeWindow); 0
	// is the default, mesh.DefaultResumeWindow (1s); negative turns
	// resume off (they fail with LINKFAIL at once).
	ResumeWindow time.Duration `toml:"resume-window"`
	// CallbackTimeout bounds how long the node-wide dispatch of client
	// protocol v3 waits for a client's DONE of an event; a later client
	// is disconnected (CodeTimeout).
	CallbackTimeout time.Duration `toml:"callback-timeout"`
	// MaxHandshakes and MaxHandshakesPerIP bound the peer connections not
	// yet authenticated, in all and from one source IP; more are closed
	// at once.
	MaxHandshakes      int `toml:"max-handshakes"`
	MaxHandshakesPerIP int `toml:"max-handshakes-per-ip"`
	// Bootstrap founds a new cluster with this node as its first member
	// when the data dir holds no log. Exactly one node of a new cluster
	// gets it; the others join that one.
	Bootstrap bool `toml:"bootstrap"`

	// Local access. ClientSocketGroup (a group name or gid), when set, is
	// given the client socket so that applications in that group reach
	// the agent; the data dir then lets that group traverse it (0710).
	// ClientSocketMode is the client socket's mode, in octal. The admin
	// socket stays 0600 whatever these say.
	ClientSocketGroup string `toml:"client-socket-group"`
	ClientSocketMode  string `toml:"client-socket-mode"`
	// AllowOpenKeyFile starts with a cluster key file readable by group or
	// others, with a warning, instead of refusing it.
	AllowOpenKeyFile bool `toml:"allow-open-key-file"`
	// LogLevel is debug, info, warn or error; SIGHUP reloads it.
	LogLevel string `toml:"log-level"`

	// Tick is the cluster log's clock; ElectionTicks of silence from the
	// leader start an election.
	Tick          time.Duration `toml:"raft-tick"`
	ElectionTicks int           `toml:"election-ticks"`
	// RemoveAfter is how long the leader waits, after a member's link went
	// down, before it removes the member from the view.
	RemoveAfter time.Duration `toml:"remove-after"`
	// MaxVoters caps the voting members; nodes that join beyond it are
	// non-voting members, which receive the log but do not vote.
	MaxVoters int `toml:"max-voters"`
	// SnapshotEvery is how many applied entries the cluster log takes a
	// snapshot after (0: clusterlog's default); SnapshotKeep how many
	// entries before a snapshot it keeps for followers a little behind
	// (0: none).
	SnapshotEvery uint64 `toml:"snapshot-every"`
	SnapshotKeep  uint64 `toml:"snapshot-keep"`
	// ForgetAfter is how long a node whose links all ended stays in the
	// link table (corral members) before it is dropped; 0 keeps it.
	ForgetAfter time.Duration `toml:"forget-after"`
	// ForceNewCluster restarts this node as a cluster of one from its own
	// log, for a cluster that lost its quorum for good (README, "Disaster
	// recovery"). A flag only, never a key of the file: it is done once.
	ForceNewCluster bool `toml:"-"`
	// PeerVersions narrows the peer protocol versions spoken, as "MIN..MAX".
	// It exists to try version refusal with real agents; leave it empty.
	PeerVersions string `toml:"peer-versions"`
	// HTTPAddr, when set, is the HOST:PORT of the HTTP server for
	// /metrics and /debug/pprof/; empty leaves it off.
	HTTPAddr string `toml:"http-addr"`
	// SharedIface is the interface of the agent's network namespace on
	// the segment shared addresses live on: where an owner holds them and
	// sends gratuitous ARPs. Empty (the default) leaves the kernel data
	// path off: nothing is installed, and no root is needed.
	SharedIface string `toml:"shared-iface"`
	// SharedUserspace, when set, turns on the user-space fallback of the
	// data path instead (sharedaddr/userspace; needs no root): the owner
	// of a shared address relays the connections to its service ports to
	// the serving nodes with a PROXY v2 header. It says what the proxy
	// binds: "shared" for the shared address itself (with IP_FREEBIND, so
	// before keepalived or the cloud has put it on this host), or an IP
	// address of this host that the shared address's traffic reaches it
	// on — not the node's own address, where the applications listen
	// for the proxy. It excludes SharedIface.
	SharedUserspace string `toml:"shared-userspace"`
	// SharedStack, when not 0, is the stack id the agent's own namespace
	// has for shared addresses instead of its nsfs inode. Every node
	// serving an address must give the same: agents in namespaces of
	// their own (containers, test labs) have different inodes.
	SharedStack uint64 `toml:"shared-stack"`
}

// Defaults returns the configuration an agent starts from.
func Defaults() Config {
	host, _ := os.Hostname()
	c := Config{
		Cluster:       "corral",
		Name:          host,
		Bind:          "127.0.0.1:7946",
		Heartbeat:     transport.DefaultHeartbeatInterval,
		DeadAfter:     transport.DefaultHeartbeatTimeout,
		Handshake:     transport.DefaultHandshakeTimeout,
		ReconnectMax:  2 * time.Second,
		Tick:          25 * time.Millisecond,
		ElectionTicks: 10,
		MaxVoters:     5,
		ForgetAfter:   24 * time.Hour,

		MaxHandshakes:      mesh.DefaultMaxHandshakes,
		MaxHandshakesPerIP: mesh.DefaultMaxHandshakesPerIP,

		CallbackTimeout: eventstream.DefaultCallbackTimeout,
	}
	// The tools look in the same place: $CORRAL_DATA_DIR or /var/lib/corral.
	c.DataDir = datadir.Dir()
	c.ClientSocketMode = "0660"
	c.LogLevel = "info"
	return c
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("agent: bad configuration")

// LoadFile reads a TOML config file over cfg. Unknown keys are refused, so
// a misspelt setting is an error instead of a silent default.
func LoadFile(path string, cfg *Config) error {
	md, err := toml.DecodeFile(path, cfg)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("%w: %s: unknown keys %s", ErrConfig, path, strings.Join(keys, ", "))
	}
	return nil
}

// Validate checks cfg and fills in what can be derived.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	if c.Cluster == "" || len(c.Cluster) > proto.MaxNameLen {
		return bad("cluster name must be 1..%d bytes", proto.MaxNameLen)
	}
	if c.Name == "" || len(c.Name) > proto.MaxNameLen {
		return bad("node name must be 1..%d bytes", proto.MaxNameLen)
	}
	if c.DataDir == "" {
		return bad("--data-dir is required")
	}
	if _, _, err := net.SplitHostPort(c.Bind); err != nil {
		return bad("--bind %q: %v", c.Bind, err)
	}
	for _, p := range c.Peers {
		if _, _, err := net.SplitHostPort(p); err != nil {
			return bad("peer %q: %v", p, err)
		}
	}
	if _, err := c.linkCosts(); err != nil {
		return err
	}
	if c.Heartbeat <= 0 || c.DeadAfter <= c.Heartbeat {
		return bad("heartbeat-timeout (%v) must exceed heartbeat-interval (%v) > 0", c.DeadAfter, c.Heartbeat)
	}
	if c.Handshake <= 0 || c.ReconnectMax <= 0 {
		return bad("handshake-timeout and reconnect-max must be positive")
	}
	if c.CallbackTimeout <= 0 {
		return bad("callback-timeout (%v) must be positive", c.CallbackTimeout)
	}
	if c.SharedUserspace != "" {
		if c.SharedIface != "" {
			return bad("shared-iface (the kernel data path) and shared-userspace (the user-space fallback) exclude each other: give one")
		}
		if _, err := userspaceBind(c.SharedUserspace); err != nil {
			return bad("shared-userspace: %v", err)
		}
	}
	if c.MaxHandshakes < 1 || c.MaxHandshakesPerIP < 1 || c.MaxHandshakesPerIP > c.MaxHandshakes {
		return bad("max-handshakes (%d) and max-handshakes-per-ip (%d) must be at least 1, per IP at most the total", c.MaxHandshakes, c.MaxHandshakesPerIP)
	}
	if c.Tick <= 0 || c.ElectionTicks < 2 {
		return bad("raft-tick must be positive and election-ticks at least 2")
	}
	if c.RemoveAfter < 0 {
		return bad("remove-after must not be negative")
	}
	if c.ForgetAfter < 0 {
		return bad("forget-after must not be negative")
	}
	if c.MaxVoters < 1 {
		return bad("max-voters must be at least 1")
	}
	if c.HTTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
			return bad("http-addr %q: %v", c.HTTPAddr, err)
		}
	}
	if c.ClusterKeyFile == "" {
		c.ClusterKeyFile = datadir.ClusterKeyFile(c.DataDir)
	}
	if _, err := c.ranges(); err != nil {
		return err
	}
	if _, err := c.clientSocketMode(); err != nil {
		return err
	}
	if c.LogLevel != "" {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(c.LogLevel)); err != nil {
			return bad("log-level %q: want debug, info, warn or error", c.LogLevel)
		}
	}
	return nil
}

// clientSocketMode parses ClientSocketMode; empty is 0660.
func (c *Config) clientSocketMode() (os.FileMode, error) {
	if c.ClientSocketMode == "" {
		return 0o660, nil
	}
	m, err := strconv.ParseUint(c.ClientSocketMode, 8, 32)
	if err != nil || m > 0o777 || m&0o600 != 0o600 {
		return 0, fmt.Errorf("%w: client-socket-mode %q: want octal permission bits with owner read and write, e.g. 0660", ErrConfig, c.ClientSocketMode)
	}
	return os.FileMode(m), nil
}

func (c *Config) ranges() (proto.Ranges, error) {
	rs := protos.Ranges()
	if c.PeerVersions == "" {
		return rs, nil
	}
	lo, hi, ok := strings.Cut(c.PeerVersions, "..")
	a, err1 := strconv.ParseUint(lo, 10, 8)
	b, err2 := strconv.ParseUint(hi, 10, 8)
	if !ok || err1 != nil || err2 != nil || a == 0 || a > b {
		return nil, fmt.Errorf("%w: peer-versions %q: want MIN..MAX", ErrConfig, c.PeerVersions)
	}
	for i := range rs {
		if rs[i].Proto == proto.ProtoPeer {
			rs[i].Min, rs[i].Max = uint8(a), uint8(b)
		}
	}
	return rs, nil
}

// AdminSocket and ClientSocket are the paths of the local sockets
// (internal/datadir keeps the layout).
func AdminSocket(dataDir string) string  { return datadir.AdminSocket(dataDir) }
func ClientSocket(dataDir string) string { return datadir.ClientSocket(dataDir) }

// linkCosts parses LinkCost.
func (c *Config) linkCosts() (map[uint64]uint16, error) {
	out := map[uint64]uint16{}
	for _, kv := range c.LinkCost {
		k, v, ok := strings.Cut(kv, "=")
		id, err1 := strconv.ParseUint(strings.TrimSpace(k), 10, 64)
		cost, err2 := strconv.ParseUint(strings.TrimSpace(v), 10, 16)
		if !ok || err1 != nil || err2 != nil || id == 0 || cost < 1 || cost > 65534 {
			return nil, fmt.Errorf("%w: link-cost %q: want NODE_ID=COST, cost 1..65534", ErrConfig, kv)
		}
		out[id] = uint16(cost)
	}
	return out, nil
}

// linkCostFunc is LinkCost as the mesh takes it.
func (c *Config) linkCostFunc() func(uint64) uint16 {
	costs, _ := c.linkCosts() // checked by Validate
	if len(costs) == 0 {
		return nil
	}
	return func(id uint64) uint16 { return costs[id] }
}

// resumeWindow is ResumeWindow as the mesh takes it: the same rule,
// 0 the default and a negative window off.
func (c *Config) resumeWindow() time.Duration {
	if c.ResumeWindow < 0 {
		return -1
	}
	return c.ResumeWindow
}
