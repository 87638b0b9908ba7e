package obs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrServe is wrapped by the error Run returns when the server fails.
var ErrServe = errors.New("obs: http server failed")

// shutdownGrace is how long Run lets requests in flight finish. A CPU
// profile runs for its full duration, so it is cut rather than waited for.
const shutdownGrace = 2 * time.Second

// Server serves /metrics and /debug/pprof/ on its own listener and mux.
type Server struct {
	ln    net.Listener
	mux   *http.ServeMux
	srv   *http.Server
	log   *slog.Logger
	grace time.Duration // shutdownGrace; tests shorten it

	// http.Server does not wait for its handlers; Run does, through these.
	mu      sync.Mutex    // guards the fields below
	active  int           // handlers running
	stopped bool          // Run is shutting down: no handler starts
	drained chan struct{} // closed once stopped and no handler runs
}

// Listen binds addr (HOST:PORT; port 0 picks a free one) and prepares
// the handlers: /metrics serves g, /debug/pprof/ the profiler. Serve it
// with Run.
func Listen(addr string, g prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	if g == nil {
		return nil, errors.New("obs: no metrics gatherer")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("obs: listen for http on %q: %w", addr, err)
	}
	log = log.With("subsystem", "obs")
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError, // one failing collector does not hide the rest
	}))
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also serves the named profiles: heap, goroutine, ...
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s := &Server{ln: ln, mux: mux, log: log, grace: shutdownGrace, drained: make(chan struct{})}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// serve runs a request on the mux, counted so that Run can wait for it.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	s.active++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.active--
		if s.stopped && s.active == 0 {
			close(s.drained)
		}
	}()
	s.mux.ServeHTTP(w, r)
}

// Addr is the address the server is bound to.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// URL is the server's base URL, "http://HOST:PORT".
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Handle adds a handler, for /debug/corral/<service> pages. Call it
// before Run.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Close releases the listener of a server that is not going to Run.
func (s *Server) Close() error { return s.ln.Close() }

// Run serves until ctx is done, then shuts the server down and returns nil
// once its goroutines and handlers have ended. Requests in flight get a
// short grace; then their connections are closed, which cancels their
// contexts. A server that fails returns the error, wrapping ErrServe. Run
// may be called once.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("http server listening", "url", s.URL(), "metrics", s.URL()+"/metrics", "pprof", s.URL()+"/debug/pprof/")
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.ln) }()
	var err error
	select {
	case err = <-served:
		if errors.Is(err, http.ErrServerClosed) {
			err = nil // Close was called
		} else {
			err = fmt.Errorf("%w: %w", ErrServe, err)
		}
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), s.grace)
		if s.srv.Shutdown(sctx) != nil {
			s.srv.Close() // cut what did not finish in time
		}
		cancel()
		<-served
	}
	s.srv.Close()
	s.mu.Lock()
	s.stopped = true
	if s.active == 0 {
		close(s.drained)
	}
	s.mu.Unlock()
	<-s.drained
	return err
}
