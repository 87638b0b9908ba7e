// Package dsvcbench measures the data-service modules side by side
// through the framework (dsvc.Registry and dsvc.Handle, with the lock
// service for the modules that ask for it), in one run:
// BenchmarkModules/<module>/<op>/clients=<n>. It holds only benchmarks;
// bench/dsvc.sh runs them and prints the table. A module is one entry of
// the table modules in bench_test.go.
package dsvcbench
