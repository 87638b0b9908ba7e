package main

// corral dhcp serve: the DHCPv4 server (dhcp/server) as its own process
// over a data-service datastore.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"

	"github.com/corralhq/corral/dhcp/server"
	"github.com/corralhq/corral/dsvc/lock"
	"github.com/corralhq/corral/obs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
)

// dhcpGCPercent is corral dhcp serve's GOGC unless the environment sets
// one.
const dhcpGCPercent = 400

func dhcpCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "dhcp", Short: "the DHCPv4 server"}
	cmd.AddCommand(dhcpServeCmd(), dhcpStatsCmd(), dhcpLeasesCmd())
	return cmd
}

func dhcpServeCmd() *cobra.Command {
	var cfgPath, logLevel, logFormat, cpuProfile string
	cmd := &cobra.Command{
		Use:   "serve --config FILE",
		Short: "serve DHCP from a datastore until SIGINT or SIGTERM (SIGHUP rereads the dhcptab)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cfgPath == "" {
				return errors.New("--config is required")
			}
			log, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			cfg, err := server.LoadConfig(cfgPath)
			if err != nil {
				return err
			}
			if os.Getenv("GOGC") == "" {
				// The server's live heap is small (the offer and
				// free-record caches) and its garbage is per packet, so
				// the collector ran often, scanning hundreds of worker
				// stacks each time. GOGC=400 for server and agents
				// measured about 12% less CPU per DORA with 3 nodes
				// (bench/dhcp.sh AB="export GOGC=100|export GOGC=400",
				// 2 pairs on a loaded machine); the agents keep the
				// default, their heap being the whole replica.
				debug.SetGCPercent(dhcpGCPercent)
			}
			if cpuProfile != "" {
				// For bench/dhcp.sh: the profile covers the serving, until the signal.
				f, err := os.Create(cpuProfile)
				if err != nil {
					return err
				}
				defer f.Close()
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
				defer pprof.StopCPUProfile()
			}
			lk, err := lock.New(lock.Options{Dir: cfg.LockDir, Log: log})
			if err != nil {
				return err
			}
			reg, err := newDsvcRegistry(lk)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			s, err := server.New(ctx, cfg, reg, server.Options{Log: log})
			if err != nil {
				return err
			}
			defer s.Close()
			waitViews, err := startViews(ctx, cfg, s, log)
			if err != nil {
				return err
			}
			defer func() { stop(); waitViews() }()
			var hs *obs.Server
			if cfg.HTTP != "" {
				if hs, err = dhcpHTTP(cfg.HTTP, s, log); err != nil {
					return err
				}
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			done := make(chan struct{})
			defer func() { <-done }()
			if hs != nil {
				httpDone := make(chan error, 1)
				defer func() {
					if err := <-httpDone; err != nil {
						log.Warn("http", "err", err)
					}
				}()
				go func() { httpDone <- hs.Run(ctx) }()
			}
			go func() {
				defer close(done)
				for {
					select {
					case <-ctx.Done():
						return
					case <-hup:
						if err := s.Reload(ctx); err != nil {
							log.Warn("reload", "err", err)
						} else {
							log.Info("dhcptab reread, offers flushed")
						}
					}
				}
			}()
			err = s.Run(ctx)
			stop()
			st := s.Stats()
			log.Info("counters", "received", fmt.Sprint(st.Received), "sent", fmt.Sprint(st.Sent),
				"commits", st.Commits, "collisions", st.Collisions, "lost", st.Lost,
				"no_address", st.NoAddress, "store_errors", st.StoreErrors, "send_errors", st.SendErrors)
			if err == nil || errors.Is(err, context.Canceled) {
				log.Info("stopped")
				return nil
			}
			return err
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "the server's TOML configuration (see dhcp/server/testdata/example.toml)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "text or json")
	cmd.Flags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the run to this file")
	_ = cmd.Flags().MarkHidden("cpuprofile")
	return cmd
}

// dhcpHTTP listens on addr for /metrics (the server's metrics, Go and
// process collectors, on a registry of its own), /stats (the server's
// Report as JSON, for corral dhcp stats) and /debug/pprof/.
func dhcpHTTP(addr string, s *server.Server, log *slog.Logger) (*obs.Server, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	if err := s.Register(reg); err != nil {
		return nil, err
	}
	hs, err := obs.Listen(addr, reg, log)
	if err != nil {
		return nil, err
	}
	hs.Handle("GET /stats", s.StatsHandler())
	return hs, nil
}
