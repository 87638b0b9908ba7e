// Package pgtest gives tests and benchmarks a PostgreSQL server: the one
// named by CORRAL_TEST_POSTGRES, or a throwaway one it starts from the
// Debian or PATH binaries (initdb and postgres, as the user postgres when
// the test runs as root) in a temporary directory. Without binaries the
// callers skip with a message saying so. A throwaway server runs without
// fsync unless CORRAL_TEST_POSTGRES_DURABLE=1 (then with fsync,
// synchronous_commit and full_page_writes on, for benchmarks whose write
// figures must compare with modules that fsync). It also hands out empty schemas,
// one per test, as locations of the dsvc postgres module.
package pgtest
