// Package obs serves an agent's observability over HTTP: Prometheus
// metrics at /metrics and the Go profiler at /debug/pprof/.
//
// Nothing here is process-global. The agent makes a *prometheus.Registry
// and passes it in; Listen serves that registry (never the default one)
// from obs's own ServeMux (never http.DefaultServeMux). The metrics of the
// cluster are a Collector, Metrics, that reads its Sources at scrape time,
// so the packages it reports on need no changes to be observed: each
// source is a func the agent wires to state it already has, and a nil
// source is simply not exported. The fsync latency histogram is the one
// metric fed as it happens, through Metrics.ObserveSync.
//
// Order of use: NewMetrics, register it on the registry, Listen (which
// binds, so a bad address fails before the agent runs and the bound
// address is known), then Run in a goroutine the caller waits for. Run
// returns once the server has shut down.
package obs
