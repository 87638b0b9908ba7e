package cluster_test

import (
	"os"
	"testing"

	"github.com/corralhq/corral/dsvc/cluster/clustertest"
)

// These tests run against real agent processes of the corral binary
// (package clustertest). Helper processes the conformance suite starts
// find the agent through envSocket and build nothing.

const envSocket = "CORRAL_DSVC_CLUSTER_TEST_SOCKET"

func TestMain(m *testing.M) {
	code := m.Run()
	clustertest.Cleanup()
	os.Exit(code)
}
