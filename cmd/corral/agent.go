package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/corralhq/corral/agent"
	"github.com/corralhq/corral/internal/datadir"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/transport"
)

func agentCmd() *cobra.Command {
	cfg := agent.Defaults()
	var configFile, logFormat string
	var dev bool
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the corral agent on this node",
		Long: `Run the corral agent. Settings come from the defaults, then the TOML file
given by --config (keys are the flag names), then the flags.

SIGINT and SIGTERM stop the agent. SIGHUP reloads what can change while it
runs: the log level, and the peer list (new peers are dialed); the file is
read again, the flags still win over it, and other changed settings are
logged as needing a restart.

With --dev the agent runs alone on embedded defaults: a temporary data
directory, a fresh cluster key, node id 1, and a free port on 127.0.0.1;
it serves /metrics and /debug/pprof/ on another free port there. The
temporary directory is removed however the agent stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Signals are caught before anything is created, so none
			// of them ends the process past its cleanup.
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
			defer signal.Stop(sigs)
			flagCfg := cfg
			load := func() (agent.Config, error) {
				if configFile == "" {
					return flagCfg, nil
				}
				c := agent.Defaults()
				if err := agent.LoadFile(configFile, &c); err != nil {
					return c, err
				}
				// Flags given on the command line win over the file.
				cmd.Flags().Visit(func(f *pflag.Flag) { copyFlag(&c, &flagCfg, f.Name) })
				return c, nil
			}
			cfg, err := load()
			if err != nil {
				return err
			}
			var level slog.LevelVar
			if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
				return fmt.Errorf("--log-level %q: %w", cfg.LogLevel, err)
			}
			log, err := newLevelLogger(&level, logFormat)
			if err != nil {
				return err
			}
			var devDir string
			if dev {
				cleanup, err := devSetup(cmd, &cfg)
				if err != nil {
					return err
				}
				defer cleanup()
				devDir = cfg.DataDir
			}
			a, err := agent.New(cfg, log)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- a.Run(ctx) }()
			var banner sync.WaitGroup // owns the banner goroutine
			if dev {
				banner.Go(func() {
					// After the startup logs: once the node is in its view.
					waitReady(ctx, cfg.DataDir, a.ID(), 10*time.Second)
					if ctx.Err() == nil {
						printDevBanner(os.Stdout, a, cfg)
					}
				})
			}
			reload := func() {
				c, err := load()
				if err == nil && dev {
					c.DataDir, c.ID, c.Bind, c.HTTPAddr, c.Bootstrap, c.ClusterKeyFile = cfg.DataDir, cfg.ID, cfg.Bind, cfg.HTTPAddr, cfg.Bootstrap, cfg.ClusterKeyFile
				}
				if err == nil {
					err = level.UnmarshalText([]byte(c.LogLevel))
				}
				if err == nil {
					rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					err = a.Reload(rctx, c)
					cancel()
				}
				if err != nil {
					log.Error("reload failed; running on as before", "err", err.Error())
					return
				}
				log.Info("SIGHUP: reloaded", "log_level", level.Level().String(), "config", configFile)
			}
			for {
				select {
				case err := <-done:
					cancel()
					banner.Wait()
					if devDir != "" && err == nil {
						log.Info("removing the dev data dir", "dir", devDir)
					}
					return err
				case s := <-sigs:
					if s == syscall.SIGHUP {
						reload()
						continue
					}
					if ctx.Err() == nil {
						log.Info("stopping", "signal", s.String())
					}
					cancel()
				}
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "TOML config file")
	f.BoolVar(&dev, "dev", false, "run one node on embedded defaults (temporary data dir and key)")
	f.StringVar(&cfg.Cluster, "cluster", cfg.Cluster, "cluster name; every node of a cluster uses the same")
	f.StringVar(&cfg.Name, "name", cfg.Name, "node name")
	f.Uint64Var(&cfg.ID, "id", 0, "node id (0: the one kept in the data dir, made up on first start)")
	f.StringVar(&cfg.Bind, "bind", cfg.Bind, "HOST:PORT to accept peer links on")
	f.StringSliceVar(&cfg.Peers, "peers", nil, "peer addresses HOST:PORT,HOST:PORT")
	f.StringSliceVar(&cfg.LinkCost, "link-cost", nil, "routing cost of the links to some peers, NODE_ID=COST,... (default 100 each)")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory: sockets, node id, key, log (default $"+datadir.EnvVar+", else "+datadir.Default+")")
	f.StringVar(&cfg.ClusterKeyFile, "cluster-key-file", "", "cluster key file (default DATA-DIR/cluster.key)")
	f.DurationVar(&cfg.Heartbeat, "heartbeat-interval", cfg.Heartbeat, "time between heartbeats on a link")
	f.DurationVar(&cfg.DeadAfter, "heartbeat-timeout", cfg.DeadAfter, "silence after which a link is declared dead")
	f.DurationVar(&cfg.Handshake, "handshake-timeout", cfg.Handshake, "time a new connection has to complete its handshake")
	f.DurationVar(&cfg.ReconnectMax, "reconnect-max", cfg.ReconnectMax, "longest wait between reconnection attempts")
	f.DurationVar(&cfg.ResumeWindow, "resume-window", cfg.ResumeWindow, "how long transactions over a lost peer link wait for it to reconnect and resume (0: the default, 1s; -1s: off, they fail at once)")
	f.DurationVar(&cfg.CallbackTimeout, "callback-timeout", cfg.CallbackTimeout, "how long a client has to complete an event's callbacks in the node-wide dispatch before it is disconnected")
	f.IntVar(&cfg.MaxHandshakes, "max-handshakes", cfg.MaxHandshakes, "peer connections handshaking at once at most; more are closed at once")
	f.IntVar(&cfg.MaxHandshakesPerIP, "max-handshakes-per-ip", cfg.MaxHandshakesPerIP, "peer connections handshaking at once from one IP at most")
	f.BoolVar(&cfg.Bootstrap, "bootstrap", false, "found a new cluster with this node as first member if the data dir holds no log")
	f.DurationVar(&cfg.Tick, "raft-tick", cfg.Tick, "cluster log clock tick")
	f.IntVar(&cfg.ElectionTicks, "election-ticks", cfg.ElectionTicks, "ticks without a leader before an election")
	f.DurationVar(&cfg.RemoveAfter, "remove-after", cfg.RemoveAfter, "how long a member's link stays down before the leader removes it from the view")
	f.IntVar(&cfg.MaxVoters, "max-voters", cfg.MaxVoters, "voting members at most; more nodes join as non-voting members")
	f.Uint64Var(&cfg.SnapshotEvery, "snapshot-every", 0, "take a snapshot of the cluster log after this many applied entries (0: the default)")
	f.Uint64Var(&cfg.SnapshotKeep, "snapshot-keep", 0, "entries kept before a snapshot for followers a little behind (0: none)")
	f.BoolVar(&cfg.ForceNewCluster, "force-new-cluster", false, "disaster recovery, once: restart this node as a cluster of one from its own log (see README)")
	f.DurationVar(&cfg.ForgetAfter, "forget-after", cfg.ForgetAfter, "how long a node whose links all ended stays in the members list; 0 keeps it")
	f.StringVar(&cfg.SharedIface, "shared-iface", "", "interface that holds the shared addresses this node owns and sends their gratuitous ARPs; turns on the kernel data path, which needs root (default off)")
	f.StringVar(&cfg.SharedUserspace, "shared-userspace", "", "LISTEN: run the user-space fallback instead of the kernel data path (no root): the owner relays the shared addresses' connections with a PROXY v2 header to the serving nodes, which listen on their own address; LISTEN is \"shared\" (bind the shared address, IP_FREEBIND) or an IP of this host to bind (default off; excludes --shared-iface)")
	f.Uint64Var(&cfg.SharedStack, "shared-stack", 0, "stack id of the agent's namespace for shared addresses, the same on every node (default: the namespace's inode)")
	f.StringVar(&cfg.HTTPAddr, "http-addr", "", "HOST:PORT to serve /metrics and /debug/pprof/ on (default off)")
	f.StringVar(&cfg.ClientSocketGroup, "client-socket-group", "", "group (name or gid) given the client socket, so that its members' applications reach the agent; the data dir becomes 0710 with that group")
	f.StringVar(&cfg.ClientSocketMode, "client-socket-mode", cfg.ClientSocketMode, "mode of the client socket, in octal (the admin socket is always 0600)")
	f.BoolVar(&cfg.AllowOpenKeyFile, "allow-open-key-file", false, "start with a cluster key file readable by group or others, warning, instead of refusing it")
	f.StringVar(&cfg.PeerVersions, "peer-versions", "", "speak only these peer protocol versions, MIN..MAX (for version tests)")
	f.MarkHidden("peer-versions")
	f.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error (SIGHUP reloads it)")
	f.StringVar(&logFormat, "log-format", "text", "text or json")
	return cmd
}

// copyFlag copies the setting of flag name from src to dst.
func copyFlag(dst, src *agent.Config, name string) {
	switch name {
	case "cluster":
		dst.Cluster = src.Cluster
	case "name":
		dst.Name = src.Name
	case "id":
		dst.ID = src.ID
	case "bind":
		dst.Bind = src.Bind
	case "peers":
		dst.Peers = src.Peers
	case "link-cost":
		dst.LinkCost = src.LinkCost
	case "data-dir":
		dst.DataDir = src.DataDir
	case "cluster-key-file":
		dst.ClusterKeyFile = src.ClusterKeyFile
	case "heartbeat-interval":
		dst.Heartbeat = src.Heartbeat
	case "heartbeat-timeout":
		dst.DeadAfter = src.DeadAfter
	case "handshake-timeout":
		dst.Handshake = src.Handshake
	case "reconnect-max":
		dst.ReconnectMax = src.ReconnectMax
	case "resume-window":
		dst.ResumeWindow = src.ResumeWindow
	case "callback-timeout":
		dst.CallbackTimeout = src.CallbackTimeout
	case "max-handshakes":
		dst.MaxHandshakes = src.MaxHandshakes
	case "max-handshakes-per-ip":
		dst.MaxHandshakesPerIP = src.MaxHandshakesPerIP
	case "peer-versions":
		dst.PeerVersions = src.PeerVersions
	case "bootstrap":
		dst.Bootstrap = src.Bootstrap
	case "raft-tick":
		dst.Tick = src.Tick
	case "election-ticks":
		dst.ElectionTicks = src.ElectionTicks
	case "remove-after":
		dst.RemoveAfter = src.RemoveAfter
	case "max-voters":
		dst.MaxVoters = src.MaxVoters
	case "snapshot-every":
		dst.SnapshotEvery = src.SnapshotEvery
	case "snapshot-keep":
		dst.SnapshotKeep = src.SnapshotKeep
	case "forget-after":
		dst.ForgetAfter = src.ForgetAfter
	case "force-new-cluster":
		dst.ForceNewCluster = src.ForceNewCluster
	case "http-addr":
		dst.HTTPAddr = src.HTTPAddr
	case "shared-iface":
		dst.SharedIface = src.SharedIface
	case "shared-userspace":
		dst.SharedUserspace = src.SharedUserspace
	case "shared-stack":
		dst.SharedStack = src.SharedStack
	case "client-socket-group":
		dst.ClientSocketGroup = src.ClientSocketGroup
	case "client-socket-mode":
		dst.ClientSocketMode = src.ClientSocketMode
	case "log-level":
		dst.LogLevel = src.LogLevel
	case "allow-open-key-file":
		dst.AllowOpenKeyFile = src.AllowOpenKeyFile
	}
}

// waitReady waits, at most within, until the agent owning dataDir shows
// node id in its view.
func waitReady(ctx context.Context, dataDir string, id uint64, within time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		if body, err := request(ctx, dataDir, admin.OpView); err == nil {
			if v, err := admin.ParseViewInfo(body); err == nil {
				for _, m := range v.Members {
					if m.ID == id {
						return
					}
				}
			}
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// printDevBanner says where a --dev agent is and how to talk to it.
func printDevBanner(w io.Writer, a *agent.Agent, cfg agent.Config) {
	fmt.Fprintf(w, "corral agent (dev): node %d %q\n  peers connect to  %s\n  admin socket      %s\n  client socket     %s\n  data dir          %s\n",
		a.ID(), cfg.Name, a.Addr(), datadir.AdminSocket(cfg.DataDir), datadir.ClientSocket(cfg.DataDir), cfg.DataDir)
	if u := a.HTTPURL(); u != "" {
		fmt.Fprintf(w, "  metrics           %s/metrics\n  pprof             %s/debug/pprof/\n", u, u)
	}
	fmt.Fprintf(w, "  for the tools:    export %s=%s\n", datadir.EnvVar, cfg.DataDir)
	fmt.Fprintf(w, "  try: %s members --data-dir %s\n", selfCommand(os.Args[0]), cfg.DataDir)
}

// selfCommand is how to run this binary again, from the way it was
// started: "go run ./cmd/corral" for a binary go run built in its temp
// dir, "corral" if that is what the PATH finds, else the path it was run
// by.
func selfCommand(arg0 string) string {
	if strings.Contains(filepath.ToSlash(arg0), "/go-build") {
		return "go run ./cmd/corral"
	}
	if !strings.ContainsRune(arg0, '/') {
		return arg0
	}
	if p, err := exec.LookPath(filepath.Base(arg0)); err == nil {
		if a, err1 := os.Stat(p); err1 == nil {
			if b, err2 := os.Stat(arg0); err2 == nil && os.SameFile(a, b) {
				return filepath.Base(arg0)
			}
		}
	}
	return arg0
}

// devSetup fills in the embedded defaults of --dev.
func devSetup(cmd *cobra.Command, cfg *agent.Config) (func(), error) {
	dir, err := os.MkdirTemp("", "corral-dev-")
	if err != nil {
		return nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if !cmd.Flags().Changed("data-dir") {
		cfg.DataDir = dir
	}
	if !cmd.Flags().Changed("id") && cfg.ID == 0 {
		cfg.ID = 1
	}
	if !cmd.Flags().Changed("bind") {
		cfg.Bind = "127.0.0.1:0"
	}
	if !cmd.Flags().Changed("http-addr") && cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	cfg.Bootstrap = true
	if cfg.ClusterKeyFile == "" {
		cfg.ClusterKeyFile = filepath.Join(dir, "cluster.key")
		key, err := transport.GenerateKey()
		if err != nil {
			cleanup()
			return nil, err
		}
		if err := transport.WriteKeyFile(cfg.ClusterKeyFile, key); err != nil {
			cleanup()
			return nil, err
		}
	}
	return cleanup, nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	return newLevelLogger(lv, format)
}

// newLevelLogger logs at level, which may be a *slog.LevelVar that
// changes while the logger is in use.
func newLevelLogger(level slog.Leveler, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(format) {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func keygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Write a new cluster key (mode 0600)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return fmt.Errorf("--out is required")
			}
			key, err := transport.GenerateKey()
			if err != nil {
				return err
			}
			return transport.WriteKeyFile(out, key)
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the key to (must not exist)")
	return cmd
}
