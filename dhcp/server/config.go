package server

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/corralhq/corral/dsvc"
)

// ErrConfig is a configuration the server cannot run with.
var ErrConfig = errors.New("dhcp/server: bad configuration")

// Defaults of Config.
const (
	DefaultListen                 = ":67"
	DefaultOfferTTL               = 10 * time.Second // in.dhcpd OFFER_CACHE_TIMEOUT
	DefaultSecondaryServerTimeout = 20 * time.Second // in.dhcpd SECONDARY_SERVER_TIMEOUT
	DefaultLease                  = time.Hour        // dhcp_network(4): LeaseTim defaults to one hour
	DefaultClientPort             = 68
	DefaultRelayPort              = 67
	DefaultRequestTimeout         = 4 * time.Second

	// Handler goroutines by the datastore module's synchronization
	// (DefaultWorkers), measured with perfdhcp (bench/dhcp.sh). A module
	// that orders writes itself (cluster, postgres) answers each after a
	// commit shared with the others in flight (one log fsync for many),
	// so many must wait at once: 256 did about 10x better than netio's
	// 4×NumCPU. A lock-service module (files, binfiles) serializes every
	// store call on a file lock that waiters poll and a write holds
	// through its fsync: 2 workers did ~400 DORA/s, 256 ~30.
	DefaultWorkersLogged = 256
	DefaultWorkersLocked = 2
)

// DefaultWorkers is the worker count for a datastore module of the
// given synchronization, used when Config.Workers is 0.
func DefaultWorkers(s dsvc.SynchType) int {
	if s == dsvc.SynchLockService {
		return DefaultWorkersLocked
	}
	return DefaultWorkersLogged
}

// Config is the server's configuration (a TOML file, see
// testdata/example.toml). Durations are strings ("10s") or integer
// nanoseconds.
type Config struct {
	Listen  string `toml:"listen"`   // address the sockets bind; default ":67", the only one that hears broadcasting clients
	Sockets int    `toml:"sockets"`  // netio.Config.Sockets
	Workers int    `toml:"workers"`  // netio.Config.Workers; default by the datastore's module (DefaultWorkers)
	Queue   int    `toml:"queue"`    // netio.Config.Queue
	Batch   int    `toml:"batch"`    // netio.Config.Batch
	RcvBuf  int    `toml:"rcvbuf"`   // netio.Config.RcvBuf
	MaxHops int    `toml:"max_hops"` // netio.Config.MaxHops

	// MaxWait is netio.Config.MaxWait: under overload, a DISCOVER queued
	// longer is dropped; default 1s, negative ("-1s"): no bound.
	MaxWait Duration `toml:"max_wait"`

	// HTTP is the address (HOST:PORT) serving /metrics (Prometheus) and
	// /stats (Report as JSON) for corral dhcp stats; "" serves neither.
	HTTP string `toml:"http"`

	Datastore Datastore `toml:"datastore"`
	// LockDir is the dsvc lock service directory ("" dsvc/lock's default,
	// shared with the tools on the host).
	LockDir string `toml:"lock_dir"`

	// Owners are the server's addresses as the records' SIP names them:
	// it allocates only records whose SIP is one of them. Default: the
	// IPv4 addresses of the listen address's interfaces (the listen
	// address itself when it is a specific one).
	Owners []string `toml:"owners"`

	Networks []Network `toml:"network"`

	// Cluster names the servers of the other nodes, for failover
	// (takeover.go); empty: this server allocates only its own records.
	Cluster Cluster `toml:"cluster"`

	OfferTTL               Duration `toml:"offer_ttl"`                // how long an offer reserves its address; default 10s
	SecondaryServerTimeout Duration `toml:"secondary_server_timeout"` // secs before answering a renew for another server's address; default 20s
	DefaultLease           Duration `toml:"default_lease"`            // when the macros give no LeaseTim; default 1h
	// RequestTimeout bounds the store calls of one packet; a REQUEST
	// whose commit does not finish in time gets no ACK (the client asks
	// again; had the write applied, its binding is found and extended).
	// Default 4s, the first retransmission of RFC 2131 §4.1.
	RequestTimeout Duration `toml:"request_timeout"`

	// ICMPProbe pings a free or expired address before offering it
	// (in.dhcpd ICMP_VERIFY): one that answers is marked UNUSABLE
	// (probe.go). ICMPTimeout is how long the echo reply is awaited.
	ICMPProbe   bool     `toml:"icmp_probe"`   // default false
	ICMPTimeout Duration `toml:"icmp_timeout"` // default 500ms
	// RescanInterval rereads the dhcptab this often (in.dhcpd -t);
	// 0: only on Reload (SIGHUP).
	RescanInterval Duration `toml:"rescan_interval"`

	// Test hooks: the ports replies go to. Real clients listen on 68 and
	// relays on 67.
	ClientPort int `toml:"client_port"`
	RelayPort  int `toml:"relay_port"`
}

// Datastore names the dsvc datastore (dhcpsvc.conf's RESOURCE, PATH,
// RESOURCE_CONFIG).
type Datastore struct {
	Module   string `toml:"module"`   // files, binfiles, postgres, cluster; default files
	Location string `toml:"location"` // the module's location (a directory, a URL, a name in the cluster store)
	Config   string `toml:"config"`   // the module's configuration string
}

// DS is the datastore as dsvc takes it (the newest container version).
func (d Datastore) DS() dsvc.Datastore {
	return dsvc.Datastore{Module: d.Module, Location: d.Location, Config: d.Config, Version: dsvc.CurrentVersion}
}

// Network is one network the server serves: a dsvc network container.
type Network struct {
	Prefix string `toml:"prefix"` // "10.0.0.0/24": the container is "10.0.0.0"
	// Interface is the interface its unrelayed clients arrive on; ""
	// matches the interface that has an address in Prefix.
	Interface string `toml:"interface"`
	// ServerID is option 54 on this network; default the owner address
	// in Prefix, else the listen address, else the first owner.
	ServerID string `toml:"server_id"`
}

// Duration is a time.Duration in TOML: "10s" or integer nanoseconds.
type Duration struct{ time.Duration }

// UnmarshalText parses "10s".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes d as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// LoadConfig reads a TOML file. Unknown keys are errors.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig parses a TOML configuration, fills the defaults and checks
// it. Unknown keys are errors.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(b)).Decode(&c)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return Config{}, fmt.Errorf("%w: unknown keys %s", ErrConfig, strings.Join(keys, ", "))
	}
	c = c.WithDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// WithDefaults fills the zero fields.
func (c Config) WithDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.Datastore.Module == "" {
		c.Datastore.Module = dsvc.DefaultModule
	}
	if c.OfferTTL.Duration == 0 {
		c.OfferTTL.Duration = DefaultOfferTTL
	}
	if c.SecondaryServerTimeout.Duration == 0 {
		c.SecondaryServerTimeout.Duration = DefaultSecondaryServerTimeout
	}
	if c.DefaultLease.Duration == 0 {
		c.DefaultLease.Duration = DefaultLease
	}
	if c.RequestTimeout.Duration == 0 {
		c.RequestTimeout.Duration = DefaultRequestTimeout
	}
	if c.ICMPTimeout.Duration == 0 {
		c.ICMPTimeout.Duration = DefaultICMPTimeout
	}
	if c.ClientPort == 0 {
		c.ClientPort = DefaultClientPort
	}
	if c.RelayPort == 0 {
		c.RelayPort = DefaultRelayPort
	}
	return c
}

// Validate checks what can be checked without the network or the store.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...)
	}
	if c.Datastore.Location == "" {
		return bad("datastore.location is required")
	}
	if len(c.Networks) == 0 {
		return bad("no [[network]]")
	}
	if c.HTTP != "" {
		if _, port, err := net.SplitHostPort(c.HTTP); err != nil || port == "" {
			return bad("http %q: want HOST:PORT", c.HTTP)
		}
	}
	for _, o := range c.Owners {
		if a, err := netip.ParseAddr(o); err != nil || !a.Is4() {
			return bad("owner %q: not an IPv4 address", o)
		}
	}
	seen := map[netip.Prefix]bool{}
	for i, n := range c.Networks {
		p, err := netip.ParsePrefix(n.Prefix)
		if err != nil || !p.Addr().Is4() || p.Masked() != p {
			return bad("network %d: prefix %q: want an IPv4 network such as 10.0.0.0/24", i, n.Prefix)
		}
		if seen[p] {
			return bad("network %s twice", p)
		}
		seen[p] = true
		if n.ServerID != "" {
			if a, err := netip.ParseAddr(n.ServerID); err != nil || !a.Is4() {
				return bad("network %s: server_id %q: not an IPv4 address", p, n.ServerID)
			}
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"offer_ttl", c.OfferTTL.Duration}, {"secondary_server_timeout", c.SecondaryServerTimeout.Duration}, {"default_lease", c.DefaultLease.Duration},
		{"request_timeout", c.RequestTimeout.Duration}, {"icmp_timeout", c.ICMPTimeout.Duration}, {"rescan_interval", c.RescanInterval.Duration}} {
		if d.v < 0 {
			return bad("%s is negative", d.name)
		}
	}
	if c.DefaultLease.Duration < time.Second {
		return bad("default_lease under a second")
	}
	if err := c.Cluster.validate(); err != nil {
		return err
	}
	for _, p := range []int{c.ClientPort, c.RelayPort} {
		if p < 1 || p > 65535 {
			return bad("port %d out of range", p)
		}
	}
	return nil
}
