package postgres_test

import (
	"os"
	"testing"

	"github.com/corralhq/corral/internal/pgtest"
)

// serverDSN is the test server's connection string; "" with skipWhy set
// when there is none.
var serverDSN, skipWhy string

// TestMain uses the server pgtest.EnvDSN names or starts a throwaway one
// and sets the variable, so helper processes use the same server.
func TestMain(m *testing.M) {
	dsn, stop, err := pgtest.Server()
	if err != nil {
		skipWhy, stop = err.Error(), func() {}
	}
	serverDSN = dsn
	code := m.Run()
	stop()
	os.Exit(code)
}

// needServer skips t without a server.
func needServer(t testing.TB) string {
	t.Helper()
	if serverDSN == "" {
		t.Skip(skipWhy)
	}
	return serverDSN
}

// freshLocation returns a location (the server's DSN with a search_path)
// in a new, empty schema, dropped at the end of the test. The catalog is
// not made: the location does not exist yet.
func freshLocation(t testing.TB) string {
	return pgtest.Schema(t, needServer(t))
}
