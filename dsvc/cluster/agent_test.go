package cluster_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/corralhq/corral/dsvc/cluster/clustertest"
	"github.com/corralhq/corral/internal/pgtest"
)

// These tests run against real agent processes of the corral binary
// (package clustertest). Helper processes the conformance suite starts
// find the agent through envSocket and build nothing.

const envSocket = "CORRAL_DSVC_CLUSTER_TEST_SOCKET"

// pgDSN is the PostgreSQL server of the conversions to the postgres
// module; "" if none could be started (those conversions are left out,
// said in the log).
var pgDSN string

func TestMain(m *testing.M) {
	stop := func() {}
	if os.Getenv(envSocket) == "" { // not a helper process
		dsn, st, err := pgtest.Server()
		if err != nil {
			fmt.Fprintf(os.Stderr, "cluster tests: no conversions to postgres: %v\n", err)
		} else {
			pgDSN, stop = dsn, st
		}
	}
	code := m.Run()
	stop()
	clustertest.Cleanup()
	os.Exit(code)
}
